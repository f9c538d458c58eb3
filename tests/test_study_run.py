"""Running studies end to end on real MNIST: trials, attributes, artifacts, the global budget,
pruning, divergence, rejection by constraints, Ctrl-C and resuming, and the CLI around them."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import optuna
import pytest
import torch
from optuna.trial import TrialState
from rich.console import Console
from typer.testing import CliRunner

from ablate import study as study_module
from ablate.cli import app
from ablate.study import confidence_interval, load_existing, objective_value, run_study
from ablate.study_config import load_study_file
from ablate.study_display import StudyDisplay
from ablate.training import Interrupted
from tests.conftest import TINY_STUDY_RUN, CtrlCAt

runner = CliRunner()

RUN = TINY_STUDY_RUN
SEARCH = """
[search]
"run.lr" = {low = 1e-4, high = 1e4, log = true}
"run.schedule.beta_max" = {low = 0.01, high = 0.2, log = true}
"""


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Tiny models train fastest on one thread when other jobs share the two cores."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def write_study(folder: Path, study: str, search: str = SEARCH) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "study.toml"
    path.write_text(f'[study]\nname = "tiny"\noutput = "{(folder / "out").as_posix()}"\n'
                    f"{study}\n{RUN}\n{search}", encoding="utf-8")
    return path


def trials_of(path: Path) -> list[optuna.trial.FrozenTrial]:
    study, _ = load_existing(load_study_file(path))
    return study.get_trials()


def quiet() -> StudyDisplay:
    return StudyDisplay(Console(file=io.StringIO()))


@pytest.fixture(scope="module")
def finished(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """A three-trial study run through the CLI: the coursework baseline, then TPE's start."""
    path = write_study(tmp_path_factory.mktemp("study"),
                       'trials = 3\nsampler = {name = "tpe", n_startup_trials = 2}\n'
                       'baselines = [{name = "coursework", "run.lr" = 1e-3}]')
    result = runner.invoke(app, ["run", str(path)])
    return path, result.output


def test_cli_run_trains_every_trial_and_prints_the_sorted_table(finished):
    path, output = finished
    trials = trials_of(path)
    assert [t.state for t in trials] == [TrialState.COMPLETE] * 3
    assert trials[0].params == {"lr": 1e-3, "schedule.beta_max": 0.02}
    assert "study tiny: 3 trials, best first" in output
    losses = [line.split("│")[3].strip() for line in output.splitlines()
              if line.startswith("│") and "completed" in line]
    assert losses == [f"{v:.4g}" for v in sorted(t.value for t in trials)]


def test_trials_record_configuration_seed_size_time_and_versions(finished):
    path, _ = finished
    for trial in trials_of(path):
        attrs = trial.user_attrs
        assert attrs["outcome"] == "completed"
        assert attrs["seed"] == trial.number
        assert attrs["config"]["lr"] == trial.params["lr"]
        assert attrs["config"]["seed"] == trial.number
        assert attrs["parameter_count"] > 1000
        assert attrs["wall_seconds"] > 0 and attrs["images_per_s"] > 0
        assert attrs["versions"]["plugins"]["schedule.linear"]["plugin"] == "linear"
        assert {"ablate", "torch", "optuna"} <= set(attrs["versions"])


def test_trials_upload_grid_curves_checkpoint_and_metrics_log(finished):
    path, _ = finished
    result = runner.invoke(app, ["show", str(path), "--json"])
    assert result.exit_code == 0, result.output
    rows = json.loads(result.output)
    for row in rows:
        files = {a["filename"]: Path(a["path"]) for a in row["artifacts"]}
        assert set(files) == {"epoch_0002.png", "curves.png", "last.safetensors",
                              "metrics.jsonl"}
        assert files["epoch_0002.png"].read_bytes()[:4] == b"\x89PNG"
        assert files["curves.png"].read_bytes()[:4] == b"\x89PNG"
        assert len(files["metrics.jsonl"].read_text().splitlines()) == 2


def test_show_csv_has_one_line_per_trial_best_first(finished):
    path, _ = finished
    result = runner.invoke(app, ["show", str(path), "--csv"])
    assert result.exit_code == 0, result.output
    rows = list(csv.DictReader(io.StringIO(result.output)))
    assert len(rows) == 3
    assert [float(r["loss"]) for r in rows] == sorted(float(r["loss"]) for r in rows)
    assert {r["baseline"] for r in rows} == {"coursework", ""}


def test_rerun_continues_the_study_within_its_global_budget(tmp_path: Path):
    path = write_study(tmp_path, 'trials = 1\nsampler = "random"')
    assert runner.invoke(app, ["run", str(path)]).exit_code == 0
    again = runner.invoke(app, ["run", str(path)])
    assert again.exit_code == 0, again.output
    assert len(trials_of(path)) == 1
    more = runner.invoke(app, ["run", str(path), "--n-trials", "2"])
    assert more.exit_code == 0, more.output
    trials = trials_of(path)
    assert [t.state for t in trials] == [TrialState.COMPLETE] * 2
    assert trials[1].params != trials[0].params


