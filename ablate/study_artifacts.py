"""A trial's files in Optuna's artifact store, where optuna-dashboard shows them: sample grids
as they are written, then a loss/metric curve, the final checkpoint and the metrics log."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any, BinaryIO

import optuna
from optuna.artifacts import FileSystemArtifactStore, get_all_artifact_meta, upload_artifact
from optuna.artifacts.exceptions import ArtifactNotFound

from ablate.atomic import write_atomic
from ablate.safe_paths import plain_name, within

CURVES_NAME = "curves.png"


def artifact_store(folder: Path) -> FileSystemArtifactStore:
    folder.mkdir(parents=True, exist_ok=True)
    return ContainedArtifactStore(base_path=folder)


class ContainedArtifactStore(FileSystemArtifactStore):
    """Optuna's file artifact store, reading only plain files directly in its folder: an
    artifact id from a tampered record, or a link planted in the folder, cannot make it (or
    the dashboard it serves) read any other file."""

    def __init__(self, base_path: Path) -> None:
        super().__init__(base_path)
        self.folder = base_path

    def open_reader(self, artifact_id: str) -> BinaryIO:
        if not plain_name(artifact_id) or (self.folder / artifact_id).is_symlink():
            raise ArtifactNotFound(f"no artifact {artifact_id!r} in {self.folder}")
        return super().open_reader(artifact_id)


class TrialArtifacts:
    """Uploads each file of one trial once, so repeated calls during the run are cheap.

    Artifact names are unique within a trial: ``epoch_0002.png`` for a trial of one replicate,
    ``replicate_1_epoch_0002.png`` (and ``replicate_1_last.safetensors``) for replicate 1 of a
    replicated trial, whose folders hold files of the same names."""

    def __init__(self, store: FileSystemArtifactStore, trial: optuna.Trial,
                 folder: Path) -> None:
        """``folder`` is the trial's own: no file outside it is ever uploaded."""
        self.store = store
        self.trial = trial
        self.folder = folder
        self.uploaded: set[Path] = set()

    def upload(self, path: Path, mimetype: str | None = None, name: str | None = None) -> None:
        """Upload ``path`` once, as ``name`` (default: its file name)."""
        if path in self.uploaded or not path.is_file():
            return
        within(self.folder, path, what="the file")
        if name is None or name == path.name:
            self._upload(path, mimetype)
        else:
            with tempfile.TemporaryDirectory(dir=path.parent) as staging:
                renamed = Path(staging) / name
                try:
                    os.link(path, renamed)
                except OSError:
                    shutil.copyfile(path, renamed)
                self._upload(renamed, mimetype)
        self.uploaded.add(path)

    def _upload(self, path: Path, mimetype: str | None) -> None:
        upload_artifact(artifact_store=self.store, file_path=str(path), study_or_trial=self.trial,
                        mimetype=mimetype)

    def grids(self, records: Sequence[dict[str, Any]]) -> None:
        """The sample grid of every epoch that wrote one (earlier ones too, after a resume);
        every replicate's, where the record lists them under ``grids``."""
        for record in records:
            replicated = record.get("grids")
            if replicated:
                for r, grid in enumerate(replicated):
                    path = Path(grid)
                    self.upload(path, "image/png", f"replicate_{r}_{path.name}")
            elif "grid" in record:
                self.upload(Path(record["grid"]), "image/png")

    def final(self, run_dir: Path, records: Sequence[dict[str, Any]],
              metrics: Sequence[str]) -> None:
        """Whatever the run left: grids, curves, checkpoints (every replicate's) and the
        metrics log."""
        self.grids(records)
        if records:
            curves = plot_curves(records, metrics, run_dir / CURVES_NAME)
            self.upload(curves, "image/png")
        checkpoint = Path("checkpoints") / "last.safetensors"
        self.upload(run_dir / checkpoint, "application/octet-stream")
        for r, folder in replicate_folders(run_dir):
            self.upload(folder / checkpoint, "application/octet-stream",
                        f"replicate_{r}_{checkpoint.name}")
        self.upload(run_dir / "metrics.jsonl", "text/plain")


def replicate_folders(run_dir: Path) -> list[tuple[int, Path]]:
    """The ``replicate_R`` folders of a replicated trial's folder, by R."""
    found = []
    for folder in run_dir.glob("replicate_*"):
        index = folder.name.removeprefix("replicate_")
        if index.isdigit() and folder.is_dir():
            found.append((int(index), folder))
    return sorted(found)


def plot_curves(records: Sequence[dict[str, Any]], metrics: Sequence[str], path: Path) -> Path:
    """Loss and each scored metric against epoch, with the metric's 95% interval if recorded."""
    from matplotlib.figure import Figure  # imported here: ablate show never draws

    names = ["loss", *(m for m in metrics if m not in ("loss", "train_seconds")
                       and any(m in r for r in records))]
    figure = Figure(figsize=(4.5 * len(names), 3.2))
    axes = figure.subplots(1, len(names), squeeze=False)
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
    return path


def trial_artifacts(storage: optuna.storages.BaseStorage, trial: optuna.trial.FrozenTrial,
                    folder: Path) -> list[dict[str, str]]:
    """The trial's artifacts with where each one is stored on disk."""
    return [{"filename": meta.filename, "mimetype": meta.mimetype,
             "artifact_id": meta.artifact_id, "path": str(folder / meta.artifact_id)}
            for meta in get_all_artifact_meta(trial, storage=storage)
            if plain_name(meta.artifact_id)]  # a tampered record must not point elsewhere
