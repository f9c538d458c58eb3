"""``ablate report`` and ``ablate compare`` on a tiny real study (three learning rates, two
replicates, FID): the folder's figures and tables exist and carry the values the replicates'
own logs give."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy import stats
from typer.testing import CliRunner

from ablate import metrics_log
from ablate.cli import app
from tests.conftest import TINY_STUDY_RUN

runner = CliRunner()

STUDY = """
[study]
name = "report"
output = "{output}"
sampler = "grid"
replicates = 2
{run}
[eval]
metrics = ["fid"]
samples = 32

[search]
"run.lr" = [2e-4, 1e-3, 3e-3]
"""
LRS = (2e-4, 1e-3, 3e-3)


@pytest.fixture(scope="module")
def study(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """The study file and its report folder, written through the CLI."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        folder = tmp_path_factory.mktemp("report")
        path = folder / "study.toml"
        path.write_text(STUDY.format(run=TINY_STUDY_RUN, output=(folder / "out").as_posix()),
                        encoding="utf-8")
        assert runner.invoke(app, ["run", str(path)]).exit_code == 0
        result = runner.invoke(app, ["report", str(path), "-o", str(folder / "report")])
        assert result.exit_code == 0, result.output
        assert "index.html" in result.output
        return path, folder / "report"
    finally:
        torch.set_num_threads(threads)


def finals(path: Path, metric: str) -> dict[float, np.ndarray]:
    """Learning rate -> each replicate's last value of a metric, from the replicate logs."""
    out = {}
    for trial in sorted((path.parent / "out" / "report" / "trials").iterdir()):
        logs = [metrics_log.read(trial / f"replicate_{r}" / "metrics.jsonl") for r in range(2)]
        lr = json.loads((trial / "replicate_0" / "config.json").read_text())["run"]["lr"]
        out[lr] = np.array([[rec[metric] for rec in log if metric in rec][-1] for log in logs])
    return out


def table(folder: Path, name: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO((folder / f"{name}.csv").read_text())))


def test_the_report_folder_holds_the_page_the_tables_and_the_figures(study):
    _, folder = study
    for name in ("index.html", "report.md", "trials.csv", "effects.csv", "importances.csv",
                 "loss_check.csv"):
        assert (folder / name).is_file(), name
    figures = {p.name for p in (folder / "figures").iterdir()}
    assert figures == {"factor_lr.png", "importance_loss.png", "importance_fid.png",
                       "curves.png", "history.png", "samples_best_worst.png"}
    for name in figures:
        assert (folder / "figures" / name).read_bytes()[:4] == b"\x89PNG"
    page = (folder / "index.html").read_text()
    assert all(f'src="figures/{name}"' in page for name in figures)


def test_the_trials_table_holds_each_configuration_s_replicate_mean(study):
    path, folder = study
    fids, losses = finals(path, "fid"), finals(path, "loss")
    rows = table(folder, "trials")
    assert sorted(float(r["lr"]) for r in rows) == sorted(LRS)
    for row in rows:
        lr = float(row["lr"])
        assert float(row["fid"]) == pytest.approx(fids[lr].mean(), rel=1e-9)
        assert float(row["loss"]) == pytest.approx(losses[lr].mean(), rel=1e-9)
        assert float(row["fid_low"]) < float(row["fid"]) < float(row["fid_high"])
    assert [float(r["loss"]) for r in rows] == sorted(float(r["loss"]) for r in rows)


def test_the_effects_table_measures_each_learning_rate_from_the_baseline(study):
    path, folder = study
    fids = finals(path, "fid")
    rows = [r for r in table(folder, "effects") if r["metric"] == "fid"]
    assert {r["level"] for r in rows} == {"0.001", "0.003"}
    for row in rows:
        assert row["factor"] == "lr" and row["reference"] == "0.0002"
        d = fids[float(row["level"])] - fids[2e-4]
        assert float(row["effect"]) == pytest.approx(d.mean(), rel=1e-9)
        t = d.mean() / (d.std(ddof=1) / np.sqrt(2))
        assert float(row["p_value"]) == pytest.approx(2 * stats.t.sf(abs(t), 1), rel=1e-6)
        assert float(row["effect_low"]) < float(row["effect"]) < float(row["effect_high"])
        assert f"{float(row['effect']):.4g}" in (folder / "index.html").read_text()


def test_the_loss_check_ranks_the_configurations_by_loss_and_by_fid(study):
    path, folder = study
    fids, losses = finals(path, "fid"), finals(path, "loss")
    (row,) = table(folder, "loss_check")
    expected = stats.spearmanr([-losses[lr].mean() for lr in LRS],
                               [-fids[lr].mean() for lr in LRS]).statistic
    assert row["metric"] == "fid"
    assert float(row["spearman"]) == pytest.approx(expected)
    assert {r["metric"] for r in table(folder, "importances")} == {"loss", "fid"}


def test_compare_prints_the_paired_difference_of_two_trials(study):
    path, _ = study
    result = runner.invoke(app, ["compare", str(path), "0", "1", "--json"])
    assert result.exit_code == 0, result.output
    out = json.loads(result.output)
    assert out["paired"] and out["replicates"] == 2
    fid = next(m for m in out["metrics"] if m["metric"] == "fid")
    assert fid["difference"]["estimate"] == pytest.approx(
        fid["a"]["estimate"] - fid["b"]["estimate"])
    assert fid["test"]["name"] == "paired t"
    shown = runner.invoke(app, ["compare", str(path), "0", "1"])
    assert shown.exit_code == 0 and "paired by seed" in shown.output
    assert f"{fid['difference']['estimate']:.4g}" in shown.output


def test_compare_at_an_early_epoch_uses_the_values_recorded_by_then(study):
    path, _ = study
    result = runner.invoke(app, ["compare", str(path), "2", "0", "--epoch", "1", "--json"])
    assert result.exit_code == 0, result.output
    (loss,) = json.loads(result.output)["metrics"]  # FID is scored after the last epoch only
    trials = sorted((path.parent / "out" / "report" / "trials").iterdir())
    first = [metrics_log.read(trials[2] / f"replicate_{r}" / "metrics.jsonl")[0]["loss"]
             for r in range(2)]
    assert loss["metric"] == "loss"
    assert loss["a"]["estimate"] == pytest.approx(np.mean(first), rel=1e-12)


@pytest.mark.parametrize(("args", "message"), [
    (["0", "7"], "has no trial 7 (completed: 0, 1, 2)"),
    (["1", "1"], "compare needs two different trials"),
])
def test_compare_names_what_is_wrong_with_the_trials_asked_for(study, args, message):
    path, _ = study
    result = runner.invoke(app, ["compare", str(path), *args])
    assert result.exit_code == 2
    assert message in " ".join(result.output.split())


def test_a_study_that_never_ran_has_no_report(tmp_path: Path):
    path = tmp_path / "new.toml"
    path.write_text(STUDY.format(run=TINY_STUDY_RUN, output=(tmp_path / "out").as_posix()),
                    encoding="utf-8")
    result = runner.invoke(app, ["report", str(path)])
    assert result.exit_code == 2
    assert "has not run yet" in result.output
