"""The real-against-real floor: random draws, seeded, summarised by mean and spread."""

from __future__ import annotations

import pytest
from ablate_builtins.mnist import Mnist

from ablate.evaluation import evaluate_samples
from ablate.floor import real_floor


def test_the_floor_is_a_seeded_mean_over_different_random_draws():
    dataset = Mnist()
    floors = real_floor(dataset, ["fid", "classifier_score"], 200, draws=3, seed=1)
    again = real_floor(dataset, ["fid", "classifier_score"], 200, draws=3, seed=1)
    fid = floors["fid"]
    assert fid.values == again["fid"].values
    assert len(set(fid.values)) == 3 and fid.std > 0
    assert fid.low <= fid.mean <= fid.high
    assert floors["classifier_score"].mean > 9


def test_the_floor_of_random_draws_is_below_the_first_training_digits():
    dataset = Mnist()
    first = evaluate_samples(dataset.load("train").images[:500].float() / 255, dataset, ["fid"])
    floor = real_floor(dataset, ["fid"], 500, draws=2)["fid"]
    assert floor.high < first["fid"].value


def test_the_floor_refuses_an_impossible_sample_count():
    with pytest.raises(ValueError, match="n must be between 2 and 60000"):
        real_floor(Mnist(), ["fid"], 70_000)
