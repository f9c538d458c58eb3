"""Training throughput on a busy machine, against the same machine without the extra load.

The quickstart's model (configs/quick.toml: the coursework CNN, batch 64, lr 1e-3) trains a fixed
number of steps with the engine, once with the machine as it is and once under a fixed competing
load (``--load`` busy processes started here), with torch's defaults (one thread per core,
spin-waiting) and with ablate's thread policy (ablate.threads: passive waiting when other work
runs, a thread per usable core), side by side in one run. Each measurement is a fresh process,
since the wait policy must be set before torch starts its OpenMP runtime. Prints images/s, the
loaded/idle ratio of each policy and the load average at each stage (target for ablate: >= 0.4
of idle under a 2-process load; a fair share of 2 cores is 0.5).

    python benchmarks/contention.py [--steps 16] [--batch 64] [--load 2]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

POLICIES = ("torch-default", "ablate")


def child(policy: str, steps: int, batch: int) -> None:
    """One measurement, in this (fresh) process: prints {"images_per_s", "threads"}."""
    if policy == "ablate":
        from ablate.threads import prepare_environment

        prepare_environment()
    import torch

    from ablate.config import parse_run
    from ablate.threads import apply_thread_policy
    from ablate.training import Trainer

    threads = apply_thread_policy() if policy == "ablate" else torch.get_num_threads()
    config = parse_run({"steps": steps, "subset": steps * batch, "batch_size": batch,
                        "lr": 1e-3, "grid_size": 1, "T": 100, "device": "cpu"},
                       source="benchmark")
    with tempfile.TemporaryDirectory() as tmp:
        result = Trainer(config, Path(tmp) / "run").run()
    print(json.dumps({"images_per_s": result.metrics[-1]["images_per_s"],
                      "threads": threads}))


def measure(policy: str, steps: int, batch: int) -> dict[str, float]:
    env = {k: v for k, v in os.environ.items()
           if k not in ("OMP_NUM_THREADS", "OMP_WAIT_POLICY", "ABLATE_THREADS")}
    done = subprocess.run([sys.executable, __file__, "--child", policy, "--steps", str(steps),
                           "--batch", str(batch)], env=env, capture_output=True, text=True,
                          check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def busy(count: int) -> list[subprocess.Popen[bytes]]:
    """The competing load: processes that only burn CPU."""
    return [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(count)]


def load_average() -> str:
    return " ".join(f"{v:.2f}" for v in os.getloadavg())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=16)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--load", type=int, default=2, help="busy processes competing")
    parser.add_argument("--child", choices=POLICIES, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child, args.steps, args.batch)
        return
    print(f"{os.cpu_count()} cores; load average before: {load_average()}")
    idle = {p: measure(p, args.steps, args.batch) for p in POLICIES}
    print(f"without extra load: load average {load_average()}")
    workers = busy(args.load)
    try:
        time.sleep(1.0)  # let the busy processes get going
        loaded = {p: measure(p, args.steps, args.batch) for p in POLICIES}
        print(f"with {args.load} busy processes: load average {load_average()}")
    finally:
        for worker in workers:
            worker.kill()
            worker.wait()
    print(f"\n{'policy':<14} {'threads':>9} {'idle img/s':>11} {'loaded img/s':>13} "
          f"{'ratio':>6}")
    for p in POLICIES:
        threads = f"{idle[p]['threads']:.0f}/{loaded[p]['threads']:.0f}"
        ratio = loaded[p]["images_per_s"] / idle[p]["images_per_s"]
        print(f"{p:<14} {threads:>9} {idle[p]['images_per_s']:>11.1f} "
              f"{loaded[p]['images_per_s']:>13.1f} {ratio:>6.2f}")
    speedup = [(loaded if stage else idle)["ablate"]["images_per_s"] /
               (loaded if stage else idle)["torch-default"]["images_per_s"] for stage in (0, 1)]
    print(f"ablate / torch-default: {speedup[0]:.2f}x without extra load, {speedup[1]:.2f}x "
          f"with it")
    print("target: ablate's loaded/idle ratio >= 0.4 (a fair share is 0.5)")


if __name__ == "__main__":
    main()
