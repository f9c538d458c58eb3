"""A real PostgreSQL server for the tests: Debian's binaries, a temporary cluster on a free
loopback port, stopped afterwards. Tests that need it skip, saying how to install it, where the
binaries or the Python driver are missing."""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

INSTALL = "install them with: apt-get install postgresql (bash scripts/setup.sh --system does)"


def server_binaries() -> Path | None:
    """The folder holding initdb and pg_ctl: on PATH, or Debian's versioned folder."""
    initdb = shutil.which("initdb")
    if initdb:
        return Path(initdb).parent
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), reverse=True)
    return Path(found[0]).parent if found else None


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _as_server_user() -> list[str]:
    """PostgreSQL refuses to run as root: run its commands as 'postgres' (or 'nobody')."""
    if os.geteuid() != 0:
        return []
    for user in ("postgres", "nobody"):
        try:
            pwd.getpwnam(user)
        except KeyError:
            continue
        return ["runuser", "-u", user, "--"]
    pytest.skip("running as root and no 'postgres' or 'nobody' user to run PostgreSQL as")


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[str]:
    """The URL of a fresh server (user 'ablate', trust authentication on 127.0.0.1 only). Its
    folder is outside pytest's (root-only) temporary tree, so the server's user can reach it."""
    binaries = server_binaries()
    if binaries is None:
        pytest.skip(f"PostgreSQL server binaries (initdb, pg_ctl) not found; {INSTALL}")
    pytest.importorskip("psycopg", reason="the PostgreSQL driver is missing; install it with: "
                                          "pip install -e '.[test]'")
    runas = _as_server_user()
    folder = Path(tempfile.mkdtemp(prefix="ablate-postgres-"))
    if runas:
        shutil.chown(folder, user=runas[2])
        folder.chmod(0o700)
    data, port = folder / "data", _free_port()
    options = f"-p {port} -h 127.0.0.1 -k {folder} -F -c max_connections=200"
    for command in ([str(binaries / "initdb"), "-D", str(data), "-A", "trust", "-U", "ablate",
                     "-E", "UTF8", "--no-sync"],
                    [str(binaries / "pg_ctl"), "-D", str(data), "-o", options, "-l",
                     str(folder / "server.log"), "-w", "start"]):
        done = subprocess.run([*runas, *command], capture_output=True, text=True, cwd=folder)
        if done.returncode != 0:
            shutil.rmtree(folder, ignore_errors=True)
            pytest.fail(f"{command[0]} failed: {done.stdout}{done.stderr}")
    try:
        yield f"postgresql://ablate@127.0.0.1:{port}"
    finally:
        subprocess.run([*runas, str(binaries / "pg_ctl"), "-D", str(data), "-m", "immediate",
                        "stop"], capture_output=True)
        shutil.rmtree(folder, ignore_errors=True)


def new_database(server: str, name: str) -> str:
    """A new empty database on the server; its URL."""
    import psycopg

    with psycopg.connect(f"{server}/postgres", autocommit=True) as connection:
        connection.execute(f'CREATE DATABASE "{name}"')
    return f"{server}/{name}"
