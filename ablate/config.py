"""Run configuration: the ``[run]`` table of a run file, validated whole before anything trains."""

from __future__ import annotations

import re
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ablate.components import Component, build_component, coerce, shown, suggest
from ablate.errors import Collector, ConfigError
from ablate.plugin_host import PluginHost, default_host, unknown_component
from ablate.recipe import check_precision
from ablate.run_config import DEFAULT_COMPONENTS, RunConfig, setting_infos


def read_toml(path: Path) -> dict[str, Any]:
    """Parse a TOML file, turning every failure into one ConfigError naming the file."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError("file not found", source=str(path)) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read the file ({exc})", source=str(path)) from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"invalid TOML: {exc}", source=str(path),
                          hint="see https://toml.io for the syntax") from None
    except RecursionError:
        raise ConfigError(f"values nested too deeply to read (more than {MAX_DEPTH} levels)",
                          source=str(path), hint="no setting nests that deep") from None
    check_shape(data, source=str(path))
    return data


MAX_DEPTH = 16
"""Tables and lists inside each other; the deepest real setting (a search distribution's list of
channel lists) has 5."""
MAX_STRING = 4_096
MAX_ITEMS = 10_000
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")


def check_shape(data: Mapping[str, Any], *, source: str) -> None:
    """Refuse what no setting needs and what would break the checks after it: nesting deeper
    than MAX_DEPTH, strings longer than MAX_STRING, lists or tables of more than MAX_ITEMS, and
    control characters in keys or strings (they hide in terminals and break file names)."""
    errors = Collector()
    stack: list[tuple[Any, str, int]] = [(data, "", 0)]
    while stack:
        value, key, depth = stack.pop()
        where = key or None
        if depth > MAX_DEPTH:
            errors.add(ConfigError(f"nested more than {MAX_DEPTH} levels deep", source=source,
                                   key=where, hint="no setting nests that deep"))
            continue
        if isinstance(value, str):
            if len(value) > MAX_STRING:
                errors.add(ConfigError(f"a string of {len(value)} characters", source=source,
                                       key=where, hint=f"at most {MAX_STRING}"))
            elif _CONTROL.search(value):
                errors.add(ConfigError(f"{shown(value)} contains a control character",
                                       source=source, key=where,
                                       hint="use printable characters only"))
            continue
        if isinstance(value, Mapping | list) and len(value) > MAX_ITEMS:
            errors.add(ConfigError(f"{len(value)} entries", source=source, key=where,
                                   hint=f"at most {MAX_ITEMS}"))
            continue
        if isinstance(value, Mapping):
            for name, item in value.items():
                if _CONTROL.search(name) or len(name) > MAX_STRING:
                    errors.add(ConfigError(f"the key {shown(name)} is not a usable name",
                                           source=source, key=where,
                                           hint="printable characters, at most "
                                                f"{MAX_STRING}"))
                    continue
                stack.append((item, f"{key}.{name}" if key else name, depth + 1))
        elif isinstance(value, list):
            stack.extend((item, f"{key}[{i}]", depth + 1) for i, item in enumerate(value))
    if errors.errors:
        errors.errors.sort(key=lambda e: e.key or "")
    errors.raise_errors()


def check_keys(table: Mapping[str, Any], allowed: list[str], *, source: str | None,
               key: str | None) -> None:
    """Reject unknown keys (all of them at once), suggesting the closest valid one."""
    errors = Collector()
    for name in table:
        if name not in allowed:
            where = f"{key}.{name}" if key else name
            hint = suggest(name, allowed)
            valid = f"valid keys: {', '.join(allowed)}"
            errors.add(ConfigError(f"unknown key {name!r}", source=source, key=where,
                                   hint=f"{hint} {valid}" if hint else valid))
    errors.raise_errors()


def parse_run(table: Any, *, source: str | None, key: str = "run",
              host: PluginHost | None = None) -> RunConfig:
    """Build a RunConfig from a ``[run]`` table, checking every key, type and bound."""
    host = host or default_host()
    if not isinstance(table, Mapping):
        raise ConfigError("must be a table", source=source, key=key)
    settings = {info.name: info for info in setting_infos()}
    errors = Collector()  # every mistake of the table at once, not one per run
    errors.attempt(check_keys, table, [*DEFAULT_COMPONENTS, *settings], source=source, key=key)
    values: dict[str, Any] = {}
    for family, default in DEFAULT_COMPONENTS.items():
        values[family] = errors.attempt(_parse_component, host, family,
                                        table.get(family, default), source=source,
                                        key=f"{key}.{family}")
    for name, info in settings.items():
        if name in table:
            values[name] = errors.attempt(coerce, info, table[name], source=source,
                                          key=f"{key}.{name}")
    errors.raise_errors()
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
        raise unknown_component(host, family, name, source=source, key=key)
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
    if config.device in ("cpu", "mps"):  # the others are known once resolved (preflight)
        check_precision(config.precision, config.device, source=source, key=f"{key}.precision")
