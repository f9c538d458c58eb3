"""Fast solvers for the ``gaussian`` degradation, driven through diffusers' scheduler classes.

- ``dpm++2m``: DPM-Solver++ (Lu et al. 2022), second-order multistep in the data prediction;
- ``unipc``: UniPC (Zhao et al. 2023), order 2 with the B_2(h) corrector ("bh2");
- ``euler`` / ``heun``: Euler and Heun steps of the probability-flow ODE in sigma space,
  sigma_t = sqrt((1 - alpha_bar_t) / alpha_bar_t) (Karras et al. 2022, Algorithm 1; one and two
  network evaluations per step).

Not written again here: diffusers implements and tests these solvers. This module only builds
each scheduler from the run's own alpha_bar (as ``trained_betas``) and prediction type, and
drives it with ablate's networks, which read z_t and t / T. diffusers' timestep index k is
ablate's step t = k + 1 (alpha_bar[k]); the timesteps are "trailing" (Lin et al. 2024), so
``steps`` visits T, T - T/S, ... exactly as the ancestral and DDIM samplers' respacing does.
diffusers takes seconds to import, so it is imported when a solver first samples.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from ablate.schedules import betas_from_alpha_bar

SOLVERS = ("dpm++2m", "unipc", "euler", "heun")
"""Sampler names this module provides, as the gaussian degradation lists them."""

DIFFUSERS_PREDICTION = {"eps": "epsilon", "x0": "sample", "v": "v_prediction"}

MIN_ALPHA_BAR = 2.0**-24
"""alpha_bar_T = 0 (zero terminal SNR) makes sigma_T infinite; like diffusers' own
``rescale_betas_zero_snr``, the solvers see it as 2^-24 (SNR 6e-8, still pure noise)."""


def floored(alpha_bar: torch.Tensor) -> torch.Tensor:
    """alpha_bar, in float64, kept above a floor that falls from 2 to 1 times MIN_ALPHA_BAR
    over the steps: still pure noise where it applies, and still strictly decreasing. A flat
    floor would give neighbouring steps of a collapsing schedule (linear to beta_max 0.2,
    whose alpha_bar is 1e-47 by t = T) the same noise level, and the multistep solvers divide
    by the difference of log-SNRs."""
    steps = torch.arange(len(alpha_bar), dtype=torch.float64, device=alpha_bar.device)
    floor = MIN_ALPHA_BAR * 2.0 ** (1 - steps / max(len(alpha_bar) - 1, 1))
    return torch.maximum(alpha_bar.double(), floor)


def make_scheduler(name: str, alpha_bar: torch.Tensor, prediction: str) -> Any:
    """The diffusers scheduler of solver ``name`` for this alpha_bar and prediction type."""
    import diffusers

    betas = betas_from_alpha_bar(floored(alpha_bar))
    common: dict[str, Any] = {
        "num_train_timesteps": len(alpha_bar),
        "trained_betas": betas.cpu().numpy(),
        "prediction_type": DIFFUSERS_PREDICTION[prediction],
        "timestep_spacing": "trailing",
    }
    if name == "dpm++2m":
        return diffusers.DPMSolverMultistepScheduler(
            **common, algorithm_type="dpmsolver++", solver_order=2)
    if name == "unipc":
        return diffusers.UniPCMultistepScheduler(**common, solver_order=2, solver_type="bh2")
    if name == "euler":
        return diffusers.EulerDiscreteScheduler(**common)
    if name == "heun":
        return diffusers.HeunDiscreteScheduler(**common)
    raise ValueError(f"unknown solver {name!r}; solvers: {', '.join(SOLVERS)}")


def solve(name: str, model: nn.Module, shape: tuple[int, ...], generator: torch.Generator, *,
          alpha_bar: torch.Tensor, prediction: str, steps: int, device: torch.device,
          clip: tuple[float, float] | None = None) -> torch.Tensor:
    """Integrate from noise with solver ``name`` in ``steps`` steps; the images, unclamped.

    ``clip``: clamp the predicted x0 to this range at every step; the scheduler is then handed
    the clamped x0 as a "sample" prediction, the same x0 the other prediction types imply.
    """
    network = _network(model, alpha_bar, prediction, clip, device)
    scheduler = make_scheduler(name, alpha_bar, "x0" if clip else prediction)
    return drive(scheduler, network, shape, generator, steps=steps, T=len(alpha_bar),
                 device=device)


def drive(scheduler: Any, model: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
          shape: tuple[int, ...], generator: torch.Generator, *, steps: int, T: int,
          device: torch.device) -> torch.Tensor:
    """diffusers' sampling loop: scale the input, evaluate, step; for any scheduler."""
    scheduler.set_timesteps(steps, device=device)
    x = torch.randn(shape, generator=generator, device=device) * scheduler.init_noise_sigma
    for timestep in scheduler.timesteps:
        network_input = scheduler.scale_model_input(x, timestep)  # z_t
        time = (timestep.float() + 1) / T  # index k is step t = k + 1; networks read t / T
        output = model(network_input, time.expand(shape[0]).to(device))
        x = scheduler.step(output, timestep, x, return_dict=False)[0]
    return x


def _network(model: nn.Module, alpha_bar: torch.Tensor, prediction: str,
             clip: tuple[float, float] | None,
             device: torch.device) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    if clip is None:
        return model
    from ablate_builtins.gaussian import eps_and_x0

    # the alpha_bar the scheduler integrates: where float32 takes the true one to 0,
    # x0 = (z - sqrt(1 - alpha_bar) eps) / sqrt(alpha_bar) would divide by 0
    alpha_bar = floored(alpha_bar).to(device=device, dtype=torch.float32)

    def clipped_x0(z_t: torch.Tensor, time: torch.Tensor) -> torch.Tensor:
        t = (time * len(alpha_bar)).round().long()
        alpha_bar_t = alpha_bar[t - 1].view(-1, *[1] * (z_t.dim() - 1))
        _, x0_hat = eps_and_x0(prediction, model(z_t, time), z_t, alpha_bar_t)
        return x0_hat.clamp(*clip)

    return clipped_x0
