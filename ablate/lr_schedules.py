"""The learning-rate-schedule family: the factor ``[run] lr`` is multiplied by at each step.

A schedule declares ``decay(step, total_steps)``; the base adds what every schedule shares, a
linear warm-up over ``warmup_steps``, and drives the optimiser through torch's ``LambdaLR``, whose
state (the step count and the learning rates, plain numbers) goes into checkpoints as JSON.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
from torch.optim.lr_scheduler import LambdaLR

from ablate.components import Component, param


@dataclass(frozen=True)
class LrSchedule(Component):
    """Base of learning-rate schedules."""

    family: ClassVar[str] = "lr_schedule"
    warmup_steps: int = param(0, "linear warm-up: step s (0-based) of the first N uses lr (s+1)/N",
                              ge=0)

    def decay(self, step: int, total_steps: int) -> float:
        """The factor after the warm-up at 0-based ``step`` of ``total_steps``; 1 = ``lr``."""
        raise NotImplementedError

    def factor(self, step: int, total_steps: int) -> float:
        """The warm-up ramp times ``decay``: what ``lr`` is multiplied by at ``step``."""
        ramp = min(1.0, (step + 1) / self.warmup_steps) if self.warmup_steps else 1.0
        return ramp * self.decay(step, total_steps)

    def build(self, optimizer: torch.optim.Optimizer, total_steps: int) -> LambdaLR:
        """A scheduler that sets every parameter group's lr to ``lr * factor(step)``; call its
        ``step()`` after each optimiser step."""
        return LambdaLR(optimizer, lambda step: self.factor(step, total_steps))
