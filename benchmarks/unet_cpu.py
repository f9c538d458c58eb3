"""Training speed (images/s) of the cnn, unet and unet-witt decoders at their defaults on this CPU.

Each measurement is whole optimisation steps as the engine takes them (Gaussian eps-prediction
loss on real MNIST images, backward, Adam) after two warm-up steps. Decoders alternate within
each repeat, so a machine that gets busier slows them alike; the table shows the median.

    python benchmarks/unet_cpu.py [--steps 10] [--repeats 3] [--batches 64 128] [--threads N]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from ablate.assembly import assemble
from ablate.config import parse_run
from ablate.datasets import to_model_range

DECODERS = ("cnn", "unet", "unet-witt")


def images_per_second(decoder: str, images: torch.Tensor, steps: int, batch: int) -> float:
    """Train ``decoder`` (defaults) for ``steps`` steps of ``batch`` images; images/s."""
    config = parse_run({"decoder": decoder, "batch_size": batch, "device": "cpu"},
                       source="benchmark")
    parts = assemble(config, tuple(images.shape[1:]), torch.device("cpu"))
    optimizer = torch.optim.Adam(parts.model.parameters(), lr=1e-3)
    generator = torch.Generator().manual_seed(0)
    x0 = to_model_range(images[:batch], config.scaling)
    for step in range(steps + 2):
        if step == 2:  # after warm-up: first-call allocations and kernel selection
            started = time.perf_counter()
        loss = parts.process.loss(parts.model, x0, generator)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    return steps * batch / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--batches", type=int, nargs="+", default=[64, 128])
    parser.add_argument("--decoders", nargs="+", default=list(DECODERS))
    parser.add_argument("--threads", type=int, default=0, help="torch threads; 0 = default")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    from ablate_builtins.mnist import Mnist

    images = Mnist().load("train").images[: max(args.batches)]
    speeds: dict[tuple[str, int], list[float]] = {}
    for repeat in range(args.repeats):
        for batch in args.batches:
            for decoder in args.decoders:
                speed = images_per_second(decoder, images, args.steps, batch)
                speeds.setdefault((decoder, batch), []).append(speed)
                print(f"repeat {repeat}: {decoder} batch {batch}: {speed:.1f} images/s",
                      flush=True)
    parameters = {d: sum(p.numel() for p in parse_run({"decoder": d}, source="benchmark")
                         .decoder.build(1, 28).parameters()) for d in args.decoders}
    print(f"\ntorch {torch.__version__}, {torch.get_num_threads()} threads, median of "
          f"{args.repeats} x {args.steps} steps")
    header = f"{'decoder':<10} {'parameters':>11}" + "".join(
        f" {f'batch {b} img/s':>16}" for b in args.batches)
    print(header)
    print("-" * len(header))
    for decoder in args.decoders:
        row = "".join(f" {statistics.median(speeds[decoder, b]):>16.1f}" for b in args.batches)
        print(f"{decoder:<10} {parameters[decoder]:>11,}{row}")


if __name__ == "__main__":
    main()
