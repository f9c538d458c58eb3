"""The noise-schedule contract: valid betas, a strictly falling alpha_bar, one value per step."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, cast

import torch

from ablate.contracts.common import resolve, violation
from ablate.plugin_host import PluginHost
from ablate.schedules import NoiseSchedule

STEP_COUNTS = (1, 2, 10, 50)
"""T values every schedule is checked at: the edge cases 1 and 2 and two ordinary ones."""


def check_schedule(name: str, *, params: Mapping[str, Any] | None = None,
                   host: PluginHost | None = None) -> None:
    """Check the installed schedule ``name`` (built with ``params``) at every T in STEP_COUNTS.

    For t = 1..T: betas(T) and alpha_bar(T) are float64 tensors of length T, every beta_t lies
    in (0, 1) (beta_T = 1 is allowed under zero_terminal_snr), alpha_bar_t = prod_{s<=t}
    (1 - beta_s) and decreases strictly, the values do not change between calls, and the
    schedule's own ``check(T)`` accepts it.
    """
    schedule = cast(NoiseSchedule, resolve("schedule", name, params, host))
    for T in STEP_COUNTS:
        if schedule.zero_terminal_snr and T < 2:
            continue  # the rescale needs two steps; parse_run rejects T = 1 with it
        _check_at(schedule, T)


def _check_at(schedule: NoiseSchedule, T: int) -> None:
    betas, alpha_bar = schedule.betas(T), schedule.alpha_bar(T)
    for label, values in (("betas", betas), ("alpha_bar", alpha_bar)):
        if not (isinstance(values, torch.Tensor) and values.dtype == torch.float64
                and values.shape == (T,)):
            raise violation(schedule, f"{label}({T}) must be a float64 tensor of shape ({T},), "
                                      f"got {_describe(values)}")
    inside = torch.isfinite(betas) & (betas > 0) & (betas < 1)
    if schedule.zero_terminal_snr:
        inside[-1] = (betas[-1] > 0) & (betas[-1] <= 1)
    if not inside.all():
        raise violation(schedule, f"at T={T} beta_t must lie in (0, 1) for every t; it is "
                                  f"{_first_bad(betas, inside)}")
    if not ((alpha_bar[1:] < alpha_bar[:-1]).all() and alpha_bar[0] < 1):
        raise violation(schedule, f"at T={T} alpha_bar_t must decrease strictly from below 1, "
                                  f"got {_preview(alpha_bar)}")
    product = torch.cumprod(1 - betas, dim=0)
    if not torch.allclose(alpha_bar, product, rtol=1e-6, atol=1e-12):
        raise violation(schedule, f"at T={T} alpha_bar_t must equal prod_(s<=t) (1 - beta_s); "
                                  f"alpha_bar is {_preview(alpha_bar)}, the product of the betas "
                                  f"{_preview(product)}")
    if not (torch.equal(betas, schedule.betas(T))
            and torch.equal(alpha_bar, schedule.alpha_bar(T))):
        raise violation(schedule, f"at T={T} betas and alpha_bar must be the same on every call")
    try:
        schedule.check(T)
    except ValueError as exc:
        raise violation(schedule, f"its own check({T}) rejects it: {exc}") from None


def _describe(values: object) -> str:
    if isinstance(values, torch.Tensor):
        return f"{values.dtype} of shape {tuple(values.shape)}"
    return type(values).__name__


def _first_bad(betas: torch.Tensor, inside: torch.Tensor) -> str:
    t = int(torch.nonzero(~inside)[0]) + 1
    return f"{betas[t - 1].item():.4g} at t={t}"


def _preview(values: torch.Tensor) -> str:
    shown = ", ".join(f"{v:.4g}" for v in values[:5].tolist())
    return f"[{shown}{', ...' if len(values) > 5 else ''}]"
