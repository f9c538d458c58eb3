"""The Gaussian degradation: eps/x0/v targets, min-SNR weights, respacing, ancestral and DDIM."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from ablate_builtins.cnn import Cnn
from ablate_builtins.gaussian import (
    Gaussian,
    GaussianProcess,
    eps_and_x0,
    min_snr_weights,
    prediction_target,
    respaced_betas,
    respaced_timesteps,
)
from ablate_builtins.linear import Linear
from ablate_builtins.mnist import Mnist
from torch import nn

from ablate.datasets import to_model_range
from ablate.errors import ConfigError
from ablate.schedules import betas_from_alpha_bar, rescale_zero_terminal_snr
from ablate.training import Trainer
from tests.conftest import tiny_config

T = 40
ALPHA_BAR = Linear(beta_max=0.2).alpha_bar(T)
CENTERED = (-0.5, 0.5)
CPU = torch.device("cpu")
PREDICTIONS = ["eps", "x0", "v"]
SHAPE = (4, 1, 8, 8)


def bind(alpha_bar: torch.Tensor = ALPHA_BAR, **params) -> GaussianProcess:
    process = Gaussian(**params).bind(alpha_bar, CENTERED, CPU)
    assert isinstance(process, GaussianProcess)
    return process


def seeded(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


@pytest.fixture(scope="module")
def digits() -> torch.Tensor:
    return to_model_range(Mnist().load("test").images[:8], "centered")


class Oracle(nn.Module):
    """Knows the clean batch x0, so it outputs the exact target of its prediction type."""

    def __init__(self, x0: torch.Tensor, alpha_bar: torch.Tensor, prediction: str) -> None:
        super().__init__()
        self.x0, self.prediction = x0, prediction
        self.alpha_bar = alpha_bar.float()

    def forward(self, z: torch.Tensor, time: torch.Tensor) -> torch.Tensor:
        t = torch.round(time * len(self.alpha_bar)).long()
        alpha_bar_t = self.alpha_bar[t - 1].view(-1, 1, 1, 1)
        eps = (z - alpha_bar_t.sqrt() * self.x0) / (1 - alpha_bar_t).sqrt()
        return prediction_target(self.prediction, self.x0, eps, alpha_bar_t)


class Toy(nn.Module):
    """A small seeded convolution that mixes z and t: any network, not a perfect one."""

    def __init__(self) -> None:
        super().__init__()
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            self.conv = nn.Conv2d(1, 1, 3, padding=1)

    def forward(self, z: torch.Tensor, time: torch.Tensor) -> torch.Tensor:
        return self.conv(z) * (1 + time.view(-1, 1, 1, 1))


def coursework_loss(model, x0, generator, alpha_bar):
    """The eps-prediction loss as the coursework (and ablate before this change) wrote it."""
    batch, steps = x0.shape[0], len(alpha_bar)
    t = torch.randint(1, steps + 1, (batch,), device=x0.device, generator=generator)
    eps = torch.randn(x0.shape, device=x0.device, generator=generator)
    alpha_bar_t = alpha_bar.float()[t - 1].view(batch, 1, 1, 1)
    z_t = alpha_bar_t.sqrt() * x0 + (1 - alpha_bar_t).sqrt() * eps
    return torch.nn.functional.mse_loss(model(z_t, t.float() / steps), eps)


@torch.no_grad()
def coursework_sample(model, shape, generator, alpha_bar):
    """The coursework's ancestral sampler: Algorithm 2 of Ho et al. with sigma_t^2 = beta_t."""
    steps = len(alpha_bar)
    host_alpha_bar = alpha_bar.double().tolist()
    betas = betas_from_alpha_bar(alpha_bar).tolist()
    model.eval()
    z = torch.randn(shape, generator=generator)
    for t in range(steps, 0, -1):
        beta_t, alpha_bar_t = betas[t - 1], host_alpha_bar[t - 1]
        eps_hat = model(z, torch.full((shape[0],), t / steps))
        z = (z - beta_t / math.sqrt(1 - alpha_bar_t) * eps_hat) / math.sqrt(1 - beta_t)
        if t > 1:
            z = z + math.sqrt(beta_t) * torch.randn(shape, generator=generator)
    return z


