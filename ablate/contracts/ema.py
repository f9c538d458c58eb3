"""The EMA-strategy contract: an average of constant weights is those weights, and an averager's
state survives a real checkpoint file, so a resumed run continues exactly where it stopped."""

from __future__ import annotations

import copy
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any, cast

import torch
from torch import nn

from ablate.checkpoint import load_checkpoint, save_checkpoint
from ablate.contracts.common import generator, resolve, seeded_global_rng, violation
from ablate.ema import Averager, EmaStrategy
from ablate.plugin_host import PluginHost

STEPS = 30
"""Updates per check: past the warm-ups of the built-in strategies at small settings, and few
enough to stay instant."""


def check_ema(name: str, *, params: Mapping[str, Any] | None = None, device: str = "cpu",
              host: PluginHost | None = None) -> None:
    """Check the installed EMA strategy ``name`` on a tiny network with parameters and buffers.

    Updated with constant weights, the sampling model holds those weights; updates never change
    the live model; and the state, written to a checkpoint file and read into a fresh averager,
    gives the same sampling model and the same result after one more update.
    """
    strategy = cast(EmaStrategy, resolve("ema", name, params, host))
    where = torch.device(device)
    _check_constant_stays_constant(strategy, where)
    _check_state_round_trip(strategy, where)


def _network(device: torch.device) -> nn.Module:
    with seeded_global_rng(torch.device("cpu")):
        model = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4), nn.Linear(4, 2))
    model[1].running_mean.fill_(0.5)  # buffers that differ from their initial values
    return model.to(device)


def _weights(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def _differences(model: nn.Module, weights: dict[str, torch.Tensor]) -> list[str]:
    state = model.state_dict()
    return [k for k, v in weights.items()
            if k not in state or not torch.allclose(state[k].float(), v.float(), rtol=1e-5,
                                                   atol=1e-6)]


def _build(strategy: EmaStrategy, model: nn.Module) -> Averager:
    averager = strategy.build(model)
    if not isinstance(averager, Averager):
        raise violation(strategy, f"build() must return an ablate.ema.Averager, got "
                                  f"{type(averager).__name__}")
    return averager


def _check_constant_stays_constant(strategy: EmaStrategy, device: torch.device) -> None:
    model = _network(device)
    weights = _weights(model)
    averager = _build(strategy, model)
    for step in range(1, STEPS + 1):
        averager.update(model, step)
    changed = _differences(model, weights)
    if changed:
        raise violation(strategy, f"update() changed the live model's {changed[:3]}")
    sampling = averager.sampling_model()
    if not isinstance(sampling, nn.Module):
        raise violation(strategy, f"sampling_model() must return a torch.nn.Module, got "
                                  f"{type(sampling).__name__}")
    drifted = _differences(sampling, weights)
    if drifted:
        raise violation(strategy, f"after {STEPS} updates with constant weights the sampling "
                                  f"model's {drifted[:3]} differ from those weights: an average "
                                  f"of a constant must be that constant")


def _check_state_round_trip(strategy: EmaStrategy, device: torch.device) -> None:
    model = _network(device)
    averager = _build(strategy, model)
    rng = generator(device)
    for step in range(1, STEPS + 1):
        _perturb(model, rng)
        averager.update(model, step)
    state = averager.state_dict()
    if not (isinstance(state, dict) and all(isinstance(v, torch.Tensor) for v in state.values())):
        raise violation(strategy, "state_dict() must return a dict of tensors")
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "ema.safetensors"
        save_checkpoint(path, state, {})
        loaded, _ = load_checkpoint(path)
    resumed_model = copy.deepcopy(model)
    resumed = _build(strategy, resumed_model)
    resumed.load_state_dict({k: v.to(device) for k, v in loaded.items()})
    lost = _differences(resumed.sampling_model(), _weights(averager.sampling_model()))
    if lost:
        raise violation(strategy, f"state_dict() does not round-trip through a checkpoint file: "
                                  f"after loading it, the sampling model's {lost[:3]} differ")
    _perturb(model, rng)
    resumed_model.load_state_dict(model.state_dict())
    averager.update(model, STEPS + 1)
    resumed.update(resumed_model, STEPS + 1)
    diverged = _differences(resumed.sampling_model(), _weights(averager.sampling_model()))
    if diverged:
        raise violation(strategy, f"a restored averager does not continue like the original: "
                                  f"after one more update its sampling model's {diverged[:3]} "
                                  f"differ")


@torch.no_grad()
def _perturb(model: nn.Module, rng: torch.Generator) -> None:
    """Move every parameter and buffer a little, as a training step would."""
    for tensor in [*model.parameters(), *model.buffers()]:
        if tensor.is_floating_point():
            tensor.add_(0.1 * torch.randn(tensor.shape, generator=rng, device=tensor.device))
