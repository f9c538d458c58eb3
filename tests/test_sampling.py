"""Sampling from a trained checkpoint: shapes, batching and seeds."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from ablate.sampling import draw, load_trained
from ablate.training import Trainer
from tests.conftest import tiny_config


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    run_dir = tmp_path_factory.mktemp("run")
    return Trainer(tiny_config(ema="ema"), run_dir / "out").run().checkpoint


def test_draw_returns_the_requested_count_across_batches(checkpoint: Path):
    parts = load_trained(checkpoint)
    samples = draw(parts, 7, seed=0, batch_size=3)
    assert samples.shape == (7, 1, 28, 28)
    assert torch.isfinite(samples).all()


def test_same_seed_same_samples_other_seed_other_samples(checkpoint: Path):
    parts = load_trained(checkpoint)
    assert torch.equal(draw(parts, 3, seed=5), draw(parts, 3, seed=5))
    assert not torch.equal(draw(parts, 3, seed=5), draw(parts, 3, seed=6))


def test_sampling_uses_the_averaged_weights(checkpoint: Path):
    parts = load_trained(checkpoint)
    assert parts.averager.sampling_model() is not parts.model


@pytest.mark.parametrize("count", [2, 5, 16])
def test_sample_grids_have_the_pixels_torchvision_would_write(tmp_path: Path, count: int):
    from PIL import Image
    from torchvision.utils import save_image

    from ablate.grids import save_grid

    samples = torch.rand(count, 1, 28, 28, generator=torch.Generator().manual_seed(0)) * 1.2 - 0.6
    ours = save_grid(samples, "centered", tmp_path / "ours.png")
    columns = max(1, int(torch.tensor(count).sqrt().ceil()))
    save_image((samples + 0.5).clamp(0, 1), tmp_path / "theirs.png", nrow=columns, padding=2)
    with Image.open(ours) as a, Image.open(tmp_path / "theirs.png") as b:
        assert a.size == b.size
        assert a.convert("RGB").tobytes() == b.convert("RGB").tobytes()


def test_an_evaluated_epoch_keeps_a_grid_of_the_samples_its_evaluation_drew(tmp_path: Path):
    from PIL import Image

    from ablate.eval_config import EvalConfig
    from ablate.evaluation import draw_samples
    from ablate.grids import save_grid

    config = tiny_config(ema="ema", grid_size=4)
    evaluation = EvalConfig(metrics=("fid",), samples=8, every=1, seed=3)
    result = Trainer(config, tmp_path / "run", evaluation=evaluation).run()
    assert [Path(r["grid"]).name for r in result.metrics] == \
        ["epoch_0001.png", "epoch_0002.png", "epoch_0003.png"]
    parts = load_trained(result.checkpoint)
    drawn = draw_samples(parts, evaluation.samples, evaluation.seed)  # the evaluation's noise
    expected = save_grid(drawn[:4], config.scaling, tmp_path / "expected.png")
    with Image.open(result.metrics[-1]["grid"]) as kept, Image.open(expected) as redrawn:
        assert kept.tobytes() == redrawn.tobytes()
