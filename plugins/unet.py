"""The ``unet`` decoder: a small modern residual UNet (GroupNorm, SiLU, time MLP, attention).

The layout follows Ho et al. (2020) and Nichol & Dhariwal (2021): residual blocks at each
resolution level, the time embedding added inside every block, self-attention at chosen
resolutions and in the middle, skip connections from every down block to an up block.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

import ablate
from ablate.components import param
from ablate.decoders import Decoder
from ablate.errors import ConfigError

TIME_SCALE = 1000.0
"""t/T is multiplied by this before the sinusoids, so their frequencies span the same range as
DDPM's embedding of integer t at T = 1000, whatever T is."""


def sinusoidal_embedding(s: torch.Tensor, dim: int) -> torch.Tensor:
    """Transformer sinusoids of 1000 s (s = t/T, shape (B,)) -> (B, dim); dim must be even.

    Frequencies 10000^(-k / (dim/2)) for k = 0..dim/2-1 (Vaswani et al. 2017, sec. 3.5).
    """
    half = dim // 2
    k = torch.arange(half, device=s.device, dtype=torch.float32)
    frequencies = torch.exp(-math.log(10000.0) * k / half)
    phases = (TIME_SCALE * s.float())[:, None] * frequencies[None, :]
    return torch.cat([torch.sin(phases), torch.cos(phases)], dim=1)


@dataclass(frozen=True)
class Unet(Decoder):
    """Residual UNet: GroupNorm-SiLU blocks, time MLP into every block, self-attention."""

    name = "unet"
    base_width: int = param(16, "channels at full resolution (even)", ge=2)
    channel_mult: tuple[int, ...] = param(
        (1, 2, 4), "width multiplier per resolution level; each level after the first halves "
        "the image (28 -> 14 -> 7)")
    blocks_per_level: int = param(1, "residual blocks per level on the way down", ge=1)
    attention_levels: tuple[int, ...] = param(
        (2,), "levels (0 = full size, 1 = half, ...) whose blocks are followed by "
        "self-attention; the middle always has one")
    heads: int = param(4, "attention heads (must divide the width where attention runs)", ge=1)
    groups: int = param(8, "GroupNorm groups (must divide every level's width)", ge=1)
    dropout: float = param(0.0, "dropout inside residual blocks", ge=0, lt=1)

    def validate(self) -> None:
        if self.base_width % 2:
            raise ValueError(f"base_width must be even (sin and cos halves of the time "
                             f"embedding), got {self.base_width}")
        if not self.channel_mult or any(m < 1 for m in self.channel_mult):
            raise ValueError(f"channel_mult must be a non-empty list of positive integers, "
                             f"got {list(self.channel_mult)}")
        levels = range(len(self.channel_mult))
        if any(level not in levels for level in self.attention_levels):
            raise ValueError(f"attention_levels {list(self.attention_levels)} must name levels "
                             f"of channel_mult (0 to {len(self.channel_mult) - 1})")
        attended = [self.widths[i] for i in {*self.attention_levels, len(levels) - 1}]
        if any(width % self.heads for width in attended):
            raise ValueError(f"heads ({self.heads}) must divide the width of every level with "
                             f"attention {sorted(attended)}")
        for width in self.widths:
            if width % self.groups:
                raise ValueError(f"groups ({self.groups}) must divide every level's width "
                                 f"{list(self.widths)}")

    @property
    def widths(self) -> tuple[int, ...]:
        """Channels of each resolution level, full resolution first."""
        return tuple(self.base_width * m for m in self.channel_mult)

    def build(self, channels: int, image_size: int) -> nn.Module:
        levels = len(self.channel_mult)
        if image_size % 2 ** (levels - 1):
            raise ConfigError(
                f"unet with {levels} levels halves the image {levels - 1} times, which "
                f"{image_size}x{image_size} images do not allow", key="run.decoder.channel_mult",
                hint=f"use at most {_max_levels(image_size)} levels for {image_size}x{image_size}")
        return UnetModel(self, channels)


def _max_levels(image_size: int) -> int:
    levels = 1
    while image_size % 2**levels == 0:
        levels += 1
    return levels


class ResidualBlock(nn.Module):
    """GN-SiLU-conv, + time projection, GN-SiLU-dropout-conv, + skip (1x1 when widths differ).

    ``emb`` is the activated time embedding, one row per image.
    """

    def __init__(self, c_in: int, c_out: int, time_dim: int, groups: int,
                 dropout: float) -> None:
        super().__init__()
        self.norm1 = nn.GroupNorm(groups, c_in)
        self.conv1 = nn.Conv2d(c_in, c_out, 3, padding=1)
        self.time = nn.Linear(time_dim, c_out)
        self.norm2 = nn.GroupNorm(groups, c_out)
        self.dropout = nn.Dropout(dropout)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, padding=1)
        self.skip = nn.Conv2d(c_in, c_out, 1) if c_in != c_out else nn.Identity()

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        h = h + self.time(emb)[:, :, None, None]
        h = self.conv2(self.dropout(F.silu(self.norm2(h))))
        return h + self.skip(x)


