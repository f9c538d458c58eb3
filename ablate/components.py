"""The one declaration every component makes: its name, summary and typed parameters.

A component is a frozen dataclass whose fields are its parameters (declared with :func:`param`).
The same declaration drives configuration validation, ``ablate list-plugins``, search spaces and
the documentation, so none of them can drift from the code.
"""

from __future__ import annotations

import dataclasses
import difflib
import inspect
import math
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

from ablate.errors import Collector, ConfigError

_MISSING = dataclasses.MISSING


def param(default: Any, help: str, *, ge: float | None = None, gt: float | None = None,
          le: float | None = None, lt: float | None = None, limit: str = "") -> Any:
    """Declare a component parameter with its default, one line of help and numeric bounds;
    ``limit`` says why an upper bound is there (shown when a value exceeds it)."""
    bounds = {k: v for k, v in {"ge": ge, "gt": gt, "le": le, "lt": lt}.items() if v is not None}
    return dataclasses.field(default=default,
                             metadata={"help": help, "bounds": bounds, "limit": limit})


class Component:
    """Base of every pluggable component; subclasses are ``@dataclass(frozen=True)``.

    Subclasses set ``name`` (what users write in a run file) and a docstring whose first line is
    the one-line summary. ``validate`` adds checks that involve several parameters.
    """

    name: ClassVar[str]
    family: ClassVar[str]

    def validate(self) -> None:
        """Raise ``ValueError`` with a clear message when the parameters do not fit together."""

    @classmethod
    def summary(cls) -> str:
        doc = inspect.getdoc(cls) or ""
        return doc.splitlines()[0] if doc else ""

    def params(self) -> dict[str, Any]:
        """The parameter values as plain TOML/JSON-friendly data."""
        return {f.name: _plain(getattr(self, f.name)) for f in dataclasses.fields(self)}


@dataclass(frozen=True)
class ParamInfo:
    """What a parameter is: used for validation, listings, search spaces and docs."""

    name: str
    type: Any
    default: Any
    help: str
    bounds: Mapping[str, float]
    limit: str = ""  # why the upper bound is there

    @property
    def type_name(self) -> str:
        return _type_name(self.type)

    @property
    def choices(self) -> tuple[Any, ...] | None:
        return typing.get_args(self.type) if typing.get_origin(self.type) is Literal else None


def param_infos(cls: type[Component]) -> list[ParamInfo]:
    """The declared parameters: the component's own first, then those its family base adds."""
    hints = typing.get_type_hints(cls)
    infos = []
    for f in sorted(dataclasses.fields(cls), key=lambda f: _declared_by_core(cls, f.name)):
        default = f.default if f.default is not _MISSING else None
        infos.append(ParamInfo(f.name, hints[f.name], _plain(default), f.metadata.get("help", ""),
                               f.metadata.get("bounds", {}), f.metadata.get("limit", "")))
    return infos


def _declared_by_core(cls: type, name: str) -> bool:
    owner = next(c for c in cls.__mro__ if name in inspect.get_annotations(c))
    return owner.__module__.startswith("ablate.")


def build_component(cls: type[Component], values: Mapping[str, Any], *, source: str | None,
                    key: str) -> Component:
    """Create a component from user values, checking names, types and bounds first."""
    infos = {info.name: info for info in param_infos(cls)}
    kwargs = {}
    errors = Collector()
    for name, value in values.items():
        if name not in infos:
            errors.add(ConfigError(f"{cls.family} {cls.name!r} has no parameter {name!r}",
                                   source=source, key=f"{key}.{name}",
                                   hint=_suggest(name, infos) or _valid_list(infos)))
            continue
        converted = errors.attempt(coerce, infos[name], value, source=source,
                                   key=f"{key}.{name}")
        if converted is not None or value is None:
            kwargs[name] = converted
    errors.raise_errors()
    component = cls(**kwargs)
    try:
        component.validate()
    except ValueError as exc:
        raise ConfigError(str(exc), source=source, key=key) from None
    return component


def coerce(info: ParamInfo, value: Any, *, source: str | None, key: str) -> Any:
    """Check one value against its declared type and bounds; return it in the declared type."""
    converted = _convert(info.type, value)
    if converted is _INVALID:
        finite = " (finite)" if isinstance(value, float) and not math.isfinite(value) else ""
        raise ConfigError(f"{shown(value)} is not a valid{finite} {info.type_name}",
                          source=source, key=key,
                          hint=(f"default {info.default!r}" if info.choices else
                                f"expected {info.type_name}, default {info.default!r}"))
    for op, bound in info.bounds.items():
        ok = {"ge": converted >= bound, "gt": converted > bound,
              "le": converted <= bound, "lt": converted < bound}[op]
        if not ok:
            symbol = {"ge": ">=", "gt": ">", "le": "<=", "lt": "<"}[op]
            raise ConfigError(f"{shown(value)} is out of range", source=source, key=key,
                              hint=f"must be {symbol} {bound}"
                                   + (f" ({info.limit})" if info.limit and op in ("le", "lt")
                                      else ""))
    return converted


def shown(value: Any, limit: int = 60) -> str:
    """A value as the user wrote it, shortened: a pasted megabyte must not fill the terminal."""
    text = repr(value)
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text)} characters)"


def suggest(name: str, valid: typing.Iterable[str]) -> str | None:
    """'did you mean ...?' for a misspelt name, or None when nothing is close."""
    close = difflib.get_close_matches(name, list(valid), n=1, cutoff=0.6)
    return f"did you mean {close[0]!r}?" if close else None


def _suggest(name: str, infos: Mapping[str, ParamInfo]) -> str | None:
    hint = suggest(name, infos)
    return f"{hint} valid: {', '.join(infos)}" if hint else None


def _valid_list(infos: Mapping[str, ParamInfo]) -> str:
    return f"valid: {', '.join(infos)}" if infos else "it takes no parameters"


_INVALID = object()


def _convert(tp: Any, value: Any) -> Any:
    origin = typing.get_origin(tp)
    if origin is Literal:
        return value if value in typing.get_args(tp) else _INVALID
    if origin in (typing.Union, types.UnionType):
        for option in typing.get_args(tp):
            if option is type(None) and value is None:
                return None
            converted = _convert(option, value)
            if converted is not _INVALID:
                return converted
        return _INVALID
    if origin is tuple:
        args = typing.get_args(tp)
        if not isinstance(value, list | tuple):
            return _INVALID
        item_type = args[0]
        items = [_convert(item_type, v) for v in value]
        return _INVALID if any(i is _INVALID for i in items) else tuple(items)
    if tp is bool:
        return value if isinstance(value, bool) else _INVALID
    if tp is int:
        return value if isinstance(value, int) and not isinstance(value, bool) else _INVALID
    if tp is float:  # NaN and infinity are never a setting: they pass every bound check
        if isinstance(value, int | float) and not isinstance(value, bool):
            try:
                converted = float(value)
            except OverflowError:  # an integer beyond the float range
                return _INVALID
            return converted if math.isfinite(converted) else _INVALID
        return _INVALID
    if tp is str:
        return value if isinstance(value, str) else _INVALID
    return _INVALID


def _type_name(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if origin is Literal:
        return " | ".join(repr(a) for a in typing.get_args(tp))
    if origin in (typing.Union, types.UnionType):
        return " | ".join(_type_name(a) for a in typing.get_args(tp))
    if origin is tuple:
        return f"list[{_type_name(typing.get_args(tp)[0])}]"
    if tp is type(None):
        return "none"
    return getattr(tp, "__name__", str(tp))


def _plain(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value
