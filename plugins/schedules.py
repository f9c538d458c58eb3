"""Schedules beyond ``linear``: scaled_linear, cosine, sigmoid, quadratic, geometric, constant.

Each implements its paper's raw schedule; ``zero_terminal_snr`` (on the base) applies to all.
Schedules whose alpha_bar reaches 0 at t = T (cosine, sigmoid) clip beta_t at ``max_beta`` as
their papers do, which keeps a tiny alpha_bar_T > 0.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

import ablate
from ablate.components import param
from ablate.schedules import NoiseSchedule


def _ramp(T: int) -> torch.Tensor:
    """(t - 1) / (T - 1) for t = 1..T: 0 at the first step, 1 at the last (0 alone when T = 1)."""
    return torch.linspace(0, 1, T, dtype=torch.float64)


def _clipped_betas(alpha_bar: torch.Tensor, max_beta: float) -> torch.Tensor:
    """beta_t = min(1 - alpha_bar_t / alpha_bar_{t-1}, max_beta) from alpha_bar_0..alpha_bar_T."""
    return (1 - alpha_bar[1:] / alpha_bar[:-1]).clamp(max=max_beta)


def _check_range(beta_min: float, beta_max: float) -> None:
    if beta_min > beta_max:
        raise ValueError(f"beta_min ({beta_min}) must not exceed beta_max ({beta_max})")


@dataclass(frozen=True)
class ScaledLinear(NoiseSchedule):
    """sqrt(beta_t) linear from sqrt(beta_min) to sqrt(beta_max) (Stable Diffusion, diffusers)."""

    name = "scaled_linear"
    beta_min: float = param(0.00085, "beta_1, the noise added at the first step", gt=0, lt=1)
    beta_max: float = param(0.012, "beta_T, the noise added at the last step", gt=0, lt=1)

    def validate(self) -> None:
        _check_range(self.beta_min, self.beta_max)

    def raw_betas(self, T: int) -> torch.Tensor:
        # sqrt(beta_t) = sqrt(beta_min) + (sqrt(beta_max) - sqrt(beta_min)) (t - 1) / (T - 1);
        # DDPM's and DDIM's "quad" schedule is this one.
        low, high = math.sqrt(self.beta_min), math.sqrt(self.beta_max)
        return (low + (high - low) * _ramp(T)).square()


@dataclass(frozen=True)
class Cosine(NoiseSchedule):
    """alpha_bar_t = f(t) / f(0), f(t) = cos^2(((t/T + s) / (1 + s)) pi/2) (Nichol & Dhariwal)."""

    name = "cosine"
    s: float = param(0.008, "offset that keeps beta_1 from being vanishingly small", ge=0)
    max_beta: float = param(0.999, "beta_t is clipped here, avoiding beta_T = 1", gt=0, lt=1)

    def raw_betas(self, T: int) -> torch.Tensor:
        # Improved DDPM eq. (17), with beta_t = min(1 - alpha_bar_t / alpha_bar_{t-1}, max_beta).
        t = torch.arange(T + 1, dtype=torch.float64)
        f = torch.cos((t / T + self.s) / (1 + self.s) * math.pi / 2).square()
        return _clipped_betas(f / f[0], self.max_beta)


@dataclass(frozen=True)
class Sigmoid(NoiseSchedule):
    """alpha_bar falls along a sigmoid over [start, end] with temperature tau (Chen 2023)."""

    name = "sigmoid"
    start: float = param(-3.0, "sigmoid input at t = 0")
    end: float = param(3.0, "sigmoid input at t = T")
    tau: float = param(1.0, "temperature: larger tau spreads the noise more evenly over t", gt=0)
    max_beta: float = param(0.999, "beta_t is clipped here, avoiding beta_T = 1", gt=0, lt=1)

    def validate(self) -> None:
        if self.start >= self.end:
            raise ValueError(f"start ({self.start}) must be below end ({self.end})")

    def raw_betas(self, T: int) -> torch.Tensor:
        # Chen (2023) "On the Importance of Noise Scheduling", Algorithm 1, in lucidrains' form:
        # alpha_bar(u) = (v(end) - v(start + u (end - start))) / (v(end) - v(start)), u = t / T,
        # v(x) = sigmoid(x / tau), so alpha_bar(0) = 1 and alpha_bar(1) = 0 (hence the clip).
        u = torch.arange(T + 1, dtype=torch.float64) / T
        v = torch.sigmoid((self.start + u * (self.end - self.start)) / self.tau)
        return _clipped_betas((v[-1] - v) / (v[-1] - v[0]), self.max_beta)


@dataclass(frozen=True)
class Quadratic(NoiseSchedule):
    """beta_t grows with the square of (t - 1) / (T - 1) from beta_min to beta_max."""

    name = "quadratic"
    beta_min: float = param(1e-4, "beta_1, the noise added at the first step", gt=0, lt=1)
    beta_max: float = param(0.02, "beta_T, the noise added at the last step", gt=0, lt=1)

    def validate(self) -> None:
        _check_range(self.beta_min, self.beta_max)

    def raw_betas(self, T: int) -> torch.Tensor:
        # beta_t = beta_min + (beta_max - beta_min) ((t - 1) / (T - 1))^2: quadratic in t itself,
        # not in sqrt(beta) (that one is scaled_linear).
        return self.beta_min + (self.beta_max - self.beta_min) * _ramp(T).square()


@dataclass(frozen=True)
class Geometric(NoiseSchedule):
    """beta_t geometric (exponential in t) from beta_min to beta_max."""

    name = "geometric"
    beta_min: float = param(1e-4, "beta_1, the noise added at the first step", gt=0, lt=1)
    beta_max: float = param(0.02, "beta_T, the noise added at the last step", gt=0, lt=1)

    def validate(self) -> None:
        _check_range(self.beta_min, self.beta_max)

    def raw_betas(self, T: int) -> torch.Tensor:
        # beta_t = beta_min (beta_max / beta_min)^((t - 1) / (T - 1)): a constant ratio per step.
        return self.beta_min * (self.beta_max / self.beta_min) ** _ramp(T)


@dataclass(frozen=True)
class Constant(NoiseSchedule):
    """The same beta at every step, so alpha_bar_t = (1 - beta)^t."""

    name = "constant"
    beta: float = param(0.01, "beta_t for every t", gt=0, lt=1)

    def raw_betas(self, T: int) -> torch.Tensor:
        return torch.full((T,), self.beta, dtype=torch.float64)


@ablate.hookimpl
def register_schedules(register) -> None:
    for schedule in (ScaledLinear, Cosine, Sigmoid, Quadratic, Geometric, Constant):
        register(schedule)
