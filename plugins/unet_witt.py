"""The ``unet-witt`` decoder: the second report's attention UNet, without its two defects.

Double convolutions 1 -> w at full size, two down blocks (2w at 1/2, 4w at 1/4 size) each followed
by self-attention, a bottom of double convolutions through 8w, two up blocks with skip
connections and self-attention, a 1x1 output convolution (w = 64 in the report). Unlike the
report, the time embedding's width is a parameter (the report tied it to T, so changing T broke
the model) and every image gets its own t (the report shared one t across the batch).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from ablate_builtins.unet import sinusoidal_embedding
from torch import nn

import ablate
from ablate.components import param
from ablate.decoders import Decoder
from ablate.errors import ConfigError


@dataclass(frozen=True)
class UnetWitt(Decoder):
    """The second report's UNet: double convs 64-128-256-512, attention after each down/up block."""

    name = "unet-witt"
    width: int = param(64, "channels of the first double convolution; levels use 2x, 4x, 8x",
                       ge=1)
    time_dim: int = param(256, "width of the sinusoidal time embedding (even; independent of T)",
                          ge=2)
    heads: int = param(4, "attention heads (must divide the width)", ge=1)

    def validate(self) -> None:
        if self.time_dim % 2:
            raise ValueError(f"time_dim must be even (sin and cos halves), got {self.time_dim}")
        if self.width % self.heads:
            raise ValueError(f"heads ({self.heads}) must divide width ({self.width})")

    def build(self, channels: int, image_size: int) -> nn.Module:
        if image_size % 4:
            raise ConfigError(f"unet-witt halves the image twice, which {image_size}x{image_size} "
                              f"images do not allow", key="run.decoder",
                              hint="use images whose size is a multiple of 4 (28, 32, ...)")
        return UnetWittModel(self, channels)


class DoubleConv(nn.Module):
    """conv3x3 - GroupNorm(1) - GELU - conv3x3 - GroupNorm(1), optionally residual (+ GELU)."""

    def __init__(self, c_in: int, c_out: int, c_mid: int | None = None, *,
                 residual: bool = False) -> None:
        super().__init__()
        c_mid = c_mid or c_out
        self.residual = residual
        self.layers = nn.Sequential(
            nn.Conv2d(c_in, c_mid, 3, padding=1, bias=False), nn.GroupNorm(1, c_mid), nn.GELU(),
            nn.Conv2d(c_mid, c_out, 3, padding=1, bias=False), nn.GroupNorm(1, c_out))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.gelu(x + self.layers(x)) if self.residual else self.layers(x)


class Down(nn.Module):
    """Max-pool by 2, a residual and a plain double conv, plus each image's time projection."""

    def __init__(self, c_in: int, c_out: int, time_dim: int) -> None:
        super().__init__()
        self.convs = nn.Sequential(nn.MaxPool2d(2), DoubleConv(c_in, c_in, residual=True),
                                   DoubleConv(c_in, c_out))
        self.time = nn.Sequential(nn.SiLU(), nn.Linear(time_dim, c_out))

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        return self.convs(x) + self.time(emb)[:, :, None, None]


class Up(nn.Module):
    """Bilinear upsampling by 2, concatenation with the skip, two double convs, time projection."""

    def __init__(self, c_in: int, c_out: int, time_dim: int) -> None:
        super().__init__()
        self.convs = nn.Sequential(DoubleConv(c_in, c_in, residual=True),
                                   DoubleConv(c_in, c_out, c_in // 2))
        self.time = nn.Sequential(nn.SiLU(), nn.Linear(time_dim, c_out))

    def forward(self, x: torch.Tensor, skip: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        x = F.interpolate(x, size=skip.shape[-2:], mode="bilinear", align_corners=True)
        return self.convs(torch.cat([skip, x], dim=1)) + self.time(emb)[:, :, None, None]


class SelfAttention(nn.Module):
    """Pixels as tokens: LayerNorm, multi-head attention, residual, LayerNorm-MLP, residual."""

    def __init__(self, width: int, heads: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(width)
        self.attention = nn.MultiheadAttention(width, heads, batch_first=True)
        self.mlp = nn.Sequential(nn.LayerNorm(width), nn.Linear(width, width), nn.GELU(),
                                 nn.Linear(width, width))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        tokens = x.flatten(2).transpose(1, 2)
        normed = self.norm(tokens)
        tokens = tokens + self.attention(normed, normed, normed, need_weights=False)[0]
        tokens = tokens + self.mlp(tokens)
        return tokens.transpose(1, 2).reshape(b, c, h, w)


class UnetWittModel(nn.Module):
    def __init__(self, spec: UnetWitt, channels: int) -> None:
        super().__init__()
        w, d = spec.width, spec.time_dim
        self.time_dim = d
        self.inc = DoubleConv(channels, w)
        self.down1 = Down(w, 2 * w, d)
        self.sa1 = SelfAttention(2 * w, spec.heads)
        self.down2 = Down(2 * w, 4 * w, d)
        self.sa2 = SelfAttention(4 * w, spec.heads)
        self.bottom = nn.Sequential(DoubleConv(4 * w, 8 * w), DoubleConv(8 * w, 8 * w),
                                    DoubleConv(8 * w, 4 * w))
        self.up1 = Up(4 * w + 2 * w, 2 * w, d)
        self.sa3 = SelfAttention(2 * w, spec.heads)
        self.up2 = Up(2 * w + w, w, d)
        self.sa4 = SelfAttention(w, spec.heads)
        self.out = nn.Conv2d(w, channels, 1)

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        emb = sinusoidal_embedding(t, self.time_dim)  # one row per image
        x1 = self.inc(x)
        x2 = self.sa1(self.down1(x1, emb))
        x3 = self.sa2(self.down2(x2, emb))
        h = self.bottom(x3)
        h = self.sa3(self.up1(h, x2, emb))
        h = self.sa4(self.up2(h, x1, emb))
        return self.out(h)


@ablate.hookimpl
def register_decoders(register) -> None:
    register(UnetWitt)
