"""Bad input: a corpus of malformed study and run files (tests/data/bad_studies, each naming the
message it must give in its first line) and property-based tests over both loaders: every
mistake is one clear line naming the file and the key, exit code 2, and nothing but ablate's
ConfigError ever escapes the loaders."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from ablate.cli import app
from ablate.errors import ConfigError
from ablate.run_file import load_run_file
from ablate.study_config import STUDY_KEYS, load_study_file

runner = CliRunner()
CORPUS = Path(__file__).parent / "data" / "bad_studies"
FILES = sorted(CORPUS.glob("*.toml"))


def test_the_corpus_covers_at_least_thirty_mistakes():
    assert len(FILES) >= 30
    assert sum(f.name.endswith(".run.toml") for f in FILES) >= 5


@pytest.mark.parametrize("path", FILES, ids=[f.name for f in FILES])
def test_a_malformed_file_is_one_clear_error_with_exit_code_2(path: Path, tmp_path: Path):
    expected = path.read_text(encoding="utf-8").splitlines()[0].removeprefix("# expect: ")
    if path.name.endswith(".run.toml"):
        result = runner.invoke(app, ["train", str(path), "-o", str(tmp_path / "run")])
        assert not (tmp_path / "run").exists()  # nothing written for a file that is wrong
    else:
        result = runner.invoke(app, ["run", str(path), "--dry-run"])
    output = " ".join(result.output.split())
    assert result.exit_code == 2, result.output
    assert output.startswith(f"error: {path}: "), output
    assert expected in output, output
    assert output.count("error:") == 1 and "Traceback" not in result.output


# Values a hand-written TOML file can hold, nested a little.
scalars = st.one_of(st.booleans(), st.integers(-10**6, 10**6),
                    st.floats(allow_nan=True, allow_infinity=True),
                    st.text(max_size=12), st.sampled_from(["cnn", "unet", "linear", "cosine",
                                                           "tpe", "grid", "median", "loss",
                                                           "fid", "run.lr", "mnist", "ema"]))
values = st.recursive(scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=3),
    st.dictionaries(st.sampled_from(["name", "low", "high", "step", "log", "values", "decay",
                                     "beta_max", "channels", "x"]), inner, max_size=3)),
    max_leaves=8)
RUN_KEYS = ["T", "epochs", "steps", "batch_size", "lr", "seed", "device", "scaling", "subset",
            "grid_size", "decoder", "schedule", "ema", "dataset", "degradation", "bogus"]
SEARCH_KEYS = ["run.lr", "run.T", "run.decoder.name", "run.schedule.beta_max",
               "run.decoder.unet.base_width", "run.nowhere", "eval.steps", "lr"]


def toml_value(value: Any) -> str:
    """A value as TOML (a writer of our own: the standard library only reads TOML)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return ("nan" if math.isnan(value) else ("inf" if value > 0 else "-inf")) \
            if not math.isfinite(value) else repr(value)
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    return "{" + ", ".join(f"{json.dumps(k)} = {toml_value(v)}" for k, v in value.items()) + "}"


def toml_document(tables: dict[str, dict[str, Any]]) -> str:
    return "\n".join(f"[{name}]\n" + "".join(f"{json.dumps(k)} = {toml_value(v)}\n"
                                             for k, v in table.items())
                     for name, table in tables.items())


def table(keys: list[str]) -> st.SearchStrategy[dict[str, Any]]:
    return st.dictionaries(st.sampled_from(keys), values, max_size=5)


def document(*names: str) -> st.SearchStrategy[str]:
    parts = {"study": table(STUDY_KEYS), "run": table(RUN_KEYS), "search": table(SEARCH_KEYS),
             "eval": table(["metrics", "samples", "every", "sampler", "steps", "seed"])}
    return st.fixed_dictionaries({}, optional={n: parts[n] for n in names}).map(toml_document)


EXAMPLES = settings(max_examples=150, deadline=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture])


