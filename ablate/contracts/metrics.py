"""The metric contract: declared keys, and finite values inside their intervals and ranges.

A metric is checked the way an evaluation runs it: ``prepare`` on the evaluation's inputs, then
ablate's own bootstrap. Sample-based metrics score real training images (as if they were
samples) against the dataset's reference split in the dataset's installed feature network;
model-based ones score a tiny untrained model of the default run. Either way the numbers mean
little; the contract is about their form.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, cast

import torch

from ablate.assembly import assemble
from ablate.config import parse_run
from ablate.contracts.common import resolve, violation
from ablate.datasets import Dataset
from ablate.metrics import Estimator, Metric, MetricInputs, MetricKey, bootstrap
from ablate.plugin_host import PluginHost

SAMPLES = 64
"""Images scored by sample-based metrics: enough for the feature statistics to be defined."""

TEST_IMAGES = 16
"""Test images scored by model-based metrics, whose cost grows with each one."""

REPLICATES = 8
"""Bootstrap replicates, unless the parameters say otherwise: the interval's form, not its
precision, is under test."""

TINY_RUN: dict[str, Any] = {
    "T": 10,
    "device": "cpu",
    "decoder": {"name": "cnn", "channels": [4, 8], "time_hidden": 16},
}
"""The model that model-based metrics score: the default run, made small."""


def check_metric(name: str, *, params: Mapping[str, Any] | None = None,
                 dataset: str = "mnist", host: PluginHost | None = None) -> None:
    """Check the installed metric ``name`` on ``dataset`` (which needs a feature network).

    ``keys`` declares at least one key, each with a distinct name, a goal and a range;
    ``prepare`` returns an estimator over n >= 2 units whose statistic reports every key; and
    every key's value, with its 95% interval from ablate's bootstrap, is finite with
    lowest <= low <= value <= high <= highest; and the intervals do not all collapse to a point
    (a statistic that ignores its bootstrap indices).
    """
    given = {"replicates": REPLICATES, **(params or {})}
    metric = cast(Metric, resolve("metric", name, given, host))
    data = cast(Dataset, resolve("dataset", dataset, None, host))
    _check_keys(metric)
    _check_values(metric, data, host)


def _check_keys(metric: Metric) -> None:
    keys = getattr(metric, "keys", ())
    if not (isinstance(keys, tuple) and keys and all(isinstance(k, MetricKey) for k in keys)):
        raise violation(metric, f"keys must be a non-empty tuple of ablate.metrics.MetricKey, "
                                f"got {keys!r}")
    names = [k.name for k in keys]
    if len(set(names)) != len(names):
        raise violation(metric, f"key names must be distinct, got {names}")
    for key in keys:
        if key.goal not in ("minimize", "maximize") or not key.lowest < key.highest:
            raise violation(metric, f"key {key.name!r} needs goal 'minimize' or 'maximize' and "
                                    f"lowest < highest, got {key.goal!r} and "
                                    f"[{key.lowest}, {key.highest}]")


def _check_values(metric: Metric, data: Dataset, host: PluginHost | None) -> None:
    estimator = metric.prepare(_inputs(metric, data, host))
    if not (isinstance(estimator, Estimator) and estimator.n >= 2):
        raise violation(metric, f"prepare() must return an ablate.metrics.Estimator over at "
                                f"least 2 units, got {estimator!r}")
    estimate = estimator.statistic(torch.arange(estimator.n))
    missing = [key.name for key in metric.keys if key.name not in estimate]
    if missing:
        raise violation(metric, f"the estimator's statistic does not report {missing}")
    values = bootstrap(metric, estimator, torch.Generator().manual_seed(0))
    if all(values[k.name].low == values[k.name].high for k in metric.keys):
        raise violation(metric, "every bootstrap replicate gives the same value, so each "
                                "interval collapses to a point: the estimator's statistic must "
                                "compute from the units its indices select (resampled with "
                                "replacement), not from all of them")
    for key in metric.keys:
        value = values[key.name]
        numbers = (value.value, value.low, value.high)
        if not all(math.isfinite(v) for v in numbers):
            raise violation(metric, f"{key.name} must be finite, got value {value.value} in "
                                    f"[{value.low}, {value.high}]")
        if not key.lowest <= value.low <= value.value <= value.high <= key.highest:
            raise violation(metric, f"{key.name} = {value.value:.4g} with interval "
                                    f"[{value.low:.4g}, {value.high:.4g}] must lie in its "
                                    f"declared range [{key.lowest}, {key.highest}], inside "
                                    f"its interval")


def _inputs(metric: Metric, data: Dataset, host: PluginHost | None) -> MetricInputs:
    """What an evaluation on ``data`` would give the metric."""
    if metric.uses_model:
        config = parse_run({**TINY_RUN, "dataset": data.params() | {"name": data.name}},
                           source="contract kit", host=host)
        parts = assemble(config, data.load("test").shape, torch.device("cpu"))
        return MetricInputs(data, None, parts, TEST_IMAGES, seed=0)
    samples = data.load("train").images[:SAMPLES].float() / 255
    return MetricInputs(data, samples, None, SAMPLES, seed=0)
