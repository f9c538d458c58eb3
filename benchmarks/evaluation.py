"""Time of scoring samples with every feature metric, sampling excluded and included.

Scores ``--n`` images with fid, kid, precision, recall and classifier_score twice in one
process: the first call also embeds the reference split and computes KID's reference term
(once per process), the second is what every further evaluation costs. The images are MNIST
training digits (real, but not in the test split the metrics compare with). With
``--checkpoint`` it then times ``evaluate`` on that model, sampling included.

    python benchmarks/evaluation.py [--n 1000] [--checkpoint runs/x/checkpoints/last.safetensors
                                    --sampler ddim --steps 50]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch
from ablate_builtins.mnist import Mnist

from ablate.evaluation import evaluate, evaluate_samples
from ablate.sampling import load_trained

FEATURE_METRICS = ["fid", "kid", "precision", "recall", "classifier_score"]


def timed(label: str, call):
    started = time.perf_counter()
    result = call()
    print(f"{label}: {time.perf_counter() - started:.2f} s")
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1000)
    parser.add_argument("--checkpoint", type=Path)
    parser.add_argument("--sampler")
    parser.add_argument("--steps", type=int)
    args = parser.parse_args()
    print(f"{torch.get_num_threads()} threads; scoring {args.n} samples with "
          f"{', '.join(FEATURE_METRICS)}")
    dataset = Mnist()
    images = dataset.load("train").images[:args.n].float() / 255
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
