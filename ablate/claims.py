"""Claiming trials: every worker process starts a trial only under the study's claim lock and
only while the global budget allows, so that workers on any storage never overshoot the budget
nor train a grid point twice (grid points are queued one at a time under that lock).

A worker stops when the budget is spent or the grid is trained. While other workers' trials are
still running and could use up the rest it waits instead of stopping, because one of them may
die: its trial is then failed and queued again, and a waiting worker runs the retry. A dead
worker is noticed at once when it ran on this machine (its process is gone), otherwise when its
heartbeats stop (see ablate.storage).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
from contextlib import suppress
from dataclasses import dataclass

import optuna
from optuna.exceptions import UpdateFinishedTrialError
from optuna.storages import BaseStorage
from optuna.trial import FrozenTrial, TrialState

from ablate import signals
from ablate.storage import ClaimLock, fail_stale, process_alive
from ablate.study_budget import POINT_ATTR, next_grid_point, remaining
from ablate.study_config import StudySpec
from ablate.training import Interrupted

POLL_SECONDS = 1.0
SAMPLER_SEED_STRIDE = 100_003
"""Worker k's sampler is seeded with the study seed + trials so far + k * this stride, so workers
never propose the same points, now or when a study is resumed with more trials."""

RetryCallback = Callable[[optuna.Study, FrozenTrial, str], None]
"""Queues a dead trial's point again: (study, the dead trial, why)."""
RETRIED = ("interrupted", "environment")
"""Outcomes of trials that stopped before their end and run again."""


@dataclass(frozen=True)
class Claim:
    """What a worker may do next."""

    run: bool  # start a trial now
    wait: bool  # nothing to start, but running trials may still need a retry


def next_claim(spec: StudySpec, study: optuna.Study, stop: Callable[[], bool], *,
               queue: bool = True) -> Claim:
    """Start a trial only while completed plus running trials stay within the trial budget; a
    grid study first queues its next untaken point (with ``queue``; none left: the grid is
    done)."""
    budget = remaining(spec, study)
    if budget.spent or stop():
        return Claim(run=False, wait=False)
    trials = study.get_trials(deepcopy=False)
    running = sum(1 for t in trials if t.state == TrialState.RUNNING)
    if budget.trials is not None and running >= budget.trials:
        return Claim(run=False, wait=True)
    if spec.sampler.name == "grid" and not any(t.state == TrialState.WAITING for t in trials):
        point = next_grid_point(spec, study)
        if point is None:
            return Claim(run=False, wait=running > 0)
        if queue:
            study.enqueue_trial(point, user_attrs={POINT_ATTR: point})
    return Claim(run=True, wait=False)


def retry_orphans(study: optuna.Study, storage: BaseStorage, retry: RetryCallback) -> None:
    """Fail and queue again the running trials whose worker ran on this machine and is gone
    (killed, or stopped by a full disk before it could say so), without waiting for the
    heartbeat grace."""
    here = os.uname().nodename
    study_id = storage.get_study_id_from_name(study.study_name)
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        owner = trial.user_attrs.get("worker")
        if not isinstance(owner, dict) or owner.get("host") != here:
            continue
        if owner.get("pid") == os.getpid():  # this process: dead unless it runs it now
            if (study.study_name, trial.number) in _running_here:
                continue
        elif process_alive(owner):
            continue
        trial_id = storage.get_trial_id_from_study_id_trial_number(study_id, trial.number)
        try:
            storage.set_trial_state_values(trial_id, TrialState.FAIL)
        except UpdateFinishedTrialError:
            continue  # another worker got there first
        retry(study, trial, f"trial {trial.number}'s worker (pid {owner.get('pid')} on "
                            f"{here}) is gone")


def requeue_lost(study: optuna.Study, retry: RetryCallback) -> None:
    """Queue again every stopped trial that was never queued again (its worker died between
    failing it and queueing it, or a full database refused the retry)."""
    trials = study.get_trials(deepcopy=False)
    retried = {t.user_attrs.get("retry_of") for t in trials}
    for trial in trials:
        outcome = trial.user_attrs.get("outcome")
        stopped = outcome in RETRIED or (outcome is None and "worker" in trial.user_attrs)
        if trial.state == TrialState.FAIL and stopped and trial.number not in retried:
            retry(study, trial, f"trial {trial.number} stopped without being queued again "
                                f"(its worker ended while saving it)")


def run_trials(spec: StudySpec, study: optuna.Study, storage: BaseStorage,
               objective: Callable[[optuna.Trial], object], *, stop: Callable[[], bool],
               catch: tuple[type[Exception], ...],
               callbacks: Sequence[Callable[[optuna.Study, FrozenTrial], None]],
               retry: RetryCallback, poll: float = POLL_SECONDS) -> None:
    """This process's share of the study, one ``study.optimize`` trial at a time (Optuna keeps
    the trial's heartbeat), each claimed under the study's lock. ``storage`` is the one the
    study was opened with (Optuna wraps a database storage in a cache; the lock needs the
    database itself). ``stop()`` says when the study is over for reasons beyond the budget.

    Ctrl-C or SIGTERM during training stops the trial at its next step (saved, queued again);
    outside training the running trial finishes first; a second signal stops at once."""
    with signals.stop_requests():
        try:
            while signals.requested() is None:
                with ClaimLock(storage, spec.storage, spec.name) as lock:
                    fail_stale(study)
                    retry_orphans(study, storage, retry)
                    requeue_lost(study, retry)
                    claim = next_claim(spec, study, stop)
                    if claim.run:
                        # A trial declared dead while its worker lived on (silent too long)
                        # ends in UpdateFinishedTrialError: its retry runs elsewhere.
                        with suppress(UpdateFinishedTrialError):
                            study.optimize(_released(objective, lock), n_trials=1, catch=catch,
                                           callbacks=list(callbacks))
                if not claim.run:
                    if not claim.wait:
                        return
                    time.sleep(poll)
        except KeyboardInterrupt:
            raise Interrupted("stopped at once; the running trial resumes from its last "
                              "checkpoint") from None
        raise Interrupted("stopped between trials")


def _released(objective: Callable[[optuna.Trial], object],
              lock: ClaimLock) -> Callable[[optuna.Trial], object]:
    """The objective, releasing the claim lock as soon as the trial exists."""

    def run(trial: optuna.Trial) -> object:
        lock.release()
        key = (trial.study.study_name, trial.number)
        _running_here.add(key)
        try:
            return objective(trial)
        finally:
            _running_here.discard(key)

    return run


_running_here: set[tuple[str, int]] = set()
"""(study, trial number) of the trials this process is running now (in any thread)."""
