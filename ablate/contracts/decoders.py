"""The decoder contract: images in, images of the same shape out, conditioned on t/T, trainable.

Decoders are built at the size of a real dataset's images (MNIST unless told otherwise) and run
on two images only, so even a UNet at its defaults is checked in well under a second.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, cast

import torch
import torch.nn.functional as F
from torch import nn

from ablate.contracts.common import (
    generator,
    image_shape_of,
    resolve,
    seeded_global_rng,
    violation,
)
from ablate.decoders import Decoder
from ablate.plugin_host import PluginHost

TUNING_STEPS = 3
"""Adam steps taken when the initial output does not depend on t, before comparing again: a
decoder whose output layer starts at zero (common practice) is judged on whether time reaches
it, not on its initial weights."""


def check_decoder(name: str, *, params: Mapping[str, Any] | None = None,
                  image_shape: tuple[int, int, int] | None = None, dataset: str = "mnist",
                  device: str = "cpu", host: PluginHost | None = None) -> None:
    """Check the installed decoder ``name`` on images of ``image_shape`` (default: the
    dataset's).

    ``build(C, H)`` returns a module whose ``forward(x, t)`` maps (B, C, H, W) images and times
    t/T of shape (B,) in [0, 1] to finite float32 tensors shaped like ``x``; each image is
    decoded on its own (in eval mode the rest of the batch does not matter); every trainable
    parameter receives a gradient; and the output depends on t.
    """
    decoder = cast(Decoder, resolve("decoder", name, params, host))
    channels, height, width = image_shape or image_shape_of(dataset, host)
    if height != width:
        raise violation(decoder, f"decoders are built for square images, got {height}x{width}")
    where = torch.device(device)
    with seeded_global_rng(where):
        model = decoder.build(channels, height)
        if not isinstance(model, nn.Module):
            raise violation(decoder, f"build() must return a torch.nn.Module, got "
                                     f"{type(model).__name__}")
        model = model.to(where)
        rng = generator(where)
        x = torch.randn((2, channels, height, width), generator=rng, device=where)
        _check_output(decoder, model, x)
        _check_gradients(decoder, model, x)
        _check_time_conditioning(decoder, model, x, rng)


@torch.no_grad()
def _check_output(decoder: Decoder, model: nn.Module, x: torch.Tensor) -> None:
    model.eval()
    try:
        out = model(x, torch.tensor([0.0, 1.0], device=x.device))
    except Exception as exc:  # the author needs the reason, not only a traceback
        raise violation(decoder, f"forward(x, t) on images {tuple(x.shape)} with t/T of shape "
                                 f"(2,) raised {type(exc).__name__}: {exc}") from exc
    if not (isinstance(out, torch.Tensor) and out.shape == x.shape):
        got = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        raise violation(decoder, f"forward(x, t) must return a tensor shaped like x "
                                 f"{tuple(x.shape)}, got {got}")
    if out.dtype != torch.float32 or not torch.isfinite(out).all():
        raise violation(decoder, f"forward(x, t) must return finite float32 values at t/T = 0 "
                                 f"and 1, got {out.dtype} with "
                                 f"{int((~torch.isfinite(out)).sum())} non-finite values")
    alone = model(x[:1], torch.tensor([0.0], device=x.device))
    if not torch.allclose(alone, out[:1], atol=1e-5, rtol=1e-4):
        raise violation(decoder, "each image must be decoded on its own: in eval mode an "
                                 "image's output alone differs from its output within a batch")


def _check_gradients(decoder: Decoder, model: nn.Module, x: torch.Tensor) -> None:
    trainable = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    if not trainable:
        raise violation(decoder, "the module has no trainable parameters")
    model.train()
    model.zero_grad()
    model(x, torch.tensor([0.3, 0.7], device=x.device)).square().mean().backward()
    missing = [n for n, p in trainable if p.grad is None]
    if missing:
        raise violation(decoder, f"parameters {missing[:5]} receive no gradient: forward does "
                                 f"not use them")
    broken = [n for n, p in trainable if not torch.isfinite(p.grad).all()]
    if broken:
        raise violation(decoder, f"parameters {broken[:5]} receive non-finite gradients")
    model.zero_grad()


def _check_time_conditioning(decoder: Decoder, model: nn.Module, x: torch.Tensor,
                             rng: torch.Generator) -> None:
    early, late = (torch.full((2,), t, device=x.device) for t in (0.2, 0.8))
    if _time_gap(model, x, early, late) > 1e-6:
        return
    target = torch.randn(x.shape, generator=rng, device=x.device)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    model.train()
    for _ in range(TUNING_STEPS):  # reward returning x at t/T = 0.2 and the target at 0.8
        optimizer.zero_grad()
        (F.mse_loss(model(x, early), x) + F.mse_loss(model(x, late), target)).backward()
        optimizer.step()
    if _time_gap(model, x, early, late) <= 1e-6:
        raise violation(decoder, f"the output does not depend on t: forward(x, t) gives the same "
                                 f"images at t/T = 0.2 and 0.8, even after {TUNING_STEPS} "
                                 f"optimisation steps that reward a difference")


@torch.no_grad()
def _time_gap(model: nn.Module, x: torch.Tensor, early: torch.Tensor,
              late: torch.Tensor) -> float:
    """Largest change of the eval-mode output between two times."""
    model.eval()
    return float((model(x, early) - model(x, late)).abs().max())
