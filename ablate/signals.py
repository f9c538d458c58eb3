"""Stopping on request: Ctrl-C (SIGINT) and SIGTERM (what Slurm, Kubernetes and ``timeout``
send) both ask the running process to finish its step, save and stop.

One process-wide request: whoever installs the handlers first (the study's worker loop, or the
Trainer of a lone ``ablate train``) owns them and nested users share them, so a request that
arrives while a trial is being set up still stops its training at the first step. A second
signal stops at once (KeyboardInterrupt). A scheduler kills ``GRACE_SECONDS`` + a few after
SIGTERM, so SIGTERM also arms an alarm that stops at once if the orderly stop takes too long
(an evaluation at the end of an epoch, say): the trial then resumes from its last checkpoint.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)
GRACE_SECONDS = 20.0
"""After SIGTERM, how long the orderly stop may take; schedulers allow 30 s before SIGKILL."""


class _Request:
    signum: int | None = None
    last: int | None = None  # kept after the handlers are gone, for the exit code
    owned = False


_request = _Request()


def requested() -> int | None:
    """The signal that asked this process to stop, or None."""
    return _request.signum


def last() -> int | None:
    """The last signal that asked this process to stop, even after the request ended."""
    return _request.last


def exit_code(signum: int | None) -> int:
    """The shell's convention: 128 + the signal (130 for Ctrl-C, 143 for SIGTERM)."""
    return 128 + (signum or signal.SIGINT)


def _on_signal(signum: int, frame: object) -> None:
    if _request.signum is not None:
        raise KeyboardInterrupt
    _request.signum = _request.last = signum
    if signum == signal.SIGTERM:

        signal.setitimer(signal.ITIMER_REAL, GRACE_SECONDS)


def _on_alarm(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


@contextmanager
def stop_requests() -> Iterator[None]:
    """Handle SIGINT and SIGTERM as stop requests while inside (main thread only; elsewhere,
    and for nested users, the owner's handlers stay). The request is forgotten on leaving."""
    if threading.current_thread() is not threading.main_thread() or _request.owned:
        yield
        return
    previous = {s: signal.signal(s, _on_signal) for s in STOP_SIGNALS}
    previous_alarm = signal.signal(signal.SIGALRM, _on_alarm)
    _request.owned = True
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous_alarm)
        for s, handler in previous.items():
            signal.signal(s, handler)
        _request.owned = False
        _request.signum = None
