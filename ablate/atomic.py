"""Writing files so that a crash leaves either the old file or the new one, never half of one.

The new file is fsynced before it replaces the old, and the folder after, so a power cut keeps
what a finished write wrote. A temporary file names the host and process writing it, so the next
start removes those of killed writers (``remove_leftovers``) and never a live writer's.
"""

from __future__ import annotations

import errno
import os
import re
import tempfile
from collections.abc import Callable
from pathlib import Path


def write_atomic(path: Path, write: Callable[[str], None]) -> None:
    """Call ``write(tmp_path)`` on a temporary file beside ``path``, then rename it into place."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.{_WRITER}.", suffix=".tmp",
                               dir=path.parent)
    os.close(fd)
    try:
        try:
            write(tmp)
        except Exception as exc:  # a writer's own error type (safetensors): say what the OS said
            code = _os_error_code(exc)
            if code is None:
                raise
            raise OSError(code, os.strerror(code), str(path)) from exc
        # mkstemp made the file 0600 (and a writer may have made its own): the file gets the
        # mode any new file would get under the user's umask
        os.chmod(tmp, 0o666 & ~current_umask())
        _fsync(tmp)
        os.replace(tmp, path)
        _fsync(path.parent)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_text_atomic(path: Path, text: str) -> None:
    write_atomic(path, lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))


def current_umask() -> int:
    """The process's umask, read without changing it where Linux shows it (setting it to read
    it, the only portable way, would briefly change it for every thread)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


_WRITER = f"ablate-{os.uname().nodename}-{os.getpid()}"
_LEFTOVER = re.compile(r"^\..+\.ablate-(?P<host>.+)-(?P<pid>\d+)\.[^.]+\.tmp$")


def remove_leftovers(folder: Path) -> list[Path]:
    """Delete the temporary files that writers on this host left when they were killed (their
    process is gone); the paths removed. Symlinked folders are not followed."""
    removed: list[Path] = []
    if not folder.is_dir():
        return removed
    here = os.uname().nodename
    for root, _, files in os.walk(folder):
        for name in files:
            match = _LEFTOVER.match(name)
            if match and match["host"] == here and not _alive(int(match["pid"])):
                path = Path(root) / name
                path.unlink(missing_ok=True)
                removed.append(path)
    return removed


def _fsync(path: str | Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    except OSError as exc:
        if exc.errno not in (errno.EINVAL, errno.EBADF):  # folders on some file systems
            raise
    finally:
        os.close(fd)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _os_error_code(exc: Exception) -> int | None:
    """The errno of an error that is an OS failure in disguise ("... (os error 28)")."""
    if isinstance(exc, OSError):
        return None  # raised as it is
    match = re.search(r"os error (\d+)", str(exc))
    return int(match[1]) if match else None
