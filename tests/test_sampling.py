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
