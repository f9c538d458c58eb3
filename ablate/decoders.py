"""The decoder family: networks that undo a degradation step, conditioned on time."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from torch import nn

from ablate.components import Component


@dataclass(frozen=True)
class Decoder(Component):
    """Base of decoders.

    ``build`` returns a module whose ``forward(x, t)`` takes images (B, C, H, W) and the time
    t / T as a float tensor (B,) in [0, 1], one value per image, and returns a tensor shaped like
    ``x``. Feeding t / T keeps the network's width independent of T.
    """

    family: ClassVar[str] = "decoder"

    def build(self, channels: int, image_size: int) -> nn.Module:
        raise NotImplementedError
