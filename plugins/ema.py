"""EMA strategies ``none`` and ``ema`` (constant decay after a warm-up)."""

from __future__ import annotations

import copy
from dataclasses import dataclass

import torch
from torch import nn

import ablate
from ablate.components import param
from ablate.ema import Averager, EmaStrategy


@dataclass(frozen=True)
class NoEma(EmaStrategy):
    """No averaging: sample with the trained weights themselves."""

    name = "none"

    def build(self, model: nn.Module) -> Averager:
        return LiveWeights(model)


class LiveWeights(Averager):
    def __init__(self, model: nn.Module) -> None:
        self.model = model

    def update(self, model: nn.Module, step: int) -> None:
        pass

    def sampling_model(self) -> nn.Module:
        return self.model

    def state_dict(self) -> dict[str, torch.Tensor]:
        return {}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        pass


@dataclass(frozen=True)
class Ema(EmaStrategy):
    """theta_ema <- decay theta_ema + (1 - decay) theta after warm-up; before it, a plain copy."""

    name = "ema"
    decay: float = param(0.992, "decay per step (the UNet report used 0.992)", ge=0, lt=1)
    warmup_steps: int = param(100, "steps during which the average just copies the weights", ge=0)

    def build(self, model: nn.Module) -> Averager:
        return ExponentialAverage(model, self.decay, self.warmup_steps)


class ExponentialAverage(Averager):
    def __init__(self, model: nn.Module, decay: float, warmup_steps: int) -> None:
        self.decay = decay
        self.warmup_steps = warmup_steps
        self.average = copy.deepcopy(model).requires_grad_(False)

    @torch.no_grad()
    def update(self, model: nn.Module, step: int) -> None:
        averaged = list(self.average.parameters())
        live = [p.detach() for p in model.parameters()]
        if step <= self.warmup_steps:
            torch._foreach_copy_(averaged, live)
        else:
            torch._foreach_lerp_(averaged, live, 1.0 - self.decay)
        for mine, theirs in zip(self.average.buffers(), model.buffers(), strict=True):
            mine.copy_(theirs)

    def sampling_model(self) -> nn.Module:
        return self.average

    def state_dict(self) -> dict[str, torch.Tensor]:
        return self.average.state_dict()

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        self.average.load_state_dict(state)


@ablate.hookimpl
def register_ema_strategies(register) -> None:
    register(NoEma)
    register(Ema)
