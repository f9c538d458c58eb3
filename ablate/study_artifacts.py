"""A trial's files in Optuna's artifact store, where optuna-dashboard shows them: sample grids
as they are written, then a loss/metric curve, the final checkpoint and the metrics log."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402 - the backend must be chosen first
import optuna  # noqa: E402
from optuna.artifacts import FileSystemArtifactStore, get_all_artifact_meta, upload_artifact  # noqa: E402

from ablate.atomic import write_atomic  # noqa: E402
from ablate.safe_paths import plain_name  # noqa: E402

CURVES_NAME = "curves.png"


def artifact_store(folder: Path) -> FileSystemArtifactStore:
    folder.mkdir(parents=True, exist_ok=True)
    return FileSystemArtifactStore(base_path=folder)


class TrialArtifacts:
    """Uploads each file of one trial once, so repeated calls during the run are cheap."""

    def __init__(self, store: FileSystemArtifactStore, trial: optuna.Trial) -> None:
        self.store = store
        self.trial = trial
        self.uploaded: set[Path] = set()

    def upload(self, path: Path, mimetype: str | None = None) -> None:
        if path in self.uploaded or not path.is_file():
            return
        upload_artifact(artifact_store=self.store, file_path=str(path), study_or_trial=self.trial,
                        mimetype=mimetype)
        self.uploaded.add(path)

    def grids(self, records: Sequence[dict[str, Any]]) -> None:
        """The sample grid of every epoch that wrote one (earlier ones too, after a resume)."""
        for record in records:
            if "grid" in record:
                self.upload(Path(record["grid"]), "image/png")

    def final(self, run_dir: Path, records: Sequence[dict[str, Any]],
              metrics: Sequence[str]) -> None:
        """Whatever the run left: grids, curves, checkpoint and metrics log."""
        self.grids(records)
        if records:
            curves = plot_curves(records, metrics, run_dir / CURVES_NAME)
            self.upload(curves, "image/png")
        self.upload(run_dir / "checkpoints" / "last.safetensors", "application/octet-stream")
        self.upload(run_dir / "metrics.jsonl", "text/plain")


def plot_curves(records: Sequence[dict[str, Any]], metrics: Sequence[str], path: Path) -> Path:
    """Loss and each scored metric against epoch, with the metric's 95% interval if recorded."""
    names = ["loss", *(m for m in metrics if m not in ("loss", "train_seconds")
                       and any(m in r for r in records))]
    figure, axes = plt.subplots(1, len(names), figsize=(4.5 * len(names), 3.2), squeeze=False)
    for ax, name in zip(axes[0], names, strict=True):
        rows = [r for r in records if name in r]
        epochs = [r["epoch"] for r in rows]
        ax.plot(epochs, [r[name] for r in rows], marker="o")
        if all(f"{name}_low" in r and f"{name}_high" in r for r in rows):
            ax.fill_between(epochs, [r[f"{name}_low"] for r in rows],
                            [r[f"{name}_high"] for r in rows], alpha=0.25, label="95% interval")
            ax.legend()
        ax.set_xlabel("epoch")
        ax.set_ylabel(name)
        ax.grid(alpha=0.3)
    figure.tight_layout()
    write_atomic(path, lambda tmp: figure.savefig(tmp, format="png", dpi=90))
    plt.close(figure)
    return path


def trial_artifacts(storage: optuna.storages.BaseStorage, trial: optuna.trial.FrozenTrial,
                    folder: Path) -> list[dict[str, str]]:
    """The trial's artifacts with where each one is stored on disk."""
    return [{"filename": meta.filename, "mimetype": meta.mimetype,
             "artifact_id": meta.artifact_id, "path": str(folder / meta.artifact_id)}
            for meta in get_all_artifact_meta(trial, storage=storage)
            if plain_name(meta.artifact_id)]  # a tampered record must not point elsewhere
