"""Cold Diffusion degradations ``blur``, ``mask``, ``pixelate`` and ``fade`` (Bansal et al. 2022).

Each component only chooses its transform D(x, s); the bound process (``cold_process``) turns
the run's schedule into severities, trains the restoration network and samples with the paper's
Algorithms 1 and 2 from a prior fitted to fully degraded images (``cold_prior``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from ablate_builtins.cold_process import ColdProcess
from ablate_builtins.cold_transforms import (
    BlockAverage,
    GaussianBlur,
    LinearFade,
    ProgressiveMask,
    Transform,
)

import ablate
from ablate.components import param
from ablate.degradations import Degradation, DegradationProcess


@dataclass(frozen=True)
class ColdDegradation(Degradation):
    """Base of cold degradations: the loss and the start of sampling, shared by all four."""

    loss: Literal["l1", "l2"] = param(
        "l1", "restoration loss ||R(D(x0, t), t) - x0||: l1 (the paper) or l2")
    prior: Literal["gaussian", "mean"] = param(
        "gaussian", "start x_T of sampling: a low-rank Gaussian fitted to fully degraded "
        "training images, or their mean (one start: every sample alike unless prior_noise > 0)")
    prior_noise: float = param(
        0.0, "std of Gaussian noise added to x_T, as a fraction of the data range", ge=0)
    prior_rank: int = param(32, "principal directions kept by the fitted Gaussian prior", ge=1)

    def bind(self, alpha_bar: torch.Tensor, data_range: tuple[float, float],
             device: torch.device) -> DegradationProcess:
        return ColdProcess(self.transform(data_range), alpha_bar, data_range, device,
                           loss=self.loss, prior=self.prior, prior_noise=self.prior_noise,
                           prior_rank=self.prior_rank)

    def transform(self, data_range: tuple[float, float]) -> Transform:
        """D(x, s) for images in ``data_range``."""
        raise NotImplementedError


@dataclass(frozen=True)
class Blur(ColdDegradation):
    """Gaussian blur of width sigma_t = (1 - alpha_bar_t) sigma_max; R deblurs (Cold Diffusion)."""

    name = "blur"
    sigma_max: float = param(8.0, "blur width in pixels at full severity", gt=0, le=64)

    def transform(self, data_range: tuple[float, float]) -> Transform:
        return GaussianBlur(self.sigma_max)


@dataclass(frozen=True)
class Mask(ColdDegradation):
    """Pixels hidden one by one (a growing centred square or a seeded random order); R inpaints."""

    name = "mask"
    pattern: Literal["square", "random"] = param(
        "square", "square: a centred square grows ring by ring; random: pixels vanish in a "
        "fixed random order drawn from mask_seed")
    mask_seed: int = param(0, "seed of the random pixel order", ge=0)
    fill: float = param(
        0.5, "value of hidden pixels as a fraction of the data range (0 black, 1 white)",
        ge=0, le=1)

    def transform(self, data_range: tuple[float, float]) -> Transform:
        low, high = data_range
        return ProgressiveMask(self.pattern, self.mask_seed, low + self.fill * (high - low))


@dataclass(frozen=True)
class Pixelate(ColdDegradation):
    """Averaged over blocks of 2^k pixels, k growing with 1 - alpha_bar_t; R super-resolves."""

    name = "pixelate"

    def transform(self, data_range: tuple[float, float]) -> Transform:
        return BlockAverage()


@dataclass(frozen=True)
class Fade(ColdDegradation):
    """x_t = alpha_bar_t x + (1 - alpha_bar_t) target, the target black or the mean image."""

    name = "fade"
    target: Literal["black", "mean"] = param(
        "black", "black, or the mean training image (learnt by the process's fit; mid-grey "
        "until then)")

    def transform(self, data_range: tuple[float, float]) -> Transform:
        low, high = data_range
        if self.target == "black":
            return LinearFade(low, fits_mean=False)
        return LinearFade((low + high) / 2, fits_mean=True)


@ablate.hookimpl
def register_degradations(register) -> None:
    for degradation in (Blur, Mask, Pixelate, Fade):
        register(degradation)
