"""The ``RunConfig`` dataclass: one resolved training configuration, and its declared settings.

Kept apart from ``ablate.config`` (which parses ``[run]`` tables against the installed plugins)
so that the modules a plugin host imports (hook specs, run info, assembly) can name the type
without importing the host itself: no import cycle through the configuration.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Literal

from ablate.components import Component, ParamInfo, param, param_infos
from ablate.datasets import Dataset
from ablate.decoders import Decoder
from ablate.degradations import Degradation
from ablate.ema import EmaStrategy
from ablate.lr_schedules import LrSchedule
from ablate.optimizers import Optimizer
from ablate.schedules import NoiseSchedule

MAX_T = 100_000
MAX_SEED = 2**32 - 1
MAX_GRID = 1_024
MAX_BATCH = 1_000_000
DEFAULT_COMPONENTS: dict[str, str] = {
    "dataset": "mnist",
    "decoder": "cnn",
    "schedule": "linear",
    "degradation": "gaussian",
    "ema": "none",
    "optimizer": "adam",
    "lr_schedule": "constant",
}
"""The family of each component key of ``[run]`` is the key itself; these are the defaults."""


@dataclass(frozen=True)
class RunConfig:
    """One training configuration, every default filled in. Defaults are the coursework's."""

    dataset: Dataset
    decoder: Decoder
    schedule: NoiseSchedule
    degradation: Degradation
    ema: EmaStrategy
    optimizer: Optimizer
    lr_schedule: LrSchedule
    T: int = param(1000, "number of diffusion steps", ge=1, le=MAX_T,
                   limit="schedules of more steps gain nothing and cost memory per step")
    epochs: int = param(10, "passes over the training set (ignored when steps > 0)", ge=1)
    steps: int = param(0, "optimisation steps in total; 0 = use epochs", ge=0)
    batch_size: int = param(128, "images per optimisation step", ge=1, le=MAX_BATCH,
                            limit="and at most the training images (checked by --dry-run)")
    lr: float = param(2e-4, "learning rate (times the lr_schedule's factor at each step)", gt=0)
    grad_clip: float = param(0.0, "clip the gradient norm to this before each step; 0 = off",
                             ge=0)
    precision: Literal["fp32", "bf16", "fp16"] = param(
        "fp32", "autocast dtype of the training forward pass; fp16 (CUDA only) adds a "
                "GradScaler, bf16 works on a CPU but is slow there")
    compile: bool = param(False, "torch.compile the decoder for training (first steps compile)")
    channels_last: bool = param(False, "channels-last memory format (faster convolutions on "
                                       "CUDA tensor cores)")
    seed: int = param(0, "seeds initialisation, data order, timesteps and noise", ge=0,
                      le=MAX_SEED, limit="torch and numpy take 32-bit seeds")
    device: str = param("auto", "auto (CUDA, then MPS, then CPU), cpu, cuda, cuda:N or mps")
    scaling: Literal["centered", "symmetric"] = param(
        "centered", "pixel range: centered = x/255 - 0.5 (coursework), symmetric = [-1, 1]")
    subset: int = param(0, "train on the first N training images only; 0 = all", ge=0)
    sample_every: int = param(0, "write a sample grid every N epochs; 0 = at the end only", ge=0)
    grid_size: int = param(64, "images in each sample grid", ge=1, le=MAX_GRID,
                           limit="each grid samples this many images; larger is unreadable")
    checkpoint_every: int = param(1, "write a checkpoint every N epochs", ge=1)

    def to_dict(self) -> dict[str, Any]:
        """The resolved configuration as TOML/JSON data; ``parse_run`` reads it back."""
        out: dict[str, Any] = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if isinstance(value, Component):
                out[f.name] = {"name": value.name, **value.params()}
            else:
                out[f.name] = value
        return out


def setting_infos() -> list[ParamInfo]:
    """The scalar settings of ``[run]`` (everything but the components)."""
    return [info for info in param_infos(RunConfig) if info.name not in DEFAULT_COMPONENTS]
