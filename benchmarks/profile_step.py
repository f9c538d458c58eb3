"""Where a recipe's time goes on this machine: one training step split into the loss's forward
pass, the backward pass, the optimiser step (with gradient clipping) and the EMA update, the
operators that take the most CPU time (torch.profiler), and what scoring costs (sampling at the
recipe's evaluation sampler and steps, then the metrics).

The split is timed with perf_counter around each phase of the engine's own pieces (the run
file's decoder, degradation loss, optimiser and averager, assembled as ``ablate train`` would)
on real MNIST batches, after warm-up steps, the median over ``--steps`` steps, in fp32 (the
recipe's precision and channels_last settings are not applied); the operator table comes from
a separate profiled stretch, since profiling slows every operator.

    python benchmarks/profile_step.py configs/fast.toml [--steps 20] [--samples 1000]

Run it on a quiet machine.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import torch
from torch.profiler import ProfilerActivity, profile

from ablate.assembly import assemble
from ablate.datasets import to_model_range, to_unit_range
from ablate.device import resolve_device
from ablate.evaluation import draw_samples, evaluate_samples
from ablate.recipe import TrainingRecipe
from ablate.run_file import load_run_file

PHASES = ("forward (loss)", "backward", "optimiser step", "EMA update")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("recipe", type=Path, help="run file")
    parser.add_argument("--steps", type=int, default=20, help="timed training steps")
    parser.add_argument("--samples", type=int, default=1000, help="samples scored")
    parser.add_argument("--rows", type=int, default=12, help="operators listed")
    args = parser.parse_args(argv)
    loaded = load_run_file(args.recipe)
    config = loaded.run
    device = resolve_device(config.device)
    images = config.dataset.load("train").images
    parts = assemble(config, tuple(images.shape[1:]), device)
    recipe = TrainingRecipe(config, parts.model, device, total_steps=10 * args.steps)
    rng = torch.Generator(device).manual_seed(config.seed)
    batch = config.batch_size
    x0 = to_model_range(images[:batch], config.scaling).to(device)

    def now() -> float:
        """The time once the device has finished what it was given (CUDA runs ahead)."""
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        return time.perf_counter()

    def timed_step() -> list[float]:
        marks = [now()]
        loss = parts.process.loss(recipe.network, x0, rng)
        marks.append(now())
        recipe.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        marks.append(now())
        recipe.clip_gradients()
        recipe.optimizer.step()
        recipe.scheduler.step()
        marks.append(now())
        parts.averager.update(parts.model, 1000)
        marks.append(now())
        return [b - a for a, b in zip(marks, marks[1:], strict=False)]

    for _ in range(3):
        timed_step()
    phases = list(zip(*(timed_step() for _ in range(args.steps)), strict=True))
    medians = [statistics.median(p) for p in phases]
    step = sum(medians)
    print(f"{args.recipe}: {parts.parameter_count:,} parameters, batch {batch}, "
          f"{torch.get_num_threads()} threads, device {device}")
    print(f"training step {1000 * step:.1f} ms = {batch / step:.0f} images/s "
          f"(median of {args.steps})")
    for name, seconds in zip(PHASES, medians, strict=True):
        print(f"  {name:<15} {1000 * seconds:7.1f} ms  {100 * seconds / step:4.0f}%")

    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(max(3, args.steps // 4)):
            timed_step()
    print("\noperators by self CPU time (profiled training steps):")
    print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=args.rows))

    evaluation = loaded.evaluation
    sampler = evaluation.sampler if evaluation else None
    steps = evaluation.steps if evaluation else None
    started = time.perf_counter()
    drawn = draw_samples(parts, args.samples, 0, sampler=sampler, steps=steps)
    sampled = time.perf_counter() - started
    started = time.perf_counter()
    evaluate_samples(to_unit_range(drawn, config.scaling), config.dataset,
                     ["fid", "classifier_score"])
    scored = time.perf_counter() - started
    print(f"scoring {args.samples} samples: sampling {sampled:.1f} s, metrics {scored:.1f} s; "
          f"one training step of {batch} costs {step:.3f} s, so one scoring = "
          f"{(sampled + scored) / step:.0f} training steps")
    return 0


if __name__ == "__main__":
    sys.exit(main())
