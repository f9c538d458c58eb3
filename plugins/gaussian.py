"""The ``gaussian`` degradation: DDPM's forward noising, eps-prediction loss, ancestral sampler."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

import ablate
from ablate.degradations import Degradation, DegradationProcess
from ablate.schedules import betas_from_alpha_bar


@dataclass(frozen=True)
class Gaussian(Degradation):
    """z_t = sqrt(alpha_t) x + sqrt(1 - alpha_t) eps; learn eps; ancestral sampling (DDPM)."""

    name = "gaussian"

    def bind(self, alpha_bar: torch.Tensor, data_range: tuple[float, float],
             device: torch.device) -> DegradationProcess:
        return GaussianProcess(alpha_bar, device)


class GaussianProcess(DegradationProcess):
    def __init__(self, alpha_bar: torch.Tensor, device: torch.device) -> None:
        self.T = len(alpha_bar)
        self.device = device
        self.alpha_bar = alpha_bar.to(device=device, dtype=torch.float32)
        # Host copies for the sampler loop, so stepping through t never syncs with the device.
        self._alpha_bar = alpha_bar.double().tolist()
        self._betas = betas_from_alpha_bar(alpha_bar).tolist()

    def loss(self, model: nn.Module, x0: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        # Algorithm 1 of Ho et al. (2020): t ~ U{1..T}, eps ~ N(0, I), regress eps.
        batch = x0.shape[0]
        t = torch.randint(1, self.T + 1, (batch,), device=x0.device, generator=generator)
        eps = torch.randn(x0.shape, device=x0.device, generator=generator)
        alpha_bar_t = self.alpha_bar[t - 1].view(batch, 1, 1, 1)
        z_t = alpha_bar_t.sqrt() * x0 + (1 - alpha_bar_t).sqrt() * eps  # q(z_t | x), eq. (4)
        eps_hat = model(z_t, t.float() / self.T)
        return F.mse_loss(eps_hat, eps)

    samplers = ("ancestral",)

    @torch.no_grad()
    def sample(self, model: nn.Module, shape: tuple[int, ...], generator: torch.Generator, *,
               sampler: str | None = None, steps: int | None = None) -> torch.Tensor:
        # Algorithm 2 of Ho et al. (2020) with sigma_t^2 = beta_t.
        was_training = model.training
        model.eval()
        z = torch.randn(shape, device=self.device, generator=generator)
        for t in range(self.T, 0, -1):
            beta_t, alpha_bar_t = self._betas[t - 1], self._alpha_bar[t - 1]
            time = torch.full((shape[0],), t / self.T, device=self.device)
            eps_hat = model(z, time)
            z = (z - beta_t / math.sqrt(1 - alpha_bar_t) * eps_hat) / math.sqrt(1 - beta_t)
            if t > 1:
                z = z + math.sqrt(beta_t) * torch.randn(shape, device=self.device,
                                                         generator=generator)
        model.train(was_training)
        return z


@ablate.hookimpl
def register_degradations(register) -> None:
    register(Gaussian)
