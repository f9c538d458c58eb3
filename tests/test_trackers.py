"""Experiment trackers, read back from what they wrote: TensorBoard's event files through
tensorboard's EventAccumulator, MLflow's local store through its client API (no mocks; nothing
leaves the machine)."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from typer.testing import CliRunner

from ablate.cli import app
from ablate.plugin_host import load_host
from ablate.run_file import load_run_file
from ablate.run_info import RunInfo
from ablate.tracking import (
    Tracker,
    TrackerError,
    TrackingContext,
    TrackingObserver,
    parse_trackers,
    tracking,
)
from ablate.training import Trainer
from tests.conftest import TINY_STUDY_RUN, tiny_config
from tests.test_docs import example_of

runner = CliRunner()

RUN_FILE = """
[run]
T = 20
steps = 12
batch_size = 16
subset = 64
grid_size = 4
sample_every = 1
device = "cpu"
trackers = [{name = "tensorboard", loss_every = 2}, {name = "mlflow", loss_every = 3}]

[run.decoder]
name = "cnn"
channels = [4, 8]
time_hidden = 16
"""


def mlflow_store(folder: Path) -> MlflowClient:
    return MlflowClient(tracking_uri=f"sqlite:///{folder / 'mlflow' / 'mlflow.db'}")


@pytest.fixture(scope="module")
def tracked_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Three epochs of four steps, a grid after each, logged to TensorBoard and MLflow."""
    folder = tmp_path_factory.mktemp("tracked")
    path = folder / "tiny.toml"
    path.write_text(RUN_FILE, encoding="utf-8")
    result = runner.invoke(app, ["train", str(path), "-o", str(folder / "run")])
    assert result.exit_code == 0, result.output
    return folder / "run"


def records(run: Path) -> list[dict]:
    lines = (run / "metrics.jsonl").read_text(encoding="utf-8").splitlines()
    return [json.loads(line) for line in lines]


def test_tensorboard_holds_step_losses_epoch_metrics_grids_and_the_configuration(tracked_run):
    events = EventAccumulator(str(tracked_run / "tensorboard"), size_guidance={"images": 0})
    events.Reload()
    assert [e.step for e in events.Scalars("train/loss")] == [2, 4, 6, 8, 10, 12]
    logged = [(e.step, e.value) for e in events.Scalars("epoch/loss")]
    expected = [(r["step"], pytest.approx(r["loss"], rel=1e-6)) for r in records(tracked_run)]
    assert logged == expected
    images = events.Images("samples")
    assert [i.step for i in images] == [4, 8, 12] and images[0].width > 0
    config = events.Tensors("config/text_summary")[0].tensor_proto.string_val[0].decode()
    assert '"time_hidden": 16' in config


def test_mlflow_run_holds_params_step_losses_epoch_metrics_and_grids(tracked_run):
    client = mlflow_store(tracked_run)
    experiment = client.get_experiment_by_name("tiny")
    (run,) = client.search_runs([experiment.experiment_id])
    assert run.info.status == "FINISHED"
    assert run.data.params["decoder.name"] == "cnn"
    assert run.data.params["T"] == "20" and run.data.params["decoder.channels"] == "[4, 8]"
    history = client.get_metric_history(run.info.run_id, "train/loss")
    assert [m.step for m in history] == [3, 6, 9, 12]
    epochs = client.get_metric_history(run.info.run_id, "epoch/loss")
    assert [(m.step, m.value) for m in epochs] == [
        (r["step"], pytest.approx(r["loss"])) for r in records(tracked_run)]
    grids = client.list_artifacts(run.info.run_id, "samples")
    assert [Path(g.path).name for g in grids] == ["epoch_0001.png", "epoch_0002.png",
                                                  "epoch_0003.png"]


def test_trackers_are_not_part_of_the_stored_configuration(tracked_run):
    stored = json.loads((tracked_run / "config.json").read_text(encoding="utf-8"))["run"]
    assert "trackers" not in stored  # resuming with other trackers still matches


