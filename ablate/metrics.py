"""The metric family: what a metric plugin declares, what it is given and what it returns.

A metric reports one or more named values (``keys``), each with the direction that is better.
It does not draw bootstrap samples itself: ``prepare`` does the expensive work once (features,
distances, network passes) and returns an ``Estimator``, a statistic of ``n`` resampling units
(generated samples, or test images for model-based metrics). ``bootstrap`` evaluates it on the
units as drawn and on resamples of them, so every metric gets the same kind of interval.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Hashable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Literal

import torch

from ablate.components import Component, param
from ablate.datasets import Dataset
from ablate.errors import ConfigError
from ablate.features import Embedding, LoadedNet, load_cached, reference_embedding

if TYPE_CHECKING:
    from ablate.assembly import Assembly

Z_95 = 1.959963984540054
"""Standard normal quantile of 0.975: the half-width of a 95% normal interval in standard errors."""


@dataclass(frozen=True)
class MetricValue:
    """A metric's value with its 95% bootstrap interval and the number of units it used."""

    value: float
    low: float
    high: float
    n: int


@dataclass(frozen=True)
class MetricKey:
    """One value a metric reports: its name, which direction is better, its possible range."""

    name: str
    goal: Literal["minimize", "maximize"]
    help: str
    lowest: float = -math.inf
    highest: float = math.inf


@dataclass(frozen=True)
class Estimator:
    """A statistic of ``n`` units: ``statistic(indices)`` gives every key's value on them.

    ``indices`` is an int64 CPU tensor of length ``n``: ``arange(n)`` for the estimate itself,
    draws with replacement for bootstrap replicates.
    """

    n: int
    statistic: Callable[[torch.Tensor], Mapping[str, float]]


class MetricInputs:
    """What metrics of one evaluation measure, computed when first asked for and shared.

    ``samples`` are generated images in [0, 1] (None when only model-based metrics run);
    ``parts`` is the trained model (None when only samples were given); ``n`` is how many
    units the evaluation asked for (model-based metrics use that many test images).
    """

    def __init__(self, dataset: Dataset, samples: torch.Tensor | None,
                 parts: Assembly | None, n: int, seed: int) -> None:
        self.dataset = dataset
        self._samples = samples
        self._parts = parts
        self.n = n
        self.seed = seed
        self._shared: dict[Hashable, Any] = {}

    def samples(self, metric: str) -> torch.Tensor:
        if self._samples is None:
            raise ConfigError(f"metric {metric!r} scores generated samples, and none were given")
        return self._samples

    def parts(self, metric: str) -> Assembly:
        if self._parts is None:
            raise ConfigError(f"metric {metric!r} needs the trained model, not only samples",
                              hint="evaluate a checkpoint (ablate evaluate) instead")
        return self._parts

    def generator(self) -> torch.Generator:
        """A fresh CPU generator from the evaluation seed, so each metric's draws repeat."""
        return torch.Generator().manual_seed(self.seed)

    def shared(self, key: Hashable, compute: Callable[[], Any]) -> Any:
        """``compute()`` once per evaluation, for work several metrics need."""
        if key not in self._shared:
            self._shared[key] = compute()
        return self._shared[key]

    def network(self) -> LoadedNet:
        return load_cached(self.dataset.name)

    def sample_embedding(self, metric: str) -> Embedding:
        """Feature-network features and logits of the samples, as float64 on the CPU."""
        samples = self.samples(metric)
        return self.shared("sample_embedding",
                           lambda: _to_host(self.network().embed(samples)))

    def reference_embedding(self) -> Embedding:
        """The same for the dataset's reference (test) split, cached for the whole process."""
        return self.shared("reference_embedding", lambda: _to_host(
            reference_embedding(self.dataset, _device_of(self._samples))))


def _to_host(embedding: Embedding) -> Embedding:
    return Embedding(embedding.features.double().cpu(), embedding.logits.double().cpu())


def _device_of(samples: torch.Tensor | None) -> torch.device:
    return samples.device if samples is not None else torch.device("cpu")


@dataclass(frozen=True)
class Metric(Component):
    """Base of metrics: ``keys`` says what is reported, ``prepare`` builds the estimator."""

    family: ClassVar[str] = "metric"
    keys: ClassVar[tuple[MetricKey, ...]]
    uses_model: ClassVar[bool] = False
    """True for metrics that score the model (``inputs.parts``) rather than its samples."""

    replicates: int = param(200, "bootstrap resamples behind the 95% interval", ge=2)

    def prepare(self, inputs: MetricInputs) -> Estimator:
        raise NotImplementedError


def bootstrap(metric: Metric, estimator: Estimator, generator: torch.Generator
              ) -> dict[str, MetricValue]:
    """Every key's value with value +- 1.96 bootstrap standard errors, clipped to its range.

    The normal interval (Efron and Tibshirani 1993, section 13.2) rather than percentiles:
    resampling with replacement duplicates units, which biases set statistics such as FID, KID
    and recall upward or downward, so their replicate percentiles can sit entirely beside the
    estimate; their spread still estimates the standard error.
    """
    n = estimator.n
    if n < 2:
        raise ConfigError(f"metric {metric.name!r} needs at least 2 units, got {n}")
    with _one_thread():
        estimate = estimator.statistic(torch.arange(n))
        replicates = [estimator.statistic(torch.randint(n, (n,), generator=generator))
                      for _ in range(metric.replicates)]
    values = {}
    for key in metric.keys:
        spread = torch.tensor([r[key.name] for r in replicates], dtype=torch.float64)
        half = Z_95 * float(spread.std())
        value = float(estimate[key.name])
        values[key.name] = MetricValue(value, max(key.lowest, value - half),
                                       min(key.highest, value + half), n)
    return values


@contextmanager
def _one_thread() -> Iterator[None]:
    """Run many small tensor operations on one CPU thread, then restore the thread count.

    Replicates are hundreds of small linear-algebra calls that threads only slow down: on this
    project's busy 2-core machine eigvalsh of a 128 x 128 matrix took 1.9 s on two threads and
    3.5 ms on one.
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)
