"""Errors that ablate reports to users as one clear sentence instead of a traceback."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any, TypeVar

T = TypeVar("T")


class AblateError(Exception):
    """Base of every error ablate reports to the user without a traceback."""

    exit_code = 1


class ConfigError(AblateError):
    """A configuration file or value is invalid: names where, what, and what would be valid."""

    exit_code = 2

    def __init__(self, message: str, *, source: str | None = None, key: str | None = None,
                 hint: str | None = None) -> None:
        self.message = message
        self.source = source
        self.key = key
        self.hint = hint
        super().__init__(str(self))

    def __str__(self) -> str:
        where = ": ".join(part for part in (self.source, self.key) if part)
        text = f"{where}: {self.message}" if where else self.message
        return f"{text} ({self.hint})" if self.hint else text


class ConfigErrors(ConfigError):
    """Every mistake found in one file, reported together so one edit can fix them all.

    Behaves as its first error (``source``, ``key``, ``message``) for code that expects one;
    ``errors`` holds them all and ``str()`` gives one line per mistake.
    """

    def __init__(self, errors: Iterable[ConfigError]) -> None:
        self.errors: list[ConfigError] = []
        for error in errors:
            self.errors.extend(error.errors if isinstance(error, ConfigErrors) else [error])
        if not self.errors:
            raise ValueError("ConfigErrors needs at least one error")
        first = self.errors[0]
        super().__init__(first.message, source=first.source, key=first.key, hint=first.hint)

    def __str__(self) -> str:
        return "\n".join(ConfigError.__str__(e) for e in self.errors)


class Collector:
    """Runs independent checks, keeping every ConfigError instead of stopping at the first.

    ``attempt`` returns the check's result, or None when it raised (dependent checks then skip);
    ``raise_errors`` raises them together (one error as itself, several as ConfigErrors).
    """

    def __init__(self) -> None:
        self.errors: list[ConfigError] = []

    def attempt(self, check: Callable[..., T], *args: Any, **kwargs: Any) -> T | None:
        try:
            return check(*args, **kwargs)
        except ConfigError as exc:
            self.add(exc)
            return None

    def add(self, error: ConfigError) -> None:
        self.errors.extend(error.errors if isinstance(error, ConfigErrors) else [error])

    @property
    def failed(self) -> bool:
        return bool(self.errors)

    def raise_errors(self) -> None:
        if len(self.errors) == 1:
            raise self.errors[0]
        if self.errors:
            raise ConfigErrors(self.errors)


def error_lines(exc: AblateError) -> list[str]:
    """The lines to show for an error: one per mistake of a ConfigErrors, else one."""
    if isinstance(exc, ConfigErrors):
        return [ConfigError.__str__(e) for e in exc.errors]
    return [str(exc)]


class PluginError(AblateError):
    """A plugin broke a rule of the plugin host (duplicate name, unknown hook, bad component)."""

    exit_code = 2


class DataError(AblateError):
    """A data file is missing or corrupt."""

    exit_code = 2


class CheckpointError(AblateError):
    """A checkpoint is missing, truncated, tampered with or belongs to another model."""

    exit_code = 2
