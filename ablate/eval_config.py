"""The ``[eval]`` table: how a run's samples are scored, and how often."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch

from ablate.components import coerce, param, param_infos
from ablate.config import RunConfig, check_keys
from ablate.datasets import SCALINGS
from ablate.errors import Collector, ConfigError
from ablate.limits import MAX_SAMPLES
from ablate.plugin_host import PluginHost, default_host, unknown_component
from ablate.run_config import MAX_SEED


@dataclass(frozen=True)
class EvalConfig:
    """Which metrics, on how many samples, drawn with which sampler, every how many epochs."""

    metrics: tuple[str, ...] = param(("fid", "classifier_score"), "metric plugins to compute")
    samples: int = param(500, "generated samples per evaluation", ge=2, le=MAX_SAMPLES,
                         limit="FID's customary 50,000; every sample is held in memory")
    every: int = param(0, "evaluate every N epochs; 0 = after the last epoch only", ge=0)
    sampler: str | None = param(None, "the degradation's sampler to use (default: its own)")
    steps: int | None = param(None, "sampling steps where the sampler can skip (default: T)",
                              ge=1)
    seed: int = param(0, "seed of the evaluation noise, shared by every epoch and trial", ge=0,
                      le=MAX_SEED, limit="torch and numpy take 32-bit seeds")

    def to_dict(self) -> dict[str, Any]:
        return {f.name: (list(v) if isinstance(v := getattr(self, f.name), tuple) else v)
                for f in dataclasses.fields(self) if getattr(self, f.name) is not None}


def parse_eval(table: Any, run: RunConfig | None, *, source: str | None, key: str = "eval",
               host: PluginHost | None = None) -> EvalConfig:
    """Validate an ``[eval]`` table against the installed metrics and the run's degradation
    (``run`` None: the run is wrong, so check only what does not depend on it)."""
    host = host or default_host()
    if not isinstance(table, Mapping):
        raise ConfigError("must be a table", source=source, key=key)
    infos = {info.name: info for info in param_infos(EvalConfig)}
    errors = Collector()
    errors.attempt(check_keys, table, list(infos), source=source, key=key)
    values = {name: errors.attempt(coerce, infos[name], value, source=source,
                                   key=f"{key}.{name}")
              for name, value in table.items() if name in infos}
    errors.raise_errors()
    config = EvalConfig(**values)
    for name in config.metrics:
        if host.registry.get("metric", name) is None:
            errors.add(unknown_component(host, "metric", name, source=source,
                                         key=f"{key}.metrics"))
    errors.attempt(check_metric_names, config.metrics, source=source, key=f"{key}.metrics")
    if run is None:
        errors.raise_errors()
        return config
    process = run.degradation.bind(run.schedule.alpha_bar(run.T), SCALINGS[run.scaling],
                                   torch.device("cpu"))
    if config.sampler is not None and config.sampler not in process.samplers:
        errors.add(ConfigError(f"degradation {run.degradation.name!r} has no sampler "
                               f"{config.sampler!r}", source=source, key=f"{key}.sampler",
                               hint=f"its samplers: {', '.join(process.samplers)}"))
    if config.steps is not None and run.degradation.follows_schedule and config.steps > run.T:
        errors.add(ConfigError(f"steps ({config.steps}) exceeds T ({run.T})", source=source,
                               key=f"{key}.steps", hint=f"use at most {run.T}"))
    errors.raise_errors()
    return config


def check_metric_names(names: tuple[str, ...], *, source: str | None, key: str) -> None:
    """The metrics are a set: each once, and at least one."""
    if not names:
        raise ConfigError("no metric listed", source=source, key=key,
                          hint='list at least one, e.g. metrics = ["fid"]')
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise ConfigError(f"{', '.join(map(repr, repeated))} listed more than once",
                          source=source, key=key, hint="list each metric once")