def test_default_loss_equals_the_coursework_loss(digits):
    model = Cnn(channels=(4, 8), time_hidden=16).build(1, 28)
    ours = bind().loss(model, digits, seeded(3))
    reference = coursework_loss(model, digits, seeded(3), ALPHA_BAR)
    assert torch.equal(ours, reference)


def test_default_sampler_equals_the_coursework_sampler_in_the_data_range(digits):
    model, shape = Oracle(digits, ALPHA_BAR, "eps"), tuple(digits.shape)
    ours = bind().sample(model, shape, seeded(5))
    reference = coursework_sample(model, shape, seeded(5), ALPHA_BAR)
    assert ((reference > CENTERED[0]) & (reference < CENTERED[1])).float().mean() > 0.2
    assert torch.equal(ours, reference.clamp(*CENTERED))


@pytest.mark.parametrize("prediction", PREDICTIONS)
def test_each_target_converts_back_to_the_true_eps_and_x0(prediction):
    generator = seeded(1)
    x0, eps = torch.randn(SHAPE, generator=generator), torch.randn(SHAPE, generator=generator)
    alpha_bar_t = torch.rand(SHAPE[0], 1, 1, 1, generator=generator) * 0.98 + 0.01
    z_t = alpha_bar_t.sqrt() * x0 + (1 - alpha_bar_t).sqrt() * eps
    eps_hat, x0_hat = eps_and_x0(prediction, prediction_target(prediction, x0, eps, alpha_bar_t),
                                 z_t, alpha_bar_t)
    torch.testing.assert_close(eps_hat, eps)
    torch.testing.assert_close(x0_hat, x0)


def test_eps_x0_and_v_outputs_that_agree_give_the_same_conversion():
    generator = seeded(2)
    z_t, output = torch.randn(SHAPE, generator=generator), torch.randn(SHAPE, generator=generator)
    alpha_bar_t = torch.tensor(0.3)
    eps, x0 = eps_and_x0("eps", output, z_t, alpha_bar_t)
    v = prediction_target("v", x0, eps, alpha_bar_t)
    for prediction, same in (("x0", x0), ("v", v)):
        eps_hat, x0_hat = eps_and_x0(prediction, same, z_t, alpha_bar_t)
        torch.testing.assert_close(eps_hat, eps)
        torch.testing.assert_close(x0_hat, x0)


