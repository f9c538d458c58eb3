"""The EMA-strategy family: averaged copies of the weights used for sampling."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import nn

from ablate.components import Component


class Averager(ABC):
    """Keeps whatever average of the weights a strategy needs, updated after each step."""

    @abstractmethod
    def update(self, model: nn.Module, step: int) -> None:
        """Fold the weights after optimisation step ``step`` (1-based) into the average."""

    @abstractmethod
    def sampling_model(self) -> nn.Module:
        """The network to sample with (the live model when there is no average)."""

    @abstractmethod
    def state_dict(self) -> dict[str, torch.Tensor]:
        """Everything needed to resume, as tensors."""

    @abstractmethod
    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        """Restore what ``state_dict`` returned."""


@dataclass(frozen=True)
class EmaStrategy(Component):
    """Base of EMA strategies."""

    family: ClassVar[str] = "ema"

    def build(self, model: nn.Module) -> Averager:
        raise NotImplementedError
