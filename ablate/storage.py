"""Where a study lives: an SQLAlchemy database (SQLite, PostgreSQL, MySQL) or an Optuna journal
file, opened with heartbeats so that trials of dead workers are failed and retried.

Storage URLs may carry passwords; every message shows them through ``masked`` only, and the URL
itself is never stored in the study.

``journal:///path/to/study.log`` names a journal file (relative path; four slashes for an
absolute one, as SQLite URLs do). Optuna's heartbeats exist only for its RDB storage, so
``JournalHeartbeatStorage`` adds them to the journal: each running trial writes a time stamp
every ``interval`` seconds, and a RUNNING trial whose last stamp is older than ``grace`` seconds
is stale, failed by whichever worker notices first, and handed to the stale-trial callback.
"""

from __future__ import annotations

import fcntl
import os
import re
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import optuna
from optuna.exceptions import UpdateFinishedTrialError
from optuna.storages import BaseStorage, JournalStorage, RDBStorage
from optuna.storages._heartbeat import BaseHeartbeat
from optuna.storages.journal import JournalFileBackend
from optuna.storages.journal._file import BaseJournalFileLock
from optuna.trial import FrozenTrial, TrialState

from ablate.errors import AblateError

FILE_SCHEMES = ("sqlite", "journal")
SECRET_QUERY_KEYS = re.compile(r"pass|secret|token|key", re.IGNORECASE)
HEARTBEAT_ATTR = "ablate:heartbeat"
StaleCallback = Callable[[optuna.Study, FrozenTrial], None]


class StorageError(AblateError):
    """The study storage cannot be opened or reached."""

    exit_code = 2


@dataclass(frozen=True)
class Heartbeat:
    """How often a running trial proves its worker alive, and how long silence may last."""

    interval: int = 60
    grace: int = 180


def scheme(url: str) -> str:
    """'postgresql' for postgresql+psycopg://..., 'journal' for journal:///..."""
    return url.split(":", 1)[0].split("+", 1)[0].lower()


def in_memory(url: str) -> bool:
    """Whether an SQLite URL names an in-memory database (kept by no file, shared by nobody)."""
    if scheme(url) != "sqlite":
        return False
    rest = url.split("://", 1)[1] if "://" in url else ""
    path, _, query = rest.lstrip("/").partition("?")
    return path in ("", ":memory:") or "mode=memory" in query


def refuse_in_memory(url: str) -> None:
    """A StorageError for an in-memory database: it keeps nothing once ablate exits, and no
    other worker (nor ablate show, report or dashboard) could ever see it."""
    if in_memory(url):
        raise StorageError(f"--storage {url}: an in-memory database keeps nothing once ablate "
                           f"exits and cannot be shared with workers; use a file, e.g. "
                           f"sqlite:///studies-out/NAME/study.db")


def file_path(url: str) -> Path | None:
    """The file of an SQLite or journal URL (None for a server database or in-memory SQLite)."""
    if scheme(url) not in FILE_SCHEMES or "///" not in url:
        return None
    path = url.split("///", 1)[1].split("?", 1)[0]
    return Path(path) if path and path != ":memory:" else None


def masked(url: str) -> str:
    """The URL with its password (and secret-looking query values) replaced by ***."""
    try:
        parts = urlsplit(url)
        netloc = parts.netloc
        if "@" in netloc:
            userinfo, host = netloc.rsplit("@", 1)
            user = userinfo.split(":", 1)[0]
            netloc = f"{user}:***@{host}" if ":" in userinfo else f"{user}@{host}"
        pairs = parse_qsl(parts.query, keep_blank_values=True)
        secret = any(SECRET_QUERY_KEYS.search(k) for k, _ in pairs)
        if netloc == parts.netloc and not secret:
            return url  # nothing to hide (and file URLs keep their slashes)
        query = urlencode([(k, "***" if SECRET_QUERY_KEYS.search(k) else v) for k, v in pairs],
                          safe="*") if secret else parts.query
        return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))
    except ValueError:  # unparseable: show nothing of it rather than a secret
        return f"{scheme(url)}://***"


def redact(text: str, url: str) -> str:
    """Text (a driver's error message, say) with every secret of ``url`` masked."""
    secrets = set()
    try:
        parts = urlsplit(url)
        if parts.password:
            secrets.add(parts.password)
        secrets |= {v for k, v in parse_qsl(parts.query) if SECRET_QUERY_KEYS.search(k) and v}
    except ValueError:
        return text.replace(url, masked(url))
    text = text.replace(url, masked(url))
    for secret in sorted(secrets, key=len, reverse=True):
        text = text.replace(secret, "***")
    return text


def open_storage(url: str, *, heartbeat: Heartbeat | None = None,
                 on_stale: StaleCallback | None = None) -> BaseStorage:
    """The study storage (file storages get their folder); with heartbeats when trials run.
    SQLite's first open creates its tables: a file lock keeps concurrent first starts apart."""
    refuse_in_memory(url)
    path = file_path(url)
    if path is not None:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StorageError(f"cannot create {path.parent} for the study storage: "
                               f"{exc.strerror}") from None
    try:
        if scheme(url) == "journal":
            if path is None:
                raise ValueError("a journal URL needs a file: journal:///path/to/study.log")
            return JournalHeartbeatStorage(path, heartbeat, on_stale)
        kwargs: dict[str, Any] = {}
        if heartbeat is not None:
            kwargs = {"heartbeat_interval": heartbeat.interval, "grace_period": heartbeat.grace,
                      "heartbeat_stale_trial_callback": on_stale}
        engine = {"connect_args": {"timeout": 60}} if scheme(url) == "sqlite" else \
            {"pool_pre_ping": True}
        with _quiet(), _creation_lock(path):
            return RDBStorage(url, engine_kwargs=engine, **kwargs)
    except Exception as exc:  # drivers report bad URLs and unreachable servers many ways
        reason = redact(str(exc).strip().splitlines()[0] if str(exc).strip() else
                        type(exc).__name__, url)
        raise StorageError(f"cannot open the study storage {masked(url)}: {reason}") from None


