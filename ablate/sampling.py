"""Drawing samples from a saved checkpoint with the run's own degradation sampler."""

from __future__ import annotations

from pathlib import Path

import torch

from ablate.assembly import Assembly, assemble
from ablate.checkpoint import checked_image_shape, load_checkpoint, restoring, unprefixed
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
    shape = checked_image_shape(meta, path)
    parts = restoring(path, "model description (its image shape does not build the model)",
                      lambda: assemble(config, shape, resolve_device(device or config.device)))
    load_model_state(parts.model, unprefixed("model", tensors), path)
    restoring(path, "degradation state",
              lambda: parts.process.load_state_dict(unprefixed("process", tensors)))
    restoring(path, "EMA state (averaged weights that do not fit this model)",
              lambda: parts.averager.load_state_dict(unprefixed("ema", tensors)))
    for name, value in unprefixed("ema", tensors).items():
        if value.is_floating_point() and not torch.isfinite(value).all():
            raise CheckpointError(f"{path} has non-finite averaged weights ({name!r}): they "
                                  f"cannot sample")
    return parts


def draw(parts: Assembly, count: int, seed: int, batch_size: int = 256, *,
         sampler: str | None = None, steps: int | None = None,
         progress: Progress | None = None) -> torch.Tensor:
    """``count`` samples in the model's range, drawn in batches from a seeded generator with
    the degradation's ``sampler`` (None: its default) on ``steps`` steps (None: its default)."""
    return draw_samples(parts, count, seed, sampler=sampler, steps=steps, batch_size=batch_size,
                        progress=progress)
