"""The dataset contract: each split is a non-empty uint8 stack of square images with int64
labels, the form the trainer moves to the device once and ``to_model_range`` scales."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, cast

import torch

from ablate.contracts.common import resolve, violation
from ablate.datasets import Dataset, ImageData, Split
from ablate.plugin_host import PluginHost

SPLITS: tuple[Split, ...] = ("train", "test")


def check_dataset(name: str, *, params: Mapping[str, Any] | None = None,
                  splits: tuple[Split, ...] = SPLITS, host: PluginHost | None = None) -> None:
    """Check every split of the installed dataset ``name``.

    ``load(split)`` returns ImageData whose images are uint8 (N, C, H, W) with N > 0 and H = W,
    not all one value, and whose labels are int64 (N,) and not negative; every split has the
    same image shape.
    """
    dataset = cast(Dataset, resolve("dataset", name, params, host))
    shapes = {split: _check_split(dataset, split) for split in splits}
    if len(set(shapes.values())) > 1:
        raise violation(dataset, f"splits must hold images of one shape, got {shapes}")


def _check_split(dataset: Dataset, split: Split) -> tuple[int, int, int]:
    data = dataset.load(split)
    if not isinstance(data, ImageData):
        raise violation(dataset, f"load({split!r}) must return ablate.datasets.ImageData, got "
                                 f"{type(data).__name__}")
    images, labels = data.images, data.labels
    if not (images.dtype == torch.uint8 and images.dim() == 4):
        raise violation(dataset, f"{split} images must be a uint8 tensor (N, C, H, W), got "
                                 f"{images.dtype} of shape {tuple(images.shape)}")
    count, _, height, width = images.shape
    if count == 0:
        raise violation(dataset, f"the {split} split is empty")
    if height != width:
        raise violation(dataset, f"{split} images must be square (decoders are built for one "
                                 f"size), got {height}x{width}")
    if images.max() == images.min():
        raise violation(dataset, f"every {split} pixel has the value {int(images.min())}: the "
                                 f"images are blank")
    if not (labels.dtype == torch.int64 and labels.shape == (count,)):
        raise violation(dataset, f"{split} labels must be an int64 tensor ({count},), got "
                                 f"{labels.dtype} of shape {tuple(labels.shape)}")
    if (labels < 0).any():
        raise violation(dataset, f"{split} labels must not be negative")
    return data.shape
