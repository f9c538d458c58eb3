"""Turning a resolved configuration into live objects on one device."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ablate.datasets import SCALINGS
from ablate.decoder_guard import guard_decoder
from ablate.degradations import DegradationProcess
from ablate.ema import Averager
from ablate.run_config import RunConfig


@dataclass
class Assembly:
    """The model, its degradation process and its averager, all on ``device``."""

    config: RunConfig
    device: torch.device
    image_shape: tuple[int, int, int]
    model: nn.Module
    process: DegradationProcess
    averager: Averager

    @property
    def parameter_count(self) -> int:
        return sum(p.numel() for p in self.model.parameters())


def assemble(config: RunConfig, image_shape: tuple[int, int, int],
             device: torch.device) -> Assembly:
    """Build every component; the decoder's initial weights depend on the seed alone."""
    channels, height, width = image_shape
    if height != width:
        raise ValueError(f"decoders expect square images, got {height}x{width}")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed)
        model = config.decoder.build(channels, height)
    model = model.to(device)
    guard_decoder(model, config.decoder)  # a wrong output shape is the decoder's error
    process = config.degradation.bind(config.schedule.alpha_bar(config.T),
                                      SCALINGS[config.scaling], device)
    averager = config.ema.build(model)
    return Assembly(config, device, image_shape, model, process, averager)
