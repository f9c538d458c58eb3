"""Cold degradations: identity at t = 0, severity growing with t, Algorithms 1 and 2, priors."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from ablate_builtins.cold import Blur, ColdDegradation, Fade, Mask, Pixelate
from ablate_builtins.cold_process import ColdProcess
from ablate_builtins.mnist import Mnist
from safetensors.torch import load, save
from torch import nn

from ablate.checkpoint import load_checkpoint, unprefixed
from ablate.datasets import to_model_range
from ablate.errors import ConfigError
from ablate.sampling import load_trained
from ablate.training import Trainer
from tests.conftest import tiny_config

T = 10
ALPHA_BAR = 1 - 0.98 * torch.arange(1, T + 1, dtype=torch.float64) / T
CENTERED = (-0.5, 0.5)
CPU = torch.device("cpu")

DEGRADATIONS = [Blur(), Mask(), Mask(pattern="random"), Pixelate(), Fade(),
                Fade(target="mean")]
IDS = ["blur", "mask-square", "mask-random", "pixelate", "fade-black", "fade-mean"]


@pytest.fixture(scope="module")
def digits() -> torch.Tensor:
    return to_model_range(Mnist().load("test").images[:32], "centered")


@pytest.fixture(scope="module")
def training_digits() -> torch.Tensor:
    return to_model_range(Mnist().load("train").images[:512], "centered")


def bind(degradation: ColdDegradation, alpha_bar: torch.Tensor = ALPHA_BAR,
         data_range: tuple[float, float] = CENTERED) -> ColdProcess:
    process = degradation.bind(alpha_bar, data_range, CPU)
    assert isinstance(process, ColdProcess)
    return process


class Identity(nn.Module):
    """The restoration that changes nothing: sampling then only follows the degradation."""

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return x


class Oracle(nn.Module):
    """A perfect restoration of one known batch of images."""

    def __init__(self, x0: torch.Tensor) -> None:
        super().__init__()
        self.x0 = x0

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return self.x0


def toy_network() -> nn.Module:
    """An untrained convolution with outputs well outside the data range."""
    torch.manual_seed(0)
    conv = nn.Conv2d(1, 1, 3, padding=1)
    with torch.no_grad():
        conv.weight.mul_(20)

    class Toy(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = conv

        def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
            return self.conv(x) + t[:, None, None, None]

    return Toy()


@pytest.mark.parametrize("degradation", DEGRADATIONS, ids=IDS)
def test_every_degradation_is_the_identity_at_t0(degradation, digits):
    assert torch.equal(bind(degradation).degrade(digits, 0), digits)


@pytest.mark.parametrize("degradation", DEGRADATIONS, ids=IDS)
def test_distance_to_each_real_digit_grows_strictly_with_t(degradation, digits):
    process = bind(degradation)
    distances = torch.stack([(process.degrade(digits, t) - digits).flatten(1).norm(dim=1)
                             for t in range(T + 1)])
    assert (distances[1:] > distances[:-1]).all()


def test_severity_comes_from_the_schedule_alone(digits):
    other = ALPHA_BAR.clone()
    other[:3] = torch.tensor([0.99, 0.95, 0.9])  # same alpha_bar_4, different before it
    first, second = bind(Blur(), ALPHA_BAR), bind(Blur(), other)
    assert torch.allclose(first.degrade(digits, 4), second.degrade(digits, 4))
    assert not torch.allclose(first.degrade(digits, 2), second.degrade(digits, 2))


def test_square_mask_hides_the_centre_first_and_random_order_follows_its_seed():
    x = torch.ones(1, 1, 28, 28) * 0.5
    early = bind(Mask(fill=0.0)).degrade(x, 1)[0, 0] != 0.5
    rows, cols = early.nonzero().T
    assert early.any() and rows.min() >= 10 and rows.max() <= 17 and cols.min() >= 10
    orders = [bind(Mask(pattern="random", mask_seed=seed, fill=0.0)).degrade(x, 3)
              for seed in (0, 0, 1)]
    assert torch.equal(orders[0], orders[1]) and not torch.equal(orders[0], orders[2])


def test_fade_to_mean_fades_towards_the_fitted_mean_image(digits, training_digits):
    process = bind(Fade(target="mean"))
    severity = 0.98
    before = process.degrade(digits, T)
    assert torch.allclose(before, (1 - severity) * digits, atol=1e-6)  # mid-grey 0 until fit
    process.fit(training_digits)
    expected = (1 - severity) * digits + severity * training_digits.mean(dim=0)
    assert torch.allclose(process.degrade(digits, T), expected, atol=1e-5)


@pytest.mark.parametrize("loss", ["l1", "l2"])
def test_loss_is_the_restoration_error_of_x0(loss, digits):
    class Zero(nn.Module):
        def forward(self, x, t):
            return torch.zeros_like(x)

    value = bind(Blur(loss=loss)).loss(Zero(), digits, torch.Generator().manual_seed(0))
    expected = digits.abs().mean() if loss == "l1" else digits.square().mean()
    assert torch.allclose(value, expected)


@pytest.mark.parametrize("steps", [None, 3])
@pytest.mark.parametrize("sampler", ["improved", "naive"])
def test_a_perfect_restoration_recovers_the_image_with_either_sampler(sampler, steps, digits):
    for degradation in (Blur(), Pixelate(), Mask()):
        process = bind(degradation)
        x_T = process.degrade(digits, T)
        x0 = process.restore(Oracle(digits), x_T, sampler=sampler, steps=steps)
        assert torch.allclose(x0, digits, atol=1e-5), degradation.name


@pytest.mark.parametrize("degradation", [Blur(), Pixelate()], ids=["blur", "pixelate"])
def test_improved_sampler_cancels_a_restoration_error_the_naive_one_keeps(degradation, digits):
    # Blur and pixelate are linear and keep constants, so D(x0 + c, t) = D(x0, t) + c and
    # Algorithm 2 telescopes to x0 however wrong R is by c (Bansal et al., Sec. 3.3).
    process = bind(degradation, data_range=(-1.0, 1.0))
    biased = Oracle(digits + 0.1)
    x_T = process.degrade(digits, T)
    assert torch.allclose(process.restore(biased, x_T, sampler="improved"), digits, atol=1e-5)
    naive = process.restore(biased, x_T, sampler="naive")
    assert torch.allclose(naive, digits + 0.1, atol=1e-5)


@pytest.mark.parametrize("sampler", ["improved", "naive"])
@pytest.mark.parametrize("degradation", DEGRADATIONS, ids=IDS)
def test_samples_have_the_shape_and_lie_in_the_data_range(degradation, sampler):
    process = bind(degradation, data_range=(-1.0, 1.0))
    for steps in (None, 4):
        x = process.sample(toy_network(), (3, 1, 28, 28), torch.Generator().manual_seed(0),
                           sampler=sampler, steps=steps)
        assert x.shape == (3, 1, 28, 28)
        assert x.min() >= -1 and x.max() <= 1


def test_seeded_sampling_is_deterministic():
    process = bind(Blur())
    draws = [process.sample(toy_network(), (4, 1, 28, 28), torch.Generator().manual_seed(seed))
             for seed in (7, 7, 8)]
    assert torch.equal(draws[0], draws[1])
    assert not torch.equal(draws[0], draws[2])


def pairwise_distances(x: torch.Tensor) -> torch.Tensor:
    flat = x.flatten(1)
    distances = torch.cdist(flat, flat)
    return distances[~torch.eye(len(x), dtype=torch.bool)]


@pytest.mark.parametrize("degradation", [Blur(prior="mean"), Pixelate(prior="mean")],
                         ids=["blur", "pixelate"])
def test_randomised_starts_give_distinct_samples_where_the_mean_start_collapses(
        degradation, training_digits):
    generator = torch.Generator().manual_seed(0)
    shape = (6, 1, 28, 28)
    collapsed = bind(degradation)
    collapsed.fit(training_digits)
    assert pairwise_distances(collapsed.sample(Identity(), shape, generator)).max() == 0
    fitted = bind(degradation.__class__(prior="gaussian"))
    fitted.fit(training_digits)
    assert pairwise_distances(fitted.sample(Identity(), shape, generator)).min() > 0.1
    noisy = bind(degradation.__class__(prior="mean", prior_noise=0.05))
    noisy.fit(training_digits)
    assert pairwise_distances(noisy.sample(Identity(), shape, generator)).min() > 0.1


def test_fitted_prior_matches_the_fully_degraded_training_images(training_digits):
    process = bind(Blur(prior_rank=16))
    process.fit(training_digits)
    degraded = process.degrade(training_digits, T)
    starts = process.start((2000, 1, 28, 28), torch.Generator().manual_seed(0))
    assert torch.allclose(starts.mean(dim=0), degraded.mean(dim=0), atol=0.02)
    ratio = starts.var(dim=0).sum() / degraded.var(dim=0).sum()
    assert 0.85 < ratio < 1.1


def test_fitted_state_survives_a_safetensors_round_trip(training_digits):
    fitted = bind(Fade(target="mean"))
    fitted.fit(training_digits)
    restored = bind(Fade(target="mean"))
    restored.load_state_dict(load(save(fitted.state_dict())))
    shape = (4, 1, 28, 28)
    first = fitted.sample(toy_network(), shape, torch.Generator().manual_seed(3))
    again = restored.sample(toy_network(), shape, torch.Generator().manual_seed(3))
    assert torch.equal(first, again)


def test_unknown_sampler_and_out_of_range_steps_are_clear_errors():
    process = bind(Blur())
    generator = torch.Generator()
    with pytest.raises(ConfigError, match="no sampler 'ancestral'.*improved, naive"):
        process.sample(Identity(), (1, 1, 28, 28), generator, sampler="ancestral")
    with pytest.raises(ConfigError, match="between 1 and T = 10"):
        process.sample(Identity(), (1, 1, 28, 28), generator, steps=11)


def test_cold_parameters_are_checked_when_a_run_table_is_parsed():
    with pytest.raises(ConfigError, match="fill"):
        tiny_config(degradation={"name": "mask", "fill": 2.0})
    with pytest.raises(ConfigError, match="'square' | 'random'"):
        tiny_config(degradation={"name": "mask", "pattern": "circle"})
    assert tiny_config(degradation={"name": "blur", "sigma_max": 3}).degradation == Blur(
        sigma_max=3.0)


@pytest.mark.parametrize("name", ["blur", "mask", "pixelate", "fade"])
def test_each_degradation_trains_and_samples_through_the_trainer(name, tmp_path: Path):
    config = tiny_config(degradation=name, T=20, subset=256, batch_size=32, steps=8,
                         grid_size=4)
    result = Trainer(config, tmp_path / name).run()
    assert [r["step"] for r in result.metrics] == [8]
    assert result.metrics[0]["loss"] > 0
    assert Path(result.metrics[0]["grid"]).is_file()
    assert result.checkpoint.is_file()


def test_the_trainer_fits_the_process_and_the_checkpoint_keeps_what_it_learnt(tmp_path: Path):
    config = tiny_config(degradation={"name": "fade", "target": "mean"}, T=20, subset=256,
                         batch_size=32, steps=4, grid_size=4)
    result = Trainer(config, tmp_path / "run").run()
    tensors, _ = load_checkpoint(result.checkpoint)
    learnt = unprefixed("process", tensors)
    assert learnt, "the fitted prior and mean image must be saved with the checkpoint"
    restored = load_trained(result.checkpoint).process.state_dict()
    assert restored.keys() == learnt.keys()
    assert all(torch.equal(restored[k], learnt[k]) for k in learnt)
