"""The training engine: learning, logging, checkpoints, resume and interruption."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import pytest
import torch

from ablate import metrics_log
from ablate.checkpoint import load_checkpoint
from ablate.errors import AblateError
from ablate.training import DivergedError, EarlyStop, Interrupted, SilentReporter, Trainer
from tests.conftest import tiny_config


def losses(run_dir: Path) -> list[float]:
    return [r["loss"] for r in metrics_log.read(run_dir / "metrics.jsonl")]


def test_loss_goes_down_on_real_mnist(tmp_path: Path):
    config = tiny_config(steps=40, lr=1e-3)
    result = Trainer(config, tmp_path / "run").run()
    values = [r["loss"] for r in result.metrics]
    assert len(values) == 10
    assert values[-1] < 0.7 * values[0]


def test_run_writes_resolved_config_metrics_grid_and_checkpoint(tmp_path: Path):
    config = tiny_config()
    result = Trainer(config, tmp_path / "run").run()
    stored = json.loads((tmp_path / "run" / "config.json").read_text())
    assert stored["run"] == config.to_dict()
    assert stored["run"]["schedule"] == {
        "name": "linear",
        "beta_min": 1e-4,
        "beta_max": 0.02,
        "zero_terminal_snr": False,
    }
    assert [r["epoch"] for r in result.metrics] == [1, 2, 3]
    assert {"loss", "step", "images_per_s", "train_seconds"} <= set(result.metrics[-1])
    assert Path(result.metrics[-1]["grid"]).is_file()
    tensors, meta = load_checkpoint(result.checkpoint)
    assert meta["progress"]["step"] == 12
    assert any(k.startswith("optim.") for k in tensors)


def test_same_config_and_seed_give_the_same_losses(tmp_path: Path):
    first = Trainer(tiny_config(), tmp_path / "a").run()
    second = Trainer(tiny_config(), tmp_path / "b").run()
    assert [r["loss"] for r in first.metrics] == [r["loss"] for r in second.metrics]
    other = Trainer(tiny_config(seed=1), tmp_path / "c").run()
    assert [r["loss"] for r in other.metrics] != [r["loss"] for r in first.metrics]


class InterruptAt(SilentReporter):
    """Sends a real SIGINT to this process at a given step, as Ctrl-C would."""

    def __init__(self, step: int) -> None:
        self.step = step

    def advance(self, step: int, loss: float | None) -> None:
        if step == self.step:
            os.kill(os.getpid(), signal.SIGINT)


def test_interrupted_run_resumes_to_the_same_result(tmp_path: Path):
    config = tiny_config(ema={"name": "ema", "decay": 0.9, "warmup_steps": 2})
    reference = Trainer(config, tmp_path / "straight").run()
    with pytest.raises(Interrupted, match="--resume"):
        Trainer(config, tmp_path / "stopped", reporter=InterruptAt(6)).run()
    _, meta = load_checkpoint(tmp_path / "stopped" / "checkpoints" / "last.safetensors")
    assert (meta["progress"]["step"], meta["progress"]["batch"]) == (6, 2)
    assert losses(tmp_path / "stopped") == losses(tmp_path / "straight")[:1]
    resumed = Trainer(config, tmp_path / "stopped").run(resume=True)
    assert losses(tmp_path / "stopped") == losses(tmp_path / "straight")
    straight, _ = load_checkpoint(reference.checkpoint)
    again, _ = load_checkpoint(resumed.checkpoint)
    for key in ("model.out.weight", "ema.out.weight"):
        assert torch.equal(straight[key], again[key]), key


def test_resume_after_a_crash_redoes_only_epochs_past_the_checkpoint(tmp_path: Path):
    config = tiny_config(steps=16, checkpoint_every=2)
    Trainer(config, tmp_path / "straight").run()

    def crash_in_epoch_three(record):
        if record["epoch"] == 3:  # logged, but its checkpoint is not due yet
            raise RuntimeError("power cut")

    with pytest.raises(RuntimeError, match="power cut"):
        Trainer(config, tmp_path / "crashed", epoch_callback=crash_in_epoch_three).run()
    assert len(losses(tmp_path / "crashed")) == 3
    Trainer(config, tmp_path / "crashed").run(resume=True)
    assert losses(tmp_path / "crashed") == losses(tmp_path / "straight")


def test_resume_with_another_configuration_is_refused(tmp_path: Path):
    Trainer(tiny_config(), tmp_path / "run").run()
    with pytest.raises(AblateError, match="different configuration"):
        Trainer(tiny_config(lr=1e-3), tmp_path / "run").run(resume=True)


def test_existing_run_is_not_overwritten_without_resume(tmp_path: Path):
    Trainer(tiny_config(), tmp_path / "run").run()
    with pytest.raises(AblateError, match="already holds a run"):
        Trainer(tiny_config(), tmp_path / "run").run()


def test_diverging_run_fails_with_a_reason(tmp_path: Path):
    config = tiny_config(lr=1e6, steps=60, subset=64)
    with pytest.raises(DivergedError, match="diverged"):
        Trainer(config, tmp_path / "run").run()


def test_epoch_callback_can_stop_a_run_early(tmp_path: Path):
    seen = []

    def stop_after_two(record):
        seen.append(record["epoch"])
        if record["epoch"] == 2:
            raise EarlyStop

    with pytest.raises(EarlyStop):
        Trainer(tiny_config(), tmp_path / "run", epoch_callback=stop_after_two).run()
    assert seen == [1, 2]
    assert len(losses(tmp_path / "run")) == 2


def test_observer_hooks_see_the_run_lifecycle(tmp_path: Path):
    import ablate
    from ablate.plugin_host import load_host

    events = []

    class Observer:
        @ablate.hookimpl
        def run_start(self, run):
            events.append(("start", run.parameter_count > 0))

        @ablate.hookimpl
        def epoch_end(self, run, metrics):
            events.append(("epoch", metrics["epoch"]))

        @ablate.hookimpl
        def run_end(self, run, status):
            events.append(("end", status))

    host = load_host([("observer", Observer())])
    Trainer(tiny_config(), tmp_path / "run", host=host).run()
    assert events == [("start", True), ("epoch", 1), ("epoch", 2), ("epoch", 3),
                      ("end", "completed")]


DROPOUT_UNET = {"name": "unet", "base_width": 8, "channel_mult": [1, 2], "attention_levels": [],
                "groups": 4, "dropout": 0.3}


def test_dropout_runs_are_determined_by_their_seed_and_resume_exactly(tmp_path: Path):
    config = tiny_config(decoder=DROPOUT_UNET)
    torch.manual_seed(123)  # whatever the caller did to the global generator
    reference = Trainer(config, tmp_path / "straight").run()
    torch.manual_seed(456)
    again = Trainer(config, tmp_path / "again").run()
    assert losses(tmp_path / "again") == losses(tmp_path / "straight")
    with pytest.raises(Interrupted):
        Trainer(config, tmp_path / "stopped", reporter=InterruptAt(6)).run()
    torch.manual_seed(789)
    resumed = Trainer(config, tmp_path / "stopped").run(resume=True)
    assert losses(tmp_path / "stopped") == losses(tmp_path / "straight")
    for result in (again, resumed):
        tensors, _ = load_checkpoint(result.checkpoint)
        straight, _ = load_checkpoint(reference.checkpoint)
        assert all(torch.equal(straight[k], tensors[k]) for k in straight if k.startswith("model."))
