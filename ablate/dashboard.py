"""``ablate dashboard``: optuna-dashboard on one study's storage and artifact store.

optuna-dashboard has no authentication: whoever reaches it may delete studies and artifacts.
So it listens on this machine only (loopback) unless asked by name (``allow_remote``), and
beyond loopback it is read-only by default: a small WSGI middleware refuses every request that
would change something (POST, PUT, PATCH, DELETE). It is served by the standard library's WSGI
server, threaded, as optuna-dashboard's own ``run_server`` does through bottle.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Callable, Iterable
from socketserver import ThreadingMixIn
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from ablate.errors import AblateError
from ablate.study import load_existing
from ablate.study_artifacts import artifact_store
from ablate.study_config import StudySpec

SAFE_METHODS = ("GET", "HEAD", "OPTIONS")
WSGIApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


class DashboardError(AblateError):
    """The dashboard cannot start (not installed, the port is taken, an unsafe address)."""

    exit_code = 2


def dashboard_url(host: str, port: int, study_id: int) -> str:
    shown = f"[{host}]" if ":" in host else host or "0.0.0.0"
    return f"http://{shown}:{port}/dashboard/studies/{study_id}"


def is_loopback(host: str) -> bool:
    """Whether listening on ``host`` reaches this machine only ('' and '0' mean every
    interface; a name counts as loopback only if all its addresses are)."""
    if not host.strip():
        return False
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        pass
    try:
        addresses = {info[4][0] for info in socket.getaddrinfo(host, None)}
    except OSError:
        return False
    return bool(addresses) and all(ipaddress.ip_address(a.split("%")[0]).is_loopback
                                   for a in addresses)


class ReadOnly:
    """WSGI middleware: requests that would change the study are refused with 405."""

    def __init__(self, app: WSGIApp) -> None:
        self.app = app

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]
                 ) -> Iterable[bytes]:
        if environ.get("REQUEST_METHOD", "GET").upper() in SAFE_METHODS:
            return self.app(environ, start_response)
        body = b'{"reason": "this dashboard is read-only (ablate dashboard --read-write)"}'
        start_response("405 Method Not Allowed", [("Content-Type", "application/json"),
                                                  ("Content-Length", str(len(body))),
                                                  ("Allow", ", ".join(SAFE_METHODS))])
        return [body]


class _ThreadingServer(ThreadingMixIn, WSGIServer):
    daemon_threads = True


class _ThreadingServer6(_ThreadingServer):
    address_family = socket.AF_INET6


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base's name
        pass


def check_host(host: str, *, allow_remote: bool) -> bool:
    """Whether ``host`` is loopback; an error for any other address unless ``allow_remote``."""
    if is_loopback(host):
        return True
    if not allow_remote:
        shown = repr(host) if not host.strip() else host
        raise DashboardError(f"--host {shown} listens beyond this machine, and optuna-dashboard "
                             f"has no authentication; add --allow-remote to mean it (the "
                             f"dashboard is then read-only unless --read-write), or use an SSH "
                             f"tunnel to 127.0.0.1")
    return False


def make_dashboard(spec: StudySpec, host: str, port: int, *, read_only: bool
                   ) -> tuple[WSGIServer, str]:
    """The server (not yet serving) and the study's URL."""
    try:
        from optuna_dashboard import wsgi
    except ImportError:
        raise DashboardError("optuna-dashboard is not installed; install it with: "
                             "pip install optuna-dashboard") from None
    _, storage = load_existing(spec)
    app: WSGIApp = wsgi(storage, artifact_store=artifact_store(spec.artifacts_dir))
    if read_only:
        app = ReadOnly(app)
    server_class = _ThreadingServer6 if ":" in host else _ThreadingServer
    try:
        server = make_server(host, port, app, server_class=server_class,
                             handler_class=_QuietHandler)
    except OSError as exc:
        raise DashboardError(f"cannot listen on {host or '0.0.0.0'}:{port} ({exc.strerror}); "
                             f"choose another --port") from None
    return server, dashboard_url(host, port, storage.get_study_id_from_name(spec.name))


def serve(spec: StudySpec, host: str, port: int, announce: Callable[[str], None], *,
          allow_remote: bool = False, read_only: bool | None = None) -> None:
    """Serve until interrupted; ``announce(url)`` is called once the server listens.
    ``read_only`` None: read-only unless on loopback."""
    loopback = check_host(host, allow_remote=allow_remote)
    server, url = make_dashboard(spec, host, port,
                                 read_only=not loopback if read_only is None else read_only)
    announce(url)
    try:
        server.serve_forever()
    finally:
        server.server_close()
