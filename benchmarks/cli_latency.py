"""How long the read-only commands make a person wait, side by side with ``import torch``.

    python benchmarks/cli_latency.py [--repeats 5] [--study STUDY.toml]

Each command runs as its own process (as a user would run it), ``--repeats`` rounds of one run
each, round-robin, after an unmeasured warm-up round that fills the OS file cache; the table
gives each command's median wall time and its ratio to ``python -c "import torch"`` measured in
the same rounds. Without ``--study`` a two-trial study of sub-second trials is trained first
(not timed) for ``ablate show``. Targets (issue 11): show, report --help, list-plugins and a
study-file error within 1.5x of import torch; ``ablate --help`` and ``show`` under 1 s where
torch is not needed. Another ablate (an older checkout, say) is measured by running this
script with that checkout first on PYTHONPATH.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

STUDY = """
[study]
name = "latency"
output = "{output}"
trials = 2
sampler = "random"

[run]
T = 10
steps = 4
batch_size = 16
subset = 64
grid_size = 4
device = "cpu"
decoder = {{name = "cnn", channels = [4, 8], time_hidden = 16}}

[search]
"run.lr" = {{low = 1e-4, high = 1e-2, log = true}}
"""

BAD_STUDY = """
[study]
name = "latency"
trails = 2

[run]
T = 10

[search]
"run.lr" = {low = 1e-4, high = 1e-2, log = true}
"""

ABLATE = [sys.executable, "-m", "ablate"]


def run_once(command: list[str]) -> tuple[float, int]:
    """Seconds ``command`` took and its exit code."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "COLUMNS": "200"}
    started = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, env=env)
    return time.perf_counter() - started, done.returncode


def timed(commands: list[tuple[str, list[str], int]],
          repeats: int) -> dict[str, float | str]:
    """Median seconds of each command, run round-robin (one of each per round, so a change in
    the machine's load shifts every command alike) after a warm-up round; a command that
    exits with another code than expected is reported as such and left out."""
    seconds: dict[str, list[float]] = {label: [] for label, _, _ in commands}
    failed: dict[str, str] = {}
    for round_ in range(repeats + 1):
        for label, command, expect in commands:
            if label in failed:
                continue
            elapsed, code = run_once(command)
            if code != expect:
                failed[label] = f"exit {code}, expected {expect}"
            elif round_:
                seconds[label].append(elapsed)
    return {label: failed.get(label) or statistics.median(seconds[label])
            for label, _, _ in commands}


def tiny_study(folder: Path) -> Path:
    path = folder / "latency.toml"
    path.write_text(STUDY.format(output=(folder / "out").as_posix()), encoding="utf-8")
    done = subprocess.run([*ABLATE, "run", str(path)], capture_output=True, text=True,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})
    if done.returncode != 0:
        raise SystemExit(f"training the tiny study failed:\n{done.stdout}{done.stderr}")
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--study", type=Path, help="an existing study file for ablate show")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        study = args.study or tiny_study(folder)
        bad = folder / "bad.toml"
        bad.write_text(BAD_STUDY, encoding="utf-8")
        commands = [
            ('python -c "import torch"', [sys.executable, "-c", "import torch"], 0),
            ("ablate --help", [*ABLATE, "--help"], 0),
            ("ablate --version", [*ABLATE, "--version"], 0),
            ("ablate show STUDY", [*ABLATE, "show", str(study)], 0),
            ("ablate report --help", [*ABLATE, "report", "--help"], 0),
            ("ablate list-plugins", [*ABLATE, "list-plugins"], 0),
            ("ablate run BAD_STUDY (an error)", [*ABLATE, "run", str(bad)], 2),
        ]
        results = list(timed(commands, args.repeats).items())
    torch_s = results[0][1]
    print(f"{'command':<34} {'median s':>9} {'x import torch':>15}")
    for label, seconds in results:
        if isinstance(seconds, str):
            print(f"{label:<34} {seconds:>25}")
        else:
            print(f"{label:<34} {seconds:>9.2f} {seconds / torch_s:>15.2f}")
    print(f"({args.repeats} rounds after a warm-up; {os.cpu_count()} CPUs; load average "
          f"{os.getloadavg()[0]:.1f}; python "
          f"{sys.version.split()[0]})")


if __name__ == "__main__":
    main()
