"""Checkpoints as safetensors: tensors in the file, everything else as JSON metadata.

Nothing is ever unpickled. Writes go to a temporary file that is renamed into place, so an
interrupted write never leaves a half-written checkpoint behind.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from ablate.atomic import write_atomic
from ablate.components import shown
from ablate.errors import CheckpointError

FORMAT = "ablate-checkpoint/1"


def save_checkpoint(path: Path, tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> None:
    """Write tensors and JSON-able metadata atomically."""
    contiguous = {k: v.detach().contiguous().cpu() for k, v in tensors.items()}
    metadata = {"format": FORMAT, "meta": json.dumps(meta)}
    write_atomic(path, lambda tmp: save_file(contiguous, tmp, metadata=metadata))


MAX_HEADER = 100_000_000
"""Bytes of the JSON header; safetensors itself refuses larger ones."""

MAX_META_DEPTH = 32
"""Nesting of the JSON metadata; what ablate writes is 6 deep (optimiser parameter groups)."""

_LOAD_FAILURES = (SafetensorError, OSError, ValueError, RuntimeError, TypeError, OverflowError,
                  MemoryError, RecursionError, UnicodeDecodeError)


def load_checkpoint(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Read a checkpoint written by ``save_checkpoint``; any damage is a CheckpointError.

    Checks the file's structure only: a JSON object of metadata, nested at most
    MAX_META_DEPTH deep. What each field must hold is checked where it is used, with the
    ``checked_*`` functions below, before anything is loaded into a model.
    """
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist")
    try:
        with open(path, "rb") as f:
            header_size = int.from_bytes(f.read(8), "little")
            if not 2 <= header_size <= min(MAX_HEADER, path.stat().st_size - 8):
                raise ValueError(f"a header of {header_size} bytes in a file of "
                                 f"{path.stat().st_size}")
            header = json.loads(f.read(header_size))
        tensors = load_file(path)
    except _LOAD_FAILURES as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CheckpointError(f"checkpoint {path} is damaged or not a safetensors file "
                              f"({reason[:200]})") from None
    metadata = header.get("__metadata__") if isinstance(header, dict) else None
    if not isinstance(metadata, dict) or metadata.get("format") != FORMAT:
        raise CheckpointError(f"{path} is a safetensors file but not an ablate checkpoint")
    try:
        meta = json.loads(metadata["meta"])
    except (KeyError, TypeError, ValueError, RecursionError):
        raise CheckpointError(f"checkpoint {path} has damaged metadata") from None
    if not isinstance(meta, dict):
        raise CheckpointError(f"checkpoint {path} has damaged metadata (a JSON "
                              f"{type(meta).__name__} where an object belongs)")
    if _depth(meta) > MAX_META_DEPTH:
        raise CheckpointError(f"checkpoint {path} has damaged metadata (nested more than "
                              f"{MAX_META_DEPTH} levels deep)")
    return tensors, meta


