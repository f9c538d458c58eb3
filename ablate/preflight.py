"""Checks that only the machine can answer, made before anything trains and by ``--dry-run``:
the device exists, the dataset's files are there and hold enough images for the subset and the
batch size, and the output folders are paths this file system accepts and lets us write.

They complement the validation of the files themselves (ablate.config, ablate.study_config),
which answers the same on every machine; every mistake found is reported together.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

from optuna.distributions import BaseDistribution, CategoricalDistribution

from ablate.device import resolve_device
from ablate.errors import AblateError, Collector, ConfigError
from ablate.recipe import check_precision
from ablate.run_config import RunConfig
from ablate.storage import file_path

if TYPE_CHECKING:
    from ablate.study_config import StudySpec

RESERVED = 96
"""Bytes of path that ablate appends below an output folder (``trials/trial_00042_r1/
checkpoints/last.safetensors.tmp-...``); the folder itself must leave room for them."""


def check_run(config: RunConfig, output: Path, *, source: str, key: str = "run",
              output_key: str = "--output") -> None:
    """Device, data and output folder of one training run; all problems at once."""
    errors = Collector()
    errors.attempt(_device, config, source=source, key=key)
    errors.attempt(_data, config, source=source, key=key)
    errors.attempt(check_output_path, output, source=source, key=output_key)
    errors.raise_errors()


def check_study(spec: StudySpec) -> None:
    """The base run's device and data, the searched batch sizes and subsets against the data,
    and the study's folders (its output and a file storage's), all problems at once."""
    errors = Collector()
    source = spec.source
    errors.attempt(_device, spec.base, source=source, key="run")
    errors.attempt(_data, spec.base, source=source, key="run",
                   searched={p.key: _largest(p.distribution) for p in spec.space.params
                             if p.key in ("run.batch_size", "run.subset")})
    errors.attempt(check_output_path, spec.folder, source=source, key="study.output")
    storage_file = file_path(spec.storage)
    if storage_file is not None:
        errors.attempt(check_output_path, storage_file.parent, source=source,
                       key="study.storage")
    errors.raise_errors()


def check_output_path(path: Path, *, source: str | None, key: str) -> None:
    """A folder ablate may create and write below: no NUL, each name within the file system's
    limit, room for ablate's own names below it, not a file, and writable where it begins."""
    text = str(path)
    if "\0" in text:
        raise ConfigError("the path contains a NUL character", source=source, key=key)
    absolute = Path(os.path.abspath(path))
    existing = Path(absolute.anchor)  # walked down name by name: a name too long to look up
    missing = False  # makes exists() itself fail, so each length is checked first
    for part in absolute.parts[1:]:
        if not existing.is_dir():
            break  # a file where a folder should be
        name_max = _limit(existing, "PC_NAME_MAX", 255)
        if len(os.fsencode(part)) > name_max:
            raise ConfigError(f"the name {part[:40]!r}... is {len(os.fsencode(part))} bytes long",
                              source=source, key=key,
                              hint=f"this file system takes names of at most {name_max} bytes")
        missing = missing or not (existing / part).exists()
        if not missing:  # the rest is to be created below the deepest existing folder
            existing = existing / part
    if not existing.is_dir():
        what = "is a file, not a folder" if existing == absolute else \
            f"is a file, so {path} cannot be a folder"
        raise ConfigError(f"{existing} {what}", source=source, key=key,
                          hint="choose another output folder")
    path_max = _limit(existing, "PC_PATH_MAX", 4096)
    if len(os.fsencode(str(absolute))) + RESERVED > path_max:
        raise ConfigError(f"the path is {len(os.fsencode(str(absolute)))} bytes long",
                          source=source, key=key,
                          hint=f"this file system takes paths of at most {path_max} bytes, and "
                               f"ablate adds up to {RESERVED} below the folder")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise ConfigError(f"cannot write in {existing}", source=source, key=key,
                          hint="check the folder's permissions, or choose another output folder")


def _device(config: RunConfig, *, source: str, key: str) -> None:
    """The device exists, and the precision runs on it (``auto`` may resolve to a CPU)."""
    try:
        device = resolve_device(config.device)
    except ConfigError as exc:
        raise ConfigError(exc.message, source=source, key=f"{key}.device", hint=exc.hint) from None
    check_precision(config.precision, device.type, source=source, key=f"{key}.precision")


def _data(config: RunConfig, *, source: str, key: str,
          searched: dict[str, int] | None = None) -> None:
    dataset = config.dataset
    try:
        images = dataset.size("train")
    except AblateError as exc:
        raise ConfigError(f"dataset {dataset.name!r} cannot be read: {exc}", source=source,
                          key=f"{key}.dataset") from None
    searched = searched or {}
    errors = Collector()
    subset = max(config.subset, searched.get("run.subset", 0))
    where = "search.run.subset" if searched.get("run.subset", 0) > config.subset else \
        f"{key}.subset"
    if subset > images:
        errors.add(ConfigError(f"{subset:,} images asked for, but dataset {dataset.name!r} has "
                               f"{images:,} training images", source=source, key=where,
                               hint=f"use at most {images:,}, or 0 for all of them"))
    available = min(config.subset or images, images)
    batch = max(config.batch_size, searched.get("run.batch_size", 0))
    where = "search.run.batch_size" if searched.get("run.batch_size", 0) > config.batch_size \
        else f"{key}.batch_size"
    if batch > available:
        what = f"the subset of {available:,}" if config.subset else \
            f"the {available:,} training images of dataset {dataset.name!r}"
        errors.add(ConfigError(f"a batch of {batch:,} images is more than {what}",
                               source=source, key=where,
                               hint=f"use a batch_size of at most {available:,}"))
    errors.raise_errors()


def _largest(distribution: BaseDistribution) -> int:
    """The largest integer a searched batch size or subset can take."""
    if isinstance(distribution, CategoricalDistribution):
        return max((c for c in distribution.choices if isinstance(c, int)), default=0)
    return int(distribution.high)


def _limit(folder: Path, name: str, default: int) -> int:
    try:
        return os.pathconf(folder, name)
    except (OSError, ValueError):
        return default
