"""Paths that come from outside (a shared study database, an artifact store) must stay inside
the folder they belong to: a tampered record must not make ablate read or write elsewhere."""

from __future__ import annotations

import os
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


def within(folder: Path, path: Path, *, what: str) -> Path:
    """``path`` if it lies in ``folder`` once every symbolic link is followed (a file a
    hand-edited record names, say); an UnsafePathError otherwise."""
    if not path.resolve().is_relative_to(folder.resolve()):
        raise UnsafePathError(f"{what} {str(path)!r} lies outside {folder} (a record changed "
                              f"by hand, or a symbolic link); ablate reads and uploads only "
                              f"files of the trial's own folder")
    return path


def refuse_symlinks(folder: Path, *, what: str) -> None:
    """An UnsafePathError if ``folder`` or anything in it is a symbolic link: ablate writes
    none, so one was planted, and following it would read or write elsewhere."""
    if folder.is_symlink():
        raise UnsafePathError(f"{what} {folder} is a symbolic link (to {os.readlink(folder)}); "
                              f"ablate does not follow links out of a study folder")
    if not folder.is_dir():
        return
    for root, dirs, files in os.walk(folder):
        for name in (*dirs, *files):
            entry = Path(root) / name
            if entry.is_symlink():
                raise UnsafePathError(f"{entry} in {what} {folder} is a symbolic link (to "
                                      f"{os.readlink(entry)}); ablate does not follow links "
                                      f"out of a study folder: remove it")
