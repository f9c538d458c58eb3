"""The training recipe of one run: optimiser, learning-rate schedule, gradient clipping,
precision and compilation, applied in each optimisation step and saved in its checkpoints.

The step stays on the device: the gradient norm that clipping computes is never read back, and
the learning rate is a Python number the schedule sets between steps. The exception is fp16:
torch's GradScaler reads one flag per step to skip steps whose gradients overflowed.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from typing import Any

import torch
from torch import nn

from ablate.checkpoint import optimizer_from_flat, optimizer_to_flat, prefixed, unprefixed
from ablate.errors import ConfigError
from ablate.run_config import RunConfig

AUTOCAST_DTYPES: dict[str, torch.dtype] = {"bf16": torch.bfloat16, "fp16": torch.float16}
"""The autocast dtype of each reduced precision; fp32 runs without autocast."""

Loss = Callable[[nn.Module, torch.Tensor, torch.Generator], torch.Tensor]


def check_precision(precision: str, device_type: str, *, source: str | None = None,
                    key: str = "run.precision") -> None:
    """fp16 needs CUDA (its GradScaler and fast kernels); bf16 runs anywhere. Checked when a
    run file names its device, by the preflight (``--dry-run`` included) once ``auto`` is
    resolved, and again here, for a recipe built directly."""
    if precision == "fp16" and device_type != "cuda":
        raise ConfigError(f"precision fp16 needs CUDA, but the run trains on {device_type}",
                          source=source, key=key, hint="use bf16 (slow on a CPU) or fp32")


class TrainingRecipe:
    """Optimises ``model`` with the run's optimiser, schedule, clipping and precision."""

    def __init__(self, config: RunConfig, model: nn.Module, device: torch.device,
                 total_steps: int) -> None:
        check_precision(config.precision, device.type)
        self.device = device
        self.channels_last = config.channels_last
        if self.channels_last:
            model.to(memory_format=torch.channels_last)
        self.parameters = list(model.parameters())
        self.optimizer = config.optimizer.build(self.parameters, config.lr)
        self.scheduler = config.lr_schedule.build(self.optimizer, total_steps)
        self.grad_clip = config.grad_clip
        self.autocast_dtype = AUTOCAST_DTYPES.get(config.precision)
        self.scaler = torch.amp.GradScaler(device.type) if config.precision == "fp16" else None
        self.network: nn.Module = torch.compile(model) if config.compile else model

    @property
    def lr(self) -> float:
        """The learning rate of the next step."""
        return self.optimizer.param_groups[0]["lr"]

    def step(self, loss_of: Loss, x0: torch.Tensor, rng: torch.Generator) -> torch.Tensor:
        """One optimisation step on the batch ``x0``; returns the detached loss on the device.

        ``loss_of(network, x0, rng)`` is the degradation's training loss.
        """
        if self.channels_last:
            x0 = x0.contiguous(memory_format=torch.channels_last)
        with self._autocast():
            loss = loss_of(self.network, x0, rng)
        self.optimizer.zero_grad(set_to_none=True)
        if self.scaler is None:
            loss.backward()
            self.clip_gradients()
            self.optimizer.step()
        else:
            self.scaler.scale(loss).backward()
            self.scaler.unscale_(self.optimizer)
            self.clip_gradients()
            self.scaler.step(self.optimizer)
            self.scaler.update()
        self.scheduler.step()
        return loss.detach()

    def state(self) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
        """Checkpoint tensors (``optim.*``) and JSON metadata of the optimiser, schedule and
        grad scaler."""
        tensors, optimizer_meta = optimizer_to_flat(self.optimizer.state_dict())
        meta: dict[str, Any] = {"optimizer": optimizer_meta,
                                "lr_schedule": self.scheduler.state_dict()}
        if self.scaler is not None:
            meta["grad_scaler"] = self.scaler.state_dict()
        return prefixed("optim", tensors), meta

    def restore(self, tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> None:
        """Load what ``state`` saved, refusing settings that differ from the run's.

        ``load_state_dict`` takes the checkpoint's hyperparameters (betas, lr, base lrs) as they
        are, and a crafted one would fail or diverge only steps later, inside torch; the run's
        configuration was compared with the checkpoint's already, so they must be the ones
        built here. Checkpoints from before the lr_schedule family trained with a constant lr
        and have no schedule state: there is nothing to restore.
        """
        settings, base_lrs = self._settings(), list(self.scheduler.base_lrs)
        self.optimizer.load_state_dict(optimizer_from_flat(unprefixed("optim", tensors),
                                                           meta["optimizer"]))
        loaded = self._settings()  # keys of one torch version only are left to torch
        if len(loaded) != len(settings) or any(own[k] != got[k] for own, got in
                                               zip(settings, loaded, strict=True)
                                               for k in own.keys() & got):
            raise ValueError("its optimiser settings differ from the run's")
        if "lr_schedule" in meta:
            if any(fn is not None for fn in meta["lr_schedule"].get("lr_lambdas", [])):
                raise ValueError("its lr-schedule state holds attributes for the schedule "
                                 "function, which ablate's schedules never save")
            self.scheduler.load_state_dict(meta["lr_schedule"])
            step = self.scheduler.last_epoch
            if self.scheduler.base_lrs != base_lrs or not isinstance(step, int) or step < 0:
                raise ValueError("its lr-schedule state is not the run's schedule")
        lrs = [group["lr"] for group in self.optimizer.param_groups]
        if not all(isinstance(lr, int | float) and math.isfinite(lr) and lr >= 0 for lr in lrs):
            raise ValueError(f"its learning rates are {lrs}")
        if self.scaler is not None and "grad_scaler" in meta:
            self.scaler.load_state_dict(meta["grad_scaler"])
            if not math.isfinite(self.scaler.get_scale()) or self.scaler.get_scale() <= 0:
                raise ValueError("its grad-scaler scale is not a positive finite number")

    def _settings(self) -> list[dict[str, Any]]:
        """Every parameter group's hyperparameters but the lr, as JSON gives them back."""
        return json.loads(json.dumps([{k: v for k, v in group.items() if k not in ("params", "lr")}
                                      for group in self.optimizer.param_groups]))

    def _autocast(self) -> AbstractContextManager[Any]:
        if self.autocast_dtype is None:
            return nullcontext()
        return torch.autocast(self.device.type, dtype=self.autocast_dtype)

    def clip_gradients(self) -> None:
        """Scale the gradients to a total norm of at most ``grad_clip`` (0: leave them)."""
        if self.grad_clip:
            torch.nn.utils.clip_grad_norm_(self.parameters, self.grad_clip)
