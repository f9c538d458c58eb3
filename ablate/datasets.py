"""The dataset family, and the one place images move between uint8 and the model's range."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Literal

import torch

from ablate.components import Component

Split = Literal["train", "test"]

SCALINGS: dict[str, tuple[float, float]] = {
    "centered": (-0.5, 0.5),  # the coursework's x / 255 - 0.5
    "symmetric": (-1.0, 1.0),  # 2 x / 255 - 1, as in most DDPM code
}


@dataclass(frozen=True)
class ImageData:
    """A whole split in memory: uint8 images (N, C, H, W) and int64 labels (N,)."""

    images: torch.Tensor
    labels: torch.Tensor

    @property
    def shape(self) -> tuple[int, int, int]:
        """(channels, height, width) of one image."""
        _, c, h, w = self.images.shape
        return c, h, w


@dataclass(frozen=True)
class Dataset(Component):
    """Base of datasets: ``load`` returns a split as one uint8 tensor, loaded once."""

    family: ClassVar[str] = "dataset"

    def load(self, split: Split) -> ImageData:
        raise NotImplementedError

    def size(self, split: Split) -> int:
        """Images in ``split``, for checks before training (``ablate run --dry-run``): raise
        DataError when its files are missing. Override it where ``load`` is slow and the
        count can be read cheaply (a file header)."""
        return len(self.load(split).images)


def to_model_range(images: torch.Tensor, scaling: str) -> torch.Tensor:
    """uint8 [0, 255] -> float in the scaling's range (coursework: x / 255 - 0.5)."""
    low, high = SCALINGS[scaling]
    return images.float().mul_((high - low) / 255.0).add_(low)


def to_unit_range(x: torch.Tensor, scaling: str) -> torch.Tensor:
    """Model range -> [0, 1] for saving pictures and feeding feature networks."""
    low, high = SCALINGS[scaling]
    return ((x - low) / (high - low)).clamp(0, 1)
