"""The ``diffusers-unet`` decoder: any diffusers ``UNet2DModel``, built from a config table.

The network is diffusers' own class, so a model people already use can be ablated as it is, and
a trained one can be written back as a diffusers pipeline (``ablate export``). ablate hands a
decoder t / T with t in 1..T; diffusers' UNets take the scheduler's timestep k = t - 1 in
0..N-1, so the wrapper feeds ``t / T * N - 1`` with N = ``num_train_timesteps``: when N is the
run's T (the default 1000 is the default T) the wrapped UNet sees exactly the timesteps a
diffusers scheduler gives it, which ``ablate export`` requires.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

import ablate
from ablate.components import param
from ablate.decoders import Decoder


@dataclass(frozen=True)
class DiffusersUNet(Decoder):
    """A diffusers UNet2DModel from its config (block_out_channels, block types, ...)."""

    name = "diffusers-unet"
    block_out_channels: tuple[int, ...] = param((32, 64), "channels of each resolution level")
    layers_per_block: int = param(1, "ResNet layers per down block (up blocks get one more)",
                                  ge=1)
    down_block_types: tuple[str, ...] = param(
        ("DownBlock2D", "AttnDownBlock2D"), "diffusers down-block class of each level")
    up_block_types: tuple[str, ...] = param(
        ("AttnUpBlock2D", "UpBlock2D"), "diffusers up-block class of each level")
    norm_num_groups: int = param(8, "GroupNorm groups (must divide every channel count)", ge=1)
    attention_head_dim: int = param(8, "channels per attention head", ge=1)
    dropout: float = param(0.0, "dropout in the ResNet blocks", ge=0, lt=1)
    num_train_timesteps: int = param(
        1000, "N: the UNet sees timestep t/T * N - 1; equal to T it matches diffusers' "
              "schedulers (needed by ablate export)", ge=1)

    def validate(self) -> None:
        levels = len(self.block_out_channels)
        if not (len(self.down_block_types) == len(self.up_block_types) == levels):
            raise ValueError(f"block_out_channels, down_block_types and up_block_types need "
                             f"one entry per level; got {levels}, {len(self.down_block_types)} "
                             f"and {len(self.up_block_types)}")
        if any(c % self.norm_num_groups for c in self.block_out_channels):
            raise ValueError(f"norm_num_groups = {self.norm_num_groups} does not divide every "
                             f"channel count of {list(self.block_out_channels)}")
        from diffusers.models.unets import unet_2d_blocks

        for kind in (*self.down_block_types, *self.up_block_types):
            if not hasattr(unet_2d_blocks, kind):
                raise ValueError(f"diffusers has no block type {kind!r}")

    def unet_config(self, channels: int, image_size: int) -> dict[str, Any]:
        """The keyword arguments of ``diffusers.UNet2DModel`` (also its saved config)."""
        return {"sample_size": image_size, "in_channels": channels, "out_channels": channels,
                "block_out_channels": list(self.block_out_channels),
                "layers_per_block": self.layers_per_block,
                "down_block_types": list(self.down_block_types),
                "up_block_types": list(self.up_block_types),
                "norm_num_groups": self.norm_num_groups,
                "attention_head_dim": self.attention_head_dim, "dropout": self.dropout}

    def build(self, channels: int, image_size: int) -> nn.Module:
        from diffusers import UNet2DModel

        return DiffusersDecoder(UNet2DModel(**self.unet_config(channels, image_size)),
                                self.num_train_timesteps)


class DiffusersDecoder(nn.Module):
    """ablate's decoder interface around a diffusers UNet: forward(x, t/T) -> output."""

    def __init__(self, unet: nn.Module, num_train_timesteps: int) -> None:
        super().__init__()
        self.unet = unet
        self.num_train_timesteps = num_train_timesteps

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        timestep = t * self.num_train_timesteps - 1  # k = t - 1 when N = T
        return self.unet(x, timestep).sample


@ablate.hookimpl
def register_decoders(register):
    register(DiffusersUNet)
