"""``ablate dashboard``: optuna-dashboard on one study's storage and artifact store."""

from __future__ import annotations

import socket
from collections.abc import Callable

from ablate.errors import AblateError
from ablate.study import load_existing
from ablate.study_artifacts import artifact_store
from ablate.study_config import StudySpec


class DashboardError(AblateError):
    """The dashboard cannot start (not installed, or the port is taken)."""

    exit_code = 2


def dashboard_url(host: str, port: int, study_id: int) -> str:
    shown = f"[{host}]" if ":" in host else host
    return f"http://{shown}:{port}/dashboard/studies/{study_id}"


def serve(spec: StudySpec, host: str, port: int, announce: Callable[[str], None]) -> None:
    """Serve until interrupted; ``announce(url)`` is called once the study is found."""
    try:
        from optuna_dashboard import run_server
    except ImportError:
        raise DashboardError("optuna-dashboard is not installed; install it with: "
                             "pip install optuna-dashboard") from None
    _, storage = load_existing(spec)
    _check_port(host, port)
    announce(dashboard_url(host, port, storage.get_study_id_from_name(spec.name)))
    run_server(storage, host=host, port=port, artifact_store=artifact_store(spec.artifacts_dir))


def _check_port(host: str, port: int) -> None:
    """Fail with one clear line rather than a server traceback when the port is busy."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as exc:
            raise DashboardError(f"cannot listen on {host}:{port} ({exc.strerror}); choose "
                                 f"another --port") from None
