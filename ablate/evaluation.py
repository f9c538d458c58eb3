"""Scoring sample quality: metric names in, values with 95% bootstrap intervals out.

``evaluate_samples`` scores images someone already has; ``evaluate`` draws them from a trained
model first (and gives model-based metrics such as elbo the model). Both return one
``MetricValue`` per reported key; ``reported_keys`` says which keys a set of metrics reports and
which direction is better, for studies that optimise them. ``draw_samples`` is the seeded
drawing both ``evaluate`` and ``ablate sample`` use, with progress in network evaluations.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import nn

from ablate.assembly import Assembly
from ablate.datasets import Dataset, to_unit_range
from ablate.errors import ConfigError
from ablate.metrics import Metric, MetricInputs, MetricKey, MetricValue, bootstrap
from ablate.plugin_host import PluginHost, default_host, unknown_component

__all__ = ["MetricValue", "draw_samples", "evaluate", "evaluate_samples", "reported_keys",
           "resolve_metrics"]

SAMPLE_BATCH = 256

Progress = Callable[[int, int], None]
"""Called after every network evaluation of a sampler with (evaluations done, expected total).

The total is an estimate until the first batch is done (``steps`` network evaluations per
batch, or T without ``steps``), then exact: batches x what the first batch took."""


def resolve_metrics(names: Sequence[str], host: PluginHost | None = None) -> list[Metric]:
    """The installed metric components for ``names`` (at their defaults), in order."""
    host = host or default_host()
    known = host.registry.names("metric")
    if not names:
        raise ConfigError("no metrics given", key="metrics",
                          hint=f"installed metrics: {', '.join(known) or 'none'}")
    metrics = []
    for name in dict.fromkeys(names):
        cls = host.registry.get("metric", name)
        if cls is None:
            raise unknown_component(host, "metric", name, source=None, key="metrics")
        metrics.append(cls())
    return metrics


def reported_keys(names: Sequence[str], host: PluginHost | None = None) -> dict[str, MetricKey]:
    """Every key the named metrics report (e.g. classifier_score adds class_coverage)."""
    return {key.name: key for metric in resolve_metrics(names, host) for key in metric.keys}


def evaluate_samples(samples_unit: torch.Tensor, dataset: Dataset, metrics: Sequence[str], *,
                     seed: int = 0, host: PluginHost | None = None) -> dict[str, MetricValue]:
    """Score images in [0, 1] of shape (N, C, H, W) against ``dataset``'s reference split."""
    _check_samples(samples_unit)
    inputs = MetricInputs(dataset, samples_unit, None, len(samples_unit), seed)
    return _score(resolve_metrics(metrics, host), inputs)


def evaluate(parts: Assembly, metrics: Sequence[str], n: int, *, sampler: str | None = None,
             steps: int | None = None, seed: int = 0, host: PluginHost | None = None,
             on_samples: Callable[[torch.Tensor], None] | None = None,
             progress: Progress | None = None) -> dict[str, MetricValue]:
    """Draw ``n`` samples from the trained model (seeded) and score them.

    ``sampler`` and ``steps`` go to the degradation's ``sample``. ``on_samples`` receives the
    drawn samples (model range) before they are scored, e.g. to keep a grid of them. Sampling
    is skipped when only model-based metrics are asked for; those use ``n`` test images instead.
    """
    resolved = resolve_metrics(metrics, host)
    if n < 2:
        raise ConfigError(f"evaluation needs at least 2 samples, got {n}", key="n")
    samples = None
    if any(not metric.uses_model for metric in resolved):
        drawn = draw_samples(parts, n, seed, sampler=sampler, steps=steps, progress=progress)
        if on_samples is not None:
            on_samples(drawn)
        samples = to_unit_range(drawn, parts.config.scaling)
    inputs = MetricInputs(parts.config.dataset, samples, parts, n, seed)
    return _score(resolved, inputs)


def draw_samples(parts: Assembly, n: int, seed: int, *, sampler: str | None = None,
                 steps: int | None = None, batch_size: int = SAMPLE_BATCH,
                 progress: Progress | None = None) -> torch.Tensor:
    """``n`` samples in the model's range, drawn in batches from one seeded generator."""
    generator = torch.Generator(parts.device).manual_seed(seed)
    model = parts.averager.sampling_model()
    batches = -(-n // batch_size)
    counter = _Counting(model, batches, steps or parts.process.T, progress)
    chunks = []
    for start in range(0, n, batch_size):
        shape = (min(batch_size, n - start), *parts.image_shape)
        chunks.append(parts.process.sample(counter if progress else model, shape, generator,
                                           sampler=sampler, steps=steps))
        counter.batch_done()
    return torch.cat(chunks)


class _Counting(nn.Module):
    """The sampling model, counting its calls (network evaluations) for a progress display.

    Counting calls works for every degradation's sampler without changing its interface; it
    reads nothing back from the device, so it adds no host synchronisation."""

    def __init__(self, model: nn.Module, batches: int, per_batch: int,
                 progress: Progress | None) -> None:
        super().__init__()
        self.model = model
        self.batches = batches
        self.per_batch = per_batch
        self.progress = progress
        self.done = 0
        self.finished_batches = 0

    def forward(self, *args, **kwargs):
        out = self.model(*args, **kwargs)
        self.done += 1
        if self.progress is not None:
            total = max(self.batches * self.per_batch, self.done)
            self.progress(self.done, total)
        return out

    def batch_done(self) -> None:
        self.finished_batches += 1
        if self.finished_batches == 1 and self.done:
            self.per_batch = self.done  # what a batch really takes
        if self.progress is not None:
            self.progress(self.done, max(self.done, self.batches * self.per_batch))


def _score(metrics: list[Metric], inputs: MetricInputs) -> dict[str, MetricValue]:
    values: dict[str, MetricValue] = {}
    for metric in metrics:
        values.update(bootstrap(metric, metric.prepare(inputs), inputs.generator()))
    return values


def _check_samples(samples: torch.Tensor) -> None:
    if samples.dim() != 4 or len(samples) < 2:
        raise ConfigError(f"samples must be a batch (N >= 2, C, H, W), got shape "
                          f"{list(samples.shape)}")
    if not samples.is_floating_point():
        raise ConfigError(f"samples must be floats in [0, 1], got {samples.dtype}",
                          hint="divide uint8 images by 255")
    if bool(samples.min() < 0) or bool(samples.max() > 1):
        raise ConfigError("samples must lie in [0, 1]",
                          hint="convert model-range images with ablate.datasets.to_unit_range")
