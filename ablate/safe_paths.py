"""Paths that come from outside (a shared study database, an artifact store) must stay inside
the folder they belong to: a tampered record must not make ablate read or write elsewhere."""

from __future__ import annotations

from pathlib import Path

from ablate.errors import AblateError


class UnsafePathError(AblateError):
    """A stored name or path points outside its folder."""

    exit_code = 2


def inside(folder: Path, path: str | Path, *, what: str) -> Path:
    """``path`` (relative to the working folder or absolute) if it lies within ``folder``."""
    resolved = Path(path).resolve()
    if not resolved.is_relative_to(folder.resolve()):
        raise UnsafePathError(f"{what} {str(path)!r} lies outside {folder}; the study's "
                              f"records were changed by hand or come from another study")
    return Path(path)


def plain_name(name: str) -> bool:
    """Whether ``name`` names a file directly inside a folder (no separators, no '..')."""
    return bool(name) and name not in (".", "..") and "/" not in name and "\\" not in name \
        and "\0" not in name