@pytest.mark.parametrize("prediction", PREDICTIONS)
def test_predict_eps_and_x0_recovers_the_truth_from_an_oracle(prediction, digits):
    process = bind(prediction=prediction)
    t = torch.tensor([1, 7, 23, T, 2, 11, 30, 39])
    eps = torch.randn(digits.shape, generator=seeded(4))
    alpha_bar_t = process.alpha_bar[t - 1].view(-1, 1, 1, 1)
    z_t = alpha_bar_t.sqrt() * digits + (1 - alpha_bar_t).sqrt() * eps
    eps_hat, x0_hat = process.predict_eps_and_x0(Oracle(digits, ALPHA_BAR, prediction), z_t, t)
    torch.testing.assert_close(eps_hat, eps, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(x0_hat, digits, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("weighting", ["uniform", "min_snr"])
@pytest.mark.parametrize("prediction", PREDICTIONS)
def test_an_oracle_has_zero_loss(prediction, weighting, digits):
    process = bind(prediction=prediction, loss_weighting=weighting)
    loss = process.loss(Oracle(digits, ALPHA_BAR, prediction), digits, seeded(6))
    assert loss.item() < 1e-9


@pytest.mark.parametrize("prediction", PREDICTIONS)
def test_min_snr_weights_match_their_formulas(prediction):
    gamma = 5.0
    snr = ALPHA_BAR / (1 - ALPHA_BAR)
    clipped = torch.minimum(snr, torch.tensor(gamma, dtype=torch.float64))
    expected = {"eps": clipped / snr, "x0": clipped, "v": clipped / (snr + 1)}[prediction]
    assert (snr > gamma).any() and (snr < gamma).any()
    torch.testing.assert_close(min_snr_weights(ALPHA_BAR, gamma, prediction), expected)


def test_min_snr_eps_weight_is_one_at_zero_snr():
    alpha_bar = rescale_zero_terminal_snr(ALPHA_BAR)
    assert min_snr_weights(alpha_bar, 5.0, "eps")[-1] == 1


def test_min_snr_loss_is_the_same_x0_loss_whatever_the_network_predicts(digits):
    """Networks implying the same x0_hat get the same min-SNR loss (Hang et al.'s definition)."""

    class Guess(Oracle):
        def __init__(self, prediction: str) -> None:
            super().__init__(digits, ALPHA_BAR, prediction)

        def forward(self, z: torch.Tensor, time: torch.Tensor) -> torch.Tensor:
            t = torch.round(time * T).long()
            alpha_bar_t = self.alpha_bar[t - 1].view(-1, 1, 1, 1)
            x0_hat = 0.3 * z
            eps_hat = (z - alpha_bar_t.sqrt() * x0_hat) / (1 - alpha_bar_t).sqrt()
            return prediction_target(self.prediction, x0_hat, eps_hat, alpha_bar_t)

    losses = [bind(prediction=p, loss_weighting="min_snr").loss(Guess(p), digits, seeded(8))
              for p in PREDICTIONS]
    torch.testing.assert_close(losses[1], losses[0])
    torch.testing.assert_close(losses[2], losses[0])
    uniform = [bind(prediction=p).loss(Guess(p), digits, seeded(8)) for p in PREDICTIONS]
    assert not torch.allclose(uniform[0], uniform[1])


@pytest.mark.parametrize(("steps", "count"), [(1, 1), (3, 3), (7, 7), (T, T)])
def test_respaced_timesteps_are_evenly_spaced_decreasing_and_end_at_T(steps, count):
    timesteps = respaced_timesteps(T, steps)
    assert len(timesteps) == count
    assert timesteps[0] == T and timesteps[-1] >= 1
    gaps = [a - b for a, b in zip(timesteps, [*timesteps[1:], 0], strict=True)]
    assert min(gaps) >= 1 and max(gaps) - min(gaps) <= 1


@pytest.mark.parametrize("steps", [0, T + 1])
def test_respacing_outside_1_to_T_is_a_clear_error(steps):
    with pytest.raises(ConfigError, match=f"steps must lie between 1 and T = {T}"):
        respaced_timesteps(T, steps)


@pytest.mark.parametrize("steps", [1, 6, T])
def test_respaced_betas_reproduce_alpha_bar_on_the_subsequence(steps):
    timesteps = respaced_timesteps(T, steps)
    betas = respaced_betas(ALPHA_BAR, timesteps)
    products = torch.cumprod((1 - betas).flip(0), dim=0).flip(0)
    torch.testing.assert_close(products, ALPHA_BAR[torch.tensor(timesteps) - 1])
    assert ((betas > 0) & (betas < 1)).all()


def test_all_steps_use_the_schedule_betas():
    steps = bind().sampling_steps(T)
    assert [s.t for s in steps] == list(range(T, 0, -1))
    assert [s.beta for s in steps][::-1] == betas_from_alpha_bar(ALPHA_BAR).tolist()


@pytest.mark.parametrize("steps", [T, 5])
def test_posterior_is_bayes_rule_for_the_two_gaussians(steps):
    """q(z_s | z_t, x0) from q(z_s | x0) = N(sqrt(a_s) x0, 1 - a_s) and q(z_t | z_s) =
    N(sqrt(a_t / a_s) z_s, 1 - a_t / a_s): Ho et al. eq. (6)-(7) must be their product."""
    process = bind()
    generator = seeded(9)
    x0, z_t = torch.randn(SHAPE, generator=generator), torch.randn(SHAPE, generator=generator)
    for step in process.sampling_steps(steps)[:-1]:
        a_s, ratio = step.alpha_bar_prev, step.alpha_bar / step.alpha_bar_prev
        precision = 1 / (1 - a_s) + ratio / (1 - ratio)
        mean = (math.sqrt(a_s) / (1 - a_s) * x0 + math.sqrt(ratio) / (1 - ratio) * z_t) / precision
        got_mean, got_variance = process.posterior(x0, z_t, step)
        torch.testing.assert_close(got_mean, mean)
        assert got_variance == pytest.approx(1 / precision, rel=1e-9)


@pytest.mark.parametrize("prediction", PREDICTIONS)
@pytest.mark.parametrize(("sampler", "steps"), [("ddim", 3), ("ddim", 1), ("ancestral", 4)])
def test_sampling_with_an_oracle_recovers_x0(sampler, steps, prediction, digits):
    process = bind(prediction=prediction)
    oracle = Oracle(digits, ALPHA_BAR, prediction)
    samples = process.sample(oracle, tuple(digits.shape), seeded(10), sampler=sampler,
                             steps=steps)
    torch.testing.assert_close(samples, digits, atol=1e-4, rtol=0)


def test_ddim_with_eta_0_stays_on_the_line_from_x0_to_its_noise(digits):
    """Deterministic DDIM keeps z_t = sqrt(a_t) x0 + sqrt(1 - a_t) eps_T with one eps_T."""
    process = bind(prediction="x0")
    oracle = Oracle(digits, ALPHA_BAR, "x0")
    z_T = torch.randn(digits.shape, generator=seeded(11))
    eps_T = (z_T - ALPHA_BAR[-1].sqrt().float() * digits) / (1 - ALPHA_BAR[-1]).sqrt().float()
    first, _ = process.sampling_steps(4)[:2]
    z = process._ddim_step(oracle, z_T, first, seeded(0))
    a = first.alpha_bar_prev
    torch.testing.assert_close(z, math.sqrt(a) * digits + math.sqrt(1 - a) * eps_T,
                               atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("steps", [T, 6])
def test_ddim_with_eta_1_is_the_ancestral_sampler_with_beta_tilde(steps):
    model = Toy()
    ddim = bind(eta=1.0).sample(model, SHAPE, seeded(12), sampler="ddim", steps=steps)
    ancestral = bind(variance="beta_tilde").sample(model, SHAPE, seeded(12), steps=steps)
    torch.testing.assert_close(ddim, ancestral, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("sampler", ["ancestral", "ddim"])
def test_samples_have_the_shape_and_depend_only_on_the_seed(sampler):
    process, model = bind(eta=0.5), Toy()
    model.train()
    first = process.sample(model, SHAPE, seeded(13), sampler=sampler, steps=5)
    again = process.sample(model, SHAPE, seeded(13), sampler=sampler, steps=5)
    other = process.sample(model, SHAPE, seeded(14), sampler=sampler, steps=5)
    assert first.shape == SHAPE and torch.isfinite(first).all()
    assert torch.equal(first, again) and not torch.equal(first, other)
    assert model.training


def test_the_component_sets_the_default_sampler_and_steps():
    process = bind(sampler="ddim", sample_steps=4)
    assert process.samplers == ("ddim", "ancestral", "dpm++2m", "unipc", "euler", "heun")
    model = Toy()
    default = process.sample(model, SHAPE, seeded(15))
    explicit = bind().sample(model, SHAPE, seeded(15), sampler="ddim", steps=4)
    assert torch.equal(default, explicit)


def test_clip_x0_clips_x0_hat_and_refits_eps_hat_to_it():
    class Wild(nn.Module):
        def forward(self, z: torch.Tensor, time: torch.Tensor) -> torch.Tensor:
            return 10 * z

    z, t = torch.randn(SHAPE, generator=seeded(16)), 12
    alpha_bar_t = ALPHA_BAR[t - 1].float()
    raw_eps, raw_x0 = bind(prediction="x0")._sampling_prediction(Wild(), z, t)
    eps_hat, x0_hat = bind(prediction="x0", clip_x0=True)._sampling_prediction(Wild(), z, t)
    assert raw_x0.abs().max() > 1
    assert torch.equal(x0_hat, raw_x0.clamp(*CENTERED))
    torch.testing.assert_close(alpha_bar_t.sqrt() * x0_hat + (1 - alpha_bar_t).sqrt() * eps_hat, z)


@pytest.mark.parametrize("sampler", ["ancestral", "ddim"])
def test_samples_lie_in_the_data_range(sampler):
    class Wild(nn.Module):
        def forward(self, z: torch.Tensor, time: torch.Tensor) -> torch.Tensor:
            return -10 * z

    samples = bind().sample(Wild(), SHAPE, seeded(16), sampler=sampler, steps=5)
    assert samples.min() == CENTERED[0] and samples.max() == CENTERED[1]


@pytest.mark.parametrize("prediction", ["v", "x0"])
def test_zero_terminal_snr_samples_stay_finite(prediction, digits):
    alpha_bar = rescale_zero_terminal_snr(ALPHA_BAR)
    process = bind(alpha_bar, prediction=prediction)
    oracle = Oracle(digits, alpha_bar, prediction)
    for sampler in ("ancestral", "ddim"):
        samples = process.sample(oracle, tuple(digits.shape), seeded(17), sampler=sampler)
        torch.testing.assert_close(samples, digits, atol=1e-4, rtol=0)
    assert torch.isfinite(process.loss(Toy(), digits, seeded(18)))


def test_eps_prediction_with_zero_terminal_snr_is_rejected():
    with pytest.raises(ConfigError, match="prediction 'eps' cannot be used with alpha_bar_T = 0"):
        bind(rescale_zero_terminal_snr(ALPHA_BAR))


def test_an_unknown_sampler_is_a_clear_error():
    with pytest.raises(ConfigError, match="no sampler 'plms'") as error:
        bind().sample(Toy(), SHAPE, seeded(), sampler="plms")
    assert "ancestral, ddim" in str(error.value)


def test_steps_beyond_T_are_a_clear_error():
    with pytest.raises(ConfigError, match=f"between 1 and T = {T}, got {T + 1}"):
        bind().sample(Toy(), SHAPE, seeded(), steps=T + 1)
    with pytest.raises(ConfigError, match=rf"sample_steps \({T + 1}\) exceeds T"):
        bind(sample_steps=T + 1)


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"prediction": "noise"}, "'noise' is not a valid 'eps' | 'x0' | 'v'"),
        ({"eta": 1.5}, "1.5 is out of range"),
        ({"snr_gamma": 0}, "0 is out of range"),
        ({"variance": "learned"}, "is not a valid 'beta' | 'beta_tilde'"),
    ],
)
def test_bad_parameters_are_config_errors(params, message):
    with pytest.raises(ConfigError, match=message):
        tiny_config(degradation={"name": "gaussian", **params})


def test_a_v_prediction_min_snr_ddim_run_trains_end_to_end(tmp_path: Path):
    degradation = {"name": "gaussian", "prediction": "v", "loss_weighting": "min_snr",
                   "sampler": "ddim", "sample_steps": 5, "clip_x0": True}
    result = Trainer(tiny_config(degradation=degradation, steps=8), tmp_path / "run").run()
    assert all(math.isfinite(r["loss"]) for r in result.metrics)
    assert Path(result.metrics[-1]["grid"]).is_file()


@pytest.mark.parametrize("sampler", ["ddim", "ancestral"])
def test_huge_betas_give_finite_samples_where_alpha_bar_underflows(sampler):
    # beta up to 0.5 over T = 1000: alpha_bar_T ~ 1e-134 is 0 in float32, and respaced betas
    # round to 1; a bad schedule must give bad samples, not NaN (beta_range reaches it).
    steps = 20
    alpha_bar = Linear(beta_max=0.5).alpha_bar(1000)
    model = Cnn(channels=(4,), time_hidden=8).build(1, 8)
    samples = bind(alpha_bar).sample(model, SHAPE, seeded(), sampler=sampler, steps=steps)
    assert torch.isfinite(samples).all()
