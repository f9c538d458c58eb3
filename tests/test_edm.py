"""The edm degradation: Table 1 of Karras et al. (2022) in closed form, the rho-spaced time steps
and the Euler step against diffusers' EDMEulerScheduler, VP-preconditioned Heun against its
HeunDiscreteScheduler, Heun and Algorithm 2 on a Gaussian whose ODE solution is known, and
training end to end."""

from __future__ import annotations

import math

import diffusers
import pytest
import torch
from ablate_builtins.edm import (
    VE_SIGMA_MAX,
    VE_SIGMA_MIN,
    VP_EPS_S,
    loss_weight,
    preconditioning,
    sigma_steps,
    vp_sigma,
    vp_time,
)

from ablate.config import parse_run
from ablate.datasets import SCALINGS
from ablate.sampling import load_trained
from ablate.training import Trainer
from tests.conftest import TINY_RUN

SIGMAS = torch.tensor([0.002, 0.05, 0.5, 1.0, 3.0, 80.0], dtype=torch.float64)
SIGMA_DATA = 0.5


def bind(**settings):
    config = parse_run({"degradation": {"name": "edm", **settings}}, source="test")
    return config.degradation.bind(config.schedule.alpha_bar(config.T), SCALINGS["symmetric"],
                                   torch.device("cpu"))


def test_edm_preconditioning_is_table_1s():
    c_skip, c_out, c_in, c_noise = preconditioning("edm", SIGMAS, SIGMA_DATA)
    s2, d2 = SIGMAS**2, SIGMA_DATA**2
    torch.testing.assert_close(c_skip, d2 / (s2 + d2))
    torch.testing.assert_close(c_out, SIGMAS * SIGMA_DATA / (s2 + d2).sqrt())
    torch.testing.assert_close(c_in, 1 / (s2 + d2).sqrt())
    torch.testing.assert_close(c_noise, SIGMAS.log() / 4)
    # At sigma = 1, sigma_data = 0.5: c_skip = 0.25 / 1.25, c_out = 0.5 / sqrt(1.25), c_noise = 0.
    one = preconditioning("edm", torch.tensor([1.0]), SIGMA_DATA)
    assert [float(c) for c in one] == pytest.approx([0.2, 0.5 / 1.25**0.5, 1 / 1.25**0.5, 0])


def test_edm_preconditioning_agrees_with_diffusers():
    scheduler = diffusers.EDMEulerScheduler(sigma_data=SIGMA_DATA)
    c_skip, c_out, c_in, c_noise = preconditioning("edm", SIGMAS.float(), SIGMA_DATA)
    ones, zeros = torch.ones_like(SIGMAS).float(), torch.zeros_like(SIGMAS).float()
    torch.testing.assert_close(scheduler.precondition_outputs(ones, zeros, SIGMAS.float()), c_skip)
    torch.testing.assert_close(scheduler.precondition_outputs(zeros, ones, SIGMAS.float()), c_out)
    torch.testing.assert_close(scheduler.precondition_inputs(ones, SIGMAS.float()), c_in)
    torch.testing.assert_close(scheduler.precondition_noise(SIGMAS.float()), c_noise)


def test_vp_and_ve_preconditioning_are_table_1s():
    c_skip, c_out, c_in, c_noise = preconditioning("vp", SIGMAS, SIGMA_DATA)
    assert torch.equal(c_skip, torch.ones_like(SIGMAS))
    torch.testing.assert_close(c_out, -SIGMAS)
    torch.testing.assert_close(c_in, 1 / (SIGMAS**2 + 1).sqrt())
    torch.testing.assert_close(c_noise, 999 * vp_time(SIGMAS))  # (M - 1) sigma^-1(sigma)
    c_skip, c_out, c_in, c_noise = preconditioning("ve", SIGMAS, SIGMA_DATA)
    assert torch.equal(c_skip, torch.ones_like(SIGMAS)) and torch.equal(c_in, c_skip)
    torch.testing.assert_close(c_out, SIGMAS)
    torch.testing.assert_close(c_noise, (SIGMAS / 2).log())


