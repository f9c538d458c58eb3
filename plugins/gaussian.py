"""The ``gaussian`` degradation: DDPM's forward noising, its training objectives and its samplers.

Forward process (Ho et al. 2020, eq. 4): z_t = sqrt(alpha_bar_t) x_0 + sqrt(1 - alpha_bar_t) eps.
The network reads (z_t, t / T) and predicts eps, x_0 or v = sqrt(alpha_bar_t) eps -
sqrt(1 - alpha_bar_t) x_0 (Salimans & Ho 2022); the loss regresses that target, uniformly or with
the min-SNR weights of Hang et al. (2023). Samplers: ancestral (Ho et al., Algorithm 2) and DDIM
(Song et al. 2021, eq. 12), both on all T steps or on an evenly spaced subsequence whose betas
are recomputed from alpha_bar (Nichol & Dhariwal 2021, "respacing"), and the fast ODE solvers of
``gaussian_solvers`` (DPM-Solver++(2M), UniPC, Euler and Heun, through diffusers). Training
timesteps are uniform (Ho et al.), logit-normal in t / T (Esser et al. 2024) or log-normal in
sigma_t = sqrt((1 - alpha_bar_t) / alpha_bar_t) (Karras et al. 2022).

The defaults (eps, uniform, ancestral with sigma_t^2 = beta_t, all T steps) are the coursework
DDPM, computed with the same operations in the same order so results match it bit for bit (the
samples once clamped to the data range, as every picture and feature network clamps them).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from ablate_builtins.gaussian_solvers import SOLVERS, solve
from torch import nn

import ablate
from ablate.components import param
from ablate.degradations import Degradation, DegradationProcess
from ablate.errors import ConfigError
from ablate.schedules import betas_from_alpha_bar

Prediction = Literal["eps", "x0", "v"]


@dataclass(frozen=True)
class Gaussian(Degradation):
    """z_t = sqrt(alpha_bar_t) x + sqrt(1 - alpha_bar_t) eps; predict eps, x0 or v (DDPM, DDIM)."""

    name = "gaussian"
    prediction: Prediction = param(
        "eps", "network output: eps (the noise, DDPM), x0 (the clean image) or "
        "v = sqrt(alpha_bar) eps - sqrt(1 - alpha_bar) x0 (Salimans & Ho 2022)")
    loss_weighting: Literal["uniform", "min_snr"] = param(
        "uniform", "uniform: plain MSE on the prediction; min_snr: weight step t by "
        "min(SNR_t, snr_gamma) in x0 terms (Hang et al. 2023)")
    snr_gamma: float = param(5.0, "gamma of the min_snr weighting", gt=0)
    timestep_sampling: Literal["uniform", "logit_normal", "log_normal"] = param(
        "uniform", "training t: uniform on 1..T (DDPM); logit_normal: t/T = sigmoid(m + s n) "
        "(Esser et al. 2024); log_normal: the t whose sigma_t is nearest exp(p_mean + p_std n) "
        "(Karras et al. 2022)")
    logit_mean: float = param(0.0, "m of the logit_normal timestep sampling")
    logit_std: float = param(1.0, "s of the logit_normal timestep sampling", gt=0)
    p_mean: float = param(-1.2, "P_mean of the log_normal timestep sampling (ln sigma)")
    p_std: float = param(1.2, "P_std of the log_normal timestep sampling", gt=0)
    sampler: Literal["ancestral", "ddim", "dpm++2m", "unipc", "euler", "heun"] = param(
        "ancestral", "default sampler: ancestral (DDPM Algorithm 2), ddim (Song et al. 2021), "
        "or diffusers' dpm++2m (DPM-Solver++ 2M), unipc, euler, heun (ODE in sigma space)")
    variance: Literal["beta", "beta_tilde"] = param(
        "beta", "ancestral sigma_t^2: beta_t, or the posterior variance "
        "beta_tilde_t = (1 - alpha_bar_{t-1}) / (1 - alpha_bar_t) beta_t")
    eta: float = param(
        0.0, "DDIM noise: 0 deterministic, 1 the ancestral sampler with beta_tilde", ge=0, le=1)
    sample_steps: int = param(
        0, "network evaluations per sample: 0 = all T, else an evenly spaced subsequence", ge=0)
    clip_x0: bool = param(False, "clip the predicted x0 to the data range at every sampling step")

    def bind(self, alpha_bar: torch.Tensor, data_range: tuple[float, float],
             device: torch.device) -> DegradationProcess:
        T = len(alpha_bar)
        if self.sample_steps > T:
            raise ConfigError(f"gaussian sample_steps ({self.sample_steps}) exceeds T ({T})",
                              hint=f"use at most {T}, or 0 for all steps")
        if self.prediction == "eps" and alpha_bar[-1] == 0:
            raise ConfigError(
                "gaussian prediction 'eps' cannot be used with alpha_bar_T = 0 (a zero-terminal-"
                "SNR schedule): x0 = (z_T - sqrt(1 - alpha_bar_T) eps) / sqrt(alpha_bar_T) is "
                "undefined at t = T", hint="use prediction = 'v' (Lin et al. 2024) or 'x0'")
        return GaussianProcess(self, alpha_bar, data_range, device)


def prediction_target(prediction: str, x0: torch.Tensor, eps: torch.Tensor,
                      alpha_bar_t: torch.Tensor) -> torch.Tensor:
    """What the network should output for z_t built from ``x0`` and ``eps``."""
    if prediction == "eps":
        return eps
    if prediction == "x0":
        return x0
    # v_t = sqrt(alpha_bar_t) eps - sqrt(1 - alpha_bar_t) x0 (Salimans & Ho 2022, Appendix D)
    return alpha_bar_t.sqrt() * eps - (1 - alpha_bar_t).sqrt() * x0


MIN_ROOT_ALPHA_BAR = 1e-6
"""Floor of sqrt(alpha_bar_t) where x0 is recovered from eps. Huge betas make alpha_bar_t
underflow (to 0 in float32): a bad schedule must give bad samples, not NaN. SNRs below 1e-12
are pure noise either way, so the floor changes nothing a schedule could mean."""

MAX_EQ11_BETA = 0.99
"""Above this (respaced) beta_t, ancestral eps steps go through x0_hat instead of eq. (11),
whose 1 / sqrt(alpha_t) multiplies the network's error by up to 1e6 per step when huge or
respaced betas come close to 1; eq. (7) weights x0_hat by sqrt(alpha_bar_{t-1}) instead."""


def eps_and_x0(prediction: str, output: torch.Tensor, z_t: torch.Tensor,
               alpha_bar_t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(eps_hat, x0_hat) from a network ``output`` of the given prediction type at z_t."""
    root_alpha_bar, root_one_minus = alpha_bar_t.sqrt(), (1 - alpha_bar_t).sqrt()
    if prediction == "eps":
        # eq. (4) solved for x0: x0 = (z_t - sqrt(1 - alpha_bar_t) eps) / sqrt(alpha_bar_t)
        return output, (z_t - root_one_minus * output) / root_alpha_bar.clamp(
            min=MIN_ROOT_ALPHA_BAR)
    if prediction == "x0":
        # eq. (4) solved for eps: eps = (z_t - sqrt(alpha_bar_t) x0) / sqrt(1 - alpha_bar_t)
        return (z_t - root_alpha_bar * output) / root_one_minus, output
    # With a = sqrt(alpha_bar_t), s = sqrt(1 - alpha_bar_t), a^2 + s^2 = 1, z_t = a x0 + s eps
    # and v = a eps - s x0: eps = s z_t + a v and x0 = a z_t - s v (Salimans & Ho, Appendix D).
    return (root_one_minus * z_t + root_alpha_bar * output,
            root_alpha_bar * z_t - root_one_minus * output)


