"""The ``[eval]`` table: how a run's samples are scored, and how often."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch

from ablate.components import coerce, param, param_infos, suggest
from ablate.config import RunConfig, check_keys
from ablate.datasets import SCALINGS
from ablate.errors import ConfigError
from ablate.plugin_host import PluginHost, default_host


@dataclass(frozen=True)
class EvalConfig:
    """Which metrics, on how many samples, drawn with which sampler, every how many epochs."""

    metrics: tuple[str, ...] = param(("fid", "classifier_score"), "metric plugins to compute")
    samples: int = param(500, "generated samples per evaluation", ge=2)
    every: int = param(0, "evaluate every N epochs; 0 = after the last epoch only", ge=0)
    sampler: str | None = param(None, "the degradation's sampler to use (default: its own)")
    steps: int | None = param(None, "sampling steps where the sampler can skip (default: T)",
                              ge=1)
    seed: int = param(0, "seed of the evaluation noise, shared by every epoch and trial", ge=0)

    def to_dict(self) -> dict[str, Any]:
        return {f.name: (list(v) if isinstance(v := getattr(self, f.name), tuple) else v)
                for f in dataclasses.fields(self) if getattr(self, f.name) is not None}


def parse_eval(table: Any, run: RunConfig, *, source: str | None, key: str = "eval",
               host: PluginHost | None = None) -> EvalConfig:
    """Validate an ``[eval]`` table against the installed metrics and the run's degradation."""
    host = host or default_host()
    if not isinstance(table, Mapping):
        raise ConfigError("must be a table", source=source, key=key)
    infos = {info.name: info for info in param_infos(EvalConfig)}
    check_keys(table, list(infos), source=source, key=key)
    values = {name: coerce(infos[name], value, source=source, key=f"{key}.{name}")
              for name, value in table.items()}
    config = EvalConfig(**values)
    known = host.registry.names("metric")
    for name in config.metrics:
        if name not in known:
            hint = suggest(name, known)
            valid = f"installed metrics: {', '.join(known) or 'none'}"
            raise ConfigError(f"unknown metric {name!r}", source=source, key=f"{key}.metrics",
                              hint=f"{hint} {valid}" if hint else valid)
    process = run.degradation.bind(run.schedule.alpha_bar(run.T), SCALINGS[run.scaling],
                                   torch.device("cpu"))
    if config.sampler is not None and config.sampler not in process.samplers:
        raise ConfigError(f"degradation {run.degradation.name!r} has no sampler "
                          f"{config.sampler!r}", source=source, key=f"{key}.sampler",
                          hint=f"its samplers: {', '.join(process.samplers)}")
    if config.steps is not None and config.steps > run.T:
        raise ConfigError(f"steps ({config.steps}) exceeds T ({run.T})", source=source,
                          key=f"{key}.steps", hint=f"use at most {run.T}")
    return config

