"""The degradation contract for formulations with their own noise levels (follows_schedule =
False, as edm and flow_matching): judged by the network's time input and a scale-free distance,
it still catches a path that is not the identity at its start and one that does not degrade."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
import torch

from ablate.contracts import ContractError
from ablate.degradations import Degradation, DegradationProcess
from ablate.testing import check_degradation
from tests.test_contracts import SHAPE, host_with


class Linear(DegradationProcess):
    """x_t = (1 - t) x_0 + t eps for t ~ U(0, 1), fed scaled by ``gain`` (as EDM's c_in)."""

    samplers = ("one-step",)

    def __init__(self, T, data_range, device, *, gain=3.0, floor=0.0, ceiling=1.0) -> None:
        self.T, self.data_range, self.device = T, data_range, device
        self.gain, self.floor, self.ceiling = gain, floor, ceiling

    def loss(self, model, x0, generator):
        t = torch.rand(len(x0), generator=generator, device=x0.device)
        level = (self.floor + (self.ceiling - self.floor) * t).view(-1, 1, 1, 1)
        eps = torch.randn(x0.shape, generator=generator, device=x0.device)
        x_t = self.gain * ((1 - level) * x0 + level * eps)
        return (model(x_t, t) - x0).square().mean()

    def sample(self, model, shape, generator, *, sampler=None, steps=None):
        x = torch.randn(shape, generator=generator, device=self.device)
        return x.clamp(*self.data_range)


def own_levels(name: str, **options) -> type[Degradation]:
    @dataclass(frozen=True)
    class Made(Degradation):
        """A test degradation with its own noise levels."""

        follows_schedule = False

        def bind(self, alpha_bar, data_range, device):
            return Linear(len(alpha_bar), data_range, device, **options)

    Made.name = name
    return Made


def test_a_scaled_linear_path_passes_though_the_schedule_plays_no_part():
    check_degradation("linear", image_shape=SHAPE, host=host_with(own_levels("linear")))


def test_a_path_that_starts_half_degraded_is_rejected():
    host = host_with(own_levels("half", floor=0.5))
    with pytest.raises(ContractError, match="'half': not the identity at its lowest noise level"):
        check_degradation("half", image_shape=SHAPE, host=host)


def test_a_path_whose_severity_does_not_move_with_time_is_rejected():
    host = host_with(own_levels("still", floor=0.0, ceiling=0.0))
    with pytest.raises(ContractError, match="severity does not grow with the network's time"):
        check_degradation("still", image_shape=SHAPE, host=host)