def _depth(value: Any) -> int:
    """How deeply JSON data nests, found without recursion."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        item, depth = stack.pop()
        deepest = max(deepest, depth)
        if isinstance(item, dict):
            stack.extend((v, depth + 1) for v in item.values())
        elif isinstance(item, list):
            stack.extend((v, depth + 1) for v in item)
    return deepest


# ---------------------------------------------------------------------------------------------
# Fields, each checked before use
# ---------------------------------------------------------------------------------------------


def checked_field(meta: dict[str, Any], key: str, kind: type | tuple[type, ...], path: Path,
                  what: str) -> Any:
    """``meta[key]``, which must be present and of ``kind``."""
    if key not in meta:
        raise CheckpointError(f"{path} has no {what} (metadata {key!r})")
    value = meta[key]
    if not isinstance(value, kind) or isinstance(value, bool) and bool not in _kinds(kind):
        raise CheckpointError(f"{path} has a damaged {what}: metadata {key!r} holds a "
                              f"{type(value).__name__}")
    return value


def _kinds(kind: type | tuple[type, ...]) -> tuple[type, ...]:
    return kind if isinstance(kind, tuple) else (kind,)


MAX_IMAGE_SIDE = 4_096


def checked_image_shape(meta: dict[str, Any], path: Path) -> tuple[int, int, int]:
    """(C, H, W) the run trained on: three positive integers of sensible size."""
    shape = meta.get("image_shape")
    if not (isinstance(shape, list) and len(shape) == 3 and
            all(isinstance(v, int) and not isinstance(v, bool) and 1 <= v <= MAX_IMAGE_SIDE
                for v in shape)):
        raise CheckpointError(f"{path} does not record the image shape it was trained on "
                              f"(metadata 'image_shape' must be [channels, height, width], each "
                              f"1 to {MAX_IMAGE_SIDE})")
    return shape[0], shape[1], shape[2]


PROGRESS_FIELDS = {"epoch": int, "batch": int, "step": int, "loss_sum": float,
                   "epoch_seconds": float}


def checked_progress(meta: dict[str, Any], path: Path) -> dict[str, Any]:
    """Where training stood: exactly the fields of ``ablate.training.Progress``, counts that are
    non-negative integers and finite numbers (seconds non-negative)."""
    progress = checked_field(meta, "progress", dict, path, "training progress")
    if set(progress) != set(PROGRESS_FIELDS):
        raise CheckpointError(f"{path} has a damaged training progress: fields "
                              f"{sorted(progress)}, expected {sorted(PROGRESS_FIELDS)}")
    for name, kind in PROGRESS_FIELDS.items():
        value = progress[name]
        number = isinstance(value, int | float) and not isinstance(value, bool)
        valid = (isinstance(value, int) and not isinstance(value, bool) and value >= 0) \
            if kind is int else (number and math.isfinite(value) and
                                 (name != "epoch_seconds" or value >= 0))
        if not valid:
            raise CheckpointError(f"{path} has a damaged training progress: {name} = "
                                  f"{repr(value)[:40]}")
    return progress


def checked_rng_state(tensors: dict[str, torch.Tensor], key: str, generator: torch.Generator,
                      path: Path) -> torch.Tensor:
    """A generator state for ``generator``: a uint8 vector of the size its own state has."""
    state = tensors.get(key)
    expected = generator.get_state()
    if state is None or state.dtype != torch.uint8 or state.shape != expected.shape:
        found = "none" if state is None else f"{state.dtype} {tuple(state.shape)}"
        raise CheckpointError(f"{path} has a damaged random state {key!r} ({found}; expected "
                              f"uint8 {tuple(expected.shape)})")
    return state


def check_weights(module: torch.nn.Module, state: dict[str, torch.Tensor], path: Path,
                  what: str) -> None:
    """Weights for ``module``: exactly its keys, each of its shape and dtype, all finite."""
    own = module.state_dict()
    missing, unexpected = sorted(set(own) - set(state)), sorted(set(state) - set(own))
    if missing or unexpected:
        detail = (f"missing {_names(missing)}" if missing else "") + \
            (" and " if missing and unexpected else "") + \
            (f"unexpected {_names(unexpected)}" if unexpected else "")
        raise CheckpointError(f"{path} does not fit this model: its {what} have {detail}")
    for name, value in state.items():
        if value.shape != own[name].shape or value.dtype != own[name].dtype:
            raise CheckpointError(
                f"{path} does not fit this model: {what} {shown(name)} is {value.dtype} "
                f"{tuple(value.shape)}, the model's is {own[name].dtype} "
                f"{tuple(own[name].shape)}")
        if value.is_floating_point() and not torch.isfinite(value).all():
            raise CheckpointError(f"{path} has non-finite {what} ({shown(name)}): it cannot "
                                  "sample")


def _names(keys: list[str]) -> str:
    """The first three of ``keys``, each shortened: a crafted key can be megabytes long."""
    more = f" and {len(keys) - 3} more" if len(keys) > 3 else ""
    return ", ".join(shown(k) for k in keys[:3]) + more


def check_optimizer_state(optimizer: torch.optim.Optimizer, path: Path) -> None:
    """After loading: every state tensor is a scalar or has its parameter's shape (as the
    states of Adam, AdamW and SGD do; torch's step counts are scalars), and is finite.
    ``load_state_dict`` checks neither, and a wrong shape would fail only at the next step,
    inside torch."""
    for group in optimizer.param_groups:
        for parameter in group["params"]:
            for name, value in optimizer.state.get(parameter, {}).items():
                if not isinstance(value, torch.Tensor):
                    continue
                if value.dim() > 0 and (value.shape != parameter.shape or name == "step"):
                    raise CheckpointError(
                        f"{path} has a damaged optimiser state: {name!r} is "
                        f"{tuple(value.shape)} for a parameter of {tuple(parameter.shape)}")
                if value.is_floating_point() and not torch.isfinite(value).all():
                    raise CheckpointError(f"{path} has a non-finite optimiser state ({name!r})")


def restoring(path: Path, what: str, load: Callable[[], Any]) -> Any:
    """Run a ``load_state_dict``-like call; any failure is a CheckpointError naming ``what``."""
    try:
        return load()
    except (RuntimeError, ValueError, KeyError, TypeError, IndexError, AttributeError) as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CheckpointError(f"{path} has a damaged {what} ({reason[:200]})") from None


def prefixed(prefix: str, tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {f"{prefix}.{k}": v for k, v in tensors.items()}


def unprefixed(prefix: str, tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    start = len(prefix) + 1
    return {k[start:]: v for k, v in tensors.items() if k.startswith(prefix + ".")}


def optimizer_to_flat(state: dict[str, Any]) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Split ``optimizer.state_dict()`` into tensors and JSON (param groups, scalars)."""
    tensors: dict[str, torch.Tensor] = {}
    scalars: dict[str, dict[str, Any]] = {}
    for index, entries in state["state"].items():
        for name, value in entries.items():
            if isinstance(value, torch.Tensor):
                tensors[f"{index}.{name}"] = value
            else:
                scalars.setdefault(str(index), {})[name] = value
    return tensors, {"param_groups": state["param_groups"], "scalars": scalars}


def optimizer_from_flat(tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> dict[str, Any]:
    """Inverse of ``optimizer_to_flat``."""
    state: dict[int, dict[str, Any]] = {}
    for key, value in tensors.items():
        index, name = key.split(".", 1)
        state.setdefault(int(index), {})[name] = value
    for index, entries in meta["scalars"].items():
        state.setdefault(int(index), {}).update(entries)
    return {"state": state, "param_groups": meta["param_groups"]}
