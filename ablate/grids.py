"""Sample grids as PNG files."""

from __future__ import annotations

import math
from pathlib import Path

import torch
from torchvision.utils import save_image

from ablate.atomic import write_atomic
from ablate.datasets import to_unit_range


def save_grid(samples: torch.Tensor, scaling: str, path: Path) -> Path:
    """Write samples (N, C, H, W) in the model's range as a near-square PNG grid."""
    images = to_unit_range(samples.detach().float().cpu(), scaling)
    columns = max(1, math.ceil(math.sqrt(len(images))))
    write_atomic(path, lambda tmp: save_image(images, tmp, nrow=columns, padding=2, format="png"))
    return path
