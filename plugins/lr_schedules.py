"""Learning-rate schedules ``constant`` (the default), ``cosine`` and ``inverse_sqrt``, each after
the optional linear warm-up that every schedule shares."""

from __future__ import annotations

import math
from dataclasses import dataclass

import ablate
from ablate.components import param
from ablate.hookspecs import Register
from ablate.lr_schedules import LrSchedule


@dataclass(frozen=True)
class Constant(LrSchedule):
    """lr at every step after the warm-up (with warmup_steps = 0, the coursework's)."""

    name = "constant"

    def decay(self, step: int, total_steps: int) -> float:
        return 1.0


@dataclass(frozen=True)
class Cosine(LrSchedule):
    """Half a cosine from lr down to min_ratio lr over the steps after the warm-up (SGDR).

    Loshchilov and Hutter 2017, without restarts.
    """

    name = "cosine"
    min_ratio: float = param(0.0, "the final lr as a fraction of lr", ge=0, le=1)

    def decay(self, step: int, total_steps: int) -> float:
        span = max(total_steps - self.warmup_steps, 1)
        progress = min(max(step - self.warmup_steps, 0) / span, 1.0)
        return self.min_ratio + (1 - self.min_ratio) * 0.5 * (1 + math.cos(math.pi * progress))


@dataclass(frozen=True)
class InverseSqrt(LrSchedule):
    """lr / sqrt(max((step + 1) / decay_start, 1)): constant, then falling as 1/sqrt(step) (EDM2).

    The learning-rate decay of Karras et al. 2024, "Analyzing and improving the training
    dynamics of diffusion models".
    """

    name = "inverse_sqrt"
    decay_start: int = param(1000, "step from which the lr falls as 1/sqrt(step)", ge=1)

    def decay(self, step: int, total_steps: int) -> float:
        return 1 / math.sqrt(max((step + 1) / self.decay_start, 1.0))


@ablate.hookimpl
def register_lr_schedules(register: Register) -> None:
    for schedule in (Constant, Cosine, InverseSqrt):
        register(schedule)
