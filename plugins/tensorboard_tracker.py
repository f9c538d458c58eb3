"""The ``tensorboard`` tracker: event files that ``tensorboard --logdir`` shows.

Written with ``torch.utils.tensorboard.SummaryWriter`` (backed by the ``tensorboard`` package),
into ``<run folder>/tensorboard`` (``tensorboard --logdir studies-out/NAME/trials`` shows a
study's trials side by side), or into ``log_dir``/<run> when ``log_dir`` names a shared folder.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import ablate
from ablate.components import param
from ablate.run_info import RunInfo
from ablate.tracking import Tracker, TrackingContext, flat_config, read_png


@dataclass(frozen=True)
class TensorBoard(Tracker):
    """TensorBoard event files: loss, epoch metrics, sample grids, configuration, tags."""

    name = "tensorboard"
    log_dir: str = param("", "folder for the event files; empty = <run folder>/tensorboard")

    def open(self, run: RunInfo, context: TrackingContext) -> _Session:
        from torch.utils.tensorboard import SummaryWriter
        from torch.utils.tensorboard.summary import hparams

        folder = Path(self.log_dir) / _run_name(run, context) if self.log_dir else \
            run.output_dir / "tensorboard"
        writer = SummaryWriter(log_dir=str(folder))
        config = run.config.to_dict()
        writer.add_text("config", f"```json\n{json.dumps(config, indent=2)}\n```")
        if context.tags:
            writer.add_text("tags", ", ".join(f"{k} = {v}" for k, v in context.tags.items()))
        values = {k: v if isinstance(v, int | float | str | bool) else str(v)
                  for k, v in flat_config(config).items()}
        experiment, start, _ = hparams({**values, **context.tags}, {"epoch/loss": 0.0})
        writer.file_writer.add_summary(experiment)
        writer.file_writer.add_summary(start)
        return _Session(writer)


def _run_name(run: RunInfo, context: TrackingContext) -> Path:
    """A run's sub-folder of a shared log_dir: its path inside the study folder for a trial
    (``trials/trial_0003/replicate_0``), else its folder's name."""
    try:
        inside = run.output_dir.resolve().relative_to(context.store.resolve())
    except ValueError:
        inside = Path()
    return inside if inside.parts else Path(run.output_dir.name)


class _Session:
    def __init__(self, writer) -> None:
        self.writer = writer

    def log_loss(self, step: int, loss: float) -> None:
        self.writer.add_scalar("train/loss", loss, step)

    def log_epoch(self, step: int, values: Mapping[str, float]) -> None:
        for key, value in values.items():
            self.writer.add_scalar(key, value, step)

    def log_grid(self, step: int, epoch: int, path: Path) -> None:
        self.writer.add_image("samples", read_png(path), step, dataformats="HWC")

    def close(self, status: str) -> None:
        self.writer.add_text("status", status)
        self.writer.close()


@ablate.hookimpl
def register_trackers(register):
    register(TensorBoard)
