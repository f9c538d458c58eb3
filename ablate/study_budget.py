"""What a study has used of its global budget, and which grid points it has yet to train.

Budget: ``trials`` counts trials that trained (completed, pruned, diverged, failed) over every
invocation and every worker; ``timeout`` counts the training time of every finished trial. A
trial whose worker died is booked up to its last sign of life (a heartbeat or an epoch), not up
to the moment another worker noticed: killed after 2 s, it costs 2 s, not the heartbeat grace.
"""

from __future__ import annotations

import itertools
import json
import random
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from ablate.storage import HEARTBEAT_ATTR

if TYPE_CHECKING:  # ablate show reads budgets without loading plugins (see ablate.study_view)
    from ablate.study_config import StudySpec

COUNTED = ("completed", "pruned", "diverged", "failed")
ALIVE_ATTR = "alive_at"
"""User attribute: when the trial last proved its worker alive (epoch ends), as a Unix time."""
POINT_ATTR = "queued_point"
"""User attribute of a queued trial: the parameters it will train (a grid point, a retry)."""


@dataclass(frozen=True)
class Budget:
    """What is left of the global budget."""

    trials: int | None  # trials that may still start; None = no limit
    seconds: float | None  # seconds of trial time left; None = no limit

    @property
    def spent(self) -> bool:
        return (self.trials is not None and self.trials <= 0) or \
            (self.seconds is not None and self.seconds <= 0)


def remaining(spec: StudySpec, study: optuna.Study) -> Budget:
    trials = study.get_trials(deepcopy=False)
    counted = sum(1 for t in trials if counts(t))
    return Budget(None if spec.trials is None else spec.trials - counted,
                  None if spec.timeout is None else spec.timeout - _seconds(trials))


def spent_seconds(study: optuna.Study) -> float:
    """Seconds of the time budget that the study's finished trials have used."""
    return _seconds(study.get_trials(deepcopy=False))


def _seconds(trials: Iterable[FrozenTrial]) -> float:
    return sum(duration(t) for t in trials)


def counts(trial: FrozenTrial) -> bool:
    """Whether a trial uses up the trial budget: it trained, whatever came of it."""
    return trial.user_attrs.get("outcome") in COUNTED or \
        trial.state in (TrialState.COMPLETE, TrialState.PRUNED)


def done(study: optuna.Study) -> int:
    """Trials that used up the trial budget."""
    return sum(1 for t in study.get_trials(deepcopy=False) if counts(t))


def duration(trial: FrozenTrial) -> float:
    """Seconds a finished trial is booked against the time budget: its measured wall time, or
    for a trial whose worker died, the time up to its last sign of life."""
    if not trial.state.is_finished() or trial.datetime_start is None:
        return 0.0
    measured = trial.user_attrs.get("wall_seconds")
    if isinstance(measured, int | float):
        return max(0.0, float(measured))
    start = trial.datetime_start.timestamp()
    if "outcome" not in trial.user_attrs:  # its worker died: book it up to its last sign
        signs = [v for v in (trial.user_attrs.get(ALIVE_ATTR),
                             trial.system_attrs.get(HEARTBEAT_ATTR))
                 if isinstance(v, int | float)]
        return max(0.0, max(signs) - start) if signs else 0.0
    if trial.datetime_complete is None:
        return 0.0
    return max(0.0, trial.datetime_complete.timestamp() - start)


def point_key(point: dict[str, Any]) -> str:
    """A parameter point as one comparable string."""
    return json.dumps(point, sort_keys=True, default=str)


def grid_order(spec: StudySpec) -> list[dict[str, Any]]:
    """Every grid point, in an order shuffled by the study seed (so a trial budget smaller
    than the grid trains an unbiased subset), the same in every worker."""
    grid = spec.space.grid()
    names = sorted(grid)
    points = [dict(zip(names, values, strict=True))
              for values in itertools.product(*(grid[n] for n in names))]
    random.Random(spec.seed).shuffle(points)
    return points


def claimed_points(study: optuna.Study) -> set[str]:
    """The points of every trial, queued, running or finished."""
    keys = set()
    for trial in study.get_trials(deepcopy=False):
        point = trial.user_attrs.get(POINT_ATTR) or trial.params
        if point:
            keys.add(point_key(point))
    return keys


def next_grid_point(spec: StudySpec, study: optuna.Study) -> dict[str, Any] | None:
    """The first grid point no trial has taken, or None when every point has one."""
    taken = claimed_points(study)
    return next((p for p in grid_order(spec) if point_key(p) not in taken), None)