@EXAMPLES
@given(text=document("study", "run", "search", "eval"))
def test_the_study_loader_raises_nothing_but_config_errors(text: str, tmp_path: Path):
    path = tmp_path / "study.toml"
    path.write_text(text, encoding="utf-8")
    try:
        load_study_file(path)
    except ConfigError as exc:
        assert exc.source == str(path)


@EXAMPLES
@given(text=document("run", "eval"))
def test_the_run_loader_raises_nothing_but_config_errors(text: str, tmp_path: Path):
    path = tmp_path / "run.toml"
    path.write_text(text, encoding="utf-8")
    try:
        load_run_file(path)
    except ConfigError as exc:
        assert exc.source == str(path)


VALID = {
    "study": {"name": "ok", "trials": 2, "sampler": {"name": "tpe", "n_startup_trials": 1},
              "pruner": "median", "objective": "loss", "seed": 0,
              "constraints": ["run.schedule.beta_max <= 0.05"],
              "baselines": [{"name": "base"}], "heartbeat_interval": 1, "heartbeat_grace": 3},
    "run": {"T": 10, "steps": 8, "batch_size": 16, "subset": 64, "device": "cpu",
            "decoder": {"name": "cnn", "channels": [4, 8], "time_hidden": 16},
            "schedule": {"name": "linear", "beta_max": 0.02}},
    "search": {"run.lr": {"low": 1e-4, "high": 1e-2, "log": True},
               "run.schedule.beta_max": {"low": 0.01, "high": 0.05},
               "run.decoder.name": ["cnn", "unet"], "run.decoder.unet.base_width": [8, 16]},
}


def one_change(draw: st.DrawFn) -> str:
    """A valid study file with one value replaced (or added), deep in any table."""
    tables = json.loads(json.dumps(VALID))
    name = draw(st.sampled_from(sorted(tables)))
    keys = {"study": STUDY_KEYS, "run": RUN_KEYS, "search": SEARCH_KEYS}[name]
    target = tables[name]
    key = draw(st.sampled_from(sorted(set(keys) | set(target))))
    if isinstance(target.get(key), dict) and draw(st.booleans()):
        inner = target[key]
        inner[draw(st.sampled_from(sorted(inner) + ["extra"]))] = draw(values)
    else:
        target[key] = draw(values)
    return toml_document(tables)


@EXAMPLES
@given(text=st.composite(one_change)())
def test_one_wrong_value_in_a_valid_study_is_a_config_error(text: str, tmp_path: Path):
    path = tmp_path / "study.toml"
    path.write_text(text, encoding="utf-8")
    try:
        load_study_file(path)
    except ConfigError as exc:
        assert exc.source == str(path)


def test_the_unchanged_valid_study_loads(tmp_path: Path):
    path = tmp_path / "study.toml"
    path.write_text(toml_document(VALID), encoding="utf-8")
    assert load_study_file(path).name == "ok"


@EXAMPLES
@given(text=st.text(max_size=200))
def test_any_text_at_all_is_a_config_error_or_a_study(text: str, tmp_path: Path):
    path = tmp_path / "study.toml"
    path.write_text(text, encoding="utf-8")
    try:
        load_study_file(path)
    except ConfigError as exc:
        assert exc.source == str(path)


SEVERAL_MISTAKES = """
[study]
name = "several"
trails = 4
timeout = nan
sampler = "tpee"

[run]
T = 0
lr = "fast"
decoder = {name = "cnn", chanels = [4, 8]}

[eval]
metrics = ["fid", "fid"]
samples = 1

[search]
"run.lrr" = {low = 1e-4, high = 1e-2}
"""


def test_a_study_with_several_mistakes_reports_every_one_at_once(tmp_path: Path):
    path = tmp_path / "several.toml"
    path.write_text(SEVERAL_MISTAKES, encoding="utf-8")
    result = runner.invoke(app, ["run", str(path), "--dry-run"])
    assert result.exit_code == 2, result.output
    lines = [" ".join(line.split()) for line in result.output.split("error: ")[1:]]
    assert all(line.startswith(f"{path}: ") for line in lines), lines
    found = {line.removeprefix(f"{path}: ").split(":")[0] for line in lines}
    assert found == {"study.trails", "study.timeout", "study.sampler", "run.T", "run.lr",
                     "run.decoder.chanels", "eval.samples"}, lines
    assert "did you mean 'trials'?" in result.output and "did you mean 'tpe'?" in result.output
    assert "did you mean 'channels'?" in result.output and "Traceback" not in result.output


