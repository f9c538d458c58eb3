"""Experiment trackers (TensorBoard, MLflow, Weights & Biases, or a plugin's) fed by the observer
hooks.

A tracker is declared like a component (a frozen dataclass of ``param`` fields, registered
through the ``register_trackers`` hook) so that its settings are validated, listed and put in the
schema like every other value. ``trackers = ["tensorboard", {name = "mlflow", ...}]`` in
``[run]`` (run files) or ``[study]`` (study files), or ``--tracker NAME`` on the command line,
switches them on; :class:`TrackingObserver` is the plugin that the engine's observer hooks
(``run_start``, ``step_end``, ``epoch_end``, ``run_end``) reach while the run trains, and it
hands each tracker what it logs:

- the training loss every ``loss_every`` steps (``train/loss``): the step's loss tensor is read
  back only on those steps, so the training step keeps no host sync;
- every numeric value of each epoch record at that epoch's step (``epoch/loss``,
  ``epoch/images_per_s``, ``fid`` with ``fid_low`` and ``fid_high``, ...);
- each sample grid the run draws, as an image;
- the resolved configuration as parameters (flattened: ``decoder.name``, ``schedule.beta_min``)
  and the run's tags (``study`` and ``trial`` for a study trial).

Trackers are not part of the configuration a checkpoint stores: switching one on or off never
stops a run from resuming.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Protocol

import torch

import ablate
from ablate.components import Component, build_component, param, suggest
from ablate.errors import AblateError, ConfigError, PluginError
from ablate.plugin_host import PluginHost, default_host
from ablate.run_info import RunInfo


@dataclass(frozen=True)
class Tracker(Component):
    """Base of experiment trackers: ``open`` starts logging one run and returns its session."""

    family: ClassVar[str] = "tracker"
    loss_every: int = param(50, "log the training loss every N steps (one host read each)",
                            ge=1)

    def open(self, run: RunInfo, context: TrackingContext) -> TrackerSession:
        raise NotImplementedError


class TrackerSession(Protocol):
    """One run being logged by one tracker."""

    def log_loss(self, step: int, loss: float) -> None: ...

    def log_epoch(self, step: int, values: Mapping[str, float]) -> None: ...

    def log_grid(self, step: int, epoch: int, path: Path) -> None: ...

    def close(self, status: str) -> None: ...


@dataclass(frozen=True)
class TrackingContext:
    """What a tracker needs beyond the run: its name, tags and the default place to write.

    ``store`` is where trackers keep their files unless told otherwise: the run folder for
    ``ablate train``, the study folder for a study (so its trials land in one MLflow
    experiment)."""

    experiment: str
    store: Path
    tags: Mapping[str, str] = field(default_factory=dict)


def tracker_plugins(host: PluginHost) -> dict[str, tuple[type[Tracker], str]]:
    """Tracker classes by name, each with the name of the plugin that registered it."""
    found: dict[str, tuple[type[Tracker], str]] = {}
    for impl in host.manager.hook.register_trackers.get_hookimpls():

        def register(cls: type[Tracker], plugin: str = impl.plugin_name) -> None:
            if not (isinstance(cls, type) and issubclass(cls, Tracker)):
                raise PluginError(f"plugin {plugin!r} registered {cls!r} as a tracker, but it is "
                                  f"not a subclass of ablate.tracking.Tracker")
            if cls.name in found:
                raise PluginError(f"tracker {cls.name!r} is registered twice: by plugin "
                                  f"{found[cls.name][1]!r} and by plugin {plugin!r}")
            found[cls.name] = (cls, plugin)

        impl.function(**{name: register for name in impl.argnames})
    return dict(sorted(found.items()))


def installed_trackers(host: PluginHost) -> dict[str, type[Tracker]]:
    """Tracker classes by name, as the plugins registered them."""
    return {name: cls for name, (cls, _) in tracker_plugins(host).items()}


def parse_trackers(value: Any, host: PluginHost, *, source: str | None,
                   key: str) -> tuple[Tracker, ...]:
    """``["tensorboard", {name = "mlflow", loss_every = 10}]`` as validated trackers."""
    if isinstance(value, str | Mapping):
        value = [value]
    if not isinstance(value, list):
        raise ConfigError(f"expected a list of tracker names or tables, got {value!r}",
                          source=source, key=key, hint='e.g. trackers = ["tensorboard"]')
    known = installed_trackers(host)
    trackers: list[Tracker] = []
    for i, entry in enumerate(value):
        where = f"{key}[{i}]"
        params = {"name": entry} if isinstance(entry, str) else dict(entry) \
            if isinstance(entry, Mapping) else None
        name = params.pop("name", None) if params is not None else None
        if not isinstance(name, str):
            raise ConfigError(f"expected a tracker name or a table with a 'name', got {entry!r}",
                              source=source, key=where, hint=f"one of {', '.join(known)}")
        if name not in known:
            hint = suggest(name, known)
            valid = f"installed trackers: {', '.join(known) or 'none'}"
            raise ConfigError(f"unknown tracker {name!r}", source=source, key=where,
                              hint=f"{hint} {valid}" if hint else valid)
        if any(t.name == name for t in trackers):
            raise ConfigError(f"tracker {name!r} is listed twice", source=source, key=where)
        trackers.append(build_component(known[name], params, source=source, key=where))
    return tuple(trackers)


def with_flags(trackers: Sequence[Tracker], flags: Sequence[str], host: PluginHost
               ) -> tuple[Tracker, ...]:
    """The file's trackers plus those named by ``--tracker`` (with default settings)."""
    named = {t.name for t in trackers}
    extra = parse_trackers([f for f in dict.fromkeys(flags) if f not in named], host,
                           source="command line", key="--tracker")
    return (*trackers, *extra)


