"""The optimiser family: which ``torch.optim`` optimiser trains the decoder, with what settings.

The learning rate is not the optimiser's: it is ``[run] lr``, multiplied at each step by the
run's ``lr_schedule``, so that optimisers and schedules combine freely.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import ClassVar

import torch

from ablate.components import Component


@dataclass(frozen=True)
class Optimizer(Component):
    """Base of optimisers: a component that builds a ``torch.optim.Optimizer``."""

    family: ClassVar[str] = "optimizer"

    def build(self, parameters: Iterable[torch.nn.Parameter], lr: float) -> torch.optim.Optimizer:
        """A ``torch.optim.Optimizer`` over ``parameters`` with learning rate ``lr``.

        Its ``state_dict`` must hold tensors and JSON-able scalars only (every ``torch.optim``
        optimiser does): checkpoints store the tensors in safetensors and the rest as JSON.
        """
        raise NotImplementedError
