"""Time to quality: how many CPU-seconds, wall seconds and images a recipe needs before its
samples score FID below 4x, 2x and 1.5x the real-data floor, and a classifier score above 9.

For each run file: train with ablate's own engine, stop every ``--every`` images (through the
engine's Ctrl-C path, which saves the state at that step and resumes exactly), score
``--samples`` samples with fid and classifier_score (the run file's ``[eval]`` sampler and
steps, else ``--sampler`` / ``--steps``), log the point, and go on. Training time is the
engine's process CPU time and wall time, restarts included; scoring time is reported apart. A
recipe stops when every threshold is reached, when its run ends, or when its ``--budget`` of
wall seconds (training and scoring together) is spent; its table cells then say "not reached".
Everything is kept under ``--out``/<recipe>: running the same command again continues where it
stopped. The floor is the mean FID of ``--floor-draws`` random draws of ``--samples`` real
training digits (``ablate.floor``); each threshold is reached at the first scored point at or
below it, so the figures are upper bounds with the resolution of ``--every``.

    python benchmarks/time_to_quality.py configs/coursework.toml configs/unet_quick.toml \\
        configs/fast.toml [--every 16000] [--samples 1000] [--budget 3600] [--out runs/ttq] \\
        [--plot docs/figures/time_to_quality.png]

Run it on a quiet machine: the figures are CPU and wall time.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import signal
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from ablate.atomic import write_text_atomic
from ablate.checkpoint import load_checkpoint
from ablate.config import RunConfig
from ablate.evaluation import evaluate
from ablate.floor import real_floor
from ablate.run_file import load_run_file
from ablate.sampling import load_trained
from ablate.training import Interrupted, SilentReporter, Trainer

METRICS = ["fid", "classifier_score"]
FID_MULTIPLES = (4.0, 2.0, 1.5)
CLASSIFIER_TARGET = 9.0
LOG_NAME = "time_to_quality.jsonl"


class StopAt(SilentReporter):
    """Asks the engine to stop after step ``step``, as Ctrl-C would: the engine finishes that
    step, saves its full state and raises Interrupted; resuming continues exactly."""

    def __init__(self, step: int) -> None:
        self.step = step

    def advance(self, step: int, loss: float | None) -> None:
        if step == self.step:
            os.kill(os.getpid(), signal.SIGINT)


@dataclass
class Point:
    """One scored point of a recipe: where training stood and what its samples scored."""

    images: int
    step: int
    train_cpu_s: float
    train_wall_s: float
    eval_wall_s: float
    fid: float
    classifier_score: float


@dataclass
class Outcome:
    """A recipe's scored points and why scoring stopped."""

    name: str
    points: list[Point]
    stopped: str  # why no more points were scored: "reached", "budget" or "run ended"


@dataclass(frozen=True)
class Target:
    """A quality level: FID at or below a multiple of the floor, or the classifier score at or
    above a value."""

    label: str
    metric: str
    value: float

    def reached_by(self, point: Point) -> bool:
        if self.metric == "fid":
            return point.fid <= self.value
        return point.classifier_score >= self.value

    def first(self, points: Sequence[Point]) -> Point | None:
        """The first scored point at this level, or None."""
        return next((p for p in points if self.reached_by(p)), None)


def targets(floor_fid: float) -> list[Target]:
    """FID at 4x, 2x and 1.5x ``floor_fid``, then the classifier score of 9."""
    fid = [Target(f"FID <= {k:g}x floor ({k * floor_fid:.1f})", "fid", k * floor_fid)
           for k in FID_MULTIPLES]
    return [*fid, Target(f"classifier score >= {CLASSIFIER_TARGET:g}", "classifier_score",
                         CLASSIFIER_TARGET)]


def read_points(path: Path) -> list[Point]:
    """The points an earlier invocation scored and logged (none the first time)."""
    if not path.exists():
        return []
    return [Point(**json.loads(line)) for line in path.read_text(encoding="utf-8").splitlines()
            if line.strip()]


def saved_step(checkpoint: Path) -> int:
    """The step the recipe's checkpoint stands at; 0 before it has trained."""
    return load_checkpoint(checkpoint)[1]["progress"]["step"] if checkpoint.exists() else 0


