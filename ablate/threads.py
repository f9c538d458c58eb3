"""How many threads torch's CPU pool gets, and how idle ones wait: chosen for the machine as
it is when a command starts, so that training degrades gracefully on a shared machine.

Why: torch's default is one thread per core, spin-waiting between parallel regions. With other
jobs on those cores, the spinning threads wait for each other's time slices; measured here with
a load average of 7 on 2 cores, the quickstart trained at about 1/20 of its idle throughput
(benchmarks/contention.py measures the effect). Passive waiting (``OMP_WAIT_POLICY=PASSIVE``,
which must be set before torch loads its OpenMP runtime: ablate's command line does it first)
keep a fair share instead. Passive waiting is
chosen only when other work is running at start: on an idle machine it costs about a fifth of
the throughput (the CNN of benchmarks/contention.py: 286 against 351 images/s).

Overrides: ``ABLATE_THREADS=N`` sets the count; a user's own ``OMP_NUM_THREADS`` or
``OMP_WAIT_POLICY`` is kept as it is.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from ablate.errors import ConfigError

THREADS_ENV = "ABLATE_THREADS"
SAMPLES = 10  # readings of the run queue, 10 ms apart: one reading is noisy
START_SAMPLES = 3  # at every command's start: few, so that `ablate --help` stays quick


def prepare_environment() -> None:
    """Before torch is imported: on a busy machine, idle OpenMP threads sleep instead of
    spinning (a user's own OMP_WAIT_POLICY is kept)."""
    if "OMP_WAIT_POLICY" not in os.environ and (policy := wait_policy(other_load(START_SAMPLES))):
        os.environ["OMP_WAIT_POLICY"] = policy


def wait_policy(load: float) -> str | None:
    """PASSIVE when other work competes for the cores; None (OpenMP's spinning default, the
    fastest alone) otherwise."""
    return "PASSIVE" if load >= 1 else None


def usable_cores() -> int:
    """The cores this process may run on (its affinity mask, e.g. a Slurm allocation)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def other_load(samples: int = SAMPLES) -> float:
    """How many runnable tasks other than this one the machine has now: the median of a few
    readings of the run queue (Linux), else the one-minute load average, which lags: it still
    counts a job that ended a minute ago and barely sees one that just started."""
    readings = []
    for i in range(samples):
        try:
            running = int(Path("/proc/loadavg").read_text().split()[3].split("/")[0])
        except (OSError, ValueError, IndexError):
            break
        readings.append(max(0, running - 1))  # this process is one of them
        if i < samples - 1:
            time.sleep(0.01)
    if readings:
        return float(sorted(readings)[len(readings) // 2])
    try:
        return max(0.0, os.getloadavg()[0])
    except OSError:
        return 0.0


def thread_count() -> int | None:
    """The count to give torch: ABLATE_THREADS, else None when OMP_NUM_THREADS decides, else
    every core this process may use: with passive waiting a busy machine gives each runnable
    thread its time share, so fewer threads only take a smaller share (2 busy processes on 2
    cores: 164 images/s with one thread, 169 with two)."""
    value = os.environ.get(THREADS_ENV, "").strip()
    if value:
        if not value.isdigit() or int(value) < 1:
            raise ConfigError(f"{value!r} is not a thread count", key=THREADS_ENV,
                              hint="a whole number of at least 1, or unset it to choose "
                                   "from the machine's load")
        return int(value)
    if os.environ.get("OMP_NUM_THREADS", "").strip():
        return None
    return usable_cores()


def apply_thread_policy() -> int:
    """Set torch's intra-op thread count for this process; the count in use."""
    import torch

    count = thread_count()
    if count is not None:
        torch.set_num_threads(count)
    return torch.get_num_threads()