def test_eval_and_search_mistakes_are_reported_together_once_run_is_right(tmp_path: Path):
    text = SEVERAL_MISTAKES.replace("T = 0\nlr = \"fast\"\n", "").replace("chanels", "channels")
    path = tmp_path / "several.toml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError) as caught:
        load_study_file(path)
    keys = {e.key for e in caught.value.errors}
    assert {"eval.samples", "search.run.lrr", "study.trails", "study.timeout",
            "study.sampler"} <= keys, keys


def test_every_wrong_search_key_is_reported_at_once(tmp_path: Path):
    text = SEVERAL_MISTAKES.replace("T = 0\nlr = \"fast\"\n", "").replace("chanels", "channels")
    text += ('"run.T" = {low = 5, high = inf}\n"run.lr_schedule.warmup_step" = [0, 10]\n'
             '"run.optimizer.name" = ["adam", "lion"]\n')
    path = tmp_path / "several.toml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError) as caught:
        load_study_file(path)
    keys = {e.key for e in caught.value.errors}
    assert "search.run.optimizer.name" in keys, keys  # a wrong plugin choice stops the rest,
    assert "search.run.T.high" not in keys  # whose checks depend on which plugins are searched
    path.write_text(text.replace('"adam", "lion"', '"adam", "sgd"'), encoding="utf-8")
    with pytest.raises(ConfigError) as caught:
        load_study_file(path)
    keys = {e.key for e in caught.value.errors}
    assert {"search.run.lrr", "search.run.T.high", "search.run.lr_schedule.warmup_step"} <= keys


def test_every_wrong_constraint_is_reported_at_once(tmp_path: Path):
    study = {**VALID, "study": {**VALID["study"], "constraints": [
        "run.lrr < 1", "1 < 2", "run.lr <= 0.1", "run.lr << 3"]}}
    path = tmp_path / "study.toml"
    path.write_text(toml_document(study), encoding="utf-8")
    with pytest.raises(ConfigError) as caught:
        load_study_file(path)
    assert [e.key for e in caught.value.errors] == ["study.constraints[0]", "study.constraints[1]",
                                                    "study.constraints[3]"]


def test_a_run_file_with_several_mistakes_reports_every_one_before_training(tmp_path: Path):
    path = tmp_path / "several.run.toml"
    path.write_text('[run]\nT = -1\nbatch_sise = 8\nscaling = "centred"\n'
                    'schedule = {name = "linear", beta_max = 2.0, bogus = 1}\n'
                    '[eval]\nmetrics = ["fidd"]\n', encoding="utf-8")
    result = runner.invoke(app, ["train", str(path), "-o", str(tmp_path / "out")])
    assert result.exit_code == 2 and not (tmp_path / "out").exists()
    keys = [line.split(": ")[1] for line in result.output.split("error: ")[1:]]
    assert sorted(keys) == ["eval.metrics", "run.T", "run.batch_sise", "run.scaling",
                           "run.schedule.beta_max", "run.schedule.bogus"], \
        result.output


def test_local_workers_far_beyond_the_cores_are_refused(tmp_path: Path):
    path = tmp_path / "study.toml"
    path.write_text(toml_document(VALID), encoding="utf-8")
    result = runner.invoke(app, ["run", str(path), "--dry-run", "--workers", "100000"])
    assert result.exit_code == 2
    assert "--workers: 100000 local workers on a machine with" in " ".join(result.output.split())


# What only the machine can answer: checked by --dry-run and before training, all at once.
TINY = ('T = 10\nsteps = 8\nbatch_size = 16\nsubset = 64\ndevice = "cpu"\n'
        'decoder = {name = "cnn", channels = [4, 8], time_hidden = 16}\n')
