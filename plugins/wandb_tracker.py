"""The ``wandb`` tracker: Weights & Biases in its offline mode (``pip install 'ablate[wandb]'``).

Runs are written under ``<run folder>/wandb`` and never sent anywhere; ``wandb sync`` uploads
them later if you want. Choosing the tracker without the package installed is a configuration
error naming the extra, reported before anything trains.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import ablate
from ablate.components import param
from ablate.run_info import RunInfo
from ablate.tracking import Tracker, TrackingContext, read_png

STATUS_CODES = {"completed": 0, "stopped": 0, "interrupted": 130, "failed": 1}


@dataclass(frozen=True)
class Wandb(Tracker):
    """Weights & Biases, offline: loss, epoch metrics, sample grids, configuration, tags."""

    name = "wandb"
    project: str = param("", "W&B project; empty = the study's name, or 'ablate'")

    def validate(self) -> None:
        if importlib.util.find_spec("wandb") is None:
            raise ValueError("the wandb tracker needs the wandb package: "
                             "pip install 'ablate[wandb]'")

    def open(self, run: RunInfo, context: TrackingContext) -> _Session:
        import wandb

        folder = run.output_dir / "wandb"
        folder.mkdir(parents=True, exist_ok=True)
        handle = wandb.init(mode="offline", dir=str(run.output_dir),
                            project=self.project or context.experiment,
                            name=run.output_dir.name, config=run.config.to_dict(),
                            tags=[f"{k}={v}" for k, v in context.tags.items()],
                            reinit="create_new")
        return _Session(handle)


class _Session:
    def __init__(self, handle) -> None:
        self.handle = handle

    def log_loss(self, step: int, loss: float) -> None:
        self.handle.log({"train/loss": loss}, step=step)

    def log_epoch(self, step: int, values: Mapping[str, float]) -> None:
        self.handle.log(dict(values), step=step)

    def log_grid(self, step: int, epoch: int, path: Path) -> None:
        import wandb

        self.handle.log({"samples": wandb.Image(read_png(path), caption=f"epoch {epoch}")},
                        step=step)

    def close(self, status: str) -> None:
        self.handle.finish(exit_code=STATUS_CODES.get(status, 1))


@ablate.hookimpl
def register_trackers(register):
    register(Wandb)
