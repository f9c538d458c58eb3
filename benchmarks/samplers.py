"""Gaussian samplers compared on one trained model: time per image against sample quality.

Trains the coursework configuration briefly (or loads ``--checkpoint``), then draws the same
number of images with ancestral sampling (sigma_t^2 = beta_t or beta_tilde_t) and DDIM (eta = 0)
on all T steps and on respaced subsequences, all from the same seed. For each it prints:

- seconds per image (wall clock, sampling only);
- a pixel-space Frechet distance to the MNIST test split: both sets projected on the test set's
  first ``--components`` principal directions, then the Frechet distance of Gaussians fitted
  there. A crude proxy, independent of the metric plugins, meant only to rank samplers against
  each other on the same model; lower is better;
- for DDIM, the RMS difference to the all-T-steps DDIM image drawn from the same x_T: the
  discretisation error the respacing adds (DDIM with eta = 0 is a deterministic map of x_T).

    python benchmarks/samplers.py [--train-steps 1500] [--samples 500] [--checkpoint PATH]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from ablate_builtins.gaussian import Gaussian
from ablate_builtins.mnist import Mnist
from scipy import linalg

from ablate.assembly import Assembly
from ablate.config import parse_run
from ablate.datasets import SCALINGS, to_model_range
from ablate.sampling import load_trained
from ablate.training import Trainer

SAMPLERS: list[tuple[str, dict, int]] = [
    ("ancestral", {}, 0),
    ("ancestral", {"variance": "beta_tilde"}, 0),
    ("ancestral", {}, 100),
    ("ancestral", {"variance": "beta_tilde"}, 100),
    ("ancestral", {"variance": "beta_tilde"}, 50),
    ("ddim", {}, 0),
    ("ddim", {}, 100),
    ("ddim", {}, 50),
    ("ddim", {}, 20),
    ("ddim", {}, 10),
]
"""(sampler, extra gaussian parameters, steps; 0 = all T) in the order they are run."""


def trained(train_steps: int, folder: Path) -> Path:
    """A checkpoint of the coursework configuration after ``train_steps`` steps."""
    config = parse_run({"steps": train_steps, "batch_size": 128, "T": 1000, "device": "cpu",
                        "grid_size": 1, "seed": 0}, source="benchmark")
    return Trainer(config, folder / "run").run().checkpoint


class PixelFrechet:
    """Frechet distance between Gaussians fitted to images projected on principal directions."""

    def __init__(self, real: torch.Tensor, components: int) -> None:
        flat = real.flatten(1).double().numpy()
        self.mean = flat.mean(axis=0)
        _, _, directions = np.linalg.svd(flat - self.mean, full_matrices=False)
        self.directions = directions[:components].T
        self.reference = self._moments(flat)

    def _moments(self, flat: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        projected = (flat - self.mean) @ self.directions
        return projected.mean(axis=0), np.cov(projected, rowvar=False)

    def __call__(self, images: torch.Tensor) -> float:
        mu, sigma = self._moments(images.flatten(1).double().numpy())
        mu_ref, sigma_ref = self.reference
        # d^2 = |mu - mu_r|^2 + tr(S + S_r - 2 (S S_r)^(1/2))   (Frechet distance of Gaussians)
        root = linalg.sqrtm(sigma @ sigma_ref).real
        return float(((mu - mu_ref) ** 2).sum() + np.trace(sigma + sigma_ref - 2 * root))


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
    parser.add_argument("--train-steps", type=int, default=1500)
    parser.add_argument("--samples", type=int, default=500)
    parser.add_argument("--components", type=int, default=32)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        checkpoint = args.checkpoint or trained(args.train_steps, Path(tmp))
        parts = load_trained(checkpoint, device="cpu")
    if parts.config.degradation.name != "gaussian":
        raise SystemExit(f"{checkpoint} is not a gaussian run")
    real = to_model_range(Mnist().load("test").images, parts.config.scaling)
    frechet = PixelFrechet(real, args.components)
    print(f"model: {checkpoint if args.checkpoint else f'{args.train_steps} training steps'}, "
          f"T = {parts.config.T}, {args.samples} samples, torch threads "
          f"{torch.get_num_threads()}")
    halves = PixelFrechet(real[::2], args.components)(real[1::2])
    print(f"pixel Frechet distance between the two halves of the test split: {halves:.2f}")
    print(f"{'sampler':<30} {'steps':>5} {'s/image':>8} {'pixel FD':>9} {'RMS vs T-step DDIM':>19}")
    reference = None
    for sampler, extra, steps in SAMPLERS:
        images, seconds = draw(parts, extra, sampler, steps, args.samples, args.seed)
        label = sampler + "".join(f" {k}={v}" for k, v in extra.items())
        deviation = ""
        if sampler == "ddim" and steps == 0:
            reference = images
        if sampler == "ddim" and reference is not None:
            deviation = f"{(images - reference).square().mean().sqrt():.4f}"
        print(f"{label:<30} {steps or parts.config.T:>5} {seconds / args.samples:>8.4f} "
              f"{frechet(images):>9.2f} {deviation:>19}", flush=True)


if __name__ == "__main__":
    main()
