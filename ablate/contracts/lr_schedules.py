"""The learning-rate-schedule contract: a positive, finite, repeatable factor at every step,
the shared warm-up, and a scheduler whose JSON state resumes it exactly."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from typing import Any, cast

import torch

from ablate.contracts.common import resolve, violation
from ablate.lr_schedules import LrSchedule
from ablate.plugin_host import PluginHost

TOTALS = (1, 10, 1000)
"""Run lengths every schedule is checked at, from one step to an ordinary one."""


def check_lr_schedule(name: str, *, params: Mapping[str, Any] | None = None,
                      host: PluginHost | None = None) -> None:
    """Check the installed schedule ``name`` (built with ``params``).

    For every step of runs of ``TOTALS`` steps, ``factor(step, total)`` is a positive finite
    number, the same on every call, and at most ``(step + 1) / warmup_steps`` during the warm-up;
    ``build`` drives an optimiser's lr to ``lr * factor``; and its scheduler's state, through
    JSON, resumes to the same lr.
    """
    schedule = cast(LrSchedule, resolve("lr_schedule", name, params, host))
    for total in TOTALS:
        for step in range(total):
            value = schedule.factor(step, total)
            if not (isinstance(value, int | float) and math.isfinite(value) and value > 0):
                raise violation(schedule, f"factor({step}, {total}) must be a positive finite "
                                          f"number, got {value!r}")
            if value != schedule.factor(step, total):
                raise violation(schedule, f"factor({step}, {total}) differs between calls")
            ramp = (step + 1) / schedule.warmup_steps if schedule.warmup_steps else math.inf
            if step < schedule.warmup_steps and value > ramp * (1 + 1e-9):
                raise violation(schedule, f"factor({step}, {total}) = {value:.4g} exceeds the "
                                          f"warm-up ramp {ramp:.4g}: override decay(), not "
                                          f"factor()")
    _check_scheduler(schedule, total=10, lr=0.1)


def _check_scheduler(schedule: LrSchedule, *, total: int, lr: float) -> None:
    theta = torch.nn.Parameter(torch.zeros(1))
    optimizer = torch.optim.SGD([theta], lr=lr)
    scheduler = schedule.build(optimizer, total)
    for step in range(total // 2):
        expected = lr * schedule.factor(step, total)
        if not math.isclose(optimizer.param_groups[0]["lr"], expected, rel_tol=1e-12):
            raise violation(schedule, f"the built scheduler sets lr "
                                      f"{optimizer.param_groups[0]['lr']:.4g} at step {step}, "
                                      f"not lr * factor = {expected:.4g}")
        optimizer.step()
        scheduler.step()
    state = json.loads(json.dumps(scheduler.state_dict()))
    twin_optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=lr)
    twin_optimizer.load_state_dict(optimizer.state_dict())
    twin = schedule.build(twin_optimizer, total)
    twin.load_state_dict(state)
    for _ in range(total - total // 2):
        optimizer.step()
        scheduler.step()
        twin_optimizer.step()
        twin.step()
        if twin_optimizer.param_groups[0]["lr"] != optimizer.param_groups[0]["lr"]:
            raise violation(schedule, "a scheduler restored from its JSON state does not set "
                                      "the same lr as the original")
