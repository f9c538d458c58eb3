"""Numerical defects found against reference implementations: the ELBO where float32 alpha_bar
underflows or T = 1, and the warm-up EMA's first update against diffusers' EMAModel."""

from __future__ import annotations

import math

import pytest
import torch
from ablate_builtins.ema import WarmupEma

from ablate.assembly import assemble
from ablate.evaluation import evaluate
from tests.conftest import tiny_config


@pytest.mark.parametrize("overrides", [
    {"T": 1000, "schedule": {"name": "linear", "beta_max": 0.5}},  # float32 alpha_bar -> 0
    {"T": 1, "degradation": {"name": "gaussian", "variance": "beta_tilde"}},  # beta_tilde_1 = 0
    {"T": 1, "degradation": {"name": "gaussian", "variance": "beta"}},
], ids=["alpha_bar_underflows", "T1_beta_tilde", "T1_beta"])
def test_elbo_is_finite_where_the_schedule_is_extreme(overrides):
    config = tiny_config(**overrides)
    if config.T == 1000:
        assert float(config.schedule.alpha_bar(config.T).float()[-1]) == 0.0  # the defect's cause
    parts = assemble(config, (1, 28, 28), torch.device("cpu"))
    value = evaluate(parts, ["elbo"], 6, seed=1)["elbo"]
    assert math.isfinite(value.value) and value.value > 0
    assert math.isfinite(value.low) and math.isfinite(value.high)


diffusers = pytest.importorskip("diffusers.training_utils", reason="diffusers not installed")


@pytest.mark.parametrize("min_decay", [0.0, 0.5])
def test_warmup_ema_follows_diffusers_ema_model_step_by_step(min_decay: float):
    torch.manual_seed(0)
    model = torch.nn.Linear(3, 2)
    strategy = WarmupEma(inv_gamma=1.0, power=0.75, min_decay=min_decay, max_decay=0.999)
    ours = strategy.build(model)
    theirs = diffusers.EMAModel(model.parameters(), decay=0.999, min_decay=min_decay,
                                use_ema_warmup=True, inv_gamma=1.0, power=0.75)
    for step in range(1, 8):
        with torch.no_grad():
            for p in model.parameters():
                p.add_(torch.randn_like(p))
        assert strategy.decay_at(step) == pytest.approx(theirs.get_decay(step), abs=1e-12)
        ours.update(model, step)
        theirs.step(model.parameters())
        for mine, reference in zip(ours.sampling_model().parameters(), theirs.shadow_params,
                                   strict=True):
            torch.testing.assert_close(mine, reference)


def test_warmup_ema_with_min_decay_copies_the_weights_on_its_first_update():
    model = torch.nn.Linear(3, 2)
    averager = WarmupEma(min_decay=0.9).build(model)
    with torch.no_grad():
        model.weight.fill_(5.0)
    averager.update(model, 1)
    assert torch.equal(averager.sampling_model().weight, model.weight)
