"""Run configuration: the ``[run]`` table of a run file, validated whole before anything trains."""

from __future__ import annotations

import dataclasses
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from ablate.components import Component, build_component, coerce, param, param_infos, suggest
from ablate.datasets import Dataset
from ablate.decoders import Decoder
from ablate.degradations import Degradation
from ablate.ema import EmaStrategy
from ablate.errors import ConfigError
from ablate.plugin_host import PluginHost, default_host
from ablate.schedules import NoiseSchedule

DEFAULT_COMPONENTS: dict[str, str] = {
    "dataset": "mnist",
    "decoder": "cnn",
    "schedule": "linear",
    "degradation": "gaussian",
    "ema": "none",
}
"""The family of each component key of ``[run]`` is the key itself; these are the defaults."""


@dataclass(frozen=True)
class RunConfig:
    """One training configuration, every default filled in. Defaults are the coursework's."""

    dataset: Dataset
    decoder: Decoder
    schedule: NoiseSchedule
    degradation: Degradation
    ema: EmaStrategy
    T: int = param(1000, "number of diffusion steps", ge=1)
    epochs: int = param(10, "passes over the training set (ignored when steps > 0)", ge=1)
    steps: int = param(0, "optimisation steps in total; 0 = use epochs", ge=0)
    batch_size: int = param(128, "images per optimisation step", ge=1)
    lr: float = param(2e-4, "Adam learning rate", gt=0)
    seed: int = param(0, "seeds initialisation, data order, timesteps and noise", ge=0)
    device: str = param("auto", "auto (CUDA, then MPS, then CPU), cpu, cuda, cuda:N or mps")
    scaling: Literal["centered", "symmetric"] = param(
        "centered", "pixel range: centered = x/255 - 0.5 (coursework), symmetric = [-1, 1]")
    subset: int = param(0, "train on the first N training images only; 0 = all", ge=0)
    sample_every: int = param(0, "write a sample grid every N epochs; 0 = at the end only", ge=0)
    grid_size: int = param(64, "images in each sample grid", ge=1)
    checkpoint_every: int = param(1, "write a checkpoint every N epochs", ge=1)

    def to_dict(self) -> dict[str, Any]:
        """The resolved configuration as TOML/JSON data; ``parse_run`` reads it back."""
        out: dict[str, Any] = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if isinstance(value, Component):
                out[f.name] = {"name": value.name, **value.params()}
            else:
                out[f.name] = value
        return out


def setting_infos():
    """The scalar settings of ``[run]`` (everything but the components)."""
    return [info for info in param_infos(RunConfig) if info.name not in DEFAULT_COMPONENTS]


def read_toml(path: Path) -> dict[str, Any]:
    """Parse a TOML file, turning every failure into one ConfigError naming the file."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError("file not found", source=str(path)) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read the file ({exc})", source=str(path)) from None
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"invalid TOML: {exc}", source=str(path),
                          hint="see https://toml.io for the syntax") from None


def check_keys(table: Mapping[str, Any], allowed: list[str], *, source: str | None,
               key: str | None) -> None:
    """Reject unknown keys, suggesting the closest valid one."""
    for name in table:
        if name not in allowed:
            where = f"{key}.{name}" if key else name
            hint = suggest(name, allowed)
            valid = f"valid keys: {', '.join(allowed)}"
            raise ConfigError(f"unknown key {name!r}", source=source, key=where,
                              hint=f"{hint} {valid}" if hint else valid)


def parse_run(table: Any, *, source: str | None, key: str = "run",
              host: PluginHost | None = None) -> RunConfig:
    """Build a RunConfig from a ``[run]`` table, checking every key, type and bound."""
    host = host or default_host()
    if not isinstance(table, Mapping):
        raise ConfigError("must be a table", source=source, key=key)
    settings = {info.name: info for info in setting_infos()}
    check_keys(table, [*DEFAULT_COMPONENTS, *settings], source=source, key=key)
    values: dict[str, Any] = {}
    for family, default in DEFAULT_COMPONENTS.items():
        values[family] = _parse_component(host, family, table.get(family, default),
                                          source=source, key=f"{key}.{family}")
    for name, info in settings.items():
        if name in table:
            values[name] = coerce(info, table[name], source=source, key=f"{key}.{name}")
    config = RunConfig(**values)
    _check_consistency(config, source=source, key=key)
    return config


def _parse_component(host: PluginHost, family: str, value: Any, *, source: str | None,
                     key: str) -> Component:
    if isinstance(value, str):
        name, params = value, {}
    elif isinstance(value, Mapping):
        params = dict(value)
        name = params.pop("name", DEFAULT_COMPONENTS[family])
        if not isinstance(name, str):
            raise ConfigError(f"name must be a string, got {name!r}", source=source,
                              key=f"{key}.name")
    else:
        raise ConfigError(f"expected a {family} name or a table with a 'name', got {value!r}",
                          source=source, key=key)
    cls = host.registry.get(family, name)
    if cls is None:
        known = host.registry.names(family)
        hint = suggest(name, known)
        valid = f"installed {family} plugins: {', '.join(known) or 'none'}"
        raise ConfigError(f"unknown {family} {name!r}", source=source, key=key,
                          hint=f"{hint} {valid}" if hint else valid)
    return build_component(cls, params, source=source, key=key)


def _check_consistency(config: RunConfig, *, source: str | None, key: str) -> None:
    try:
        config.schedule.check(config.T)
    except ValueError as exc:
        raise ConfigError(f"{exc} (T = {config.T})", source=source,
                          key=f"{key}.schedule") from None
    if config.subset and config.subset < config.batch_size:
        raise ConfigError(f"subset ({config.subset}) is smaller than batch_size "
                          f"({config.batch_size})", source=source, key=f"{key}.subset",
                          hint="use a subset of at least one batch, or 0 for all images")


def schedule_warnings(config: RunConfig) -> list[str]:
    """Doubtful-but-valid choices worth telling the user about before training."""
    return config.schedule.check(config.T)
