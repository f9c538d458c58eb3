"""Drawing samples from a saved checkpoint with the run's own degradation sampler."""

from __future__ import annotations

from pathlib import Path

import torch

from ablate.assembly import Assembly, assemble
from ablate.checkpoint import load_checkpoint, unprefixed
from ablate.device import resolve_device
from ablate.errors import CheckpointError
from ablate.evaluation import Progress, draw_samples
from ablate.plugin_host import PluginHost
from ablate.training import config_from_checkpoint, load_model_state


def load_trained(path: Path, *, device: str | None = None,
                 host: PluginHost | None = None) -> Assembly:
    """Rebuild a run's model and averaged weights from its checkpoint."""
    tensors, meta = load_checkpoint(path)
    config = config_from_checkpoint(meta, path, host)
    shape = meta.get("image_shape")
    if not (isinstance(shape, list) and len(shape) == 3 and all(isinstance(v, int) for v in shape)):
        raise CheckpointError(f"{path} does not record the image shape it was trained on")
    parts = assemble(config, (shape[0], shape[1], shape[2]),
                     resolve_device(device or config.device))
    load_model_state(parts.model, unprefixed("model", tensors), path)
    parts.process.load_state_dict(unprefixed("process", tensors))
    try:
        parts.averager.load_state_dict(unprefixed("ema", tensors))
    except (RuntimeError, KeyError) as exc:
        raise CheckpointError(f"{path} has averaged weights that do not fit this model "
                              f"({str(exc).splitlines()[0]})") from None
    return parts


def draw(parts: Assembly, count: int, seed: int, batch_size: int = 256, *,
         sampler: str | None = None, steps: int | None = None,
         progress: Progress | None = None) -> torch.Tensor:
    """``count`` samples in the model's range, drawn in batches from a seeded generator with
    the degradation's ``sampler`` (None: its default) on ``steps`` steps (None: its default)."""
    return draw_samples(parts, count, seed, sampler=sampler, steps=steps, batch_size=batch_size,
                        progress=progress)