def test_vp_sigma_of_t_and_its_inverse():
    t = torch.tensor([1e-5, 1e-3, 0.3, 1.0], dtype=torch.float64)
    # sigma(t) = sqrt(exp(beta_d t^2 / 2 + beta_min t) - 1), beta_d = 19.9, beta_min = 0.1
    torch.testing.assert_close(vp_sigma(t), ((19.9 * t**2 / 2 + 0.1 * t).exp() - 1).sqrt())
    torch.testing.assert_close(vp_time(vp_sigma(t)), t)


@pytest.mark.parametrize("kind", ["edm", "vp", "ve"])
def test_loss_weight_is_table_1s_and_makes_lambda_c_out_squared_one(kind):
    weight = loss_weight(kind, SIGMAS, SIGMA_DATA)
    expected = ((SIGMAS**2 + SIGMA_DATA**2) / (SIGMAS * SIGMA_DATA) ** 2 if kind == "edm"
                else 1 / SIGMAS**2)
    torch.testing.assert_close(weight, expected)
    # The effective weight lambda(sigma) c_out(sigma)^2 is 1: every sigma weighs alike (Sec. 5).
    _, c_out, _, _ = preconditioning(kind, SIGMAS, SIGMA_DATA)
    torch.testing.assert_close(weight * c_out**2, torch.ones_like(SIGMAS))


def test_rho_time_steps_equal_diffusers_karras_sigmas():
    scheduler = diffusers.EDMEulerScheduler(sigma_min=0.002, sigma_max=80.0, rho=7.0)
    scheduler.set_timesteps(18)
    ours = sigma_steps("edm", 18, sigma_min=0.002, sigma_max=80.0, rho=7.0)
    torch.testing.assert_close(torch.tensor(ours, dtype=torch.float32), scheduler.sigmas)


def test_vp_and_ve_time_steps_are_table_1s():
    ve = sigma_steps("ve", 5, sigma_min=0.002, sigma_max=80.0, rho=7.0)
    assert ve[0] == pytest.approx(VE_SIGMA_MAX) and ve[-2] == pytest.approx(VE_SIGMA_MIN)
    assert ve[-1] == 0 and ve[1] / ve[0] == pytest.approx(ve[2] / ve[1])  # geometric
    vp = sigma_steps("vp", 5, sigma_min=0.002, sigma_max=80.0, rho=7.0)
    assert vp[0] == pytest.approx(float(vp_sigma(torch.tensor(1.0))))
    assert vp[-2] == pytest.approx(float(vp_sigma(torch.tensor(VP_EPS_S))))


class Smooth(torch.nn.Module):
    """A fixed network F(c_in x; time): its output depends on the image and the time."""

    def forward(self, x: torch.Tensor, time: torch.Tensor) -> torch.Tensor:
        return torch.tanh(x) * torch.cos(2 * time).view(-1, 1, 1, 1)