class JournalHeartbeatStorage(JournalStorage, BaseHeartbeat):
    """Optuna's journal file storage with the heartbeats Optuna gives only its RDB storage."""

    def __init__(self, path: Path, heartbeat: Heartbeat | None,
                 on_stale: StaleCallback | None) -> None:
        super().__init__(JournalFileBackend(str(path), FlockLock(path)))
        self.path = path
        self.heartbeat = heartbeat
        self.on_stale = on_stale

    def record_heartbeat(self, trial_id: int) -> None:
        # A trial another worker declared dead is finished: its retry runs elsewhere.
        with suppress(UpdateFinishedTrialError):
            self.set_trial_system_attr(trial_id, HEARTBEAT_ATTR, time.time())

    def _get_stale_trial_ids(self, study_id: int) -> list[int]:
        assert self.heartbeat is not None
        now = time.time()
        stale = []
        for trial in self.get_all_trials(study_id, deepcopy=False, states=(TrialState.RUNNING,)):
            started = trial.datetime_start.timestamp() if trial.datetime_start else now
            last = trial.system_attrs.get(HEARTBEAT_ATTR, started)
            if now - last > self.heartbeat.grace:
                stale.append(trial._trial_id)
        return stale

    def get_heartbeat_interval(self) -> int | None:
        return None if self.heartbeat is None else self.heartbeat.interval

    def get_heartbeat_stale_trial_callback(self) -> StaleCallback | None:
        return self.on_stale


class FlockLock(BaseJournalFileLock):
    """The journal's write lock as a kernel file lock: unlike Optuna's lock files, it is freed
    the moment its holder dies, so a killed worker never blocks the others."""

    def __init__(self, journal: Path) -> None:
        self.path = journal.with_name(journal.name + ".lock")
        self.handle: Any = None

    def acquire(self) -> bool:
        handle = open(self.path, "a")  # noqa: SIM115 - held until release
        fcntl.flock(handle, fcntl.LOCK_EX)
        self.handle = handle
        return True

    def release(self) -> None:
        handle, self.handle = self.handle, None
        if handle is not None:
            fcntl.flock(handle, fcntl.LOCK_UN)
            handle.close()


def fail_stale(study: optuna.Study) -> None:
    """Fail the trials of workers that stopped beating (each is then retried by the callback)."""
    with _quiet():
        optuna.storages.fail_stale_trials(study)


class ClaimLock:
    """Serialises 'is there budget left? then start a trial' across every worker of a study, so
    the global trial budget is never overshot: a PostgreSQL advisory lock for a server, a file
    lock beside a SQLite or journal file (both released by the system if the worker dies).
    MySQL gets no lock: concurrent workers there may overshoot by the trials in flight.

    ``release`` may be called early (once the trial exists) and again on exit."""

    def __init__(self, storage: BaseStorage, url: str, study_name: str) -> None:
        self.path = file_path(url)
        self.engine = storage.engine if scheme(url) == "postgresql" and \
            isinstance(storage, RDBStorage) else None
        self.key = f"ablate-claim:{study_name}"
        self.held: Any = None

    def __enter__(self) -> ClaimLock:
        if self.path is not None:
            handle = open(self.path.with_name(self.path.name + ".claim"), "a")  # noqa: SIM115
            fcntl.flock(handle, fcntl.LOCK_EX)
            self.held = handle
        elif self.engine is not None:
            from sqlalchemy import text  # here: a study file's error never waits for it

            connection = self.engine.connect()
            connection.execute(text("SELECT pg_advisory_lock(hashtext(:k))"),
                               {"k": self.key})
            self.held = connection
        return self

    def release(self) -> None:
        held, self.held = self.held, None
        if held is None:
            return
        if self.path is not None:
            fcntl.flock(held, fcntl.LOCK_UN)
            held.close()
        else:
            from sqlalchemy import text

            held.execute(text("SELECT pg_advisory_unlock(hashtext(:k))"),
                         {"k": self.key})
            held.close()

    def __exit__(self, *exc: object) -> None:
        self.release()


def worker_identity(index: int) -> dict[str, Any]:
    """Which process ran a trial: host, process id, when it started (so a reused pid is told
    apart) and worker index (its sampler offset)."""
    pid = os.getpid()
    return {"host": os.uname().nodename, "pid": pid, "started": process_start(pid),
            "index": index}


def process_start(pid: int) -> str | None:
    """When a process started, in clock ticks since boot (Linux; None elsewhere or if gone)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()[19]


def process_alive(owner: dict[str, Any]) -> bool:
    """Whether the process of a ``worker_identity`` on this machine still runs (a zombie, or
    another process that got the same pid, does not)."""
    pid = owner.get("pid")
    if not isinstance(pid, int) or pid <= 0:
        return True  # unknown: leave it to the heartbeats
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # another user's process: alive
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return True  # no /proc: the pid answers, so take it as alive
    if fields[0] in ("Z", "X"):
        return False
    started = owner.get("started")
    return started is None or started == fields[19]


@contextmanager
def _creation_lock(path: Path | None) -> Iterator[None]:
    """A kernel file lock beside a database file while its schema is created or checked."""
    if path is None:
        yield
        return
    with open(path.with_name(path.name + ".lock"), "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


@contextmanager
def _quiet() -> Iterator[None]:
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        yield
