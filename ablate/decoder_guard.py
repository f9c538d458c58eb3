"""A check on every forward pass of a decoder's network: its output is shaped like its input.

Kept apart from ablate.plugin_faults (which turns the error into a line naming the plugin) so
that ablate.assembly can install it without importing the plugin host.
"""

from __future__ import annotations

import torch
from torch import nn

from ablate.components import Component


class DecoderOutputError(RuntimeError):
    """A decoder returned a tensor that is not shaped like its input."""


def guard_decoder(model: nn.Module, decoder: Component) -> None:
    """Check every forward pass of the network returns a tensor shaped like its input, so a
    wrong shape is the decoder's error rather than a broadcasting error in a loss later."""

    def check(module: nn.Module, args: tuple, output: object) -> None:
        if args and isinstance(args[0], torch.Tensor) and isinstance(output, torch.Tensor) \
                and output.shape != args[0].shape:
            raise DecoderOutputError(
                f"decoder {decoder.name!r} returned a tensor of shape {tuple(output.shape)} "
                f"for input of shape {tuple(args[0].shape)}; it must return the input's shape")

    model.register_forward_hook(check)
