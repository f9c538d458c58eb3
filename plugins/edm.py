"""The ``edm`` degradation: Karras et al. (2022), "Elucidating the Design Space of Diffusion-Based
Generative Models", with the VP and VE columns of its Table 1 as settings.

Noising: x = y + n, n ~ N(0, sigma^2 I) (sigma(t) = t, s(t) = 1: the paper's own choice).
Denoiser, eq. (7): D(x; sigma) = c_skip(sigma) x + c_out(sigma) F(c_in(sigma) x; c_noise(sigma)),
F the network. Training, eq. (8): E_{sigma, y, n} [lambda(sigma) ||D(y + n; sigma) - y||^2], sigma
drawn from the training distribution of Table 1 (EDM: ln sigma ~ N(P_mean, P_std^2)).
Sampling: the time steps sigma_0 > ... > sigma_{N-1}, sigma_N = 0 of Table 1 (EDM: rho-spaced,
eq. 5) and Algorithm 1 (deterministic Heun; ``euler`` is its first-order step alone) or
Algorithm 2 (stochastic: S_churn, S_tmin, S_tmax, S_noise). Always the sigma-space ODE
dx/dsigma = (x - D(x; sigma)) / sigma (eq. 1 with sigma(t) = t, s(t) = 1): the VP and VE columns
change the preconditioning, the training loss and the time steps, not sigma(t) and s(t).

The run's schedule and T do not shape this degradation (it draws its own sigma); ablate's
decoders read a time in [0, 1], so they are fed an affine image of c_noise onto [0, 1] (VP:
c_noise / (M - 1), the VP time itself; VE and EDM: c_noise over the sampling range, clamped).

Written by hand because diffusers has no EDM Heun or Algorithm 2 sampler with this
preconditioning (its ``EDMEulerScheduler`` takes the first-order step only, and churns after
the network has seen the unchurned image); the tests check the Euler step and the rho grid
against ``EDMEulerScheduler``, Heun with VP preconditioning against ``HeunDiscreteScheduler``
on karras sigmas (the same sampler), both on identical network outputs, and Heun's order on
Gaussian data, whose ODE solution is known.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn

import ablate
from ablate.components import param
from ablate.degradations import Degradation, DegradationProcess
from ablate.errors import ConfigError

Variant = Literal["edm", "vp", "ve"]

VP_BETA_D = 19.9
VP_BETA_MIN = 0.1
VP_EPS_S = 1e-3  # last VP sampling time (Table 1)
VP_EPS_T = 1e-5  # smallest VP training time (Table 1)
VP_M = 1000  # c_noise = (M - 1) sigma^{-1}(sigma) (Table 1)
VE_SIGMA_MIN = 0.02
VE_SIGMA_MAX = 100.0


def vp_sigma(t: torch.Tensor) -> torch.Tensor:
    """VP sigma(t) = sqrt(exp(beta_d t^2 / 2 + beta_min t) - 1) (Table 1)."""
    return torch.expm1(0.5 * VP_BETA_D * t**2 + VP_BETA_MIN * t).sqrt()


def vp_time(sigma: torch.Tensor) -> torch.Tensor:
    """VP sigma^{-1}(sigma) = (sqrt(beta_min^2 + 2 beta_d ln(sigma^2 + 1)) - beta_min) / beta_d."""
    return ((VP_BETA_MIN**2 + 2 * VP_BETA_D * torch.log1p(sigma**2)).sqrt()
            - VP_BETA_MIN) / VP_BETA_D


def preconditioning(kind: str, sigma: torch.Tensor, sigma_data: float
                    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """(c_skip, c_out, c_in, c_noise) of Table 1's "Network and preconditioning" rows."""
    one = torch.ones_like(sigma)
    if kind == "vp":
        return one, -sigma, 1 / (sigma**2 + 1).sqrt(), (VP_M - 1) * vp_time(sigma)
    if kind == "ve":
        return one, sigma, one, (0.5 * sigma).log()
    total = sigma**2 + sigma_data**2
    return (sigma_data**2 / total, sigma * sigma_data / total.sqrt(), 1 / total.sqrt(),
            0.25 * sigma.log())


def loss_weight(kind: str, sigma: torch.Tensor, sigma_data: float) -> torch.Tensor:
    """lambda(sigma) of Table 1: 1 / sigma^2 (VP, VE) or (sigma^2 + sigma_data^2) /
    (sigma sigma_data)^2 (EDM, which makes lambda c_out^2 = 1)."""
    if kind in ("vp", "ve"):
        return 1 / sigma**2
    return (sigma**2 + sigma_data**2) / (sigma * sigma_data) ** 2


