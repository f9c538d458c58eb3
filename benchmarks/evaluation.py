"""The real-against-real floor of every feature metric, and the time of scoring samples.

First the floor: ``--draws`` random sets of real training digits at each of the ``--floor-n``
sample counts, scored against the test split like generated samples; it prints the mean, the
spread (standard deviation) and the range over the draws (``ablate.floor``). Then the timing:
``--n`` random training digits scored with fid, kid, precision, recall and classifier_score
twice in one process: the first call also embeds the reference split and computes KID's
reference term (once per process), the second is what every further evaluation costs. With
``--checkpoint`` it then times ``evaluate`` on that model, sampling included.

    python benchmarks/evaluation.py [--n 1000] [--floor-n 256,500,1000] [--draws 5]
        [--checkpoint runs/x/checkpoints/last.safetensors --sampler ddim --steps 50]
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import torch
from ablate_builtins.mnist import Mnist

from ablate.evaluation import evaluate, evaluate_samples
from ablate.floor import real_floor
from ablate.sampling import load_trained

T = TypeVar("T")
FEATURE_METRICS = ["fid", "kid", "precision", "recall", "classifier_score"]


def timed(label: str, call: Callable[[], T]) -> T:
    """``call()``, printing how long it took."""
    started = time.perf_counter()
    result = call()
    print(f"{label}: {time.perf_counter() - started:.2f} s")
    return result


def print_floor(dataset: Mnist, n: int, draws: int) -> None:
    """Mean, spread and range of every metric over ``draws`` random sets of ``n`` real digits."""
    floors = real_floor(dataset, FEATURE_METRICS, n, draws=draws)
    print(f"floor: {draws} random draws of {n} real training digits against the test split")
    for key, f in floors.items():
        print(f"  {key:>17} {f.mean:.4g} +- {f.std:.2g} (sd)  range [{f.low:.4g}, {f.high:.4g}]")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1000)
    parser.add_argument("--checkpoint", type=Path)
    parser.add_argument("--sampler")
    parser.add_argument("--steps", type=int)
    parser.add_argument("--floor-n", default="256,500,1000",
                        help="sample counts of the floor, comma-separated; empty = skip it")
    parser.add_argument("--draws", type=int, default=5, help="random draws per sample count")
    args = parser.parse_args()
    dataset = Mnist()
    for n in [int(part) for part in args.floor_n.split(",") if part.strip()]:
        print_floor(dataset, n, args.draws)
    print(f"{torch.get_num_threads()} threads; scoring {args.n} samples with "
          f"{', '.join(FEATURE_METRICS)}")
    train = dataset.load("train").images
    index = torch.randperm(len(train), generator=torch.Generator().manual_seed(0))[:args.n]
    images = train[index].float() / 255
    timed("first evaluation in the process (embeds the reference split)",
          lambda: evaluate_samples(images, dataset, FEATURE_METRICS))
    values = timed("each further evaluation (sampling excluded)",
                   lambda: evaluate_samples(images, dataset, FEATURE_METRICS))
    for key, v in values.items():
        print(f"  {key:>17} {v.value:.4g}  [{v.low:.4g}, {v.high:.4g}]  n={v.n}")
    if args.checkpoint is None:
        return
    parts = load_trained(args.checkpoint)
    values = timed(f"evaluate from {args.checkpoint} (sampler {args.sampler or 'default'}, "
                   f"steps {args.steps or 'default'}; sampling included)",
                   lambda: evaluate(parts, FEATURE_METRICS, args.n, sampler=args.sampler,
                                    steps=args.steps))
    for key, v in values.items():
        print(f"  {key:>17} {v.value:.4g}  [{v.low:.4g}, {v.high:.4g}]  n={v.n}")


if __name__ == "__main__":
    main()