def test_study_trials_land_in_one_mlflow_experiment_tagged_with_study_and_trial(tracked_run,
                                                                               tmp_path):
    store = f"sqlite:///{tracked_run / 'mlflow' / 'mlflow.db'}"  # an existing store, by URI
    path = tmp_path / "study.toml"
    path.write_text(f'[study]\nname = "tiny-study"\noutput = "{(tmp_path / "out").as_posix()}"\n'
                    f'trials = 2\nsampler = "random"\n'
                    f'trackers = [{{name = "mlflow", tracking_uri = "{store}"}}]\n'
                    f'{TINY_STUDY_RUN}\n'
                    '[search]\n"run.lr" = {low = 1e-4, high = 1e-2, log = true}\n',
                    encoding="utf-8")
    result = runner.invoke(app, ["run", str(path), "--tracker", "tensorboard"])
    assert result.exit_code == 0, result.output
    client = mlflow_store(tracked_run)
    experiment = client.get_experiment_by_name("tiny-study")
    runs = client.search_runs([experiment.experiment_id], order_by=["tags.trial"])
    assert [(r.data.tags["study"], r.data.tags["trial"]) for r in runs] == [
        ("tiny-study", "0"), ("tiny-study", "1")]
    assert runs[0].data.params["lr"] != runs[1].data.params["lr"]
    for trial in ("trial_0000", "trial_0001"):  # the flag's tracker, in each trial's folder
        events = tmp_path / "out" / "tiny-study" / "trials" / trial / "tensorboard"
        assert list(events.glob("events.out.tfevents.*"))


def test_unknown_tracker_is_a_config_error_with_a_suggestion(tmp_path):
    path = tmp_path / "run.toml"
    path.write_text('[run]\ntrackers = ["tensorbord"]\n', encoding="utf-8")
    result = runner.invoke(app, ["train", str(path)])
    assert result.exit_code == 2
    assert "run.trackers[0]: unknown tracker 'tensorbord'" in result.output
    assert "did you mean 'tensorboard'?" in result.output


def test_tracker_flag_naming_no_tracker_fails_before_training(tiny_run_file, tmp_path):
    result = runner.invoke(app, ["train", str(tiny_run_file), "-o", str(tmp_path / "r"),
                                 "--tracker", "mlfow"])
    assert result.exit_code == 2 and "did you mean 'mlflow'?" in result.output
    assert not (tmp_path / "r").exists()


@pytest.mark.skipif(importlib.util.find_spec("wandb") is not None, reason="wandb is installed")
def test_wandb_without_its_extra_names_the_extra(tmp_path):
    path = tmp_path / "run.toml"
    path.write_text('[run]\ntrackers = ["wandb"]\n', encoding="utf-8")
    with pytest.raises(Exception, match=r"pip install 'ablate\[wandb\]'"):
        load_run_file(path)


def test_the_loss_is_read_back_only_on_logging_steps():
    class Counting:
        reads = 0

        def __float__(self) -> float:
            Counting.reads += 1
            return 0.5

    logged: list[int] = []

    class Session:
        def log_loss(self, step, loss):
            logged.append(step)

    class Tracker:
        loss_every = 5

    observer = TrackingObserver([], None)
    observer.sessions[Path("run")] = [(Tracker(), Session())]
    run = type("Run", (), {"output_dir": Path("run")})()
    for step in range(1, 21):
        observer.step_end(run=run, step=step, loss=Counting())
    assert logged == [5, 10, 15, 20] and Counting.reads == 4


def test_the_documented_tracker_example_logs_a_run(tmp_path, monkeypatch):
    module = example_of("register_trackers", monkeypatch)
    host = load_host([(module.__name__, module)])
    trackers = parse_trackers([{"name": "jsonl", "loss_every": 2}], host, source="test",
                              key="trackers")
    with tracking(host, trackers, TrackingContext("doc", tmp_path)):
        Trainer(tiny_config(steps=4), tmp_path / "run", host=host).run()
    lines = (tmp_path / "run" / "tracked.jsonl").read_text(encoding="utf-8").splitlines()
    logged = [json.loads(line) for line in lines]
    assert [e["step"] for e in logged if "loss" in e] == [2, 4]
    assert [e["step"] for e in logged if "epoch/loss" in e] == [4]
    assert any("grid" in e for e in logged)