def sigma_steps(kind: str, n: int, *, sigma_min: float, sigma_max: float,
                rho: float) -> list[float]:
    """The time steps sigma_0 > ... > sigma_{N-1} of Table 1, then sigma_N = 0 (float64)."""
    i = torch.arange(n, dtype=torch.float64) / max(n - 1, 1)  # i / (N - 1); N = 1: sigma_0
    if kind == "edm":  # eq. (5): (sigma_max^(1/rho) + i/(N-1) (sigma_min^(1/rho) - ...))^rho
        low, high = sigma_min ** (1 / rho), sigma_max ** (1 / rho)
        sigmas = (high + i * (low - high)) ** rho
    elif kind == "ve":  # sigma_i^2 = sigma_max^2 (sigma_min^2 / sigma_max^2)^(i / (N - 1))
        sigmas = VE_SIGMA_MAX * (VE_SIGMA_MIN / VE_SIGMA_MAX) ** i
    else:  # t_i = 1 + i / (N - 1) (eps_s - 1), sigma_i = sigma(t_i)
        sigmas = vp_sigma(1 + i * (VP_EPS_S - 1))
    return [*sigmas.tolist(), 0.0]


@dataclass(frozen=True)
class Edm(Degradation):
    """x = y + sigma n, preconditioned denoiser, Heun or stochastic sampler (Karras et al. 2022)."""

    name = "edm"
    follows_schedule = False
    preconditioning: Variant = param(
        "edm", "c_skip, c_out, c_in, c_noise of Table 1: edm, vp or ve")
    loss: Variant = param(
        "edm", "training sigma and lambda(sigma) of Table 1: edm (ln sigma ~ N(P_mean, "
        "P_std^2)), vp (t ~ U(1e-5, 1)) or ve (ln sigma uniform on [0.02, 100])")
    sigma_data: float = param(
        0.5, "sigma_data, the data's standard deviation (0.5: the paper's, for images in [-1, 1])",
        gt=0)
    p_mean: float = param(-1.2, "P_mean of the edm training distribution of ln sigma")
    p_std: float = param(1.2, "P_std of the edm training distribution of ln sigma", gt=0)
    discretisation: Variant = param(
        "edm", "sampling time steps of Table 1: edm (rho-spaced between sigma_min and "
        "sigma_max), vp or ve (the paper's constants)")
    sigma_min: float = param(0.002, "smallest sampling sigma of the edm time steps", gt=0)
    sigma_max: float = param(80.0, "largest sampling sigma of the edm time steps", gt=0)
    rho: float = param(7.0, "rho of the edm time steps (eq. 5)", gt=0)
    sampler: Literal["heun", "euler", "stochastic"] = param(
        "heun", "default sampler: heun (Algorithm 1), euler (its first-order step only) or "
        "stochastic (Algorithm 2)")
    sample_steps: int = param(
        18, "N, the number of noise levels: heun evaluates the network 2N - 1 times", ge=1)
    s_churn: float = param(0.0, "S_churn of Algorithm 2 (stochasticity)", ge=0)
    s_tmin: float = param(0.0, "S_tmin of Algorithm 2: churn only for sigma >= this", ge=0)
    s_tmax: float = param(1e6, "S_tmax of Algorithm 2: churn only for sigma <= this (the "
                          "paper's infinity: above every sigma)", ge=0)
    s_noise: float = param(1.0, "S_noise of Algorithm 2: std of the added noise", ge=0)

    def validate(self) -> None:
        if self.sigma_min >= self.sigma_max:
            raise ValueError(f"edm sigma_min ({self.sigma_min}) must be below sigma_max "
                             f"({self.sigma_max})")

    def bind(self, alpha_bar: torch.Tensor, data_range: tuple[float, float],
             device: torch.device) -> DegradationProcess:
        return EdmProcess(self, len(alpha_bar), data_range, device)


