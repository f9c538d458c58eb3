"""The optimiser contract: a torch optimiser over exactly the given parameters at the given lr,
that descends a simple loss, and whose state survives a real checkpoint file, so that a resumed
run continues exactly where it stopped."""

from __future__ import annotations

import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any, cast

import torch

from ablate.checkpoint import (
    load_checkpoint,
    optimizer_from_flat,
    optimizer_to_flat,
    save_checkpoint,
)
from ablate.contracts.common import resolve, violation
from ablate.optimizers import Optimizer
from ablate.plugin_host import PluginHost

LR = 0.05
STEPS = 5


def check_optimizer(name: str, *, params: Mapping[str, Any] | None = None,
                    host: PluginHost | None = None) -> None:
    """Check the installed optimiser ``name`` on the quadratic loss |theta - 1|^2.

    ``build(parameters, lr)`` returns a ``torch.optim.Optimizer`` whose groups hold exactly the
    given parameters at learning rate ``lr``; a few steps lower the loss; and its state, written
    to a checkpoint file (tensors in safetensors, the rest as JSON) and loaded into a fresh
    optimiser, gives the same next step as the original.
    """
    optimizer = cast(Optimizer, resolve("optimizer", name, params, host))
    theta = torch.nn.Parameter(torch.zeros(4))
    built = _build(optimizer, theta)
    start = _loss(theta).item()
    for _ in range(STEPS):
        _step(built, theta)
    if not _loss(theta).item() < start:
        raise violation(optimizer, f"{STEPS} steps at lr {LR} did not lower the loss "
                                   f"|theta - 1|^2 from {start:.4g}")
    tensors, meta = optimizer_to_flat(built.state_dict())
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "optimizer.safetensors"
        try:
            save_checkpoint(path, tensors, meta)
        except TypeError as exc:
            raise violation(optimizer, f"its state_dict() holds something that is neither a "
                                       f"tensor nor JSON: {exc}") from None
        loaded, stored = load_checkpoint(path)
    twin = torch.nn.Parameter(theta.detach().clone())
    resumed = _build(optimizer, twin)
    resumed.load_state_dict(optimizer_from_flat(loaded, stored))
    _step(built, theta)
    _step(resumed, twin)
    if not torch.equal(theta.detach(), twin.detach()):
        raise violation(optimizer, "a restored optimiser does not take the same step as the "
                                   "original: its state_dict() does not round-trip")


def _build(optimizer: Optimizer, theta: torch.nn.Parameter) -> torch.optim.Optimizer:
    built = optimizer.build([theta], LR)
    if not isinstance(built, torch.optim.Optimizer):
        raise violation(optimizer, f"build() must return a torch.optim.Optimizer, got "
                                   f"{type(built).__name__}")
    groups = built.param_groups
    if [p for g in groups for p in g["params"]] != [theta]:
        raise violation(optimizer, "build(parameters, lr) must optimise exactly the given "
                                   "parameters")
    if any(g["lr"] != LR for g in groups):
        raise violation(optimizer, f"build(parameters, lr={LR}) must use that lr, got "
                                   f"{[g['lr'] for g in groups]}")
    return built


def _loss(theta: torch.Tensor) -> torch.Tensor:
    return (theta - 1).square().sum()


def _step(built: torch.optim.Optimizer, theta: torch.nn.Parameter) -> None:
    built.zero_grad(set_to_none=True)
    _loss(theta).backward()
    built.step()
