"""EMA strategies ``none``, ``ema`` (constant decay after a warm-up), ``warmup`` (growing decay)."""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

import ablate
from ablate.components import param
from ablate.ema import Averager, EmaStrategy
from ablate.hookspecs import Register


@dataclass(frozen=True)
class NoEma(EmaStrategy):
    """No averaging: sample with the trained weights themselves."""

    name = "none"

    def build(self, model: nn.Module) -> Averager:
        return LiveWeights(model)


class LiveWeights(Averager):
    """The trained model itself: nothing to average, nothing to save."""

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
        return ExponentialAverage(model, self.decay_at)

    def decay_at(self, step: int) -> float:
        """0 (a plain copy) during the warm-up, then the constant decay."""
        return 0.0 if step <= self.warmup_steps else self.decay


@dataclass(frozen=True)
class WarmupEma(EmaStrategy):
    """diffusers' EMA warm-up: decay 1 - (1 + n / inv_gamma)^-power after n updates, bounded."""

    name = "warmup"
    inv_gamma: float = param(1.0, "time scale of the warm-up, in steps", gt=0)
    power: float = param(2 / 3, "growth exponent: 2/3 suits runs of ~1M steps, 3/4 shorter ones",
                         gt=0)
    min_decay: float = param(0.0, "lower bound of the decay", ge=0, lt=1)
    max_decay: float = param(0.9999, "upper bound of the decay (reached late in training)",
                             ge=0, lt=1)

    def validate(self) -> None:
        if self.min_decay > self.max_decay:
            raise ValueError(f"min_decay ({self.min_decay}) must not exceed max_decay "
                             f"({self.max_decay})")

    def build(self, model: nn.Module) -> Averager:
        return ExponentialAverage(model, self.decay_at)

    def decay_at(self, step: int) -> float:
        """Decay of update ``step`` (1-based). As in diffusers' EMAModel, n = step - 1 counts the
        updates before this one, and the first update (n = 0) copies the weights whatever
        min_decay says: averaging with the initial copy would only weight it twice."""
        n = step - 1
        if n <= 0:
            return 0.0
        decay = 1.0 - (1.0 + n / self.inv_gamma) ** -self.power
        return min(max(decay, self.min_decay), self.max_decay)


class ExponentialAverage(Averager):
    """theta_ema <- d theta_ema + (1 - d) theta with the decay d = decay_at(step) of each step."""

    def __init__(self, model: nn.Module, decay_at: Callable[[int], float]) -> None:
        self.decay_at = decay_at
        self.average = copy.deepcopy(model).requires_grad_(False)

    @torch.no_grad()
    def update(self, model: nn.Module, step: int) -> None:
        averaged = list(self.average.parameters())
        live = [p.detach() for p in model.parameters()]
        decay = self.decay_at(step)
        if decay == 0.0:
            torch._foreach_copy_(averaged, live)
        else:
            torch._foreach_lerp_(averaged, live, 1.0 - decay)
        for mine, theirs in zip(self.average.buffers(), model.buffers(), strict=True):
            mine.copy_(theirs)

    def sampling_model(self) -> nn.Module:
        return self.average

    def state_dict(self) -> dict[str, torch.Tensor]:
        return self.average.state_dict()

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        self.average.load_state_dict(state)


@ablate.hookimpl
def register_ema_strategies(register: Register) -> None:
    register(NoEma)
    register(Ema)
    register(WarmupEma)