class EdmProcess(DegradationProcess):
    """The EDM degradation on a device; T is the run's, only to satisfy the family's API."""

    def __init__(self, settings: Edm, T: int, data_range: tuple[float, float],
                 device: torch.device) -> None:
        self.settings = settings
        self.T = T
        self.data_range = data_range
        self.device = device
        self.samplers = (settings.sampler,
                         *(s for s in ("heun", "euler", "stochastic") if s != settings.sampler))
        low, high = ((VE_SIGMA_MIN, VE_SIGMA_MAX) if settings.preconditioning == "ve"
                     else (settings.sigma_min, settings.sigma_max))
        bounds = torch.tensor([low, high], dtype=torch.float64)
        _, _, _, c_noise = preconditioning(settings.preconditioning, bounds, settings.sigma_data)
        self._c_noise_range = (float(c_noise[0]), float(c_noise[1]))

    def denoise(self, model: nn.Module, x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        """D(x; sigma) of eq. (7) for per-image sigma of shape (B, 1, ..., 1)."""
        s = self.settings
        c_skip, c_out, c_in, c_noise = preconditioning(s.preconditioning, sigma, s.sigma_data)
        return c_skip * x + c_out * model(c_in * x, self.network_time(c_noise.flatten()))

    def network_time(self, c_noise: torch.Tensor) -> torch.Tensor:
        """c_noise mapped affinely onto the decoders' [0, 1] time (see the module doc)."""
        if self.settings.preconditioning == "vp":
            return (c_noise / (VP_M - 1)).clamp(0, 1)
        low, high = self._c_noise_range
        return ((c_noise - low) / (high - low)).clamp(0, 1)

    def training_sigma(self, batch: int, generator: torch.Generator) -> torch.Tensor:
        """sigma drawn from the training distribution of Table 1, shape (batch,)."""
        s, device = self.settings, self.device
        if s.loss == "edm":  # ln sigma ~ N(P_mean, P_std^2)
            n = torch.randn(batch, device=device, generator=generator)
            return (s.p_mean + s.p_std * n).exp()
        u = torch.rand(batch, device=device, generator=generator)
        if s.loss == "vp":  # sigma = sigma(t), t ~ U(eps_t, 1)
            return vp_sigma(VP_EPS_T + (1 - VP_EPS_T) * u)
        # ln sigma ~ U(ln sigma_min, ln sigma_max)
        return (math.log(VE_SIGMA_MIN) + u * math.log(VE_SIGMA_MAX / VE_SIGMA_MIN)).exp()

    def loss(self, model: nn.Module, x0: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        # eq. (8): lambda(sigma) ||D(y + n; sigma) - y||^2, n ~ N(0, sigma^2 I)
        sigma = self.training_sigma(x0.shape[0], generator).view(-1, *[1] * (x0.dim() - 1))
        n = sigma * torch.randn(x0.shape, device=x0.device, generator=generator)
        weight = loss_weight(self.settings.loss, sigma, self.settings.sigma_data)
        return (weight * (self.denoise(model, x0 + n, sigma) - x0).square()).mean()

    def sigmas(self, steps: int) -> list[float]:
        """sigma_0 > ... > sigma_{N-1} and sigma_N = 0 for N = ``steps``."""
        if steps < 1:
            raise ConfigError(f"edm sampling needs at least 1 step, got {steps}")
        s = self.settings
        return sigma_steps(s.discretisation, steps, sigma_min=s.sigma_min,
                           sigma_max=s.sigma_max, rho=s.rho)

    @torch.no_grad()
    def sample(self, model: nn.Module, shape: tuple[int, ...], generator: torch.Generator, *,
               sampler: str | None = None, steps: int | None = None) -> torch.Tensor:
        name = self._sampler(sampler)
        sigmas = self.sigmas(self.settings.sample_steps if steps is None else steps)
        was_training = model.training
        model.eval()
        x = sigmas[0] * torch.randn(shape, device=self.device, generator=generator)
        x = self.solve(model, x, sigmas, name, generator)
        model.train(was_training)
        return x.clamp(*self.data_range)

    def solve(self, model: nn.Module, x: torch.Tensor, sigmas: list[float], sampler: str,
              generator: torch.Generator | None = None) -> torch.Tensor:
        """Integrate x at sigma_0 down to sigma_N = 0 (Algorithm 1, or 2 for ``stochastic``)."""
        s = self.settings
        n = len(sigmas) - 1
        for sigma, sigma_next in zip(sigmas[:-1], sigmas[1:], strict=True):
            sigma_hat = sigma
            if sampler == "stochastic":
                # gamma_i = min(S_churn / N, sqrt(2) - 1) if S_tmin <= t_i <= S_tmax else 0
                gamma = (min(s.s_churn / n, math.sqrt(2) - 1)
                         if s.s_tmin <= sigma <= s.s_tmax else 0.0)
                sigma_hat = sigma + gamma * sigma  # t_hat_i = t_i + gamma_i t_i
                if sigma_hat > sigma:  # x_hat_i = x_i + sqrt(t_hat^2 - t_i^2) eps_i
                    eps = s.s_noise * torch.randn(x.shape, device=x.device, generator=generator)
                    x = x + math.sqrt(sigma_hat**2 - sigma**2) * eps
            d = (x - self._denoise(model, x, sigma_hat)) / sigma_hat  # d_i, eq. (1)
            x_next = x + (sigma_next - sigma_hat) * d  # Euler step
            if sampler != "euler" and sigma_next != 0:
                # 2nd-order correction: x_{i+1} = x_i + (t_{i+1} - t_i)(d_i / 2 + d'_i / 2)
                d_next = (x_next - self._denoise(model, x_next, sigma_next)) / sigma_next
                x_next = x + (sigma_next - sigma_hat) * (0.5 * d + 0.5 * d_next)
            x = x_next
        return x

    def _denoise(self, model: nn.Module, x: torch.Tensor, sigma: float) -> torch.Tensor:
        return self.denoise(model, x, torch.full((x.shape[0], *[1] * (x.dim() - 1)), sigma,
                                                 device=x.device))

    def _sampler(self, sampler: str | None) -> str:
        if sampler is None:
            return self.samplers[0]
        if sampler not in self.samplers:
            raise ConfigError(f"the edm degradation has no sampler {sampler!r}",
                              hint=f"its samplers: {', '.join(self.samplers)}")
        return sampler


@ablate.hookimpl
def register_degradations(register) -> None:
    register(Edm)
