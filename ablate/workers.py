"""``ablate run --workers N``: N local worker processes on one study (each claims its trials,
see ablate.claims), followed from here, with the study's progress shown as trials finish.

Ctrl-C and SIGTERM reach this process only (each worker has a session of its own), so they are
passed on to every worker: each finishes its step, saves, queues its trial again and exits;
this process waits for them (killing any still running ``STOP_WAIT_SECONDS`` later) and says what
each saved. A second signal is passed on too and stops the workers at once.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import optuna

from ablate import signals
from ablate.claims import next_claim
from ablate.errors import AblateError
from ablate.safe_paths import refuse_symlinks
from ablate.storage import open_storage
from ablate.study import StudyReporter, best_summary, open_study, quiet_optuna
from ablate.study_budget import done, spent_seconds
from ablate.study_config import StudySpec
from ablate.study_display import outcome_of
from ablate.training import Interrupted

POLL_SECONDS = 1.0
STOP_WAIT_SECONDS = signals.GRACE_SECONDS + 5
"""How long stopped workers may take to save before they are killed (schedulers allow 30 s)."""
STOPPED = (signals.exit_code(signal.SIGINT), signals.exit_code(signal.SIGTERM))


class WorkerError(AblateError):
    """A worker process ended with an error; its log says why."""

    exit_code = 1


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
           watch: Callable[[], None]) -> tuple[dict[int, int], dict[int, int], int | None]:
    """Run local worker processes to the end, calling ``watch()`` about once a second.

    Returns every worker's exit code (negative: killed by that signal), their process ids, and
    the signal that stopped this process (None if none did)."""
    env = {**os.environ, "ABLATE_STORAGE": spec.storage}
    env.setdefault("OMP_NUM_THREADS", str(threads_per_worker(len(indices), _cores())))
    refuse_symlinks(log_path(spec, 0).parent, what="the workers' log folder")
    processes: dict[int, subprocess.Popen[bytes]] = {}
    logs = []
    try:
        with _forwarded_signals(processes) as stopped:
            for index in indices:
                if stopped.at is not None:
                    break
                path = log_path(spec, index)
                path.parent.mkdir(parents=True, exist_ok=True)
                log = path.open("wb")
                logs.append(log)
                processes[index] = subprocess.Popen(
                    worker_command(spec, index), env=env, stdout=log, stderr=subprocess.STDOUT,
                    start_new_session=True)
            _wait(processes, watch, stopped)
    finally:
        for process in processes.values():
            if process.poll() is None:
                process.kill()
                process.wait()
        for log in logs:
            log.close()
    watch()
    return ({i: p.returncode for i, p in processes.items()},
            {i: p.pid for i, p in processes.items()}, stopped.signum)


class _Stop:
    signum: int | None = None
    at: float | None = None


@contextmanager
def _forwarded_signals(processes: dict[int, subprocess.Popen[bytes]]) -> Iterator[_Stop]:
    """While inside, SIGINT and SIGTERM are passed on to every running worker."""
    stop = _Stop()

    def forward(signum: int, frame: object) -> None:
        stop.signum = stop.signum or signum
        stop.at = stop.at or time.monotonic()
        for process in processes.values():
            if process.poll() is None:
                process.send_signal(signum)

    previous = {s: signal.signal(s, forward) for s in signals.STOP_SIGNALS}
    try:
        yield stop
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)


def _wait(processes: dict[int, subprocess.Popen[bytes]], watch: Callable[[], None],
          stop: _Stop) -> None:
    while any(p.poll() is None for p in processes.values()):
        if stop.at is not None and time.monotonic() - stop.at > STOP_WAIT_SECONDS:
            return  # the caller kills what still runs
        if stop.at is None:
            watch()
        time.sleep(POLL_SECONDS if stop.at is None else 0.1)


def _cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def saved_trials(study: optuna.Study, pids: dict[int, int], before: set[int]) -> list[str]:
    """What each worker saved when it was stopped: its trial's number and where it stopped."""
    owner = {pid: index for index, pid in pids.items()}
    lines = []
    for trial in study.get_trials(deepcopy=False):
        pid = trial.user_attrs.get("worker", {}).get("pid")
        if trial.number in before or pid not in owner or outcome_of(trial) != "interrupted":
            continue
        reason = trial.user_attrs.get("reason", "stopped before it could save")
        lines.append(f"worker {owner[pid]} saved trial {trial.number} ({reason})")
    return lines


def run_local(spec: StudySpec, indices: Sequence[int], display: StudyReporter) -> list[str]:
    """Create the study here (so baselines are queued once), then run one worker process per
    index and report each trial as it finishes. The outcome decides the exit: a study whose
    work is done succeeds (a worker that died meanwhile is named in the returned warnings);
    a stop by a signal is Interrupted, with what each worker saved; a study left unfinished
    by failed workers is a WorkerError."""
    with quiet_optuna():
        study = open_study(spec, open_storage(spec.storage))
        finished = {t.number for t in study.get_trials(deepcopy=False) if t.state.is_finished()}
        reported = set(finished)

        def watch() -> None:
            for trial in study.get_trials(deepcopy=False):
                if trial.state.is_finished() and trial.number not in reported:
                    reported.add(trial.number)
                    display.trial_finished(trial, done(study), best_summary(spec, study),
                                           spent_seconds(study))

        display.begin(spec, done(study), best_summary(spec, study))
        try:
            codes, pids, signum = launch(spec, indices, watch)
        finally:
            display.end()
        stopped_by = signum or next((c - 128 for c in codes.values() if c in STOPPED), None)
        if stopped_by is not None:
            saved = saved_trials(study, pids, finished) or ["no trial was running"]
            raise Interrupted(f"study {spec.name!r} stopped by {signal.Signals(stopped_by).name}: "
                              f"{'; '.join(saved)}; ablate run {spec.path} resumes the study",
                              signum=stopped_by)

        failed = {i: code for i, code in codes.items() if code != 0}
        messages = [f"worker {i} stopped with exit code {code} (see {log_path(spec, i)})"
                    for i, code in failed.items()]
        if failed and _unfinished(spec, study):
            raise WorkerError("; ".join(messages) + f"; ablate run {spec.path} continues the "
                              f"study")
        return messages


def _unfinished(spec: StudySpec, study: optuna.Study) -> bool:
    """Whether the study still has work: budget left and trials to run (or to retry)."""
    claim = next_claim(spec, study, stop=lambda: False, queue=False)
    return claim.run or claim.wait
