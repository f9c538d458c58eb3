"""Command-line overrides (KEY=VALUE): TOML literals, checked exactly like the file's values."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from ablate.cli import app
from ablate.errors import ConfigError
from ablate.overrides import apply_overrides, parse_override
from ablate.run_file import load_run_file
from ablate.study_config import load_study_file
from ablate.workers import worker_command
from tests.conftest import TINY_STUDY_RUN

runner = CliRunner()


def test_values_are_toml_literals_and_anything_else_a_string():
    assert parse_override("run.lr=1e-3") == {"run": {"lr": 0.001}}
    assert parse_override("run.decoder.channels=[4, 8]") == {
        "run": {"decoder": {"channels": [4, 8]}}}
    assert parse_override("eval.sampler=ddim") == {"eval": {"sampler": "ddim"}}
    assert parse_override("run.ema.name=\"ema\"") == {"run": {"ema": {"name": "ema"}}}
    assert parse_override('search."run.T"={low = 10, high = 20}') == {
        "search": {"run.T": {"low": 10, "high": 20}}}


def test_a_malformed_override_is_a_config_error():
    with pytest.raises(ConfigError, match="is not KEY=VALUE"):
        parse_override("run.lr")


def test_naming_another_plugin_drops_the_old_plugins_parameters():
    data = {"run": {"decoder": {"name": "cnn", "channels": [4, 8]}, "lr": 1e-3}}
    merged = apply_overrides(data, ["run.decoder.name=unet", "run.decoder.base_width=8"])
    assert merged["run"]["decoder"] == {"name": "unet", "base_width": 8}
    same = apply_overrides(data, ["run.decoder.name=cnn", "run.decoder.time_hidden=8"])
    assert same["run"]["decoder"] == {"name": "cnn", "channels": [4, 8], "time_hidden": 8}
    short = apply_overrides({"run": {"decoder": "cnn"}}, ["run.decoder.time_hidden=8"])
    assert short["run"]["decoder"] == {"name": "cnn", "time_hidden": 8}


def test_train_records_the_overridden_values_in_the_resolved_configuration(tiny_run_file,
                                                                           tmp_path):
    result = runner.invoke(app, ["train", str(tiny_run_file), "-o", str(tmp_path / "run"),
                                 "run.steps=4", "run.lr=1e-3", "run.decoder.time_hidden=8"])
    assert result.exit_code == 0, result.output
    run = json.loads((tmp_path / "run" / "config.json").read_text(encoding="utf-8"))["run"]
    assert (run["steps"], run["lr"], run["decoder"]["time_hidden"]) == (4, 1e-3, 8)
    assert run["decoder"]["channels"] == [4, 8]  # the file's other values stay


def test_an_unknown_key_gets_the_files_error_with_a_suggestion(tiny_run_file, tmp_path):
    result = runner.invoke(app, ["train", str(tiny_run_file), "-o", str(tmp_path / "r"),
                                 "run.lrr=1e-3"])
    assert result.exit_code == 2
    assert "(command line: run.lrr=1e-3): run.lrr: unknown key 'lrr'" in result.output
    assert "did you mean 'lr'?" in result.output
    assert not (tmp_path / "r").exists()


def test_an_override_fails_exactly_as_the_same_value_in_the_file(tiny_run_file, tmp_path):
    in_file = tmp_path / "bad.toml"
    in_file.write_text(tiny_run_file.read_text(encoding="utf-8").replace(
        "[run]\n", '[run]\nbatch_size = "many"\n').replace("batch_size = 16\n", ""),
        encoding="utf-8")
    with pytest.raises(ConfigError) as from_file:
        load_run_file(in_file)
    with pytest.raises(ConfigError) as from_override:
        load_run_file(tiny_run_file, overrides=["run.batch_size=many"])
    assert (from_override.value.key, from_override.value.message, from_override.value.hint) == (
        from_file.value.key, from_file.value.message, from_file.value.hint)


def test_unknown_plugin_named_on_the_command_line_suggests_the_installed_one(tiny_run_file):
    result = runner.invoke(app, ["train", str(tiny_run_file), "run.decoder.name=unett"])
    assert result.exit_code == 2
    assert "command line: run.decoder.name=unett" in result.output
    assert "did you mean 'unet'?" in result.output


@pytest.fixture
def study_file(tmp_path: Path) -> Path:
    path = tmp_path / "study.toml"
    path.write_text(f'[study]\nname = "tiny"\noutput = "{(tmp_path / "out").as_posix()}"\n'
                    f'trials = 2\n{TINY_STUDY_RUN}\n[eval]\nmetrics = ["fid"]\nsamples = 16\n',
                    encoding="utf-8")
    return path


def test_study_eval_and_run_keys_can_be_overridden(study_file):
    spec = load_study_file(study_file, overrides=["study.trials=4", "eval.samples=64",
                                                  "run.lr=1e-3", "study.sampler=random"])
    assert (spec.trials, spec.evaluation.samples, spec.base.lr) == (4, 64, 1e-3)
    assert spec.sampler.name == "random"
    assert spec.definition["run"]["lr"] == 1e-3  # a resumed study must match it
    assert worker_command(spec, 1)[-4:] == ["study.trials=4", "eval.samples=64", "run.lr=1e-3",
                                            "study.sampler=random"]


def test_run_dry_run_shows_the_overridden_plan(study_file):
    result = runner.invoke(app, ["run", str(study_file), "--dry-run", "study.trials=5"])
    assert result.exit_code == 0, result.output
    assert "5" in result.output
    bad = runner.invoke(app, ["run", str(study_file), "--dry-run", "study.trails=5"])
    assert bad.exit_code == 2 and "did you mean 'trials'?" in bad.output


def test_trackers_in_a_studys_run_table_point_to_the_study_table(study_file):
    with pytest.raises(ConfigError, match=r"move it to \[study\] trackers"):
        load_study_file(study_file, overrides=['run.trackers=["mlflow"]'])
