"""Choosing the device a run uses: the one place that decides where tensors live."""

from __future__ import annotations

import torch

from ablate.errors import ConfigError


def resolve_device(name: str) -> torch.device:
    """``auto`` picks CUDA, then Apple's MPS, then the CPU; other names are checked."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ConfigError(f"unknown device {name!r}", key="run.device",
                          hint="use auto, cpu, cuda, cuda:N or mps") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError("CUDA is not available on this machine", key="run.device",
                          hint="use device = 'auto' or 'cpu'")
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise ConfigError("Apple MPS is not available on this machine", key="run.device",
                          hint="use device = 'auto' or 'cpu'")
    if device.type not in ("cpu", "cuda", "mps"):
        raise ConfigError(f"unsupported device {name!r}", key="run.device",
                          hint="use auto, cpu, cuda, cuda:N or mps")
    return device