def test_euler_steps_equal_diffusers_edm_euler_on_identical_outputs():
    process, model = bind(sampler="euler"), Smooth()
    x = 80.0 * torch.randn(2, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    ours = process.solve(model, x.clone(), process.sigmas(10), "euler")
    scheduler = diffusers.EDMEulerScheduler(sigma_min=0.002, sigma_max=80.0, sigma_data=0.5)
    scheduler.set_timesteps(10)
    low, high = math.log(0.002) / 4, math.log(80.0) / 4  # c_noise at sigma_min, sigma_max
    theirs = x.clone()
    for c_noise in scheduler.timesteps:
        time = ((c_noise - low) / (high - low)).clamp(0, 1).expand(2)
        output = model(scheduler.scale_model_input(theirs, c_noise), time)
        theirs = scheduler.step(output, c_noise, theirs).prev_sample
    torch.testing.assert_close(ours, theirs, atol=1e-4, rtol=1e-5)


class Timeless(torch.nn.Module):
    """A fixed network that ignores its time input: identical outputs whatever noise
    conditioning the sampler passes (diffusers' timestep index or ablate's c_noise)."""

    def forward(self, x: torch.Tensor, time: torch.Tensor) -> torch.Tensor:
        return 0.5 * torch.tanh(x) - 0.1 * x


def test_vp_preconditioned_heun_equals_diffusers_heun_with_karras_sigmas():
    # diffusers' eps-prediction Heun is EDM's VP preconditioning: D = x - sigma F(x /
    # sqrt(sigma^2 + 1)), on karras (rho = 7) sigmas, first order on the last step to 0.
    scheduler = diffusers.HeunDiscreteScheduler(use_karras_sigmas=True, beta_schedule="linear",
                                                beta_start=1e-4, beta_end=0.02)
    scheduler.set_timesteps(8)
    sigma_max, sigma_min = float(scheduler.sigmas[0]), float(scheduler.sigmas[-2])
    process = bind(preconditioning="vp", sigma_min=sigma_min, sigma_max=sigma_max)
    grid = process.sigmas(8)
    torch.testing.assert_close(torch.tensor(grid, dtype=torch.float32),
                               scheduler.sigmas.unique().flip(0), rtol=1e-5, atol=0)
    x = sigma_max * torch.randn(2, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    ours = process.solve(Timeless(), x.clone(), grid, "heun")
    theirs = x.clone()
    for timestep in scheduler.timesteps:
        output = Timeless()(scheduler.scale_model_input(theirs, timestep), timestep)
        theirs = scheduler.step(output, timestep, theirs).prev_sample
    torch.testing.assert_close(ours, theirs, atol=1e-4, rtol=1e-4)


DATA_STD = 0.3
"""Data y ~ N(0, 0.3^2 I): D(x; sigma) = s^2 / (s^2 + sigma^2) x, and the probability-flow ODE
carries x(sigma_max) to x(0) = x(sigma_max) s / sqrt(s^2 + sigma_max^2)."""


class ExactGaussian(torch.nn.Module):
    """The exact F for Gaussian data through edm preconditioning (sigma read from the time)."""

    def forward(self, scaled: torch.Tensor, time: torch.Tensor) -> torch.Tensor:
        sigma = (math.log(0.002) + time * math.log(80.0 / 0.002)).exp().view(-1, 1, 1, 1)
        c_skip, c_out, c_in, _ = preconditioning("edm", sigma, SIGMA_DATA)
        x = scaled / c_in
        return (DATA_STD**2 / (DATA_STD**2 + sigma**2) * x - c_skip * x) / c_out


def ode_error(sampler: str, steps: int) -> float:
    process = bind()
    x = 80.0 * torch.randn(4, 1, 8, 8, generator=torch.Generator().manual_seed(1),
                           dtype=torch.float64)
    exact = x * DATA_STD / math.sqrt(DATA_STD**2 + 80.0**2)
    return float((process.solve(ExactGaussian(), x, process.sigmas(steps), sampler)
                  - exact).abs().max())


def test_heun_solves_the_ode_to_second_order():
    coarse, fine = ode_error("heun", 17), ode_error("heun", 33)  # twice as many steps
    assert fine < 0.03 and coarse / fine > 3.5  # second order: about 4x smaller
    assert ode_error("euler", 33) > 4 * fine and ode_error("heun", 200) < 1e-3


def test_stochastic_sampler_without_churn_is_heun_and_with_churn_keeps_the_data_law():
    gaussian = bind(sampler="stochastic", s_churn=0.0)
    shape, seed = (64, 1, 8, 8), torch.Generator().manual_seed
    heun = bind().sample(ExactGaussian(), shape, seed(2))
    torch.testing.assert_close(gaussian.sample(ExactGaussian(), shape, seed(2)), heun)
    churned = bind(sampler="stochastic", s_churn=40.0, s_tmin=0.05, s_tmax=50.0,
                   sample_steps=64)
    images = churned.sample(ExactGaussian(), shape, seed(2))
    assert not torch.equal(images, heun)
    assert torch.equal(images, churned.sample(ExactGaussian(), shape, seed(2)))
    assert float(images.std()) == pytest.approx(DATA_STD, rel=0.05)  # still N(0, s^2)


def test_edm_trains_checkpoints_and_samples_end_to_end(tmp_path):
    config = parse_run({**TINY_RUN, "degradation": {"name": "edm", "sample_steps": 3}},
                       source="test")
    result = Trainer(config, tmp_path / "run").run()
    assert all(math.isfinite(r["loss"]) for r in result.metrics)
    parts = load_trained(result.checkpoint)
    images = parts.process.sample(parts.averager.sampling_model(), (2, *parts.image_shape),
                                  torch.Generator().manual_seed(0), sampler="stochastic")
    assert images.shape == (2, 1, 28, 28) and torch.isfinite(images).all()
