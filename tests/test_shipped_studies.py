"""Every study file shipped in studies/ loads and dry-runs cleanly: a typo in a key, a plugin
parameter that was renamed or a search range that breaks a constraint fails here, not twenty
minutes into someone's study."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from ablate.cli import app
from ablate.study_config import load_study_file

STUDIES = sorted((Path(__file__).resolve().parents[1] / "studies").glob("*.toml"))
runner = CliRunner()


def test_studies_folder_is_not_empty():
    assert len(STUDIES) >= 5, [p.name for p in STUDIES]


@pytest.mark.parametrize("path", STUDIES, ids=lambda p: p.stem)
def test_study_dry_runs_without_training(path: Path, tmp_path: Path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # the default output folder is relative to the working folder
    spec = load_study_file(path)
    assert spec.baselines, "every shipped study trains a reference point first"
    assert spec.trials is not None or spec.timeout is not None
    result = runner.invoke(app, ["run", str(path), "--dry-run"])
    assert result.exit_code == 0, result.output
    assert "nothing was trained" in " ".join(result.output.split())
    assert "\u2026" not in result.output, "the plan folds long keys, never cuts them"
    assert not any(tmp_path.iterdir()), "a dry run must not write anything"
