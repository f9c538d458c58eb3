"""Many workers on one study: each process claims trials while the global budget allows, and
``ablate run --workers N`` starts N of them on this machine and follows the study's progress.

A worker stops when the budget is spent. While other workers' trials are still running and
could use up the rest of the budget it waits instead of stopping, because one of them may die:
its trial is then failed by the heartbeat check and queued again (see ablate.storage), and a
waiting worker runs the retry.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import optuna
from optuna.exceptions import UpdateFinishedTrialError
from optuna.storages import BaseStorage
from optuna.trial import TrialState

from ablate.errors import AblateError
from ablate.storage import ClaimLock, fail_stale
from ablate.study_config import StudySpec
from ablate.training import Interrupted

if TYPE_CHECKING:
    from ablate.study import StudyReporter

POLL_SECONDS = 1.0
SAMPLER_SEED_STRIDE = 100_003
"""Worker k's sampler is seeded with the study seed + trials so far + k * this stride, so workers
never propose the same points, now or when a study is resumed with more trials."""


class WorkerError(AblateError):
    """A worker process ended with an error; its log says why."""

    exit_code = 1


@dataclass(frozen=True)
class Claim:
    """What a worker may do next."""

    run: bool  # start a trial now
    wait: bool  # nothing to start, but running trials may still need a retry


def next_claim(spec: StudySpec, study: optuna.Study, stop: Callable[[], bool]) -> Claim:
    """Start a trial only while completed plus running trials stay within the trial budget."""
    from ablate.study import remaining

    budget = remaining(spec, study)
    if budget.spent or stop():
        return Claim(run=False, wait=False)
    running = len(study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)))
    if budget.trials is not None and running >= budget.trials:
        return Claim(run=False, wait=True)
    return Claim(run=True, wait=False)


def run_trials(spec: StudySpec, study: optuna.Study, storage: BaseStorage,
               objective: Callable[[optuna.Trial], object], *, stop: Callable[[], bool],
               catch: tuple[type[Exception], ...],
               callbacks: Sequence[Callable[[optuna.Study, optuna.trial.FrozenTrial], None]],
               poll: float = POLL_SECONDS) -> None:
    """This process's share of the study, one ``study.optimize`` trial at a time (Optuna keeps
    the trial's heartbeat), each claimed under the study's lock so the budget is never
    overshot. ``storage`` is the one the study was opened with (Optuna wraps a database
    storage in a cache; the lock needs the database itself). ``stop()`` says when the study is
    over for reasons beyond the budget."""
    with _stop_between_trials() as stopping:
        while not stopping.is_set():
            fail_stale(study)
            lock = ClaimLock(storage, spec.storage, spec.name)
            with lock:
                claim = next_claim(spec, study, stop)
                if claim.run:
                    # A trial declared dead while its worker lived on (silent too long) ends in
                    # UpdateFinishedTrialError: its retry runs elsewhere, so this worker goes on.
                    with suppress(UpdateFinishedTrialError):
                        study.optimize(_released(objective, lock), n_trials=1, catch=catch,
                                       callbacks=list(callbacks))
            if not claim.run:
                if not claim.wait:
                    return
                stopping.wait(poll)
    raise Interrupted("stopped between trials")


@contextmanager
def _stop_between_trials() -> Iterator[threading.Event]:
    """Ctrl-C outside training (the Trainer handles it inside) lets the running trial finish
    and then stops; a second one stops at once."""
    stopping = threading.Event()
    if threading.current_thread() is not threading.main_thread():
        yield stopping
        return

    def request_stop(signum: int, frame: object) -> None:
        if stopping.is_set():
            raise KeyboardInterrupt
        stopping.set()

    previous = signal.signal(signal.SIGINT, request_stop)
    try:
        yield stopping
    finally:
        signal.signal(signal.SIGINT, previous)


def _released(objective: Callable[[optuna.Trial], object],
              lock: ClaimLock) -> Callable[[optuna.Trial], object]:
    """The objective, releasing the claim lock as soon as the trial exists."""

    def run(trial: optuna.Trial) -> object:
        lock.release()
        return objective(trial)

    return run


def worker_command(spec: StudySpec, index: int) -> list[str]:
    """The command line of worker ``index`` (the storage URL goes by environment, not argv,
    so that its password does not show in process listings)."""
    command = [sys.executable, "-m", "ablate", "worker", str(spec.path), "--worker-index",
               str(index)]
    if spec.trials is not None:
        command += ["--n-trials", str(spec.trials)]
    if spec.timeout is not None:
        command += ["--timeout", str(spec.timeout)]
    for tracker in spec.trackers:  # those of --tracker too; a file's keep its settings
        command += ["--tracker", tracker.name]
    return [*command, *spec.overrides]  # the command line's KEY=VALUE overrides, as given


def threads_per_worker(workers: int, cores: int | None) -> int:
    """The cores divided among local workers (at least one thread each).

    Oversubscribed CPU threads wait on each other: measured here with other jobs on both cores,
    a UNet trained ~20x faster per CPU-second on one thread than on torch's default two. A
    user's own OMP_NUM_THREADS wins."""
    return max(1, (cores or 1) // max(1, workers))


def log_path(spec: StudySpec, index: int) -> Path:
    return spec.folder / "workers" / f"worker_{index}.log"


def launch(spec: StudySpec, indices: Sequence[int],
           watch: Callable[[], None]) -> dict[int, int]:
    """Run local worker processes to the end, calling ``watch()`` about once a second; the
    exit codes of those that failed (a negative code: killed by that signal).

    Ctrl-C is passed on to every worker once (each finishes its step, saves and queues its
    trial again); a second Ctrl-C is passed on too and stops them at once."""
    env = {**os.environ, "ABLATE_STORAGE": spec.storage}
    env.setdefault("OMP_NUM_THREADS", str(threads_per_worker(len(indices), os.cpu_count())))
    processes: dict[int, subprocess.Popen[bytes]] = {}
    logs = []
    try:
        for index in indices:
            path = log_path(spec, index)
            path.parent.mkdir(parents=True, exist_ok=True)
            log = path.open("wb")
            logs.append(log)
            processes[index] = subprocess.Popen(worker_command(spec, index), env=env, stdout=log,
                                                stderr=subprocess.STDOUT,
                                                start_new_session=True)
        interrupted = _wait(processes, watch)
    finally:
        for process in processes.values():
            if process.poll() is None:
                process.kill()
                process.wait()
        for log in logs:
            log.close()
    watch()
    codes = {i: p.returncode for i, p in processes.items()}
    if interrupted or any(code == Interrupted.exit_code for code in codes.values()):
        raise Interrupted(f"study {spec.name!r} interrupted; running trials were saved and "
                          f"queued again: ablate run {spec.path} resumes them")
    return {i: code for i, code in codes.items() if code != 0}


def _wait(processes: dict[int, subprocess.Popen[bytes]], watch: Callable[[], None]) -> bool:
    interrupted = False
    while any(p.poll() is None for p in processes.values()):
        try:
            watch()
            time.sleep(POLL_SECONDS)
        except KeyboardInterrupt:
            interrupted = True
            for process in processes.values():
                if process.poll() is None:
                    process.send_signal(signal.SIGINT)
    return interrupted


def run_local(spec: StudySpec, indices: Sequence[int], display: StudyReporter) -> list[str]:
    """Create the study here (so baselines are queued once), then run one worker process per
    index and report each trial as it finishes. A worker that died is an error unless the
    others finished the budget (then the returned warnings name it)."""
    from ablate.storage import open_storage
    from ablate.study import _done, best_summary, open_study, quiet_optuna, remaining

    with quiet_optuna():
        study = open_study(spec, open_storage(spec.storage))
        reported = {t.number for t in study.get_trials(deepcopy=False) if t.state.is_finished()}

        def watch() -> None:
            for trial in study.get_trials(deepcopy=False):
                if trial.state.is_finished() and trial.number not in reported:
                    reported.add(trial.number)
                    display.trial_finished(trial, _done(study), best_summary(spec, study))

        display.begin(spec, _done(study), best_summary(spec, study))
        try:
            failed = launch(spec, indices, watch)
        finally:
            display.end()
        messages = [f"worker {i} stopped with exit code {code} (see {log_path(spec, i)})"
                    for i, code in failed.items()]
        if failed and not remaining(spec, study).spent:
            raise WorkerError("; ".join(messages) + f"; ablate run {spec.path} continues the "
                              f"study")
        return messages
