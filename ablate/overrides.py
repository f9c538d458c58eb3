"""Command-line overrides: ``run.lr=1e-3 run.decoder.name=unet`` applied to a file's tables.

An override is ``KEY=VALUE`` where KEY is a dotted TOML key (``run.lr``, ``study.trials``,
``eval.samples``, ``search."run.T"``) and VALUE a TOML literal (``1e-3``, ``true``, ``[4, 8]``,
``{low = 1, high = 4}``, ``"cnn"``); a value that is not valid TOML is taken as a string, so
``run.decoder.name=unet`` needs no quotes. Overrides are merged into the parsed file before it is
validated, so they get exactly the checks, errors and "did you mean" hints a value written in the
file would, and they land in the resolved configuration like any file value.

Naming another plugin of a component (``run.decoder.name=unet`` or ``run.decoder=unet``) starts
that component afresh: the parameters the file gave the old plugin are dropped, since they belong
to it (overrides of the new plugin's parameters in the same command still apply).
"""

from __future__ import annotations

import copy
import tomllib
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

from ablate.errors import ConfigError

SOURCE = "command line"


def parse_override(text: str) -> dict[str, Any]:
    """One ``KEY=VALUE`` as the nested table it stands for; ConfigError when it is malformed."""
    key, sep, value = text.partition("=")
    key, value = key.strip(), value.strip()
    if not sep or not key:
        raise ConfigError(f"{text!r} is not KEY=VALUE", source=SOURCE,
                          hint="e.g. run.lr=1e-3 or run.decoder.name=unet")
    for literal in (value, _quoted(value)):
        try:
            return tomllib.loads(f"{key} = {literal}")
        except tomllib.TOMLDecodeError:
            continue
    raise ConfigError(f"{key!r} is not a dotted key", source=SOURCE, key=key,
                      hint='e.g. run.decoder.channels, or search."run.T" with a quoted part')


def apply_overrides(data: Mapping[str, Any], overrides: Iterable[str]) -> dict[str, Any]:
    """A copy of a parsed file with the overrides merged in, in order."""
    out = copy.deepcopy(dict(data))
    for text in overrides:
        _merge(out, parse_override(text), depth=0)
    return out


@contextmanager
def blamed(source: str, overrides: Sequence[str]) -> Iterator[None]:
    """Report an error about an overridden key as coming from the command line."""
    keys = {text: _dotted(parse_override(text)) for text in overrides}

    def blame(error: ConfigError) -> ConfigError:
        for text, paths in keys.items():
            if error.key and any(_related(error.key, p) for p in paths):
                return ConfigError(error.message, source=f"{source} (command line: {text})",
                                   key=error.key, hint=error.hint)
        return error

    try:
        yield
    except ConfigError as exc:
        errors = getattr(exc, "errors", None) or [exc]  # several mistakes of one file at once
        blamed_errors = [blame(e) for e in errors]
        if all(a is b for a, b in zip(errors, blamed_errors, strict=True)):
            raise
        if len(blamed_errors) == 1:
            raise blamed_errors[0] from None
        raise type(exc)(blamed_errors) from None


def _merge(target: dict[str, Any], patch: Mapping[str, Any], *, depth: int) -> None:
    for name, value in patch.items():
        current = target.get(name)
        if not isinstance(value, Mapping):
            target[name] = value
            continue
        if isinstance(current, str):  # decoder = "cnn" written in short form
            current = {"name": current}
        current = dict(current) if isinstance(current, Mapping) else {}
        if depth > 0 and "name" in value and current.get("name") not in (None, value["name"]):
            current = {}  # another plugin: the old one's parameters do not apply
        _merge(current, value, depth=depth + 1)
        target[name] = current


def _related(error_key: str, path: str) -> bool:
    """Whether an error at ``error_key`` is about the overridden ``path`` (the key itself, a
    part of it, or the component table that holds it; not a whole top-level table)."""
    return error_key == path or error_key.startswith(f"{path}.") or (
        "." in error_key and path.startswith(f"{error_key}."))


def _dotted(table: Mapping[str, Any], prefix: str = "") -> list[str]:
    paths = []
    for name, value in table.items():
        path = f"{prefix}{name}"
        paths += _dotted(value, f"{path}.") if isinstance(value, Mapping) and value else [path]
    return paths


def _quoted(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
