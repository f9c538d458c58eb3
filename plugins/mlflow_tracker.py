"""The ``mlflow`` tracker: one MLflow run per training run, in a local store by default.

Uses MLflow's client API (``MlflowClient``), which needs only ``mlflow-skinny`` (its SQLite
store runs on SQLAlchemy and alembic, which Optuna already brings). Without a
``tracking_uri`` the store is an SQLite database with its artifacts beside it, under
``<run folder>/mlflow`` for ``ablate train`` and ``<study folder>/mlflow`` for a study (its
trials are runs of one experiment named after the study); nothing leaves the machine. Browse it
with ``mlflow ui --backend-store-uri sqlite:///PATH/mlflow.db`` (that needs the full ``mlflow``).
MLflow's own file store (``./mlruns``) is not the default: MLflow 3 refuses it unless told to.
A resumed run logs on to the MLflow run it started (see ``MARKER``).
Several worker processes writing one SQLite store can meet SQLite's write lock; for studies with
``--workers`` or many machines, give a ``tracking_uri`` of an MLflow server or database.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import ablate
from ablate.atomic import write_text_atomic
from ablate.components import param
from ablate.run_info import RunInfo
from ablate.tracking import Tracker, TrackingContext, flat_config

STATUS = {"completed": "FINISHED", "stopped": "FINISHED", "interrupted": "KILLED",
          "failed": "FAILED"}
"""ablate's run endings as MLflow run statuses (a pruned trial finished what it was asked)."""
BATCH = 100  # MLflow takes at most 100 parameters per log_batch call
URI_SCHEMES = ("file", "sqlite", "postgresql", "mysql", "mssql", "http", "https", "databricks")
"""The tracking-store schemes MLflow 3 accepts (a plain path is a file store)."""
MARKER = "mlflow_run.json"
"""Written into the run folder: a resumed run (``--resume``, a retried trial) goes on logging to
the same MLflow run instead of starting another."""


@dataclass(frozen=True)
class MLflow(Tracker):
    """MLflow runs: loss, epoch metrics, sample grids as artifacts, configuration as params."""

    name = "mlflow"
    tracking_uri: str = param("", "MLflow tracking URI; empty = a local SQLite store under the "
                                  "run (or study) folder")
    experiment: str = param("", "experiment name; empty = the study's name, or 'ablate'")

    def validate(self) -> None:
        scheme = self.tracking_uri.split(":", 1)[0].split("+", 1)[0] if ":" in self.tracking_uri \
            else "file"
        if self.tracking_uri and scheme not in URI_SCHEMES:
            raise ValueError(f"tracking_uri {self.tracking_uri!r} is not one MLflow can log to "
                             f"(schemes: {', '.join(URI_SCHEMES)})")

    def open(self, run: RunInfo, context: TrackingContext) -> _Session:
        from mlflow.entities import Param
        from mlflow.tracking import MlflowClient

        logging.getLogger("mlflow").setLevel(logging.WARNING)  # no migration chatter per run
        artifacts = None
        uri = self.tracking_uri
        if not uri:
            store = context.store / "mlflow"
            store.mkdir(parents=True, exist_ok=True)
            uri = f"sqlite:///{store.resolve() / 'mlflow.db'}"
            artifacts = (store / "artifacts").resolve().as_uri()
        client = MlflowClient(tracking_uri=uri)
        name = self.experiment or context.experiment
        found = client.get_experiment_by_name(name)
        experiment_id = found.experiment_id if found else client.create_experiment(
            name, artifact_location=artifacts)
        resumed = _resumed_run(client, run.output_dir / MARKER, uri)
        if resumed is not None:
            return _Session(client, resumed)
        tags = {"ablate.output_dir": str(run.output_dir), "ablate.device": run.device,
                "ablate.parameter_count": str(run.parameter_count), **context.tags}
        mlflow_run = client.create_run(experiment_id, run_name=_run_name(run, context),
                                       tags=tags)
        run_id = mlflow_run.info.run_id
        params = [Param(k, str(v)) for k, v in flat_config(run.config.to_dict()).items()]
        for i in range(0, len(params), BATCH):
            client.log_batch(run_id, params=params[i:i + BATCH])
        write_text_atomic(run.output_dir / MARKER,
                          json.dumps({"tracking_uri": uri, "run_id": run_id}) + "\n")
        return _Session(client, run_id)


def _resumed_run(client, marker: Path, uri: str) -> str | None:
    """The MLflow run a resumed training run logged to before, set running again."""
    from mlflow.exceptions import MlflowException

    try:
        known = json.loads(marker.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(known, dict) or known.get("tracking_uri") != uri:
        return None
    try:
        client.update_run(known["run_id"], status="RUNNING")
    except (MlflowException, KeyError):
        return None
    return known["run_id"]


def _run_name(run: RunInfo, context: TrackingContext) -> str:
    if "trial" in context.tags:
        replicate = context.tags.get("replicate")
        return f"trial {context.tags['trial']}" + (f" replicate {replicate}" if replicate else "")
    return run.output_dir.name


class _Session:
    def __init__(self, client, run_id: str) -> None:
        self.client = client
        self.run_id = run_id

    def log_loss(self, step: int, loss: float) -> None:
        self.client.log_metric(self.run_id, "train/loss", loss, step=step)

    def log_epoch(self, step: int, values: Mapping[str, float]) -> None:
        from mlflow.entities import Metric

        now = _millis()
        self.client.log_batch(self.run_id, metrics=[Metric(k, v, now, step)
                                                    for k, v in values.items()])

    def log_grid(self, step: int, epoch: int, path: Path) -> None:
        self.client.log_artifact(self.run_id, str(path), artifact_path="samples")

    def close(self, status: str) -> None:
        self.client.set_terminated(self.run_id, status=STATUS.get(status, "FAILED"))


def _millis() -> int:
    import time

    return int(time.time() * 1000)


@ablate.hookimpl
def register_trackers(register):
    register(MLflow)