def test_a_resumed_run_logs_on_to_the_same_mlflow_run(tracked_run, tmp_path):
    config = load_run_file(Path(tracked_run).parent / "tiny.toml")
    trackers = [t for t in config.trackers if t.name == "mlflow"]
    host = load_host()
    with tracking(host, trackers, TrackingContext("tiny", tracked_run)):
        Trainer(config.run, tracked_run, host=host).run(resume=True)
    client = mlflow_store(tracked_run)
    runs = client.search_runs([client.get_experiment_by_name("tiny").experiment_id])
    assert len(runs) == 1 and runs[0].info.status == "FINISHED"


@pytest.mark.skipif(importlib.util.find_spec("wandb") is None,
                    reason="wandb is an extra: pip install 'ablate[wandb]'")
def test_wandb_logs_an_offline_run_with_the_sample_grids(tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_SILENT", "true")
    path = tmp_path / "tiny.toml"
    path.write_text(RUN_FILE.replace('{name = "tensorboard", loss_every = 2}, '
                                     '{name = "mlflow", loss_every = 3}', '"wandb"'),
                    encoding="utf-8")
    result = runner.invoke(app, ["train", str(path), "-o", str(tmp_path / "run")])
    assert result.exit_code == 0, result.output
    (offline,) = (tmp_path / "run" / "wandb").glob("offline-run-*")
    assert list(offline.glob("run-*.wandb"))
    grids = sorted(p.name.split("_")[1] for p in offline.glob("files/media/images/samples_*.png"))
    assert grids == ["12", "4", "8"]  # one grid per epoch, at its step


def test_a_shared_tensorboard_log_dir_keeps_each_trial_apart(tmp_path):
    from ablate_builtins.tensorboard_tracker import TensorBoard

    tracker = TensorBoard(log_dir=str(tmp_path / "tb"))
    for trial in ("trial_0000", "trial_0001"):
        run = RunInfo(tiny_config(), tmp_path / "study" / "trials" / trial, "cpu", 1)
        tracker.open(run, TrackingContext("study", tmp_path / "study")).close("completed")
    assert sorted(p.name for p in (tmp_path / "tb" / "trials").iterdir()) == [
        "trial_0000", "trial_0001"]


def test_the_documented_step_end_example_reads_the_loss_every_ten_steps(
        tmp_path, monkeypatch, capsys):
    module = example_of("step_end", monkeypatch)
    host = load_host([(module.__name__, module)])
    Trainer(tiny_config(steps=20), tmp_path / "run", host=host).run()
    printed = [line for line in capsys.readouterr().out.splitlines() if line.startswith("step")]
    assert [line.split(":")[0] for line in printed] == ["step 10", "step 20"]


def test_an_mlflow_uri_of_no_known_scheme_fails_before_training(tiny_run_file, tmp_path):
    path = tmp_path / "run.toml"
    path.write_text(tiny_run_file.read_text(encoding="utf-8").replace(
        "[run]\n", '[run]\ntrackers = [{name = "mlflow", tracking_uri = "nonsense://x"}]\n'),
        encoding="utf-8")
    result = runner.invoke(app, ["train", str(path), "-o", str(tmp_path / "r")])
    assert result.exit_code == 2
    assert "run.trackers[0]: tracking_uri 'nonsense://x' is not one MLflow can log to" in \
        result.output
    assert not (tmp_path / "r").exists()


def test_a_tracker_that_cannot_start_stops_the_run_with_one_line(tmp_path):
    class Broken(Tracker):
        name = "broken"

        def open(self, run, context):
            raise ConnectionError("server unreachable\nretried 5 times")

    observer = TrackingObserver([Broken()], TrackingContext("x", tmp_path))
    run = RunInfo(tiny_config(), tmp_path / "run", "cpu", 1)
    with pytest.raises(TrackerError, match=r"^tracker 'broken' could not start logging: "
                                           r"ConnectionError: server unreachable$"):
        observer.run_start(run=run)


def test_list_plugins_shows_the_trackers_with_their_settings():
    result = runner.invoke(app, ["list-plugins", "--json"])
    assert result.exit_code == 0
    trackers = {t["name"]: t for t in json.loads(result.output)["trackers"]}
    assert {"tensorboard", "mlflow", "wandb"} <= set(trackers)
    assert trackers["mlflow"]["source"].startswith("built-in")
    assert "tracking_uri" in [p["name"] for p in trackers["mlflow"]["parameters"]]
