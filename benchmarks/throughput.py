"""Training throughput of the engine against a hand-written PyTorch loop, same process.

Both train the coursework configuration (CNN, linear schedule, T = 1000, Adam 2e-4, batch 128) on
the same bundled MNIST images for the same number of steps; runs alternate so that a busy machine
slows both alike. Prints images/s of each and the ratio engine / raw (target: >= 0.95).

    python benchmarks/throughput.py [--steps 60] [--repeats 3]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from ablate.config import parse_run
from ablate.datasets import to_model_range
from ablate.training import Trainer


def raw_loop(images: torch.Tensor, steps: int, batch: int, seed: int) -> float:
    """The coursework DDPM step written out by hand; returns images/s."""
    config = parse_run({}, source="benchmark")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = config.decoder.build(1, 28)
    optimizer = torch.optim.Adam(model.parameters(), lr=2e-4)
    alpha_bar = config.schedule.alpha_bar(1000).float()
    data_rng = torch.Generator().manual_seed(seed)
    noise_rng = torch.Generator().manual_seed(seed + 1)
    order = torch.randperm(len(images), generator=data_rng)
    started = time.perf_counter()
    for i in range(steps):
        x = to_model_range(images[order[i * batch:(i + 1) * batch]], "centered")
        t = torch.randint(1, 1001, (batch,), generator=noise_rng)
        eps = torch.randn(x.shape, generator=noise_rng)
        a = alpha_bar[t - 1].view(-1, 1, 1, 1)
        loss = F.mse_loss(model(a.sqrt() * x + (1 - a).sqrt() * eps, t.float() / 1000), eps)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    return steps * batch / (time.perf_counter() - started)


def engine(steps: int, batch: int, seed: int) -> float:
    """ablate's Trainer on the same configuration; images/s of its training loop."""
    config = parse_run({"steps": steps, "subset": steps * batch, "batch_size": batch,
                        "seed": seed, "grid_size": 1, "T": 1000, "device": "cpu"},
                       source="benchmark")
    with tempfile.TemporaryDirectory() as tmp:
        result = Trainer(config, Path(tmp) / "run").run()
    return result.metrics[-1]["images_per_s"]  # the training loop's own clock, no sampling


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    from ablate_builtins.mnist import Mnist

    images = Mnist().load("train").images[: args.steps * args.batch]
    raw, ours = [], []
    for repeat in range(args.repeats):
        raw.append(raw_loop(images, args.steps, args.batch, seed=repeat))
        ours.append(engine(args.steps, args.batch, seed=repeat))
        print(f"repeat {repeat}: raw {raw[-1]:.1f} images/s, engine {ours[-1]:.1f} images/s")
    ratio = statistics.median(o / r for o, r in zip(ours, raw, strict=True))
    print(f"torch threads: {torch.get_num_threads()}")
    print(f"median raw {statistics.median(raw):.1f} images/s, engine "
          f"{statistics.median(ours):.1f} images/s, ratio engine/raw {ratio:.3f} (target >= 0.95)")


if __name__ == "__main__":
    main()
