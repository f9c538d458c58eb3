"""Errors that ablate reports to users as one clear sentence instead of a traceback."""

from __future__ import annotations


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


class PluginError(AblateError):
    """A plugin broke a rule of the plugin host (duplicate name, unknown hook, bad component)."""

    exit_code = 2


class DataError(AblateError):
    """A data file is missing or corrupt."""

    exit_code = 2


class CheckpointError(AblateError):
    """A checkpoint is missing, truncated, tampered with or belongs to another model."""

    exit_code = 2
