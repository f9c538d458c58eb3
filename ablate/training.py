"""The training engine: one configuration, trained, logged, checkpointed and resumable.

The step itself stays on the device: batches are gathered from a uint8 copy of the data that
lives on the device, the loss is accumulated as a tensor, and the host reads it back only every
``SYNC_EVERY`` steps and at the end of each epoch.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import torch

from ablate import __version__, metrics_log, signals
from ablate.assembly import Assembly, assemble
from ablate.atomic import remove_leftovers, write_text_atomic
from ablate.checkpoint import (
    check_optimizer_state,
    check_weights,
    checked_progress,
    checked_rng_state,
    load_checkpoint,
    prefixed,
    restoring,
    save_checkpoint,
    unprefixed,
)
from ablate.config import RunConfig, parse_run
from ablate.datasets import to_model_range
from ablate.device import resolve_device
from ablate.errors import AblateError, CheckpointError
from ablate.eval_config import EvalConfig
from ablate.grids import save_grid
from ablate.plugin_host import PluginHost, default_host
from ablate.recipe import TrainingRecipe
from ablate.run_info import RunInfo

SYNC_EVERY = 50
"""Steps between host reads of the loss (progress display and divergence check)."""

CHECKPOINT_NAME = "last.safetensors"


class DivergedError(AblateError):
    """The loss became NaN or infinite."""


class Interrupted(AblateError):
    """The user (Ctrl-C) or a scheduler (SIGTERM) stopped the run; its state was saved and
    ``--resume`` continues it. The exit code follows the signal: 130 or 143."""

    exit_code = 130

    def __init__(self, message: str, *, signum: int | None = None,
                 state: str | None = None) -> None:
        """``state`` says where the run stopped and what was saved, without the hint of how
        to continue (which differs between ablate train and a study trial)."""
        super().__init__(message)
        self.state = state or message
        self.signum = signum or signals.requested()
        self.exit_code = signals.exit_code(self.signum)


class EarlyStop(Exception):  # noqa: N818 - a control-flow signal, not an error
    """Raised by an epoch callback to end a run early (a pruned study trial, say)."""


EpochCallback = Callable[[dict[str, Any]], None]


class Reporter(Protocol):
    """Receives progress; the CLI shows it with rich, tests and studies may ignore it."""

    def start(self, total_steps: int, done_steps: int) -> None: ...

    def advance(self, step: int, loss: float | None) -> None: ...

    def phase(self, doing: str) -> None:
        """What the engine does between training steps (drawing a grid, scoring samples)."""

    def epoch(self, metrics: dict[str, Any]) -> None: ...

    def stop(self) -> None: ...


class SilentReporter:
    def start(self, total_steps: int, done_steps: int) -> None:
        pass

    def advance(self, step: int, loss: float | None) -> None:
        pass

    def phase(self, doing: str) -> None:
        pass

    def epoch(self, metrics: dict[str, Any]) -> None:
        pass

    def stop(self) -> None:
        pass


@dataclass(frozen=True)
class RunPaths:
    """Where a run writes; everything a run produces lives under ``root``."""

    root: Path

    @property
    def config(self) -> Path:
        return self.root / "config.json"

    @property
    def metrics(self) -> Path:
        return self.root / "metrics.jsonl"

    @property
    def checkpoint(self) -> Path:
        return self.root / "checkpoints" / CHECKPOINT_NAME

    def grid(self, epoch: int) -> Path:
        return self.root / "samples" / f"epoch_{epoch:04d}.png"


@dataclass
class Progress:
    """Where training stands; saved in every checkpoint so a resume continues exactly."""

    epoch: int = 0  # 0-based index of the epoch in progress
    batch: int = 0  # batches of that epoch already done
    step: int = 0  # optimisation steps done in total
    loss_sum: float = 0.0  # sum of this epoch's losses so far
    epoch_seconds: float = 0.0  # training seconds spent in this epoch so far


@dataclass(frozen=True)
class RunResult:
    output_dir: Path
    metrics: list[dict[str, Any]]
    checkpoint: Path
    parameter_count: int


class Trainer:
    """Trains one configuration into an output folder."""

    def __init__(self, config: RunConfig, output_dir: Path, *, host: PluginHost | None = None,
                 reporter: Reporter | None = None, evaluation: EvalConfig | None = None,
                 epoch_callback: EpochCallback | None = None) -> None:
        """``evaluation`` scores samples into the epoch records (see ``[eval]``);
        ``epoch_callback`` sees each epoch's record after it is logged and checkpointed and may
        raise ``EarlyStop`` to end the run there."""
        self.config = config
        self.evaluation = evaluation
        self.epoch_callback = epoch_callback
        self.paths = RunPaths(Path(output_dir))
        self.host = host or default_host()
        self.reporter = reporter or SilentReporter()
        self.device = resolve_device(config.device)

    def run(self, *, resume: bool = False) -> RunResult:
        """Train to the end (or to Ctrl-C / EarlyStop); with ``resume``, from the checkpoint.

        Dropout and other layers draw from torch's global generator: the run owns it (seeded
        from the run's seed, kept in checkpoints) and gives the caller's state back after."""
        with torch.random.fork_rng(devices=self._cuda_devices()):
            torch.manual_seed(self.config.seed + 2)
            return self._run(resume)

    def _cuda_devices(self) -> list[torch.device]:
        return [self.device] if self.device.type == "cuda" else []

    def _run(self, resume: bool) -> RunResult:
        config = self.config
        images = self._load_images()
        steps_per_epoch = len(images) // config.batch_size
        total_steps = config.steps or config.epochs * steps_per_epoch
        parts = assemble(config, tuple(images.shape[1:]), self.device)
        recipe = TrainingRecipe(config, parts.model, self.device, total_steps)
        data_rng = torch.Generator().manual_seed(config.seed)
        noise_rng = torch.Generator(self.device).manual_seed(config.seed + 1)
        progress = Progress()
        remove_leftovers(self.paths.root)  # half-written files of a killed earlier run
        if resume and self.paths.checkpoint.exists():
            progress = self._restore(parts, recipe, data_rng, noise_rng)
            metrics_log.keep_epochs_up_to(self.paths.metrics, progress.epoch)
        else:
            self._start_fresh(resume)
            parts.process.fit(to_model_range(images, config.scaling))
        info = RunInfo(config, self.paths.root, str(self.device), parts.parameter_count)
        self._info = info  # what step_end observers are told about the run
        self.host.hook.run_start(run=info)
        self.reporter.start(total_steps, progress.step)
        status = "failed"
        try:
            with signals.stop_requests():
                while progress.step < total_steps:
                    epoch_start_rng = data_rng.get_state()
                    order = torch.randperm(len(images), generator=data_rng).to(self.device)
                    finished = self._train_epoch(parts, recipe, images, order, noise_rng,
                                                 progress, steps_per_epoch, total_steps)
                    if not finished:
                        data_rng.set_state(epoch_start_rng)
                        self._save(parts, recipe, data_rng, noise_rng, progress)
                        state = (f"stopped at step {progress.step}; state saved to "
                                 f"{self.paths.checkpoint}")
                        raise Interrupted(f"{state}; continue with --resume", state=state)
                    self._end_epoch(info, parts, recipe, data_rng, noise_rng, progress,
                                    last=progress.step >= total_steps)
            status = "completed"
        except Interrupted:
            status = "interrupted"
            raise
        except EarlyStop:
            status = "stopped"
            raise
        finally:
            self.reporter.stop()
            self.host.hook.run_end(run=info, status=status)
        return RunResult(self.paths.root, metrics_log.read(self.paths.metrics),
                         self.paths.checkpoint, parts.parameter_count)

    def _load_images(self) -> torch.Tensor:
        """The training split as uint8, moved to the device once (pinned first for CUDA)."""
        images = self.config.dataset.load("train").images
        if self.config.subset:
            images = images[: self.config.subset]
        if self.device.type == "cuda":
            images = images.pin_memory()
        return images.to(self.device, non_blocking=True)

    def _train_epoch(self, parts: Assembly, recipe: TrainingRecipe,
                     images: torch.Tensor, order: torch.Tensor, noise_rng: torch.Generator,
                     progress: Progress, steps_per_epoch: int, total_steps: int) -> bool:
        """Run the rest of the current epoch; False when the user asked to stop."""
        config, model = self.config, parts.model
        loss_sum = torch.tensor(progress.loss_sum, device=self.device)
        started = time.perf_counter()
        batch_size = config.batch_size
        model.train()
        try:
            while progress.batch < steps_per_epoch and progress.step < total_steps:
                if signals.requested() is not None:
                    return False
                index = order[progress.batch * batch_size:(progress.batch + 1) * batch_size]
                x0 = to_model_range(images[index], config.scaling)
                loss = recipe.step(parts.process.loss, x0, noise_rng)
                progress.step += 1
                progress.batch += 1
                parts.averager.update(model, progress.step)
                loss_sum += loss.detach()
                self.host.hook.step_end(run=self._info, step=progress.step, loss=loss.detach())
                if progress.step % SYNC_EVERY == 0:
                    value = loss.item()
                    _check_finite(value, progress)
                    self.reporter.advance(progress.step, value)
                else:
                    self.reporter.advance(progress.step, None)
        finally:
            progress.loss_sum = loss_sum.item()
            progress.epoch_seconds += time.perf_counter() - started
        return True

    def _end_epoch(self, info: RunInfo, parts: Assembly, recipe: TrainingRecipe,
                   data_rng: torch.Generator, noise_rng: torch.Generator, progress: Progress,
                   *, last: bool) -> None:
        config = self.config
        batches = progress.batch
        loss = progress.loss_sum / max(batches, 1)
        _check_finite(loss, progress)
        epoch_time = progress.epoch_seconds
        progress.epoch += 1
        record = {
            "epoch": progress.epoch,
            "step": progress.step,
            "loss": loss,
            "images_per_s": batches * config.batch_size / max(epoch_time, 1e-9),
            "train_seconds": epoch_time,
        }
        progress.batch, progress.loss_sum, progress.epoch_seconds = 0, 0.0, 0.0
        evaluation = self.evaluation
        if evaluation and (last or (evaluation.every and progress.epoch % evaluation.every == 0)):
            self.reporter.phase(f"epoch {progress.epoch}: sampling {evaluation.samples} images "
                                f"and scoring {', '.join(evaluation.metrics)}")
            record.update(self._evaluate(parts, progress.epoch))
        wants_grid = last or (config.sample_every and progress.epoch % config.sample_every == 0)
        if wants_grid and "grid" not in record:
            self.reporter.phase(f"epoch {progress.epoch}: drawing the sample grid")
            record["grid"] = str(self.sample_grid(parts, progress.epoch))
        metrics_log.append(self.paths.metrics, record)
        self.host.hook.epoch_end(run=info, metrics=record)
        self.reporter.epoch(record)
        if last or progress.epoch % config.checkpoint_every == 0:
            self._save(parts, recipe, data_rng, noise_rng, progress)
        if self.epoch_callback is not None:
            self.epoch_callback(record)

    def sample_grid(self, parts: Assembly, epoch: int) -> Path:
        """Samples from fixed noise (the run's seed), so grids of different epochs compare.

        With an ``[eval]`` table the grid uses its (usually faster) sampler and steps.
        """
        generator = torch.Generator(self.device).manual_seed(self.config.seed)
        shape = (self.config.grid_size, *parts.image_shape)
        sampler = self.evaluation.sampler if self.evaluation else None
        steps = self.evaluation.steps if self.evaluation else None
        samples = parts.process.sample(parts.averager.sampling_model(), shape, generator,
                                       sampler=sampler, steps=steps)
        return save_grid(samples, self.config.scaling, self.paths.grid(epoch))

    def _evaluate(self, parts: Assembly, epoch: int) -> dict[str, Any]:
        """Metric values with their 95% intervals, flattened into record keys, and ``grid``:
        the first ``grid_size`` of the samples the evaluation drew (no extra sampling; the
        evaluation's fixed noise, so every epoch and trial shows the same noise)."""
        from ablate.evaluation import evaluate

        ev = self.evaluation
        record: dict[str, Any] = {}

        def keep_grid(samples: torch.Tensor) -> None:
            path = save_grid(samples[: self.config.grid_size], self.config.scaling,
                             self.paths.grid(epoch))
            record["grid"] = str(path)

        started = time.perf_counter()
        values = evaluate(parts, ev.metrics, ev.samples, sampler=ev.sampler, steps=ev.steps,
                          seed=ev.seed, host=self.host, on_samples=keep_grid)
        for name, value in values.items():
            record.update({name: value.value, f"{name}_low": value.low,
                           f"{name}_high": value.high, f"{name}_n": value.n})
        record["eval_seconds"] = time.perf_counter() - started
        return record

    def _start_fresh(self, resume: bool) -> None:
        if (self.paths.metrics.exists() or self.paths.checkpoint.exists()) and not resume:
            raise AblateError(f"{self.paths.root} already holds a run; continue it with "
                              f"--resume or choose another output folder")
        self.paths.root.mkdir(parents=True, exist_ok=True)
        self.paths.metrics.unlink(missing_ok=True)
        write_text_atomic(self.paths.config, json.dumps(
            {"ablate": __version__, "run": self.config.to_dict()}, indent=2) + "\n")

    def _save(self, parts: Assembly, recipe: TrainingRecipe,
              data_rng: torch.Generator, noise_rng: torch.Generator, progress: Progress) -> None:
        optim_tensors, optim_meta = recipe.state()
        tensors = {
            **prefixed("model", parts.model.state_dict()),
            **prefixed("ema", parts.averager.state_dict()),
            **prefixed("process", parts.process.state_dict()),
            **optim_tensors,
            "rng.data": data_rng.get_state(),
            "rng.noise": noise_rng.get_state(),
            "rng.global": torch.get_rng_state(),
            **{f"rng.global_{d.type}": torch.cuda.get_rng_state(d) for d in self._cuda_devices()},
        }
        meta = {"config": self.config.to_dict(), "progress": vars(progress),
                "image_shape": list(parts.image_shape),
                **optim_meta, "ablate": __version__}
        save_checkpoint(self.paths.checkpoint, tensors, meta)

    def _restore(self, parts: Assembly, recipe: TrainingRecipe,
                 data_rng: torch.Generator, noise_rng: torch.Generator) -> Progress:
        path = self.paths.checkpoint
        tensors, meta = load_checkpoint(path)
        progress = checked_progress(meta, path)  # every field is checked before it is used
        # compared as parsed, so that a checkpoint written before a [run] key existed (and
        # holding its default) still resumes
        if config_from_checkpoint(meta, path, self.host) != self.config:
            raise CheckpointError(f"{path} was written by a different "
                                  f"configuration; resume with the run file that started it")
        load_model_state(parts.model, unprefixed("model", tensors), path)
        restoring(path, "EMA state",
                  lambda: parts.averager.load_state_dict(unprefixed("ema", tensors)))
        restoring(path, "degradation state",
                  lambda: parts.process.load_state_dict(unprefixed("process", tensors)))
        restoring(path, "optimiser or lr-schedule state", lambda: recipe.restore(tensors, meta))
        check_optimizer_state(recipe.optimizer, path)
        data_rng.set_state(checked_rng_state(tensors, "rng.data", data_rng, path))
        noise_rng.set_state(checked_rng_state(tensors, "rng.noise", noise_rng, path))
        torch.set_rng_state(checked_rng_state(tensors, "rng.global", torch.default_generator,
                                              path))
        for device in self._cuda_devices():  # absent when the run began on another device
            if f"rng.global_{device.type}" in tensors:
                restoring(path, "CUDA random state", lambda device=device: torch.cuda.set_rng_state(
                    tensors[f"rng.global_{device.type}"], device))
        return Progress(**progress)


def load_model_state(model: torch.nn.Module, state: dict[str, torch.Tensor], path: Path) -> None:
    """Load weights, turning a key, shape or dtype mismatch or non-finite weights into a clear
    CheckpointError (load_state_dict alone would convert another dtype silently)."""
    check_weights(model, state, path, "weights")
    try:
        model.load_state_dict(state)
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()[0]
        raise CheckpointError(f"{path} does not fit this model ({first})") from None


def config_from_checkpoint(meta: dict[str, Any], path: Path,
                           host: PluginHost | None = None) -> RunConfig:
    try:
        return parse_run(meta["config"], source=f"{path} (stored configuration)", host=host)
    except KeyError:
        raise CheckpointError(f"{path} has no stored configuration") from None


def _check_finite(loss: float, progress: Progress) -> None:
    if not math.isfinite(loss):
        raise DivergedError(f"training diverged: the loss is {loss} at step {progress.step} "
                            f"(epoch {progress.epoch + 1}); try a lower lr or another schedule")
