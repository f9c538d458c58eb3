"""Every hook a plugin can implement: the single place that says what a plugin can do.

Component hooks receive a ``register`` callback and call it once per component class they
provide (the collector pattern), so one plugin can provide several components and the host
decides what registering means. Observer hooks are called during a run, in registration order,
and must not change it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import pluggy

if TYPE_CHECKING:
    import torch

    from ablate.components import Component
    from ablate.run_info import RunInfo

hookspec = pluggy.HookspecMarker("ablate")

Register = Callable[[type["Component"]], None]

# ---------------------------------------------------------------------------------------------
# Components: called once when the plugin host starts
# ---------------------------------------------------------------------------------------------


@hookspec
def register_datasets(register: Register) -> None:
    """Register dataset classes (subclasses of ``ablate.datasets.Dataset``)."""


@hookspec
def register_schedules(register: Register) -> None:
    """Register noise-schedule classes (subclasses of ``ablate.schedules.NoiseSchedule``)."""


@hookspec
def register_decoders(register: Register) -> None:
    """Register decoder classes (subclasses of ``ablate.decoders.Decoder``)."""


@hookspec
def register_degradations(register: Register) -> None:
    """Register degradation classes (subclasses of ``ablate.degradations.Degradation``)."""


@hookspec
def register_ema_strategies(register: Register) -> None:
    """Register EMA-strategy classes (subclasses of ``ablate.ema.EmaStrategy``)."""


@hookspec
def register_metrics(register: Register) -> None:
    """Register sample-quality metric classes (subclasses of ``ablate.metrics.Metric``)."""


@hookspec
def register_optimizers(register: Register) -> None:
    """Register optimiser classes (subclasses of ``ablate.optimizers.Optimizer``)."""


@hookspec
def register_lr_schedules(register: Register) -> None:
    """Register learning-rate schedules (subclasses of ``ablate.lr_schedules.LrSchedule``)."""


# ---------------------------------------------------------------------------------------------
# Run lifecycle: observers, called by the training engine
# ---------------------------------------------------------------------------------------------


@hookspec
def run_start(run: RunInfo) -> None:
    """Called once before the first training step (also when a run resumes)."""


@hookspec
def step_end(run: RunInfo, step: int, loss: torch.Tensor) -> None:
    """Called after every optimisation step with its detached 0-d loss tensor, still on the
    device. Reading it (``float(loss)``) waits for the device: do it only every few steps."""


@hookspec
def epoch_end(run: RunInfo, metrics: dict[str, Any]) -> None:
    """Called after each epoch with that epoch's logged metrics (loss, throughput, ...)."""


@hookspec
def run_end(run: RunInfo, status: str) -> None:
    """Called once when a run stops.

    ``status`` is ``completed``, ``interrupted`` (Ctrl-C; resumable), ``stopped`` (ended early
    by its caller, e.g. a pruned trial) or ``failed``.
    """


# ---------------------------------------------------------------------------------------------
# Experiment trackers: called when a run or study switches trackers on
# ---------------------------------------------------------------------------------------------


@hookspec
def register_trackers(register: Register) -> None:
    """Register experiment-tracker classes (subclasses of ``ablate.tracking.Tracker``)."""