@dataclass
class Clock:
    """Time spent on a recipe so far, kept on disk after every segment (interrupted ones too)."""

    train_cpu_s: float = 0.0
    train_wall_s: float = 0.0
    eval_wall_s: float = 0.0

    @classmethod
    def read(cls, path: Path) -> Clock:
        return cls(**json.loads(path.read_text(encoding="utf-8"))) if path.exists() else cls()

    def write(self, path: Path) -> None:
        """Atomically: a benchmark killed mid-write keeps the previous clock."""
        path.parent.mkdir(parents=True, exist_ok=True)
        write_text_atomic(path, json.dumps(vars(self)) + "\n")


def run_recipe(run_file: Path, out: Path, *, every: int, samples: int, budget: float,
               sampler: str | None, steps: int | None, floor_fid: float) -> Outcome:
    """Train and score one recipe until its targets, its budget or its end; resumable."""
    loaded = load_run_file(run_file)
    config = loaded.run
    sampler = loaded.evaluation.sampler if loaded.evaluation else sampler
    steps = loaded.evaluation.steps if loaded.evaluation else steps
    images = len(config.dataset.load("train").images) if not config.subset else config.subset
    total_steps = config.steps or config.epochs * (images // config.batch_size)
    interval = max(1, round(every / config.batch_size))
    folder = out / run_file.stem
    log, clock_file = folder / LOG_NAME, folder / "clock.json"
    checkpoint = folder / "run" / "checkpoints" / "last.safetensors"
    points, clock = read_points(log), Clock.read(clock_file)
    goals = targets(floor_fid)
    while True:
        if all(goal.first(points) for goal in goals):
            return Outcome(run_file.stem, points, "reached")
        done = saved_step(checkpoint)
        if done == (points[-1].step if points else 0):  # scored: train the next segment
            if done >= total_steps:
                return Outcome(run_file.stem, points, "run ended")
            if clock.train_wall_s + clock.eval_wall_s >= budget:
                return Outcome(run_file.stem, points, "budget")
            done = train_segment(config, folder / "run", min(done + interval, total_steps),
                                 total_steps, clock, clock_file)
        started = time.perf_counter()
        values = evaluate(load_trained(checkpoint), METRICS, samples, sampler=sampler,
                          steps=steps)
        clock.eval_wall_s += time.perf_counter() - started
        clock.write(clock_file)
        point = Point(done * config.batch_size, done, clock.train_cpu_s, clock.train_wall_s,
                      clock.eval_wall_s, values["fid"].value, values["classifier_score"].value)
        points.append(point)
        with log.open("a", encoding="utf-8") as f:
            f.write(json.dumps(vars(point)) + "\n")
        print(f"  {run_file.stem}: {point.images:,} images, {point.train_cpu_s:.0f} CPU-s, "
              f"FID {point.fid:.1f}, classifier score {point.classifier_score:.2f}",
              flush=True)


def train_segment(config: RunConfig, run_dir: Path, target: int, total_steps: int,
                  clock: Clock, clock_file: Path) -> int:
    """Train (resuming) up to step ``target``, adding the time to ``clock``; the step reached."""
    cpu, wall = time.process_time(), time.perf_counter()
    reporter = StopAt(target) if target < total_steps else SilentReporter()
    try:
        Trainer(config, run_dir, reporter=reporter).run(resume=True)
    except Interrupted:
        if saved_step(run_dir / "checkpoints" / "last.safetensors") != target:
            raise  # a real Ctrl-C: state and time are saved, the next invocation continues
    finally:
        clock.train_cpu_s += time.process_time() - cpu
        clock.train_wall_s += time.perf_counter() - wall
        clock.write(clock_file)
    return target


def table(outcomes: Sequence[Outcome], floor_fid: float) -> str:
    """One markdown row per recipe: images / CPU-s / wall-s to each target, or why not."""
    goals = targets(floor_fid)
    lines = ["| recipe | " + " | ".join(goal.label for goal in goals) + " | best FID (where) |",
             "|---" * (len(goals) + 2) + "|"]
    for outcome in outcomes:
        cells = []
        for goal in goals:
            point = goal.first(outcome.points)
            if point is not None:
                cells.append(f"{point.images:,} images, {point.train_cpu_s:.0f} CPU-s, "
                             f"{point.train_wall_s:.0f} s")
            elif outcome.stopped == "budget":
                cells.append("not reached within budget")
            else:
                cells.append("not reached (run ended)")
        scored = [p for p in outcome.points if math.isfinite(p.fid)]
        top = min(scored, key=lambda p: p.fid) if scored else None
        best = f"{top.fid:.1f} ({top.images:,} images, {top.train_cpu_s:.0f} CPU-s)" if top \
            else "-"
        lines.append(f"| {outcome.name} | " + " | ".join(cells) + f" | {best} |")
    return "\n".join(lines)


def plot(outcomes: Sequence[Outcome], floor_fid: float, path: Path) -> None:
    """FID against training CPU-seconds, one line per recipe, log FID, the thresholds dashed."""
    from matplotlib.figure import Figure

    figure = Figure(figsize=(7, 4.2), layout="constrained")
    axes = figure.add_subplot()
    for outcome in outcomes:
        points = [p for p in outcome.points if math.isfinite(p.fid)]
        axes.plot([p.train_cpu_s / 60 for p in points], [p.fid for p in points], marker="o",
                  markersize=3, label=outcome.name)
    for multiple in (1.0, *FID_MULTIPLES):
        axes.axhline(multiple * floor_fid, color="grey", linewidth=0.8,
                     linestyle="-" if multiple == 1 else "--")
        axes.annotate(f"{multiple:g}x floor", (1.0, multiple * floor_fid),
                      xycoords=("axes fraction", "data"), xytext=(-4, 2),
                      textcoords="offset points", ha="right", fontsize=8, color="grey")
    axes.set_yscale("log")
    axes.set_xlabel("training CPU-minutes")
    axes.set_ylabel("FID (lower is better)")
    axes.legend()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=150)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("recipes", nargs="+", type=Path, help="run files to compare")
    parser.add_argument("--every", type=int, default=16_000, help="images between scorings")
    parser.add_argument("--samples", type=int, default=1000, help="samples per scoring")
    parser.add_argument("--budget", type=float, default=3600.0,
                        help="wall seconds per recipe, training and scoring together")
    parser.add_argument("--sampler", default=None,
                        help="sampler when the run file has no [eval] table (default: the "
                             "degradation's own; for gaussian, ancestral on --steps respaced "
                             "steps, the better cheap evaluator of eps-models)")
    parser.add_argument("--steps", type=int, default=50,
                        help="sampling steps when the run file has no [eval] table")
    parser.add_argument("--floor-draws", type=int, default=10)
    parser.add_argument("--out", type=Path, default=Path("runs/time_to_quality"))
    parser.add_argument("--plot", type=Path, default=None,
                        help="also draw FID against training CPU time to this PNG")
    args = parser.parse_args(argv)
    # torch's optimisers import its compiler stack on first use (seconds, once per process):
    # pay for it here rather than in the first recipe's training time
    torch.optim.Adam([torch.zeros(1, requires_grad=True)])
    dataset = load_run_file(args.recipes[0]).run.dataset
    floor = real_floor(dataset, ["fid"], args.samples, draws=args.floor_draws)["fid"]
    print(f"floor: FID {floor.mean:.2f} +- {floor.std:.2f} (sd over {args.floor_draws} random "
          f"draws of {args.samples} real training digits)", flush=True)
    outcomes = []
    for recipe in args.recipes:
        print(f"{recipe}:", flush=True)
        outcomes.append(run_recipe(recipe, args.out, every=args.every, samples=args.samples,
                                   budget=args.budget, sampler=args.sampler, steps=args.steps,
                                   floor_fid=floor.mean))
    print(f"\nTime to quality (n = {args.samples} samples; images seen, training CPU-seconds, "
          f"training wall seconds; scored every {args.every:,} images):\n")
    print(table(outcomes, floor.mean))
    if args.plot:
        plot(outcomes, floor.mean, args.plot)
        print(f"\nplot: {args.plot}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
