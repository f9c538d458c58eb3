"""The degradation family: the fixed encoder q(x_t | x_0), its training loss and its samplers."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import nn

from ablate.components import Component


class DegradationProcess(ABC):
    """A degradation bound to a schedule, a data range and a device."""

    T: int

    @abstractmethod
    def loss(self, model: nn.Module, x0: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """The training loss on a batch of clean images, as a scalar tensor (no host sync)."""

    def fit(self, x0: torch.Tensor) -> None:  # noqa: B027 - optional: most learn nothing
        """Learn from the training images (model range) before training, e.g. a prior."""

    def state_dict(self) -> dict[str, torch.Tensor]:
        """What ``fit`` learnt, saved with the checkpoint (empty when it learns nothing)."""
        return {}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:  # noqa: B027 - as fit
        """Restore what ``state_dict`` returned."""

    samplers: tuple[str, ...] = ()
    """Names of the samplers ``sample`` accepts; the first is the default."""

    @abstractmethod
    def sample(self, model: nn.Module, shape: tuple[int, ...], generator: torch.Generator, *,
               sampler: str | None = None, steps: int | None = None) -> torch.Tensor:
        """Draw images of ``shape`` in the data range.

        ``sampler`` picks one of ``samplers`` (None: the default) and ``steps`` the number of
        network evaluations where the sampler can skip steps (None: all T).
        """


@dataclass(frozen=True)
class Degradation(Component):
    """Base of degradations: parameters here, the bound process from ``bind``."""

    family: ClassVar[str] = "degradation"
    follows_schedule: ClassVar[bool] = True
    """False for formulations that draw their own noise levels (EDM's sigma, flow matching's
    t): the run's schedule and T then do not shape the degradation, and the contract checks
    its severity by the network's time input instead of by the schedule."""

    def bind(self, alpha_bar: torch.Tensor, data_range: tuple[float, float],
             device: torch.device) -> DegradationProcess:
        raise NotImplementedError
