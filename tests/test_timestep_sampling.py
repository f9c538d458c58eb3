"""Training timesteps of the gaussian degradation: uniform, logit-normal in t/T, log-normal in
sigma_t, each with the distribution its parameters say."""

from __future__ import annotations

import math

import pytest
import torch

from ablate.config import parse_run
from ablate.datasets import SCALINGS

T = 1000
DRAWS = 20_000


def timesteps(**settings) -> tuple[torch.Tensor, torch.Tensor]:
    config = parse_run({"T": T, "degradation": {"name": "gaussian", **settings}}, source="test")
    process = config.degradation.bind(config.schedule.alpha_bar(T), SCALINGS["centered"],
                                      torch.device("cpu"))
    t = process.training_timesteps(DRAWS, torch.Generator().manual_seed(0))
    return t, process.alpha_bar


@pytest.mark.parametrize("kind", ["uniform", "logit_normal", "log_normal"])
def test_timesteps_are_steps_of_the_schedule(kind):
    t, _ = timesteps(timestep_sampling=kind)
    assert t.dtype == torch.int64 and int(t.min()) >= 1 and int(t.max()) <= T


def test_logit_normal_timesteps_follow_sigmoid_of_a_normal():
    t, _ = timesteps(timestep_sampling="logit_normal", logit_mean=0.5, logit_std=0.8)
    u = t.double() / T
    logit = (u / (1 - u).clamp(min=1e-9)).log()
    assert logit.median().item() == pytest.approx(0.5, abs=0.03)  # sigmoid^-1 of the median
    assert logit.std().item() == pytest.approx(0.8, abs=0.03)


def test_log_normal_timesteps_put_ln_sigma_near_a_normal():
    t, alpha_bar = timesteps(timestep_sampling="log_normal", p_mean=-0.5, p_std=0.7)
    ab = alpha_bar.double()[t - 1]
    log_sigma = 0.5 * ((1 - ab) / ab).log()  # sigma_t = sqrt((1 - alpha_bar_t) / alpha_bar_t)
    assert log_sigma.median().item() == pytest.approx(-0.5, abs=0.03)
    inside = (log_sigma - (-0.5)).abs() < 0.7  # one standard deviation
    assert inside.double().mean().item() == pytest.approx(math.erf(1 / math.sqrt(2)), abs=0.02)
