"""The noise-schedule family: every schedule is expressed through alpha_bar_t.

Index convention used throughout ablate: tensors of length T hold the value for t = 1..T at index
t - 1, and alpha_bar_t = prod_{s<=t} (1 - beta_s) (the coursework's alpha_t).

Subclasses implement the raw schedule (``raw_betas`` or ``raw_alpha_bar``); the base turns it
into the schedule the run uses (``betas`` / ``alpha_bar``), applying the zero-terminal-SNR
rescale of Lin et al. (2024) when asked, so that option works for every schedule alike.

Under that rescale alpha_bar_T = 0 and therefore beta_T = 1 exactly: x_T is pure noise, which is
what samplers start from. Degradations must then avoid dividing by sqrt(alpha_bar_T) or by
sqrt(1 - beta_T) at t = T (for the Gaussian one: predict v or x0 rather than eps, and take the
ancestral step through the posterior mean of x0_hat).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch

from ablate.components import Component, param

TERMINAL_WARNING_THRESHOLD = 1e-2
"""alpha_bar_T above this leaves visible signal in x_T, so sampling from N(0, I) is off-target."""

_DERIVED = ("alpha_bar", "betas")
_RAW = ("raw_alpha_bar", "raw_betas")


@dataclass(frozen=True)
class NoiseSchedule(Component):
    """Base of noise schedules: subclasses define ``raw_betas`` or ``raw_alpha_bar`` (or both)."""

    family: ClassVar[str] = "schedule"

    zero_terminal_snr: bool = param(
        False, "rescale so alpha_bar_T = 0 exactly, keeping alpha_bar_1 (Lin et al. 2024, Alg. 1)")

    def __init_subclass__(cls, **kwargs) -> None:
        super().__init_subclass__(**kwargs)
        overridden = [name for name in _DERIVED if name in vars(cls)]
        if overridden:
            raise TypeError(
                f"{cls.__qualname__} overrides {' and '.join(overridden)}: a schedule defines "
                f"{' or '.join(_RAW)} instead, so that options of the base such as "
                f"zero_terminal_snr apply to it")

    def raw_alpha_bar(self, T: int) -> torch.Tensor:
        """The schedule's own alpha_bar_t for t = 1..T, float64, before any rescale."""
        self._require_raw("raw_betas")
        return alpha_bar_from_betas(self.raw_betas(T))

    def raw_betas(self, T: int) -> torch.Tensor:
        """The schedule's own beta_t for t = 1..T, float64, before any rescale."""
        self._require_raw("raw_alpha_bar")
        return betas_from_alpha_bar(self.raw_alpha_bar(T))

    def alpha_bar(self, T: int) -> torch.Tensor:
        """alpha_bar_t for t = 1..T, float64, as the run uses it."""
        alpha_bar = self.raw_alpha_bar(T)
        return rescale_zero_terminal_snr(alpha_bar) if self.zero_terminal_snr else alpha_bar

    def betas(self, T: int) -> torch.Tensor:
        """beta_t for t = 1..T, float64, as the run uses it (beta_T = 1 under the rescale)."""
        if self.zero_terminal_snr:
            return betas_from_alpha_bar(self.alpha_bar(T))
        return self.raw_betas(T)

    def check(self, T: int) -> list[str]:
        """Raise ``ValueError`` for an unusable schedule; return warnings for a doubtful one.

        The raw schedule must have every beta_t in (0, 1) and a strictly decreasing alpha_bar_t;
        the rescale keeps both and makes beta_T = 1, the one value allowed to reach 1.
        """
        _check_raw(self.name, self.raw_betas(T), self.raw_alpha_bar(T), T)
        if self.zero_terminal_snr and T < 2:
            raise ValueError("zero_terminal_snr needs T >= 2: it maps alpha_bar_T to 0 while "
                             "keeping alpha_bar_1")
        alpha_bar = self.alpha_bar(T)
        if not (alpha_bar[1:] < alpha_bar[:-1]).all():
            raise ValueError("alpha_bar_t must decrease strictly with t")
        warnings = []
        if alpha_bar[-1] > TERMINAL_WARNING_THRESHOLD:
            warnings.append(
                f"alpha_bar_T = {alpha_bar[-1].item():.3g} is far from 0: x_T still carries "
                f"signal, so sampling from pure noise starts off the training distribution "
                f"(zero_terminal_snr = true removes it)")
        return warnings

    def _require_raw(self, other: str) -> None:
        # Each raw method defaults to the other; a schedule overriding neither would recurse.
        if getattr(type(self), other) is getattr(NoiseSchedule, other):
            raise NotImplementedError(f"schedule {self.name!r} defines neither raw_betas nor "
                                      f"raw_alpha_bar")


def _check_raw(name: str, betas: torch.Tensor, alpha_bar: torch.Tensor, T: int) -> None:
    if betas.shape != (T,) or alpha_bar.shape != (T,):
        raise ValueError(f"schedule {name!r} returned {tuple(betas.shape)} betas for T={T}")
    inside = torch.isfinite(betas) & (betas > 0) & (betas < 1)
    if not inside.all():
        bad = int(torch.nonzero(~inside)[0]) + 1
        raise ValueError(f"beta_t must lie in (0, 1) for every t; at t={bad} it is "
                         f"{betas[bad - 1].item():.4g}")
    if not (alpha_bar[1:] < alpha_bar[:-1]).all():
        raise ValueError("alpha_bar_t must decrease strictly with t")


def rescale_zero_terminal_snr(alpha_bar: torch.Tensor) -> torch.Tensor:
    """Lin et al. (2024), Algorithm 1: shift and scale sqrt(alpha_bar_t) so that it is 0 at t = T
    and unchanged at t = 1; the result is the square. Needs T >= 2 and alpha_bar_1 > alpha_bar_T.
    """
    if len(alpha_bar) < 2:
        raise ValueError("zero_terminal_snr needs T >= 2")
    root = alpha_bar.double().sqrt()
    root_1, root_T = root[0], root[-1]
    rescaled = (root - root_T) * (root_1 / (root_1 - root_T))
    return rescaled.square()


def log_snr(alpha_bar: torch.Tensor) -> torch.Tensor:
    """log SNR_t = log(alpha_bar_t / (1 - alpha_bar_t)); -inf where alpha_bar_t = 0."""
    alpha_bar = alpha_bar.double()
    return torch.log(alpha_bar) - torch.log1p(-alpha_bar)


def alpha_bar_from_betas(betas: torch.Tensor) -> torch.Tensor:
    """alpha_bar_t = prod_{s<=t} (1 - beta_s), via a cumulative sum of log(1 - beta)."""
    return torch.exp(torch.cumsum(torch.log1p(-betas.double()), dim=0))


def betas_from_alpha_bar(alpha_bar: torch.Tensor) -> torch.Tensor:
    """beta_t = 1 - alpha_bar_t / alpha_bar_{t-1}, with alpha_bar_0 = 1."""
    alpha_bar = alpha_bar.double()
    previous = torch.cat([alpha_bar.new_ones(1), alpha_bar[:-1]])
    return 1 - alpha_bar / previous
