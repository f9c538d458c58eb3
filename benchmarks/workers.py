"""Study workers: trial throughput with 1 and 2 local worker processes on tiny trials, and
resident memory across consecutive trials in one process.

    python benchmarks/workers.py [--trials 16] [--memory-trials 50] [--steps 20]

Throughput is measured once every worker is running: completions after each worker's first
trial, divided by the time they took (process start-up and imports are reported apart). Targets
(issue 6): 2 workers >= 0.9 x 2 x one worker's throughput while there are cores for them, and
< 10% resident-memory growth after the first few trials.
"""

from __future__ import annotations

import argparse
import io
import os
import resource
import tempfile
import time
from pathlib import Path

from rich.console import Console

STUDY = """
[study]
name = "bench"
output = "{output}"
trials = {trials}
sampler = "random"

[run]
T = 10
steps = {steps}
batch_size = 16
subset = 256
grid_size = 4
device = "cpu"
decoder = {{name = "cnn", channels = [8, 16], time_hidden = 32}}

[search]
"run.lr" = {{low = 1e-4, high = 1e-2, log = true}}
"""


def write_study(folder: Path, trials: int, steps: int) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "study.toml"
    path.write_text(STUDY.format(output=(folder / "out").as_posix(), trials=trials, steps=steps),
                    encoding="utf-8")
    return path


def throughput(workers: int, trials: int, steps: int, folder: Path) -> dict[str, float]:
    """Trials per second of ``workers`` local processes sharing one journal storage."""
    from ablate.study import load_existing
    from ablate.study_config import load_study_file
    from ablate.study_display import StudyDisplay
    from ablate.workers import run_local

    spec = load_study_file(write_study(folder, trials, steps), workers=2)  # journal either way
    started = time.perf_counter()
    run_local(spec, range(workers), StudyDisplay(Console(file=io.StringIO())))
    wall = time.perf_counter() - started
    study, _ = load_existing(spec)
    ends = sorted(t.datetime_complete.timestamp() for t in study.get_trials())
    steady = ends[workers - 1:]
    rate = (len(steady) - 1) / (steady[-1] - steady[0])
    return {"workers": workers, "trials": len(ends), "wall_s": wall,
            "trials_per_s": rate, "seconds_per_trial": 1 / rate}


def resident_mib() -> float:
    """This process's resident memory now (Linux /proc), else its peak."""
    try:
        pages = int(Path("/proc/self/statm").read_text().split()[1])
        return pages * os.sysconf("SC_PAGE_SIZE") / 2**20
    except OSError:
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def memory(trials: int, steps: int, folder: Path) -> list[float]:
    """Resident memory after each of ``trials`` consecutive trials in this process."""
    from ablate.study import run_study
    from ablate.study_config import load_study_file
    from ablate.study_display import StudyDisplay

    readings: list[float] = []

    class Recording(StudyDisplay):
        def trial_finished(self, trial, done, best) -> None:
            super().trial_finished(trial, done, best)
            readings.append(resident_mib())

    run_study(load_study_file(write_study(folder, trials, steps)),
              Recording(Console(file=io.StringIO())))
    return readings


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=16, help="trials per throughput run")
    parser.add_argument("--memory-trials", type=int, default=50)
    parser.add_argument("--steps", type=int, default=20, help="training steps per trial")
    args = parser.parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", "1")  # one core per worker
    import torch

    torch.set_num_threads(1)
    print(f"{os.cpu_count()} cores, load average {os.getloadavg()[0]:.2f} at start")
    with tempfile.TemporaryDirectory() as tmp:
        one = throughput(1, args.trials, args.steps, Path(tmp) / "one")
        two = throughput(2, args.trials, args.steps, Path(tmp) / "two")
        for r in (one, two):
            print(f"{r['workers']} worker(s): {r['trials']} trials in {r['wall_s']:.1f} s wall "
                  f"(start-up included); steady {r['trials_per_s']:.3f} trials/s "
                  f"({r['seconds_per_trial']:.2f} s per trial)")
        ratio = two["trials_per_s"] / one["trials_per_s"]
        print(f"2 workers / 1 worker: {ratio:.2f}x (target >= {0.9 * 2:.1f}x while cores last)")
        rss = memory(args.memory_trials, args.steps, Path(tmp) / "memory")
        first = rss[min(4, len(rss) - 1)]
        print(f"resident memory over {len(rss)} trials: {rss[0]:.0f} MiB after trial 1, "
              f"{first:.0f} MiB after trial {min(5, len(rss))}, {rss[-1]:.0f} MiB after trial "
              f"{len(rss)}: growth {100 * (rss[-1] - first) / first:+.1f}% after the first few "
              f"(target < 10%)")
    print(f"load average {os.getloadavg()[0]:.2f} at the end")


if __name__ == "__main__":
    main()