class SelfAttention(nn.Module):
    """Multi-head self-attention over the pixels of a feature map, with a residual."""

    def __init__(self, width: int, heads: int, groups: int) -> None:
        super().__init__()
        self.heads = heads
        self.norm = nn.GroupNorm(groups, width)
        self.qkv = nn.Conv2d(width, 3 * width, 1)
        self.out = nn.Conv2d(width, width, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        q, k, v = self.qkv(self.norm(x)).reshape(b, 3, self.heads, c // self.heads, h * w) \
            .transpose(-1, -2).unbind(1)
        attended = F.scaled_dot_product_attention(q, k, v)  # softmax(q k^T / sqrt(d)) v
        return x + self.out(attended.transpose(-1, -2).reshape(b, c, h, w))


class Level(nn.Module):
    """A residual block, optionally followed by self-attention."""

    def __init__(self, block: ResidualBlock, attention: SelfAttention | None) -> None:
        super().__init__()
        self.block = block
        self.attention = attention or nn.Identity()

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        return self.attention(self.block(x, emb))


class UnetModel(nn.Module):
    """The network: input conv, down levels, middle, up levels fed by the skips, output conv."""

    def __init__(self, spec: Unet, channels: int) -> None:
        super().__init__()
        self.embedding_dim = spec.base_width
        time_dim = 4 * spec.base_width
        # Ends in SiLU: every block's time projection starts from the activated embedding.
        self.time_mlp = nn.Sequential(nn.Linear(spec.base_width, time_dim), nn.SiLU(),
                                      nn.Linear(time_dim, time_dim), nn.SiLU())

        def level(c_in: int, c_out: int, index: int) -> Level:
            attention = (SelfAttention(c_out, spec.heads, spec.groups)
                         if index in spec.attention_levels else None)
            return Level(ResidualBlock(c_in, c_out, time_dim, spec.groups, spec.dropout),
                         attention)

        widths = spec.widths
        self.inp = nn.Conv2d(channels, widths[0], 3, padding=1)
        # Down: blocks_per_level blocks per level, a strided conv between levels; every output
        # is kept as a skip for the up path.
        self.down = nn.ModuleList()
        self.downsample = nn.ModuleList()
        skip_widths = [widths[0]]
        c = widths[0]
        for i, width in enumerate(widths):
            for _ in range(spec.blocks_per_level):
                self.down.append(level(c, width, i))
                c = width
                skip_widths.append(c)
            if i < len(widths) - 1:
                self.downsample.append(nn.Conv2d(c, c, 3, stride=2, padding=1))
                skip_widths.append(c)
        self.middle_block1 = ResidualBlock(c, c, time_dim, spec.groups, spec.dropout)
        self.middle_attention = SelfAttention(c, spec.heads, spec.groups)
        self.middle_block2 = ResidualBlock(c, c, time_dim, spec.groups, spec.dropout)
        # Up: one more block per level than on the way down, each consuming one skip.
        self.up = nn.ModuleList()
        self.upsample = nn.ModuleList()
        for i in reversed(range(len(widths))):
            for _ in range(spec.blocks_per_level + 1):
                self.up.append(level(c + skip_widths.pop(), widths[i], i))
                c = widths[i]
            if i > 0:
                self.upsample.append(nn.Conv2d(c, c, 3, padding=1))
        self.out = nn.Sequential(nn.GroupNorm(spec.groups, c), nn.SiLU(),
                                 nn.Conv2d(c, channels, 3, padding=1))
        self.blocks_per_level = spec.blocks_per_level

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        emb = self.time_mlp(sinusoidal_embedding(t, self.embedding_dim))
        h = self.inp(x)
        skips = [h]
        down = iter(self.down)
        for i in range(len(self.downsample) + 1):
            for _ in range(self.blocks_per_level):
                h = next(down)(h, emb)
                skips.append(h)
            if i < len(self.downsample):
                h = self.downsample[i](h)
                skips.append(h)
        h = self.middle_block2(self.middle_attention(self.middle_block1(h, emb)), emb)
        up = iter(self.up)
        for i in range(len(self.upsample) + 1):
            for _ in range(self.blocks_per_level + 1):
                h = next(up)(torch.cat([h, skips.pop()], dim=1), emb)
            if i < len(self.upsample):
                h = self.upsample[i](F.interpolate(h, scale_factor=2.0, mode="nearest"))
        return self.out(h)


@ablate.hookimpl
def register_decoders(register) -> None:
    register(Unet)