def test_the_time_budget_is_global_across_invocations(tmp_path: Path):
    path = write_study(tmp_path, "timeout = 0.5")
    assert runner.invoke(app, ["run", str(path)]).exit_code == 0
    first = trials_of(path)
    assert first and all(t.state == TrialState.COMPLETE for t in first)
    assert runner.invoke(app, ["run", str(path)]).exit_code == 0
    assert len(trials_of(path)) == len(first)


def test_resuming_with_a_changed_search_space_is_refused(finished):
    path, _ = finished
    changed = path.with_name("changed.toml")
    changed.write_text(path.read_text().replace("high = 0.2", "high = 0.3"))
    result = runner.invoke(app, ["run", str(changed)])
    assert result.exit_code == 2
    assert "the [search] part changed since study 'tiny' started" in result.output
    assert len(trials_of(path)) == 3


def test_multi_objective_study_records_both_values_and_the_pareto_front(tmp_path: Path):
    path = write_study(tmp_path, 'trials = 2\nsampler = "random"\n'
                                 'objective = ["loss", "train_seconds"]')
    run_study(load_study_file(path), quiet())
    trials = trials_of(path)
    for trial in trials:
        assert trial.values[1] == pytest.approx(trial.user_attrs["train_seconds"])
    rows = json.loads(runner.invoke(app, ["show", str(path), "--json"]).output)
    assert any(row["pareto"] for row in rows)


def test_objective_is_the_latest_value_and_train_seconds_the_total():
    records = [{"epoch": 1, "loss": 2.0, "train_seconds": 1.5},
               {"epoch": 2, "loss": 1.0, "train_seconds": 2.5, "fid": 30.0, "fid_low": 28.0,
                "fid_high": 33.0}]
    assert objective_value(records, "loss") == 1.0
    assert objective_value(records, "train_seconds") == 4.0
    assert objective_value(records[:1], "fid") is None
    assert confidence_interval(records, "fid") == [28.0, 33.0]
    assert confidence_interval(records, "loss") is None


def test_a_trial_worse_than_the_median_is_pruned(tmp_path: Path):
    path = write_study(tmp_path, 'trials = 2\npruner = {name = "median", n_startup_trials = 1}\n'
                                 'baselines = [{"run.lr" = 1e-2}, {"run.lr" = 1e-4}]')
    run_study(load_study_file(path), quiet())
    first, second = trials_of(path)
    assert first.state == TrialState.COMPLETE
    assert second.state == TrialState.PRUNED
    assert second.user_attrs["outcome"] == "pruned"
    assert list(second.intermediate_values) == [1]
    assert second.user_attrs["epochs"] == 1


def test_a_diverging_trial_fails_with_its_reason_and_the_study_goes_on(tmp_path: Path):
    path = write_study(tmp_path, 'trials = 2\n'
                                 'baselines = [{"run.lr" = 1e3}, {"run.lr" = 1e-3}]')
    run_study(load_study_file(path), quiet())
    diverged, fine = trials_of(path)
    assert diverged.state == TrialState.FAIL
    assert diverged.user_attrs["outcome"] == "diverged"
    assert "training diverged: the loss is nan" in diverged.user_attrs["reason"]
    assert fine.state == TrialState.COMPLETE


