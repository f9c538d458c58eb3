"""The gaussian degradation's fast solvers: diffusers' schedulers driven with ablate's networks.

Each solver must give what driving the diffusers scheduler by hand gives (built from the linear
schedule's betas, not from ablate's alpha_bar) on identical network outputs, must recover the
data exactly where the network is exact, and must be selectable wherever a sampler is named.
"""

from __future__ import annotations

import diffusers
import pytest
import torch
from ablate_builtins.gaussian import prediction_target
from ablate_builtins.gaussian_solvers import SOLVERS
from typer.testing import CliRunner

from ablate.cli import app
from ablate.config import parse_run
from ablate.datasets import SCALINGS
from ablate.errors import ConfigError
from ablate.eval_config import parse_eval
from ablate.training import Trainer
from tests.conftest import tiny_config

T = 1000
SHAPE = (2, 1, 8, 8)
DIFFUSERS = {
    "dpm++2m": lambda **kw: diffusers.DPMSolverMultistepScheduler(
        algorithm_type="dpmsolver++", solver_order=2, **kw),
    "unipc": lambda **kw: diffusers.UniPCMultistepScheduler(solver_order=2, **kw),
    "euler": lambda **kw: diffusers.EulerDiscreteScheduler(**kw),
    "heun": lambda **kw: diffusers.HeunDiscreteScheduler(**kw),
}
PREDICTION = {"eps": "epsilon", "x0": "sample", "v": "v_prediction"}


def process(prediction: str = "eps", **settings):
    config = parse_run({"T": T, "degradation": {"name": "gaussian", "prediction": prediction,
                                                **settings}}, source="test")
    return config.degradation.bind(config.schedule.alpha_bar(T), SCALINGS["centered"],
                                   torch.device("cpu"))


class Smooth(torch.nn.Module):
    """A fixed network whose x0 = 0.4 tanh(z_t) cos(3 t/T) is bounded, as a trained one's is,
    output as ``prediction``: it depends on both the image and the time it is given."""

    def __init__(self, prediction: str = "eps") -> None:
        super().__init__()
        self.prediction = prediction
        self.alpha_bar = process().alpha_bar

    def forward(self, z: torch.Tensor, time: torch.Tensor) -> torch.Tensor:
        alpha_bar_t = self.alpha_bar[(time * T).round().long() - 1].view(-1, 1, 1, 1)
        x0 = 0.4 * torch.tanh(z) * torch.cos(3 * time).view(-1, 1, 1, 1)
        eps = (z - alpha_bar_t.sqrt() * x0) / (1 - alpha_bar_t).sqrt()
        return prediction_target(self.prediction, x0, eps, alpha_bar_t)


@pytest.mark.parametrize("prediction", ["eps", "x0", "v"])
@pytest.mark.parametrize("solver", SOLVERS)
def test_solver_equals_driving_the_diffusers_scheduler_by_hand(solver, prediction):
    model = Smooth(prediction)
    ours = process(prediction).sample(model, SHAPE, torch.Generator().manual_seed(3),
                                      sampler=solver, steps=8)
    # The linear schedule's betas, beta_t = beta_min + (beta_max - beta_min) t / T (coursework)
    betas = 1e-4 + (0.02 - 1e-4) * torch.arange(1, T + 1, dtype=torch.float64) / T
    scheduler = DIFFUSERS[solver](num_train_timesteps=T, trained_betas=betas.numpy(),
                                  timestep_spacing="trailing",
                                  prediction_type=PREDICTION[prediction])
    scheduler.set_timesteps(8)
    generator = torch.Generator().manual_seed(3)
    x = torch.randn(SHAPE, generator=generator) * scheduler.init_noise_sigma
    for k in scheduler.timesteps:
        time = torch.full((SHAPE[0],), (float(k) + 1) / T)  # index k is ablate's step k + 1
        x = scheduler.step(model(scheduler.scale_model_input(x, k), time), k, x).prev_sample
    torch.testing.assert_close(ours, x.clamp(-0.5, 0.5), atol=1e-5, rtol=0)


