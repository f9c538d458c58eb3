"""``ablate schedules plot``: alpha_bar_t and log-SNR of several schedules on one figure.

Schedules are named on the command line as ``name`` or ``name:key=value,key=value``; values are
TOML values (``0.05``, ``1e-4``, ``true``) and go through the same validation as run files.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import torch
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from ablate.atomic import write_atomic
from ablate.components import build_component, suggest
from ablate.errors import ConfigError
from ablate.plugin_host import PluginHost
from ablate.schedules import NoiseSchedule, log_snr

FAMILY = "schedule"
EXAMPLE = "e.g. linear:beta_min=1e-4,beta_max=0.05"
_ITEM_SPLIT = re.compile(r",(?=\s*[A-Za-z_][\w-]*\s*=)")
"""Commas that start a new ``key=value`` item (so list values such as [1, 2] stay whole)."""


@dataclass(frozen=True)
class Curve:
    """One schedule's curves over t = 1..T, labelled with the spec the user wrote."""

    label: str
    alpha_bar: torch.Tensor
    log_snr: torch.Tensor


def parse_spec(spec: str, host: PluginHost) -> NoiseSchedule:
    """``name[:key=value,...]`` to a validated schedule, with run-file error messages."""
    name, _, rest = spec.partition(":")
    name = name.strip()
    cls = host.registry.get(FAMILY, name)
    if cls is None:
        known = host.registry.names(FAMILY)
        hint = suggest(name, known)
        valid = f"installed schedules: {', '.join(known) or 'none'}"
        raise ConfigError(f"unknown schedule {name!r}", key=spec,
                          hint=f"{hint} {valid}" if hint else valid)
    # The registry only admits NoiseSchedule subclasses into this family.
    return cast(NoiseSchedule, build_component(cls, _parse_params(rest, name), source=None,
                                               key=name))


def _parse_params(text: str, name: str) -> dict[str, Any]:
    params: dict[str, Any] = {}
    if not text.strip():
        return params
    for item in _ITEM_SPLIT.split(text):
        key, equals, value = item.partition("=")
        key = key.strip()
        if not equals or not key:
            raise ConfigError(f"expected key=value, got {item!r}", key=name, hint=EXAMPLE)
        if key in params:
            raise ConfigError(f"parameter {key!r} is given twice", key=name)
        params[key] = _toml_value(value.strip())
    return params


def _toml_value(text: str) -> Any:
    """The TOML value ``text`` stands for; anything else stays a string for coerce to judge."""
    try:
        return tomllib.loads(f"value = {text}")["value"]
    except tomllib.TOMLDecodeError:
        return text


def schedule_curves(specs: Sequence[str], T: int,
                    host: PluginHost) -> tuple[list[Curve], list[str]]:
    """The curves of every spec, and the warnings their checks raised (prefixed by the spec)."""
    curves, warnings = [], []
    for spec in specs:
        schedule = parse_spec(spec, host)
        try:
            warnings += [f"{spec}: {w}" for w in schedule.check(T)]
        except ValueError as exc:
            raise ConfigError(f"{exc} (T = {T})", key=spec) from None
        alpha_bar = schedule.alpha_bar(T)
        curves.append(Curve(spec, alpha_bar, log_snr(alpha_bar)))
    return curves, warnings


def plot_curves(curves: Sequence[Curve], T: int, output: Path) -> Path:
    """Write alpha_bar_t (left) and log-SNR_t (right) against t/T as a PNG."""
    figure = Figure(figsize=(11, 4.2), layout="constrained")
    FigureCanvasAgg(figure)
    left, right = figure.subplots(1, 2)
    t_over_T = torch.arange(1, T + 1, dtype=torch.float64) / T
    for curve in curves:
        # log-SNR_T = -inf under zero_terminal_snr: drawn as a gap rather than a plunge.
        snr = torch.where(torch.isfinite(curve.log_snr), curve.log_snr, torch.nan)
        left.plot(t_over_T.numpy(), curve.alpha_bar.numpy(), label=curve.label)
        right.plot(t_over_T.numpy(), snr.numpy(), label=curve.label)
    left.set(xlabel="t / T", ylabel="alpha_bar_t", title="signal kept: alpha_bar_t",
             ylim=(-0.02, 1.02))
    right.set(xlabel="t / T", ylabel="log(alpha_bar_t / (1 - alpha_bar_t))",
              title="log-SNR")
    for axes in (left, right):
        axes.grid(alpha=0.3)
        axes.legend(fontsize="small")
    figure.suptitle(f"noise schedules, T = {T}")
    try:
        write_atomic(output, lambda tmp: figure.savefig(tmp, format="png", dpi=110))
    except OSError as exc:
        where = f" ({exc.filename})" if exc.filename else ""
        raise ConfigError(f"cannot write {output}: {exc.strerror or exc}{where}",
                          key="--output") from None
    return output
