"""Sample grids as PNG files.

The grid is laid out as ``torchvision.utils.make_grid`` does (2-pixel black padding, near-square,
row by row) and written with Pillow: importing torchvision costs about a second, which every
command that only reads a study would pay. ``tests/test_sampling.py`` checks the pixels against
torchvision's ``save_image``.
"""

from __future__ import annotations

import math
from pathlib import Path

import torch

from ablate.atomic import write_atomic
from ablate.datasets import to_unit_range

PADDING = 2


def grid_image(images: torch.Tensor, columns: int, padding: int = PADDING) -> torch.Tensor:
    """Images in [0, 1] (N, C, H, W) tiled into one (3, H', W') uint8 image, row by row."""
    images = images.detach().float().cpu().clamp(0, 1)
    if images.shape[1] == 1:
        images = images.expand(-1, 3, -1, -1)
    n, channels, height, width = images.shape
    rows = math.ceil(n / columns)
    cell_h, cell_w = height + padding, width + padding
    canvas = torch.zeros(channels, rows * cell_h + padding, columns * cell_w + padding)
    for index, image in enumerate(images):
        top = (index // columns) * cell_h + padding
        left = (index % columns) * cell_w + padding
        canvas[:, top:top + height, left:left + width] = image
    # the rounding torchvision's save_image uses: x * 255 + 0.5, clamped, truncated
    return canvas.mul(255).add_(0.5).clamp_(0, 255).to(torch.uint8)


def save_grid(samples: torch.Tensor, scaling: str, path: Path) -> Path:
    """Write samples (N, C, H, W) in the model's range as a near-square PNG grid."""
    from PIL import Image

    images = to_unit_range(samples.detach().float().cpu(), scaling)
    columns = min(len(images), max(1, math.ceil(math.sqrt(len(images)))))
    pixels = grid_image(images, columns).permute(1, 2, 0).contiguous().numpy()
    write_atomic(path, lambda tmp: Image.fromarray(pixels).save(tmp, format="PNG"))
    return path
