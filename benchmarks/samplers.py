"""Gaussian samplers compared on one trained model: time per image against sample quality.

Trains the coursework configuration (the coursework CNN, linear schedule, T = 1000) for
``--train-steps`` steps at ``--lr`` (or loads ``--checkpoint``), then draws the same number of
images with ancestral sampling (sigma_t^2 = beta_t or beta_tilde_t) and DDIM (eta = 0) on all T
steps (ancestral) and on respaced subsequences, all from the same seed. For each it prints:

- seconds per image (wall clock, sampling only) and the speed-up over all-T ancestral sampling;
- FID against the MNIST test split in the bundled feature network's space (the ``fid`` metric
  plugin), with its 95% bootstrap interval.

    python benchmarks/samplers.py [--train-steps 2000] [--samples 300] [--checkpoint PATH]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch
from ablate_builtins.gaussian import Gaussian

from ablate.assembly import Assembly
from ablate.config import parse_run
from ablate.datasets import SCALINGS, to_unit_range
from ablate.evaluation import evaluate_samples
from ablate.sampling import load_trained
from ablate.training import Trainer

SAMPLERS: list[tuple[str, dict, int]] = [
    ("ancestral", {}, 0),
    ("ddim", {}, 100),
    ("ddim", {}, 50),
    ("ddim", {"clip_x0": True}, 50),
    ("ancestral", {"variance": "beta_tilde"}, 50),
    ("ddim", {}, 20),
]
"""(sampler, extra gaussian parameters, steps; 0 = all T) in the order they are run."""


def trained(train_steps: int, lr: float, folder: Path) -> Path:
    """A checkpoint of the coursework configuration after ``train_steps`` steps."""
    config = parse_run({"steps": train_steps, "batch_size": 64, "lr": lr, "T": 1000,
                        "device": "cpu", "grid_size": 1, "seed": 0}, source="benchmark")
    return Trainer(config, folder / "run").run().checkpoint


def draw(parts: Assembly, extra: dict, sampler: str, steps: int, count: int,
         seed: int) -> tuple[torch.Tensor, float]:
    """``count`` images with one sampler setting, and the seconds they took."""
    config = parts.config
    process = Gaussian(**{**config.degradation.params(), **extra}).bind(
        config.schedule.alpha_bar(config.T), SCALINGS[config.scaling], parts.device)
    model = parts.averager.sampling_model()
    generator = torch.Generator(parts.device).manual_seed(seed)
    started = time.perf_counter()
    images = process.sample(model, (count, *parts.image_shape), generator, sampler=sampler,
                            steps=steps)
    return images.cpu(), time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", type=Path, help="a trained gaussian run's checkpoint")
    parser.add_argument("--train-steps", type=int, default=2000)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--samples", type=int, default=300)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        checkpoint = args.checkpoint or trained(args.train_steps, args.lr, Path(tmp))
        parts = load_trained(checkpoint, device="cpu")
    if parts.config.degradation.name != "gaussian":
        raise SystemExit(f"{checkpoint} is not a gaussian run")
    source = checkpoint if args.checkpoint else f"{args.train_steps} steps at lr {args.lr}"
    print(f"model: {parts.config.decoder.name}, {source}, T = {parts.config.T}, "
          f"{args.samples} samples, torch threads {torch.get_num_threads()}")
    print(f"{'sampler':<30} {'steps':>5} {'s/image':>8} {'speed-up':>8} "
          f"{'FID [95% interval]':>24}")
    baseline = None
    for sampler, extra, steps in SAMPLERS:
        images, seconds = draw(parts, extra, sampler, steps, args.samples, args.seed)
        baseline = baseline or seconds
        fid = evaluate_samples(to_unit_range(images, parts.config.scaling),
                               parts.config.dataset, ["fid"], seed=args.seed)["fid"]
        label = sampler + "".join(f" {k}={v}" for k, v in extra.items())
        interval = f"{fid.value:.1f} [{fid.low:.1f}, {fid.high:.1f}]"
        print(f"{label:<30} {steps or parts.config.T:>5} {seconds / args.samples:>8.4f} "
              f"{baseline / seconds:>7.1f}x {interval:>24}", flush=True)


if __name__ == "__main__":
    main()
