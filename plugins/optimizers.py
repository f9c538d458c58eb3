"""Optimisers ``adam`` (the coursework's, and the default), ``adamw`` and ``sgd``: torch's own."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import ClassVar

import torch

import ablate
from ablate.components import param
from ablate.hookspecs import Register
from ablate.optimizers import Optimizer


@dataclass(frozen=True)
class _AdamLike(Optimizer):
    """Adam's moment settings, shared by adam and adamw; not registered itself."""

    torch_class: ClassVar[type[torch.optim.Optimizer]]
    beta1: float = param(0.9, "decay of the running mean of gradients", ge=0, lt=1)
    beta2: float = param(0.999, "decay of the running mean of squared gradients", ge=0, lt=1)
    eps: float = param(1e-8, "added to the root of the second moment", gt=0)
    weight_decay: float = 0.0  # each optimiser declares its own: the two decays differ

    def build(self, parameters: Iterable[torch.nn.Parameter], lr: float) -> torch.optim.Optimizer:
        return self.torch_class(parameters, lr=lr, betas=(self.beta1, self.beta2), eps=self.eps,
                                weight_decay=self.weight_decay)


@dataclass(frozen=True)
class Adam(_AdamLike):
    """Adam (Kingma and Ba 2015); weight_decay is an L2 term added to the gradient."""

    name = "adam"
    torch_class = torch.optim.Adam
    weight_decay: float = param(0.0, "L2 penalty coefficient (coupled with the gradient)", ge=0)


@dataclass(frozen=True)
class AdamW(_AdamLike):
    """AdamW (Loshchilov and Hutter 2019): Adam with decoupled weight decay."""

    name = "adamw"
    torch_class = torch.optim.AdamW
    weight_decay: float = param(0.01, "decoupled decay: theta <- theta (1 - lr weight_decay)",
                                ge=0)


@dataclass(frozen=True)
class Sgd(Optimizer):
    """Stochastic gradient descent with (Nesterov) momentum."""

    name = "sgd"
    momentum: float = param(0.9, "momentum factor; 0 = plain SGD", ge=0, lt=1)
    nesterov: bool = param(False, "Nesterov momentum (needs momentum > 0)")
    weight_decay: float = param(0.0, "L2 penalty coefficient", ge=0)

    def validate(self) -> None:
        if self.nesterov and self.momentum == 0:
            raise ValueError("nesterov = true needs momentum > 0")

    def build(self, parameters: Iterable[torch.nn.Parameter], lr: float) -> torch.optim.Optimizer:
        return torch.optim.SGD(parameters, lr=lr, momentum=self.momentum,
                               nesterov=self.nesterov, weight_decay=self.weight_decay)


@ablate.hookimpl
def register_optimizers(register: Register) -> None:
    for optimizer in (Adam, AdamW, Sgd):
        register(optimizer)