def min_snr_weights(alpha_bar: torch.Tensor, gamma: float, prediction: str) -> torch.Tensor:
    """Per-step loss weights of min-SNR-gamma (Hang et al. 2023), float64, index t - 1.

    The weighted loss is min(SNR_t, gamma) ||x0_hat - x0||^2 whatever the network predicts:
    ||eps_hat - eps||^2 = SNR_t ||x0_hat - x0||^2 and ||v_hat - v||^2 = (SNR_t + 1) ||...||^2,
    hence the weights min(SNR, gamma) / SNR for eps, min(SNR, gamma) for x0 and
    min(SNR, gamma) / (SNR + 1) for v.
    """
    alpha_bar = alpha_bar.double()
    snr = alpha_bar / (1 - alpha_bar)  # SNR_t = alpha_bar_t / (1 - alpha_bar_t)
    if prediction == "eps":
        # min(SNR, gamma) / SNR = min(1, gamma / SNR), which is 1 (its limit) at SNR = 0
        return (gamma / snr).clamp(max=1.0)
    clipped = snr.clamp(max=gamma)  # min(SNR_t, gamma)
    return clipped if prediction == "x0" else clipped / (snr + 1)


def respaced_timesteps(T: int, steps: int) -> list[int]:
    """The visited steps tau_S = T > ... > tau_1 >= 1, evenly spaced: tau_i = floor(i T / S).

    Ending at T means sampling starts from the step the model saw pure noise at ("trailing"
    spacing, Lin et al. 2024, Table 2).
    """
    if not 1 <= steps <= T:
        raise ConfigError(f"steps must lie between 1 and T = {T}, got {steps}")
    return [i * T // steps for i in range(steps, 0, -1)]


def respaced_betas(alpha_bar: torch.Tensor, timesteps: list[int]) -> torch.Tensor:
    """beta'_i = 1 - alpha_bar_{tau_i} / alpha_bar_{tau_{i-1}} (alpha_bar_{tau_0} = 1), float64.

    Aligned with the decreasing ``timesteps``; the products of 1 - beta' reproduce alpha_bar on
    the subsequence, so every sampler runs unchanged on it (improved-diffusion's respacing).
    """
    visited = torch.tensor(timesteps[::-1]) - 1
    return betas_from_alpha_bar(alpha_bar.double()[visited]).flip(0)


@dataclass(frozen=True)
class Step:
    """One sampling step from t to the previous visited step t_prev (0 after the last)."""

    t: int
    t_prev: int
    alpha_bar: float  # alpha_bar_t
    alpha_bar_prev: float  # alpha_bar_{t_prev}, 1 at t_prev = 0
    beta: float  # beta'_t = 1 - alpha_bar_t / alpha_bar_{t_prev} (respaced_betas)

    @property
    def beta_tilde(self) -> float:
        """beta_tilde_t = (1 - alpha_bar_{t-1}) / (1 - alpha_bar_t) beta_t (Ho et al. eq. 7)."""
        return (1 - self.alpha_bar_prev) / (1 - self.alpha_bar) * self.beta


class GaussianProcess(DegradationProcess):
    """The Gaussian degradation bound to a schedule, a data range and a device."""

    samplers = ("ancestral", "ddim", *SOLVERS)

    def __init__(self, settings: Gaussian, alpha_bar: torch.Tensor,
                 data_range: tuple[float, float], device: torch.device) -> None:
        self.settings = settings
        self.T = len(alpha_bar)
        self.device = device
        self.data_range = data_range
        self.alpha_bar = alpha_bar.to(device=device, dtype=torch.float32)
        self.betas = betas_from_alpha_bar(alpha_bar).to(device=device, dtype=torch.float32)
        # Host copy for the sampler loop, so stepping through t never syncs with the device.
        self._alpha_bar = alpha_bar.detach().to("cpu", torch.float64)
        # ln sigma_t = 0.5 (ln(1 - alpha_bar_t) - ln alpha_bar_t), increasing in t: the table
        # log_normal timestep sampling searches (float64, then float32 on the device).
        self.log_sigma = (0.5 * ((1 - alpha_bar.double()).log() - alpha_bar.double().log())
                          ).to(device=device, dtype=torch.float32)
        self.loss_weights = None
        if settings.loss_weighting == "min_snr":
            self.loss_weights = min_snr_weights(alpha_bar, settings.snr_gamma,
                                                settings.prediction).to(device, torch.float32)
        self.samplers = (settings.sampler,
                         *(name for name in GaussianProcess.samplers if name != settings.sampler))

    def loss(self, model: nn.Module, x0: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        # Algorithm 1 of Ho et al. (2020): t ~ U{1..T}, eps ~ N(0, I), regress the target.
        t = self.training_timesteps(x0.shape[0], generator)
        eps = torch.randn(x0.shape, device=x0.device, generator=generator)
        alpha_bar_t = _per_image(self.alpha_bar[t - 1], x0)
        z_t = alpha_bar_t.sqrt() * x0 + (1 - alpha_bar_t).sqrt() * eps  # q(z_t | x), eq. (4)
        output = model(z_t, t.float() / self.T)
        target = prediction_target(self.settings.prediction, x0, eps, alpha_bar_t)
        if self.loss_weights is None:
            return F.mse_loss(output, target)
        per_image = (output - target).square().flatten(1).mean(dim=1)
        return (self.loss_weights[t - 1] * per_image).mean()

    def training_timesteps(self, batch: int, generator: torch.Generator) -> torch.Tensor:
        """Steps t in 1..T (int64, shape (batch,)) drawn as ``timestep_sampling`` says."""
        kind, device = self.settings.timestep_sampling, self.device
        if kind == "uniform":
            return torch.randint(1, self.T + 1, (batch,), device=device, generator=generator)
        n = torch.randn(batch, device=device, generator=generator)
        if kind == "logit_normal":
            # t / T = sigmoid(m + s n) (Esser et al. 2024, Sec. 3.1), rounded up onto 1..T
            u = torch.sigmoid(self.settings.logit_mean + self.settings.logit_std * n)
            return (u * self.T).ceil().long().clamp(1, self.T)
        # ln sigma ~ N(P_mean, P_std^2) (Karras et al. 2022, Table 1), the step at or above it
        log_sigma = self.settings.p_mean + self.settings.p_std * n
        index = torch.searchsorted(self.log_sigma, log_sigma)
        return index.clamp(max=self.T - 1) + 1

    def predict_eps_and_x0(self, model: nn.Module, z_t: torch.Tensor,
                           t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The network's (eps_hat, x0_hat) at z_t for int64 steps t in 1..T of shape (B,).

        Unclipped whatever ``clip_x0`` says: this is the model's own prediction, as the
        variational bound needs it; clipping is a sampling choice.
        """
        alpha_bar_t = _per_image(self.alpha_bar[t - 1], z_t)
        return eps_and_x0(self.settings.prediction, model(z_t, t.float() / self.T), z_t,
                          alpha_bar_t)

    def sampling_steps(self, steps: int) -> list[Step]:
        """The sampling steps, from t = T down, on ``steps`` evenly spaced timesteps."""
        timesteps = respaced_timesteps(self.T, steps)
        host = self._alpha_bar.tolist()
        alpha_bar = [host[t - 1] for t in timesteps] + [1.0]
        betas = respaced_betas(self._alpha_bar, timesteps).tolist()
        return [Step(t, t_prev, alpha_bar[i], alpha_bar[i + 1], betas[i])
                for i, (t, t_prev) in enumerate(zip(timesteps, [*timesteps[1:], 0], strict=True))]

    def posterior(self, x0: torch.Tensor, z_t: torch.Tensor,
                  step: Step) -> tuple[torch.Tensor, float]:
        """Mean and variance of q(z_{t_prev} | z_t, x0) (Ho et al. eq. 6-7, t - 1 -> t_prev)."""
        # mu_tilde = sqrt(alpha_bar_{t-1}) beta_t / (1 - alpha_bar_t) x0
        #          + sqrt(alpha_t) (1 - alpha_bar_{t-1}) / (1 - alpha_bar_t) z_t   (eq. 7)
        coef_x0 = math.sqrt(step.alpha_bar_prev) * step.beta / (1 - step.alpha_bar)
        coef_z = math.sqrt(1 - step.beta) * (1 - step.alpha_bar_prev) / (1 - step.alpha_bar)
        return coef_x0 * x0 + coef_z * z_t, step.beta_tilde

    @torch.no_grad()
    def sample(self, model: nn.Module, shape: tuple[int, ...], generator: torch.Generator, *,
               sampler: str | None = None, steps: int | None = None) -> torch.Tensor:
        # steps: None takes sample_steps; 0 (from either) means all T steps.
        name = self._sampler(sampler)
        count = self.settings.sample_steps if steps is None else steps
        if name in SOLVERS:
            return self._solve(model, shape, generator, name, count or self.T)
        update = self._ancestral_step if name == "ancestral" else self._ddim_step
        schedule = self.sampling_steps(count or self.T)
        was_training = model.training
        model.eval()
        z = torch.randn(shape, device=self.device, generator=generator)
        for step in schedule:
            z = update(model, z, step, generator)
        model.train(was_training)
        # Images live in the data range; pictures and feature networks clamp there anyway.
        return z.clamp(*self.data_range)

    def _solve(self, model: nn.Module, shape: tuple[int, ...], generator: torch.Generator,
               name: str, steps: int) -> torch.Tensor:
        respaced_timesteps(self.T, steps)  # the same check of 1 <= steps <= T
        was_training = model.training
        model.eval()
        images = solve(name, model, shape, generator, alpha_bar=self._alpha_bar,
                       prediction=self.settings.prediction, steps=steps, device=self.device,
                       clip=self.data_range if self.settings.clip_x0 else None)
        model.train(was_training)
        return images.clamp(*self.data_range)

    def _ancestral_step(self, model: nn.Module, z: torch.Tensor, step: Step,
                        generator: torch.Generator) -> torch.Tensor:
        if self.settings.prediction == "eps" and not self.settings.clip_x0 and \
                step.beta < MAX_EQ11_BETA:
            # The coursework form, eq. (11): mu = (z_t - beta_t / sqrt(1 - alpha_bar_t) eps)
            # / sqrt(alpha_t); equal to eq. (7) at x0_hat, but exact where eps is the output.
            eps_hat = model(z, self._time(z, step.t))
            mean = ((z - step.beta / math.sqrt(1 - step.alpha_bar) * eps_hat)
                    / math.sqrt(1 - step.beta))
        else:
            # Through x0_hat, which stays finite at beta_T = 1 (zero terminal SNR).
            _, x0_hat = self._sampling_prediction(model, z, step.t)
            mean, _ = self.posterior(x0_hat, z, step)
        if step.t_prev == 0:
            return mean
        # sigma_t^2 = beta_t (the upper bound) or beta_tilde_t (the lower), Ho et al. Sec. 3.2
        variance = step.beta if self.settings.variance == "beta" else step.beta_tilde
        return mean + math.sqrt(variance) * torch.randn(z.shape, device=self.device,
                                                        generator=generator)

    def _ddim_step(self, model: nn.Module, z: torch.Tensor, step: Step,
                   generator: torch.Generator) -> torch.Tensor:
        eps_hat, x0_hat = self._sampling_prediction(model, z, step.t)
        # sigma_t(eta) = eta sqrt((1 - alpha_bar_{t-1}) / (1 - alpha_bar_t))
        #                    sqrt(1 - alpha_bar_t / alpha_bar_{t-1}) = eta sqrt(beta_tilde_t)
        #                                                             (Song et al. eq. 16)
        sigma = self.settings.eta * math.sqrt(step.beta_tilde)
        # z_{t-1} = sqrt(alpha_bar_{t-1}) x0_hat + sqrt(1 - alpha_bar_{t-1} - sigma_t^2) eps_hat
        #         + sigma_t eps'   (Song et al. eq. 12; the max guards rounding at eta = 1)
        direction = math.sqrt(max(1 - step.alpha_bar_prev - sigma**2, 0.0))
        z = math.sqrt(step.alpha_bar_prev) * x0_hat + direction * eps_hat
        if sigma > 0:
            z = z + sigma * torch.randn(z.shape, device=self.device, generator=generator)
        return z

    def _sampling_prediction(self, model: nn.Module, z: torch.Tensor,
                             t: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(eps_hat, x0_hat) at step t, with x0_hat clipped and eps_hat refitted if asked."""
        alpha_bar_t = self.alpha_bar[t - 1]
        eps_hat, x0_hat = eps_and_x0(self.settings.prediction, model(z, self._time(z, t)), z,
                                     alpha_bar_t)
        if self.settings.clip_x0:
            x0_hat = x0_hat.clamp(*self.data_range)
            eps_hat, _ = eps_and_x0("x0", x0_hat, z, alpha_bar_t)
        return eps_hat, x0_hat

    def _time(self, z: torch.Tensor, t: int) -> torch.Tensor:
        return torch.full((z.shape[0],), t / self.T, device=self.device)

    def _sampler(self, sampler: str | None) -> str:
        if sampler is None:
            return self.samplers[0]
        if sampler not in self.samplers:
            raise ConfigError(f"the gaussian degradation has no sampler {sampler!r}",
                              hint=f"its samplers: {', '.join(self.samplers)}")
        return sampler


def _per_image(values: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """Shape (B,) values as (B, 1, ..., 1) to broadcast over images like ``like``."""
    return values.view(-1, *[1] * (like.dim() - 1))


@ablate.hookimpl
def register_degradations(register) -> None:
    register(Gaussian)
