"""The noise-schedule family: every schedule is expressed through alpha_bar_t.

Index convention used throughout ablate: tensors of length T hold the value for t = 1..T at index
t - 1, and alpha_bar_t = prod_{s<=t} (1 - beta_s) (the coursework's alpha_t).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch

from ablate.components import Component

TERMINAL_WARNING_THRESHOLD = 1e-2
"""alpha_bar_T above this leaves visible signal in x_T, so sampling from N(0, I) is off-target."""


@dataclass(frozen=True)
class NoiseSchedule(Component):
    """Base of noise schedules: subclasses define ``alpha_bar`` or ``betas`` (or both)."""

    family: ClassVar[str] = "schedule"

    def alpha_bar(self, T: int) -> torch.Tensor:
        """alpha_bar_t for t = 1..T, float64, computed in log space from the betas."""
        return alpha_bar_from_betas(self.betas(T))

    def betas(self, T: int) -> torch.Tensor:
        """beta_t for t = 1..T, float64, derived from consecutive ratios of alpha_bar."""
        return betas_from_alpha_bar(self.alpha_bar(T))

    def check(self, T: int) -> list[str]:
        """Raise ``ValueError`` for an unusable schedule; return warnings for a doubtful one."""
        betas = self.betas(T)
        alpha_bar = self.alpha_bar(T)
        if betas.shape != (T,) or alpha_bar.shape != (T,):
            raise ValueError(f"schedule {self.name!r} returned {tuple(betas.shape)} betas "
                             f"for T={T}")
        if not torch.isfinite(betas).all() or (betas <= 0).any() or (betas >= 1).any():
            bad = int(torch.nonzero(~((betas > 0) & (betas < 1)))[0]) + 1
            raise ValueError(f"beta_t must lie in (0, 1) for every t; at t={bad} it is "
                             f"{betas[bad - 1].item():.4g}")
        if not (alpha_bar[1:] < alpha_bar[:-1]).all():
            raise ValueError("alpha_bar_t must decrease strictly with t")
        warnings = []
        if alpha_bar[-1] > TERMINAL_WARNING_THRESHOLD:
            warnings.append(
                f"alpha_bar_T = {alpha_bar[-1].item():.3g} is far from 0: x_T still carries "
                f"signal, so sampling from pure noise starts off the training distribution")
        return warnings


def alpha_bar_from_betas(betas: torch.Tensor) -> torch.Tensor:
    """alpha_bar_t = prod_{s<=t} (1 - beta_s), via a cumulative sum of log(1 - beta)."""
    return torch.exp(torch.cumsum(torch.log1p(-betas.double()), dim=0))


def betas_from_alpha_bar(alpha_bar: torch.Tensor) -> torch.Tensor:
    """beta_t = 1 - alpha_bar_t / alpha_bar_{t-1}, with alpha_bar_0 = 1."""
    alpha_bar = alpha_bar.double()
    previous = torch.cat([alpha_bar.new_ones(1), alpha_bar[:-1]])
    return 1 - alpha_bar / previous