def test_a_trial_that_raises_unexpectedly_fails_with_its_traceback_and_the_study_goes_on(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    real = study_module.training_run
    calls = []

    class Broken:
        def run(self, *, resume: bool = False) -> None:
            raise RuntimeError("a plugin's bug")

    def first_one_broken(*args, **kwargs):
        calls.append(args)
        return Broken() if len(calls) == 1 else real(*args, **kwargs)

    monkeypatch.setattr(study_module, "training_run", first_one_broken)
    path = write_study(tmp_path, "trials = 2")
    result = runner.invoke(app, ["run", str(path)])
    assert result.exit_code == 0, result.output
    broken, fine = trials_of(path)
    assert broken.state == TrialState.FAIL
    assert broken.user_attrs["outcome"] == "failed"
    assert "RuntimeError: a plugin's bug" in broken.user_attrs["reason"]
    assert "a plugin's bug" in (Path(broken.user_attrs["run_dir"]) / "error.txt").read_text()
    assert fine.state == TrialState.COMPLETE


def test_points_breaking_a_constraint_are_rejected_without_training(tmp_path: Path):
    path = write_study(tmp_path, 'sampler = "grid"\n'
                                 'constraints = ["run.schedule.beta_max <= 0.05"]',
                       '[search]\n"run.schedule.beta_max" = [0.02, 0.1]\n')
    run_study(load_study_file(path), quiet())
    trials = {t.params["schedule.beta_max"]: t for t in trials_of(path)}
    assert trials[0.02].state == TrialState.COMPLETE
    assert trials[0.02].user_attrs["baseline"] == "base"
    assert trials[0.1].state == TrialState.FAIL
    rejected = trials[0.1].user_attrs
    assert (rejected["outcome"], rejected["reason"]) == (
        "rejected", "violates run.schedule.beta_max <= 0.05")
    assert "config" not in rejected and "run_dir" not in rejected  # nothing was set up

    assert sorted(p.name for p in (tmp_path / "out" / "tiny" / "trials").iterdir()) == [
        f"trial_{trials[0.02].number:04d}"]


def test_ctrl_c_fails_the_trial_with_its_reason_and_the_next_run_resumes_it(tmp_path: Path):
    path = write_study(tmp_path, "trials = 1")
    with pytest.raises(Interrupted, match="resumes it"):
        run_study(load_study_file(path), CtrlCAt(step=6))
    stopped, queued = trials_of(path)
    assert queued.state == TrialState.WAITING
    assert stopped.state == TrialState.FAIL
    assert stopped.user_attrs["outcome"] == "interrupted"
    assert "stopped at step 6" in stopped.user_attrs["reason"]
    run_study(load_study_file(path), quiet())
    stopped, resumed = trials_of(path)
    assert resumed.state == TrialState.COMPLETE
    assert resumed.params == stopped.params
    assert resumed.user_attrs["retry_of"] == 0
    assert resumed.user_attrs["seed"] == stopped.user_attrs["seed"]
    assert resumed.user_attrs["run_dir"] == stopped.user_attrs["run_dir"]
    assert resumed.user_attrs["epochs"] == 2


def test_a_grid_resumed_in_a_later_invocation_runs_every_point_once(tmp_path: Path):
    # The grid's seed shuffles its points and trials record a point by its index, so a resumed
    # grid must keep the seed (a new one re-ran some points and skipped others).
    path = write_study(tmp_path, 'trials = 3\nsampler = "grid"',
                       '[search]\n"run.lr" = [1e-4, 2e-4, 3e-4, 4e-4]\n')
    run_study(load_study_file(path), quiet())
    run_study(load_study_file(path, trials=4), quiet())
    assert sorted(t.params["lr"] for t in trials_of(path)) == [1e-4, 2e-4, 3e-4, 4e-4]


def test_a_full_disk_while_checkpointing_is_no_result_and_the_trial_runs_again(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """Simulated where the bytes go (root ignores read-only folders): safetensors' own error
    for ENOSPC, after writing half a file."""
    import ablate.checkpoint
    from ablate.study import EnvironmentFailure
    from ablate.study_budget import remaining

    real = ablate.checkpoint.save_file

    def full(tensors, path, metadata=None):
        Path(path).write_bytes(b"half a checkpoint")
        raise RuntimeError("Error while serializing: I/O error: No space left on device "
                           "(os error 28)")

    path = write_study(tmp_path, "trials = 1")
    monkeypatch.setattr(ablate.checkpoint, "save_file", full)
    with pytest.raises(EnvironmentFailure, match="No space left on device writing .*"
                                                 "last.safetensors.*free space"):
        run_study(load_study_file(path), quiet())
    stopped, queued = trials_of(path)
    assert stopped.state == TrialState.FAIL
    assert stopped.user_attrs["outcome"] == "environment"
    assert queued.state == TrialState.WAITING and queued.user_attrs["retry_of"] == 0
    spec = load_study_file(path)
    assert remaining(spec, load_existing(spec)[0]).trials == 1  # not counted
    assert not list(spec.folder.rglob("*.tmp"))
    monkeypatch.setattr(ablate.checkpoint, "save_file", real)
    run_study(load_study_file(path), quiet())
    states = [t.state for t in trials_of(path)]
    assert states == [TrialState.FAIL, TrialState.COMPLETE]


def test_a_full_study_database_is_one_clear_error_and_nothing_is_lost(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """SQLite's own 'database or disk is full', from a page limit set on every connection."""
    import sqlalchemy

    path = write_study(tmp_path, "trials = 3")
    result = runner.invoke(app, ["run", str(path), "--n-trials", "1"])
    assert result.exit_code == 0, result.output

    def limit(connection, record):
        pages = connection.execute("PRAGMA page_count").fetchone()[0]
        connection.execute(f"PRAGMA max_page_count = {pages}")

    sqlalchemy.event.listen(sqlalchemy.engine.Engine, "connect", limit)
    try:
        result = runner.invoke(app, ["run", str(path)])
    finally:
        sqlalchemy.event.remove(sqlalchemy.engine.Engine, "connect", limit)
    assert result.exit_code == 2, result.output
    assert "database or disk is full" in result.output and "Traceback" not in result.output
    result = runner.invoke(app, ["run", str(path)])
    assert result.exit_code == 0, result.output
    trials = trials_of(path)
    assert sum(t.state == TrialState.COMPLETE for t in trials) == 3
    assert all(t.state in (TrialState.COMPLETE, TrialState.FAIL) for t in trials)
    assert trials[0].state == TrialState.COMPLETE  # the first run's trial is kept