@pytest.mark.parametrize("prediction", ["eps", "x0", "v"])
@pytest.mark.parametrize("solver", SOLVERS)
def test_solver_recovers_the_data_from_an_exact_network(solver, prediction):
    gaussian = process(prediction)
    point = torch.full((1, *SHAPE[1:]), 0.3)  # the data: a single image

    class Exact(torch.nn.Module):
        def forward(self, z_t, time):
            alpha_bar_t = gaussian.alpha_bar[(time * T).round().long() - 1].view(-1, 1, 1, 1)
            eps = (z_t - alpha_bar_t.sqrt() * point) / (1 - alpha_bar_t).sqrt()
            return prediction_target(prediction, point, eps, alpha_bar_t)

    images = gaussian.sample(Exact(), SHAPE, torch.Generator().manual_seed(0), sampler=solver,
                             steps=6)
    torch.testing.assert_close(images, point.expand(SHAPE), atol=1e-4, rtol=0)


@pytest.mark.parametrize("solver", SOLVERS)
def test_solver_stays_finite_on_a_zero_terminal_snr_schedule(solver):
    config = parse_run({"T": 50, "schedule": {"name": "linear", "zero_terminal_snr": True},
                        "degradation": {"name": "gaussian", "prediction": "v"}}, source="test")
    gaussian = config.degradation.bind(config.schedule.alpha_bar(50), SCALINGS["centered"],
                                       torch.device("cpu"))
    images = gaussian.sample(Smooth(), SHAPE, torch.Generator().manual_seed(0), sampler=solver,
                             steps=5)
    assert torch.isfinite(images).all()


@pytest.mark.parametrize("solver", SOLVERS)
def test_clipped_solver_stays_finite_where_alpha_bar_underflows(solver):
    """beta_max = 0.2 over T = 1000 sends alpha_bar below float32's range by t ~ 600: the
    clipped x0 must come from the floored alpha_bar the scheduler integrates, not divide by 0."""
    config = parse_run({"T": T, "schedule": {"name": "linear", "beta_max": 0.2},
                        "degradation": {"name": "gaussian", "clip_x0": True}}, source="test")
    assert config.schedule.alpha_bar(T).float()[-1] == 0  # the case: it underflows
    gaussian = config.degradation.bind(config.schedule.alpha_bar(T), SCALINGS["centered"],
                                       torch.device("cpu"))
    noise = type("Noise", (torch.nn.Module,), {"forward": lambda self, z, t: 0.9 * z})
    images = gaussian.sample(noise(), SHAPE, torch.Generator().manual_seed(0), sampler=solver,
                             steps=20)
    assert torch.isfinite(images).all()


def test_clipped_solver_hands_the_scheduler_the_clipped_x0():
    far = type("Far", (torch.nn.Module,), {"forward": lambda self, z, t: torch.full_like(z, 3.0)})
    images = process("x0", clip_x0=True).sample(far(), SHAPE, torch.Generator().manual_seed(0),
                                                sampler="dpm++2m", steps=4)
    # The network says x0 = 3; clipped to the range's top 0.5, the ODE ends exactly there.
    torch.testing.assert_close(images, torch.full(SHAPE, 0.5), atol=1e-5, rtol=0)


def test_solvers_are_eval_samplers_and_the_run_default():
    run = parse_run({"degradation": {"name": "gaussian", "sampler": "unipc"}}, source="test")
    assert run.degradation.bind(run.schedule.alpha_bar(run.T), SCALINGS["centered"],
                                torch.device("cpu")).samplers[0] == "unipc"
    assert parse_eval({"sampler": "dpm++2m", "steps": 10}, run, source="t").sampler == "dpm++2m"
    with pytest.raises(ConfigError, match="no sampler 'dpm-solver'"):
        parse_eval({"sampler": "dpm-solver"}, run, source="t")


def test_sample_command_takes_a_solver_and_its_steps(tmp_path):
    result = Trainer(tiny_config(), tmp_path / "run").run()
    grid = tmp_path / "grid.png"
    output = CliRunner().invoke(app, ["sample", str(result.checkpoint), "-n", "4", "--sampler",
                                      "dpm++2m", "--steps", "5", "-o", str(grid)])
    assert output.exit_code == 0, output.output
    assert "dpm++2m" in output.output and grid.stat().st_size > 0
