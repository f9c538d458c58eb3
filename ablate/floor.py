"""The real-against-real floor of the sample metrics: what real images score at a sample count.

FID and KID are not 0 for real images (FID is biased upwards at small n), so a model's value
means little without the value of real images scored the same way. Which real images matters:
the first 1000 MNIST training digits score FID 28.5, random draws of 1000 about 13. The floor is
therefore the mean and spread over several random draws (without replacement, seeded) from the
training split, scored against the reference split exactly as generated samples are.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from ablate.datasets import Dataset
from ablate.evaluation import evaluate_samples
from ablate.plugin_host import PluginHost


@dataclass(frozen=True)
class Floor:
    """One metric key's value for real images at one sample count, over ``len(values)`` draws."""

    key: str
    n: int
    values: tuple[float, ...]

    @property
    def mean(self) -> float:
        return statistics.fmean(self.values)

    @property
    def std(self) -> float:
        """The spread between draws (sample standard deviation; 0 for a single draw)."""
        return statistics.stdev(self.values) if len(self.values) > 1 else 0.0

    @property
    def low(self) -> float:
        return min(self.values)

    @property
    def high(self) -> float:
        return max(self.values)


def real_floor(dataset: Dataset, metrics: Sequence[str], n: int, *, draws: int = 5,
               seed: int = 0, host: PluginHost | None = None) -> dict[str, Floor]:
    """Score ``draws`` random sets of ``n`` training images; one ``Floor`` per reported key."""
    images = dataset.load("train").images
    if not 2 <= n <= len(images):
        raise ValueError(f"n must be between 2 and {len(images)}, got {n}")
    if draws < 1:
        raise ValueError(f"draws must be at least 1, got {draws}")
    generator = torch.Generator().manual_seed(seed)
    per_key: dict[str, list[float]] = {}
    for _ in range(draws):
        index = torch.randperm(len(images), generator=generator)[:n]
        values = evaluate_samples(images[index].float() / 255, dataset, metrics, seed=seed,
                                  host=host)
        for key, value in values.items():
            per_key.setdefault(key, []).append(value.value)
    return {key: Floor(key, n, tuple(v)) for key, v in per_key.items()
            if all(math.isfinite(x) for x in v)}
