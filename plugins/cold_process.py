"""A cold degradation bound to a schedule: restoration loss, Algorithms 1 and 2, start x_T.

Bansal et al. (2022), "Cold Diffusion: Inverting Arbitrary Image Transforms Without Noise".
The schedule sets how strong the transform is at each step, severity_t = 1 - alpha_bar_t
(severity_0 = 0, the identity), so any schedule drives any transform. The restoration network
R predicts x_0 from D(x_0, t) and t / T and is trained with ||R(D(x_0, t), t) - x_0|| (eq. 1).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from ablate_builtins.cold_prior import LowRankGaussian
from ablate_builtins.cold_transforms import Transform
from torch import nn

from ablate.checkpoint import prefixed, unprefixed
from ablate.degradations import DegradationProcess
from ablate.errors import AblateError, ConfigError

FIT_IMAGES = 10_000
"""At most this many training images (evenly strided) are used by ``fit``; a 784-dimensional
covariance is well estimated from far fewer, and more only costs time."""

FIT_CHUNK = 1_000
"""Images degraded at once while fitting, to bound memory."""


class ColdProcess(DegradationProcess):
    """Degrades with a deterministic transform and samples by restoring from a fitted prior.

    Sampling starts from x_T drawn from a prior of fully degraded training images, which
    ``fit`` learns. Until ``fit`` is called the process knows nothing about the data and
    assumes pixels uniform over the data range: the prior then degrades uniform noise and the
    mean start is the degraded mid-range image.
    """

    samplers = ("improved", "naive")

    def __init__(self, transform: Transform, alpha_bar: torch.Tensor,
                 data_range: tuple[float, float], device: torch.device, *, loss: str,
                 prior: str, prior_noise: float, prior_rank: int) -> None:
        self.T = len(alpha_bar)
        self.transform = transform
        self.device = device
        self.low, self.high = data_range
        # Index t holds severity_t for t = 0..T.
        severity = torch.cat([alpha_bar.new_zeros(1), 1 - alpha_bar.double()])
        self.severity = severity.to(device=device, dtype=torch.float32)
        self.loss_kind = loss
        self.prior_kind = prior
        self.prior_noise = prior_noise
        self.prior_rank = prior_rank
        self.prior: LowRankGaussian | None = None

    def degrade(self, x0: torch.Tensor, t: torch.Tensor | int) -> torch.Tensor:
        """D(x_0, t): each image at its own step (t of shape (B,)) or all at step t."""
        s = self.severity[t]
        return self.transform(x0, s.expand(x0.shape[0]) if s.dim() == 0 else s)

    def loss(self, model: nn.Module, x0: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        # t ~ U{1..T}; R restores x_0 from D(x_0, t) (Bansal et al., eq. 1).
        t = torch.randint(1, self.T + 1, (x0.shape[0],), device=x0.device, generator=generator)
        x0_hat = model(self.degrade(x0, t), t.float() / self.T)
        if self.loss_kind == "l1":
            return F.l1_loss(x0_hat, x0)
        return F.mse_loss(x0_hat, x0)

    @torch.no_grad()
    def sample(self, model: nn.Module, shape: tuple[int, ...], generator: torch.Generator, *,
               sampler: str | None = None, steps: int | None = None) -> torch.Tensor:
        times = self.times(steps)
        sampler = self._sampler(sampler)
        return self._restore(model, self.start(shape, generator), sampler, times)

    @torch.no_grad()
    def restore(self, model: nn.Module, x_T: torch.Tensor, *, sampler: str | None = None,
                steps: int | None = None) -> torch.Tensor:
        """Restore degraded images x_T (at step T) to x_0 with one of ``samplers``."""
        return self._restore(model, x_T, self._sampler(sampler), self.times(steps))

    def _restore(self, model: nn.Module, x: torch.Tensor, sampler: str,
                 times: list[int]) -> torch.Tensor:
        was_training = model.training
        model.eval()
        batch = x.shape[0]
        for t, t_next in zip(times[:-1], times[1:], strict=True):
            time = torch.full((batch,), t / self.T, device=x.device)
            x0_hat = model(x, time).clamp(self.low, self.high)
            if sampler == "naive":
                x = self.degrade(x0_hat, t_next)  # Algorithm 1: x_{t-1} = D(x0_hat, t-1)
            else:  # Algorithm 2: x_{t-1} = x_t - D(x0_hat, t) + D(x0_hat, t-1)
                x = x - self.degrade(x0_hat, t) + self.degrade(x0_hat, t_next)
        model.train(was_training)
        return x.clamp(self.low, self.high)

    def times(self, steps: int | None) -> list[int]:
        """The visited steps T = tau_S > ... > tau_0 = 0, evenly spaced: tau_i = floor(i T / S)."""
        steps = self.T if steps is None else steps
        if not 1 <= steps <= self.T:
            raise ConfigError(f"steps must lie between 1 and T = {self.T}, got {steps}")
        return [i * self.T // steps for i in range(steps, -1, -1)]

    def _sampler(self, sampler: str | None) -> str:
        if sampler is None:
            return self.samplers[0]
        if sampler not in self.samplers:
            raise ConfigError(f"cold degradations have no sampler {sampler!r}",
                              hint=f"their samplers: {', '.join(self.samplers)}")
        return sampler

    def start(self, shape: tuple[int, ...], generator: torch.Generator) -> torch.Tensor:
        """x_T: from the prior (or its mean), plus ``prior_noise`` times the range in noise."""
        if self.prior is not None:
            x = (self.prior.sample(shape, generator) if self.prior_kind == "gaussian"
                 else self.prior.mean_images(shape))
        elif self.prior_kind == "gaussian":
            u = torch.rand(shape, generator=generator, device=self.device)
            x = self.degrade(self.low + (self.high - self.low) * u, self.T)
        else:
            middle = torch.full(shape, (self.low + self.high) / 2, device=self.device)
            x = self.degrade(middle, self.T)
        if self.prior_noise > 0:
            noise = torch.randn(shape, generator=generator, device=self.device)
            x = x + self.prior_noise * (self.high - self.low) * noise
        return x.clamp(self.low, self.high)

    def fit(self, x0: torch.Tensor) -> None:
        """Learn what needs data from training images (N, C, H, W) in the data range.

        First the transform's own parameters (fade's mean image), then the Gaussian prior of
        the fully degraded images D(x_0, T). Deterministic: the same images give the same fit.
        """
        if len(x0) == 0:
            raise AblateError("the cold prior cannot be fitted without training images")
        x0 = x0[:: math.ceil(len(x0) / FIT_IMAGES)].to(device=self.device, dtype=torch.float32)
        self.transform.fit(x0)
        degraded = torch.cat([self.degrade(chunk, self.T) for chunk in x0.split(FIT_CHUNK)])
        self.prior = LowRankGaussian.fit(degraded, self.prior_rank)

    def state_dict(self) -> dict[str, torch.Tensor]:
        """What ``fit`` learnt, for a checkpoint (empty before ``fit``)."""
        if self.prior is None:
            return {}
        return {**prefixed("prior", self.prior.state_dict()),
                **prefixed("transform", self.transform.state_dict())}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        """Restore what ``state_dict`` returned; an empty state leaves the process unfitted."""
        if not state:
            return
        tensors = {k: v.to(self.device) for k, v in state.items()}
        self.prior = LowRankGaussian.from_state(unprefixed("prior", tensors))
        self.transform.load_state_dict(unprefixed("transform", tensors))
