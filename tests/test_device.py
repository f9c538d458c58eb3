"""Device choice: auto falls back to what the machine has; impossible choices are clear errors."""

from __future__ import annotations

import pytest
import torch

from ablate.device import resolve_device
from ablate.errors import ConfigError


def test_auto_picks_cuda_then_mps_then_cpu():
    expected = ("cuda" if torch.cuda.is_available()
                else "mps" if torch.backends.mps.is_available() else "cpu")
    assert resolve_device("auto").type == expected


def test_cpu_is_always_available():
    assert resolve_device("cpu") == torch.device("cpu")


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_missing_cuda_is_a_config_error():
    with pytest.raises(ConfigError, match="CUDA is not available"):
        resolve_device("cuda")


def test_unknown_device_name_is_a_config_error():
    with pytest.raises(ConfigError, match="unknown device 'gpu0'"):
        resolve_device("gpu0")
