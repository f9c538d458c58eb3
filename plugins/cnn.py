"""The ``cnn`` decoder: the coursework's 5-layer CNN with a sinusoidal time encoding, and presets.

A preset names a list of hidden channels. ``coursework`` (the default) is the coursework's CNN,
whose channels were always a free parameter, so explicit ``channels`` refine it; any other preset
fixes the channels, and giving different ``channels`` with it is a validation error.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn

import ablate
from ablate.components import param
from ablate.decoders import Decoder

PRESETS: dict[str, tuple[int, ...]] = {
    "coursework": (16, 32, 32, 16),
    "wide": (64, 128, 256, 128, 64),
}
"""Hidden channels of each preset."""


@dataclass(frozen=True)
class Cnn(Decoder):
    """The coursework CNN: 7x7 convs 16-32-32-16, LayerNorm, GELU, time MLP (291,217 params)."""

    name = "cnn"
    channels: tuple[int, ...] | None = param(
        None, "hidden channels of the conv blocks; unset = the preset's")
    preset: Literal["coursework", "wide"] = param(
        "coursework", "coursework = 16-32-32-16 (channels may refine it); wide = 64-128-256-128-64")
    kernel_size: int = param(7, "kernel of the hidden conv blocks (odd)", ge=1)
    norm: Literal["layer", "group", "none"] = param(
        "layer", "normalisation after each conv: LayerNorm over (C, H, W), GroupNorm, or none")
    time_frequencies: int = param(16, "sinusoidal frequencies of the t/T encoding", ge=1)
    time_hidden: int = param(128, "width of the time MLP's three hidden layers", ge=1)

    def __post_init__(self) -> None:
        # Resolve unset channels to the preset's, so the resolved configuration records them.
        if self.channels is None:
            object.__setattr__(self, "channels", PRESETS[self.preset])

    def validate(self) -> None:
        fixed = PRESETS[self.preset]
        if self.preset != "coursework" and self.channels != fixed:
            raise ValueError(f"channels {list(self.channels)} conflict with preset "
                             f"{self.preset!r}, which sets {list(fixed)}: remove channels, or use "
                             f"preset = 'coursework' to choose channels freely")
        if not self.channels or any(c < 1 for c in self.channels):
            raise ValueError(f"channels must be a non-empty list of positive integers, "
                             f"got {list(self.channels)}")
        if self.kernel_size % 2 == 0:
            raise ValueError(f"kernel_size must be odd to keep the image size, "
                             f"got {self.kernel_size}")

    def build(self, channels: int, image_size: int) -> nn.Module:
        return CnnDecoder(self, channels, image_size)


class CnnDecoder(nn.Module):
    def __init__(self, spec: Cnn, channels: int, image_size: int) -> None:
        super().__init__()
        widths = (channels, *spec.channels)
        self.blocks = nn.ModuleList(
            _block(c_in, c_out, spec.kernel_size, spec.norm, image_size)
            for c_in, c_out in zip(widths[:-1], widths[1:], strict=True))
        self.out = nn.Conv2d(spec.channels[-1], channels, 3, padding=1)
        # Frequencies 0 and 2 pi 1.5^k (k = 0..F-2): exponentially spaced over t/T in [0, 1].
        k = torch.arange(spec.time_frequencies - 1, dtype=torch.float32)
        frequencies = torch.cat([torch.zeros(1), 2 * math.pi * 1.5**k])
        self.register_buffer("frequencies", frequencies, persistent=False)
        h = spec.time_hidden
        self.time_mlp = nn.Sequential(
            nn.Linear(2 * spec.time_frequencies, h), nn.GELU(),
            nn.Linear(h, h), nn.GELU(),
            nn.Linear(h, h), nn.GELU(),
            nn.Linear(h, spec.channels[0]))

    def time_encoding(self, t: torch.Tensor) -> torch.Tensor:
        """sin and cos - 1 of each frequency times t/T (the coursework), through the MLP."""
        phases = t[:, None] * self.frequencies[None, :]
        features = torch.cat([torch.sin(phases), torch.cos(phases) - 1], dim=1)
        return self.time_mlp(features)[:, :, None, None]

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        h = self.blocks[0](x) + self.time_encoding(t)
        for block in self.blocks[1:]:
            h = block(h)
        return self.out(h)


def _block(c_in: int, c_out: int, kernel: int, norm: str, size: int) -> nn.Sequential:
    layers: list[nn.Module] = [nn.Conv2d(c_in, c_out, kernel, padding=kernel // 2)]
    if norm == "layer":
        layers.append(nn.LayerNorm((c_out, size, size)))
    elif norm == "group":
        layers.append(nn.GroupNorm(math.gcd(c_out, 8), c_out))
    layers.append(nn.GELU())
    return nn.Sequential(*layers)


@ablate.hookimpl
def register_decoders(register) -> None:
    register(Cnn)
