"""The flow_matching degradation: the linear path and its velocity in closed form, the loss's
target, the ODE samplers' order on a known field, Euler against diffusers'
FlowMatchEulerDiscreteScheduler, and training end to end."""

from __future__ import annotations

import math

import diffusers
import pytest
import torch
from ablate_builtins.flow_matching import integrate, linear_path, ode_times

from ablate.config import parse_run
from ablate.datasets import SCALINGS
from ablate.sampling import load_trained
from ablate.training import Trainer
from tests.conftest import TINY_RUN

SHAPE = (2, 1, 8, 8)


def bind(**settings):
    config = parse_run({"degradation": {"name": "flow_matching", **settings}}, source="test")
    return config.degradation.bind(config.schedule.alpha_bar(config.T), SCALINGS["symmetric"],
                                   torch.device("cpu"))


def test_linear_path_runs_from_the_data_to_the_noise_with_velocity_eps_minus_x0():
    generator = torch.Generator().manual_seed(0)
    x0, eps = torch.randn(SHAPE, generator=generator), torch.randn(SHAPE, generator=generator)
    assert torch.equal(linear_path(x0, eps, torch.tensor(0.0))[0], x0)
    assert torch.equal(linear_path(x0, eps, torch.tensor(1.0))[0], eps)
    x_t, v = linear_path(x0, eps, torch.tensor(0.3))
    torch.testing.assert_close(x_t, 0.7 * x0 + 0.3 * eps)
    h = 1e-3  # v = dx_t / dt, by a central difference
    ahead, behind = linear_path(x0, eps, torch.tensor(0.3 + h))[0], linear_path(
        x0, eps, torch.tensor(0.3 - h))[0]
    torch.testing.assert_close(v, (ahead - behind) / (2 * h), atol=1e-3, rtol=0)
    torch.testing.assert_close(v, eps - x0)


class Recorder(torch.nn.Module):
    """Predicts 0.5 x_t and keeps what it was given."""

    def forward(self, x, t):
        self.seen = (x, t)
        return 0.5 * x


@pytest.mark.parametrize("timestep_sampling", ["uniform", "logit_normal"])
def test_loss_regresses_the_velocity_at_the_drawn_time(timestep_sampling):
    process, model = bind(timestep_sampling=timestep_sampling), Recorder()
    x0 = torch.rand(SHAPE, generator=torch.Generator().manual_seed(1)) * 2 - 1
    loss = process.loss(model, x0, torch.Generator().manual_seed(2))
    x_t, t = model.seen
    # The same generator gives the same t, then eps: rebuild the target from them.
    generator = torch.Generator().manual_seed(2)
    again = process.training_times(SHAPE[0], generator)
    eps = torch.randn(SHAPE, generator=generator)
    torch.testing.assert_close(t, again)
    expected_x_t, v = linear_path(x0, eps, again.view(-1, 1, 1, 1))
    torch.testing.assert_close(x_t, expected_x_t)
    torch.testing.assert_close(loss, (0.5 * x_t - v).square().mean())


def test_logit_normal_times_are_sigmoid_of_a_normal():
    t = bind(timestep_sampling="logit_normal", logit_mean=0.4, logit_std=0.9).training_times(
        20_000, torch.Generator().manual_seed(0))
    logit = (t / (1 - t)).log()
    assert float(logit.mean()) == pytest.approx(0.4, abs=0.03)
    assert float(logit.std()) == pytest.approx(0.9, abs=0.03)


def errors(sampler: str, steps: int) -> float:
    """dx/dt = x t from x(1) = 1: x(0) = exp(-1/2); the largest error at ``steps`` steps."""
    x = torch.ones(1, dtype=torch.float64)
    return abs(float(integrate(lambda x, t: x * t, x, ode_times(steps), sampler))
               - math.exp(-0.5))


@pytest.mark.parametrize(("sampler", "order"), [("euler", 1), ("midpoint", 2), ("heun", 2)])
def test_ode_samplers_converge_to_the_exact_solution_at_their_order(sampler, order):
    coarse, fine = errors(sampler, 20), errors(sampler, 40)
    assert fine < 0.02
    assert coarse / fine == pytest.approx(2**order, rel=0.15)


class Smooth(torch.nn.Module):
    def forward(self, x, t):
        return torch.tanh(x) * torch.cos(2 * t).view(-1, 1, 1, 1) - x


def test_euler_equals_diffusers_flow_match_euler_on_identical_outputs():
    ours = bind(sampler="euler").sample(Smooth(), SHAPE, torch.Generator().manual_seed(4),
                                        steps=7)
    scheduler = diffusers.FlowMatchEulerDiscreteScheduler(num_train_timesteps=1000)
    scheduler.set_timesteps(sigmas=ode_times(7)[:-1])  # t_i = 1 - i / N; 0 is appended
    x = torch.randn(SHAPE, generator=torch.Generator().manual_seed(4))
    for timestep in scheduler.timesteps:
        time = (timestep / 1000).expand(SHAPE[0])  # diffusers' timestep is 1000 t
        x = scheduler.step(Smooth()(x, time), timestep, x).prev_sample
    torch.testing.assert_close(ours, x.clamp(-1, 1), atol=1e-5, rtol=0)


def test_point_data_is_recovered_exactly_from_its_exact_velocity():
    point = torch.full(SHAPE, 0.25)

    class Exact(torch.nn.Module):
        def forward(self, x_t, t):  # x_t = (1 - t) c + t eps, so v = eps - c = (x_t - c) / t
            return (x_t - point) / t.view(-1, 1, 1, 1)

    # Not heun: its last evaluation is at t = 0, where a point mass's velocity is undefined.
    for sampler in ("euler", "midpoint"):
        images = bind().sample(Exact(), SHAPE, torch.Generator().manual_seed(0),
                               sampler=sampler, steps=3)
        torch.testing.assert_close(images, point, atol=1e-5, rtol=0)


def test_flow_matching_trains_checkpoints_and_samples_end_to_end(tmp_path):
    config = parse_run({**TINY_RUN, "degradation": {"name": "flow_matching",
                                                     "timestep_sampling": "logit_normal"}},
                       source="test")
    result = Trainer(config, tmp_path / "run").run()
    assert all(math.isfinite(r["loss"]) for r in result.metrics)
    parts = load_trained(result.checkpoint)
    images = parts.process.sample(parts.averager.sampling_model(), (2, *parts.image_shape),
                                  torch.Generator().manual_seed(0), sampler="heun", steps=2)
    assert images.shape == (2, 1, 28, 28) and torch.isfinite(images).all()