def flat_config(config: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """The resolved configuration as ``{"decoder.name": "cnn", "lr": 0.0002, ...}``."""
    out: dict[str, Any] = {}
    for name, value in config.items():
        if isinstance(value, Mapping):
            out.update(flat_config(value, f"{prefix}{name}."))
        else:
            out[f"{prefix}{name}"] = value
    return out


def epoch_values(record: Mapping[str, Any]) -> dict[str, float]:
    """The numeric values of an epoch record, under tracker names (``epoch/loss``, ``fid``)."""
    renamed = {"loss": "epoch/loss", "images_per_s": "epoch/images_per_s",
               "train_seconds": "epoch/train_seconds"}
    return {renamed.get(k, k): float(v) for k, v in record.items()
            if isinstance(v, int | float) and not isinstance(v, bool) and k != "step"
            and math.isfinite(v)}


class TrackingObserver:
    """The observer plugin that feeds trackers; registered on the host while runs train.

    Several runs may pass through it (a study trial's replicates), one after the other or in
    turn: sessions are kept per output folder."""

    def __init__(self, trackers: Sequence[Tracker], context: TrackingContext) -> None:
        self.trackers = tuple(trackers)
        self.context = context
        self.sessions: dict[Path, list[tuple[Tracker, TrackerSession]]] = {}

    @ablate.hookimpl
    def run_start(self, run: RunInfo) -> None:
        tags = dict(self.context.tags)
        if run.output_dir.name.startswith("replicate_"):
            tags["replicate"] = run.output_dir.name.removeprefix("replicate_")
        context = TrackingContext(self.context.experiment, self.context.store, tags)
        self.sessions[run.output_dir] = [(t, _opened(t, run, context)) for t in self.trackers]

    @ablate.hookimpl
    def step_end(self, run: RunInfo, step: int, loss: torch.Tensor) -> None:
        due = [(t, s) for t, s in self.sessions.get(run.output_dir, ()) if step % t.loss_every == 0]
        if due:
            value = float(loss)  # the one host read of this step, shared by every tracker
            for _, session in due:
                session.log_loss(step, value)

    @ablate.hookimpl
    def epoch_end(self, run: RunInfo, metrics: dict[str, Any]) -> None:
        values = epoch_values(metrics)
        for _, session in self.sessions.get(run.output_dir, ()):
            session.log_epoch(metrics["step"], values)
            if metrics.get("grid"):
                session.log_grid(metrics["step"], metrics["epoch"], Path(metrics["grid"]))

    @ablate.hookimpl
    def run_end(self, run: RunInfo, status: str) -> None:
        for _, session in self.sessions.pop(run.output_dir, ()):
            session.close(status)


class TrackerError(AblateError):
    """A tracker could not start logging (an unreachable server, a bad tracking URI)."""

    exit_code = 2


def _opened(tracker: Tracker, run: RunInfo, context: TrackingContext) -> TrackerSession:
    try:
        return tracker.open(run, context)
    except Exception as exc:  # the library's own error, whatever it is, as one clear line
        raise TrackerError(f"tracker {tracker.name!r} could not start logging: "
                           f"{type(exc).__name__}: {str(exc).strip().splitlines()[0]}") from exc


@contextmanager
def tracking(host: PluginHost, trackers: Sequence[Tracker], context: TrackingContext
             ) -> Iterator[None]:
    """Feed ``trackers`` from the host's observer hooks for the duration of the block."""
    if not trackers:
        yield
        return
    name = f"ablate-tracking-{id(context)}"
    host.manager.register(TrackingObserver(trackers, context), name=name)
    try:
        yield
    finally:
        host.manager.unregister(name=name)


def read_png(path: Path) -> Any:
    """A grid PNG as an (H, W, 3) uint8 numpy array, as the tracker libraries take images."""
    import numpy as np
    from PIL import Image

    with Image.open(path) as image:
        return np.asarray(image.convert("RGB"))


def split_trackers(table: Any, *, source: str | None, key: str, host: PluginHost | None = None
                   ) -> tuple[Any, tuple[Tracker, ...]]:
    """A table without its ``trackers`` key, and the trackers that key switches on."""
    if not isinstance(table, Mapping) or "trackers" not in table:
        return table, ()
    rest = {k: v for k, v in table.items() if k != "trackers"}
    return rest, parse_trackers(table["trackers"], host or default_host(), source=source,
                                key=f"{key}.trackers")
