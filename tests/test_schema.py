"""JSON Schemas and the key reference, both generated from the component declarations."""

from __future__ import annotations

import json
import tomllib
from dataclasses import dataclass
from pathlib import Path

import jsonschema
import pytest
from typer.testing import CliRunner

import ablate
from ablate.cli import app
from ablate.components import param
from ablate.decoders import Decoder
from ablate.plugin_host import default_host, load_host
from ablate.reference import render
from ablate.schema import STUDY_TABLE, run_file_schema, study_file_schema
from ablate.study_config import STUDY_KEYS

ROOT = Path(__file__).parent.parent
SHIPPED = sorted([*ROOT.glob("configs/*.toml"), *ROOT.glob("studies/*.toml"),
                  *ROOT.glob("docs/results/*.toml")])
runner = CliRunner()


def validator(kind: str) -> jsonschema.Draft4Validator:
    """Draft 4: what taplo and the other TOML language servers read."""
    build = run_file_schema if kind == "run" else study_file_schema
    schema = build(default_host())
    jsonschema.Draft4Validator.check_schema(schema)
    return jsonschema.Draft4Validator(schema)


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_shipped_file_validates_against_its_schema(path):
    data = tomllib.loads(path.read_text(encoding="utf-8"))
    errors = list(validator("study" if "study" in data else "run").iter_errors(data))
    assert not errors, [f"{list(e.absolute_path)}: {e.message}" for e in errors]


@pytest.mark.parametrize("data", [
    {"run": {"lrr": 1e-3}},
    {"run": {"T": 0}},
    {"run": {"lr": 0}},  # an exclusive bound: lr > 0
    {"run": {"decoder": {"name": "unet", "base_width": "wide"}}},
    {"run": {"decoder": {"name": "cnn", "base_width": 8}}},  # a unet parameter on cnn
    {"run": {"decoder": "no-such-decoder"}},
    {"run": {"trackers": ["tensorbord"]}},
    {"run": {}, "eval": {"metrics": ["fdi"]}},
], ids=["unknown key", "below bound", "on an exclusive bound", "wrong type",
        "other plugin's parameter", "unknown plugin", "unknown tracker", "unknown metric"])
def test_mistakes_fail_the_run_schema(data):
    assert list(validator("run").iter_errors(data))


def test_study_schema_knows_samplers_pruners_and_search_forms():
    good = {"study": {"trials": 2, "sampler": {"name": "tpe", "n_startup_trials": 3},
                      "pruner": "median", "trackers": ["mlflow"]},
            "run": {"decoder": "unet"},
            "search": {"run.lr": {"low": 1e-4, "high": 1e-2, "log": True},
                       "run.decoder.name": ["cnn", "unet"]}}
    assert not list(validator("study").iter_errors(good))
    bad = {**good, "study": {"sampler": {"name": "tpe", "n_startup": 3}}}
    assert list(validator("study").iter_errors(bad))
    seeded = {**good, "run": {"seed": 1}}  # trials take their seeds from [study]
    assert list(validator("study").iter_errors(seeded))


def test_study_table_describes_exactly_the_keys_study_files_accept():
    assert set(STUDY_TABLE) == set(STUDY_KEYS)


@dataclass(frozen=True)
class Tiny(Decoder):
    """A decoder plugin installed after ablate was written."""

    name = "schema-tiny"
    width: int = param(4, "hidden channels", ge=1, le=64)


@ablate.hookimpl
def register_decoders(register):
    register(Tiny)


def test_a_plugin_installed_later_appears_with_its_parameters(monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "schema_tiny_plugin", sys.modules[__name__])
    host = load_host([("schema-tiny", sys.modules[__name__])])
    decoder = run_file_schema(host)["properties"]["run"]["properties"]["decoder"]
    assert "schema-tiny" in decoder["oneOf"][0]["enum"]
    (branch,) = [b for b in decoder["oneOf"][1:] if b["title"] == "schema-tiny"]
    assert branch["properties"]["width"] == {"type": "integer", "description": "hidden channels",
                                             "minimum": 1, "maximum": 64, "default": 4}
    assert branch["properties"]["name"] == {"enum": ["schema-tiny"],
                                            "description": Tiny.summary()}


def test_cli_prints_a_schema_that_checks_study_files():
    result = runner.invoke(app, ["schema", "study"])
    assert result.exit_code == 0
    schema = json.loads(result.output)
    data = tomllib.loads((ROOT / "studies" / "beta_range.toml").read_text(encoding="utf-8"))
    jsonschema.validate(data, schema)


def test_reference_is_current():
    committed = (ROOT / "docs" / "reference.md").read_text(encoding="utf-8")
    assert committed == render(default_host()), (
        "docs/reference.md is out of date: run `ablate schema --markdown > docs/reference.md`")
