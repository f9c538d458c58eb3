"""The ``linear`` noise schedule of Ho et al. (2020) and the coursework."""

from __future__ import annotations

from dataclasses import dataclass

import torch

import ablate
from ablate.components import param
from ablate.schedules import NoiseSchedule


@dataclass(frozen=True)
class Linear(NoiseSchedule):
    """beta_t grows linearly from beta_min (t=1) to beta_max (t=T) (DDPM, the coursework)."""

    name = "linear"
    beta_min: float = param(1e-4, "beta_1, the noise added at the first step", gt=0, lt=1)
    beta_max: float = param(0.02, "beta_T, the noise added at the last step", gt=0, lt=1)

    def validate(self) -> None:
        if self.beta_min > self.beta_max:
            raise ValueError(f"beta_min ({self.beta_min}) must not exceed beta_max "
                             f"({self.beta_max})")

    def raw_betas(self, T: int) -> torch.Tensor:
        # beta_t = beta_min + (beta_max - beta_min) * t / T for t = 1..T (the coursework's form)
        t = torch.arange(1, T + 1, dtype=torch.float64)
        return self.beta_min + (self.beta_max - self.beta_min) * t / T


@ablate.hookimpl
def register_schedules(register) -> None:
    register(Linear)