LONG = "n" * 300
MACHINE_RUNS = {  # name -> (run table lines replacing TINY's, extra CLI args, expected)
    "subset_beyond_the_dataset": (TINY.replace("subset = 64", "subset = 100000"), [],
                                  "run.subset: 100,000 images asked for, but dataset 'mnist' "
                                  "has 60,000 training images"),
    "batch_beyond_the_dataset": (TINY.replace("subset = 64", "subset = 0").replace(
        "batch_size = 16", "batch_size = 70000"), [],
        "run.batch_size: a batch of 70,000 images is more than the 60,000 training images"),
    "dataset_files_missing": (TINY + 'dataset = {name = "mnist", root = "/nonexistent"}\n', [],
                              "run.dataset: dataset 'mnist' cannot be read: MNIST file"),
    "output_name_too_long": (TINY, ["-o", f"runs/{LONG}"], "--output: the name 'nnnn"),
    "output_below_a_file": (TINY, ["-o", "{tmp}/file/run"], "is a file, so"),
}


@pytest.mark.parametrize("name", sorted(MACHINE_RUNS))
def test_what_only_the_machine_knows_is_checked_before_training(name: str, tmp_path: Path):
    table, args, expected = MACHINE_RUNS[name]
    (tmp_path / "file").write_text("", encoding="utf-8")
    path = tmp_path / "run.toml"
    path.write_text(f"[run]\n{table}", encoding="utf-8")
    args = [a.replace("{tmp}", str(tmp_path)) for a in args] or ["-o", str(tmp_path / "out")]
    result = runner.invoke(app, ["train", str(path), *args])
    output = " ".join(result.output.split())
    assert result.exit_code == 2, result.output
    assert expected in output and output.count("error:") == 1, output
    assert not (tmp_path / "out").exists()


def test_device_that_the_machine_lacks_is_refused_by_dry_run(tmp_path: Path):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    path = tmp_path / "study.toml"
    path.write_text(toml_document({**VALID, "run": {**VALID["run"], "device": "cuda"}}),
                    encoding="utf-8")
    result = runner.invoke(app, ["run", str(path), "--dry-run"])
    assert result.exit_code == 2
    assert "run.device: CUDA is not available on this machine" in " ".join(result.output.split())


def test_dry_run_reports_every_machine_problem_of_a_study_together(tmp_path: Path):
    (tmp_path / "file").write_text("", encoding="utf-8")
    study = {**VALID, "study": {**VALID["study"], "output": str(tmp_path / "file" / "out"),
                                "storage": f"journal:///{tmp_path}/{LONG}/journal.log"},
             "search": {**VALID["search"], "run.batch_size": [16, 100000]}}
    path = tmp_path / "study.toml"
    path.write_text(toml_document(study), encoding="utf-8")
    result = runner.invoke(app, ["run", str(path), "--dry-run"])
    output = " ".join(result.output.split())
    assert result.exit_code == 2, output
    assert "search.run.batch_size: a batch of 100,000 images is more than the subset of 64" \
        in output
    assert "study.output: " in output and "is a file, so" in output
    assert "study.storage: the name 'nnnn" in output and output.count("error:") == 3


@pytest.mark.parametrize("command", ["sample", "evaluate"])
def test_sample_counts_beyond_the_limit_are_refused_before_loading(command: str, tmp_path: Path):
    result = runner.invoke(app, [command, str(tmp_path / "none.safetensors"), "-n", "1000000"])
    assert result.exit_code == 2
    assert "50000" in result.output and "Traceback" not in result.output


def test_every_wrong_baseline_is_reported_at_once(tmp_path: Path):
    study = {**VALID, "study": {**VALID["study"], "baselines": [
        {"name": "far", "run.lr": 5.0}, {"name": "typo", "run.lrr": 1e-3}, {"name": "ok"}]}}
    path = tmp_path / "study.toml"
    path.write_text(toml_document(study), encoding="utf-8")
    with pytest.raises(ConfigError) as caught:
        load_study_file(path)
    assert [e.key for e in caught.value.errors] == ["study.baselines[0].run.lr",
                                                    "study.baselines[1].run.lrr"]
