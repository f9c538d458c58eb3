"""``ablate report`` and ``ablate compare`` on shrunk copies of the shipped studies that prune
(every trial counts, compared at equal budget), and on a tiny replicated grid whose numbers are
checked against the replicates' own logs; the page is rendered by headless Chromium."""

from __future__ import annotations

import csv
import io
import json
import re
import shutil
import subprocess
import tomllib
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from scipy import stats
from typer.testing import CliRunner

from ablate import metrics_log
from ablate.cli import app
from tests.conftest import TINY_STUDY_RUN

runner = CliRunner()
STUDIES = Path(__file__).resolve().parents[1] / "studies"
PRUNING = ["beta_range", "decoders", "schedules"]
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
SCREENSHOT = Path(__file__).parent / "artifacts" / "report.png"


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Tiny models train fastest on one thread when other jobs share the two cores."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def toml_value(value: Any) -> str:
    """TOML for the values a study file holds (JSON strings are TOML basic strings)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float | str):
        return json.dumps(value)
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    return "{" + ", ".join(f"{json.dumps(k)} = {toml_value(v)}" for k, v in value.items()) + "}"


def shrunk(name: str, folder: Path, trials: int) -> Path:
    """The shipped study ``name`` with its search, sampler and pruner, on sub-second trials:
    two epochs of four steps, 16 samples scored per epoch."""
    doc = tomllib.loads((STUDIES / f"{name}.toml").read_text(encoding="utf-8"))
    doc["study"] |= {"trials": trials, "output": (folder / "out").as_posix()}
    doc["study"].pop("timeout", None)
    run = doc["run"] | {"steps": 8, "batch_size": 16, "subset": 64, "grid_size": 4,
                        "device": "cpu"}
    decoder = run.setdefault("decoder", {"name": "cnn"})
    if decoder["name"] == "unet" and "run.decoder.unet.base_width" not in doc["search"]:
        decoder["base_width"] = 8
    if decoder["name"] == "cnn":
        decoder |= {"channels": [4, 8], "time_hidden": 16}
    doc["run"] = run
    doc["eval"] |= {"samples": 16, "steps": 4, "every": 1}
    text = "".join(f"[{table}]\n" + "".join(f"{json.dumps(k)} = {toml_value(v)}\n"
                                           for k, v in values.items()) + "\n"
                   for table, values in doc.items())
    path = folder / f"{name}.toml"
    path.write_text(text, encoding="utf-8")
    return path


@pytest.fixture(scope="module", params=PRUNING)
def pruned(request, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A shrunk shipped study, run and reported through the CLI: (study file, report folder)."""
    folder = tmp_path_factory.mktemp(request.param)
    path = shrunk(request.param, folder, trials=4)
    result = runner.invoke(app, ["run", str(path)])
    assert result.exit_code == 0, result.output
    result = runner.invoke(app, ["report", str(path), "-o", str(folder / "report")])
    assert result.exit_code == 0, result.output
    return path, folder / "report"


def table(folder: Path, name: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO((folder / f"{name}.csv").read_text())))


def test_a_pruning_study_is_analysed_at_every_budget_with_its_pruned_trials(pruned):
    _, folder = pruned
    budgets = table(folder, "budgets")
    assert [int(b["epoch"]) for b in budgets] == sorted(int(b["epoch"]) for b in budgets)
    first = budgets[0]
    assert int(first["pruned"]) >= 1, "the shrunk study pruned nothing"
    assert int(first["trials"]) == 4  # every trial reached the first rung and is compared there
    assert int(budgets[-1]["trials"]) < 4  # the pruned ones did not reach the last
    effects = table(folder, "effects")
    for budget in budgets:
        rows = [e for e in effects if e["epoch"] == budget["epoch"]]
        assert bool(rows) == (budget["factors_varied"] != "none"), budget
        for row in rows:
            assert float(row["effect_low"]) <= float(row["effect"]) <= float(row["effect_high"])
            assert int(row["budget_trials"]) == int(budget["trials"])


def test_the_headline_states_each_factor_s_budget_and_backing(pruned):
    path, folder = pruned
    headline = table(folder, "headline")
    budgets = {int(b["epoch"]): int(b["trials"]) for b in table(folder, "budgets")}
    searched = tomllib.loads(path.read_text())["search"]
    assert len(headline) == len(searched)
    for row in headline:
        assert row["verdict"] in ("clear", "unclear", "not tested")
        if row["verdict"] == "not tested":
            continue
        epoch = int(row["epoch"])
        assert int(row["trials"]) <= budgets[epoch]
        assert f"at epoch {epoch}" in row["summary"]
        assert float(row["effect_low"]) <= float(row["effect"]) <= float(row["effect_high"])
        assert row["p_value"] != ""
    tested = [r for r in headline if r["verdict"] != "not tested"]
    assert tested, "no factor was tested"
    sizes = [abs(float(r["effect"])) for r in tested]
    assert sizes == sorted(sizes, reverse=True)
    md = (folder / "report.md").read_text()
    assert md.startswith("## Study ") and "| # | factor | verdict |" in md
    assert all(f"`{key}`" in md for key in searched)


def test_compare_takes_a_pruned_trial_at_an_epoch_both_reached(pruned):
    path, folder = pruned
    trials = table(folder, "trials")
    done = next(int(t["trial"]) for t in trials if t["state"] == "completed")
    cut = next(t for t in trials if t["state"] == "pruned")
    result = runner.invoke(app, ["compare", str(path), cut["trial"], str(done), "--epoch", "1",
                                 "--json"])
    assert result.exit_code == 0, result.output
    out = json.loads(result.output)
    assert out["epoch"] == 1 and out["states"] == {"a": "pruned", "b": "completed"}
    fid = next(m for m in out["metrics"] if m["metric"] == "fid")
    assert fid["difference"]["low"] <= fid["difference"]["estimate"] <= fid["difference"]["high"]
    assert fid["difference"]["estimate"] == pytest.approx(
        fid["a"]["estimate"] - fid["b"]["estimate"])
    later = int(cut["epochs"]) + 1
    refused = runner.invoke(app, ["compare", str(path), cut["trial"], str(done),
                                  "--epoch", str(later)])
    assert refused.exit_code == 2
    assert f"trial {cut['trial']} (pruned) reached epoch {cut['epochs']}" in \
        " ".join(refused.output.split())


def test_the_page_is_one_self_contained_file_with_every_figure_inlined(pruned):
    _, folder = pruned
    page = (folder / "index.html").read_text()
    sources = re.findall(r'<img src="([^"]+)"', page)
    pngs = sorted((folder / "figures").glob("*.png"))
    assert len(sources) == len(pngs) and all(s.startswith("data:image/png;base64,")
                                             for s in sources)
    assert all(p.with_suffix(".svg").is_file() for p in pngs)
    assert {p.stem for p in pngs} >= {"forest", "curves"}
    assert "@media print" in page
    for name in ("headline", "budgets", "trials", "effects", "importances", "loss_check"):
        assert (folder / f"{name}.csv").is_file()
        assert f"## {table_title(folder, name)}" in (folder / "tables.md").read_text()


def table_title(folder: Path, name: str) -> str:
    """A table's Markdown heading, found by its CSV header (the first column names it)."""
    text = (folder / "tables.md").read_text()
    header = (folder / f"{name}.csv").read_text().splitlines()[0].split(",")
    match = re.search(r"## ([^\n]+)\n\n\| " + re.escape(" | ".join(header)) + " \\|", text)
    assert match, name
    return match.group(1)


def test_completed_trials_only_is_an_option(pruned):
    path, folder = pruned
    result = runner.invoke(app, ["report", str(path), "--completed-only", "-o",
                                 str(folder.parent / "completed")])
    assert result.exit_code == 0, result.output
    budgets = table(folder.parent / "completed", "budgets")
    assert all(b["pruned"] == "0" for b in budgets)


@pytest.mark.skipif(CHROMIUM is None, reason="needs headless Chromium: apt-get install chromium")
def test_the_page_renders_at_1400_pixels_in_chromium(pruned, tmp_path: Path):
    path, folder = pruned
    if path.stem != "beta_range":
        pytest.skip("one rendering is enough")
    SCREENSHOT.parent.mkdir(exist_ok=True)
    dom = subprocess.run(
        [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         f"--user-data-dir={tmp_path / 'chromium'}", "--virtual-time-budget=5000",
         "--window-size=1400,2600", f"--screenshot={SCREENSHOT}", "--dump-dom",
         (folder / "index.html").resolve().as_uri()],
        capture_output=True, text=True, timeout=120).stdout
    text = re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", dom))
    assert "What matters for fid" in text
    for row in table(folder, "headline"):
        assert row["summary"].split(":")[0] in text
    assert SCREENSHOT.read_bytes()[:4] == b"\x89PNG"


REPLICATED = """
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
def replicated(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """Three learning rates, two replicates each: the study file and its report folder."""
    folder = tmp_path_factory.mktemp("report")
    path = folder / "study.toml"
    path.write_text(REPLICATED.format(run=TINY_STUDY_RUN, output=(folder / "out").as_posix()),
                    encoding="utf-8")
    assert runner.invoke(app, ["run", str(path)]).exit_code == 0
    result = runner.invoke(app, ["report", str(path), "-o", str(folder / "report")])
    assert result.exit_code == 0, result.output
    assert "index.html" in result.output
    return path, folder / "report"


def finals(path: Path, metric: str) -> dict[float, np.ndarray]:
    """Learning rate -> each replicate's last value of a metric, from the replicate logs."""
    out = {}
    for trial in sorted((path.parent / "out" / "report" / "trials").iterdir()):
        logs = [metrics_log.read(trial / f"replicate_{r}" / "metrics.jsonl") for r in range(2)]
        lr = json.loads((trial / "replicate_0" / "config.json").read_text())["run"]["lr"]
        out[lr] = np.array([[rec[metric] for rec in log if metric in rec][-1] for log in logs])
    return out


def test_the_trials_table_holds_each_configuration_s_replicate_mean(replicated):
    path, folder = replicated
    fids, losses = finals(path, "fid"), finals(path, "loss")
    rows = table(folder, "trials")
    assert sorted(float(r["lr"]) for r in rows) == sorted(LRS)
    for row in rows:
        lr = float(row["lr"])
        assert float(row["fid"]) == pytest.approx(fids[lr].mean(), rel=1e-9)
        assert float(row["loss"]) == pytest.approx(losses[lr].mean(), rel=1e-9)
        assert 0 <= float(row["fid_low"]) <= float(row["fid"]) < float(row["fid_high"])


def test_effects_of_two_replicates_are_paired_and_marked_uninformative(replicated):
    path, folder = replicated
    fids = finals(path, "fid")
    rows = [r for r in table(folder, "effects") if r["metric"] == "fid"]
    assert {r["level"] for r in rows} == {"0.001", "0.003"}
    for row in rows:
        assert row["factor"] == "lr" and row["reference"] == "0.0002"
        d = fids[float(row["level"])] - fids[2e-4]
        assert float(row["effect"]) == pytest.approx(d.mean(), rel=1e-9)
        t = d.mean() / (d.std(ddof=1) / np.sqrt(2))
        assert float(row["p_value"]) == pytest.approx(2 * stats.t.sf(abs(t), 1), rel=1e-6)
        assert row["interval_note"].startswith("2 replicates: t on 1 degree of freedom")
    (headline,) = table(folder, "headline")
    assert headline["verdict"] == "unclear" and "t on 1 degree of freedom" in headline["summary"]


def test_the_loss_check_ranks_the_configurations_by_loss_and_by_fid(replicated):
    path, folder = replicated
    fids, losses = finals(path, "fid"), finals(path, "loss")
    (row,) = table(folder, "loss_check")
    expected = stats.spearmanr([-losses[lr].mean() for lr in LRS],
                               [-fids[lr].mean() for lr in LRS]).statistic
    assert row["metric"] == "fid"
    assert float(row["spearman"]) == pytest.approx(expected)


def test_compare_prints_the_paired_difference_of_two_trials(replicated):
    path, _ = replicated
    result = runner.invoke(app, ["compare", str(path), "0", "1", "--json"])
    assert result.exit_code == 0, result.output
    out = json.loads(result.output)
    assert out["paired"] and out["replicates"] == 2
    fid = next(m for m in out["metrics"] if m["metric"] == "fid")
    assert fid["difference"]["estimate"] == pytest.approx(
        fid["a"]["estimate"] - fid["b"]["estimate"])
    assert fid["test"]["name"] == "paired t"
    assert fid["difference"]["uninformative"].startswith("2 replicates")
    shown = runner.invoke(app, ["compare", str(path), "0", "1"])
    assert shown.exit_code == 0 and "paired by seed" in shown.output


def test_compare_at_an_early_epoch_uses_the_values_recorded_then(replicated):
    path, _ = replicated
    result = runner.invoke(app, ["compare", str(path), "2", "0", "--epoch", "1", "--json"])
    assert result.exit_code == 0, result.output
    (loss,) = json.loads(result.output)["metrics"]  # FID is scored after the last epoch only
    trials = sorted((path.parent / "out" / "report" / "trials").iterdir())
    first = [metrics_log.read(trials[2] / f"replicate_{r}" / "metrics.jsonl")[0]["loss"]
             for r in range(2)]
    assert loss["metric"] == "loss"
    assert loss["a"]["estimate"] == pytest.approx(np.mean(first), rel=1e-12)


@pytest.mark.parametrize(("args", "message"), [
    (["0", "7"], "has no trial 7 (trials with scored evaluations: 0 (completed), 1 (completed), "
                 "2 (completed))"),
    (["1", "1"], "compare needs two different trials"),
    (["0", "1", "--epoch", "5"], "trial 0 (completed) reached epoch 1 to 2, trial 1 "
                                 "(completed) reached epoch 1 to 2; pick --epoch from 1 to 2"),
])
def test_compare_names_what_is_wrong_with_the_trials_asked_for(replicated, args, message):
    path, _ = replicated
    result = runner.invoke(app, ["compare", str(path), *args])
    assert result.exit_code == 2
    assert message in " ".join(result.output.split())


def test_a_study_that_never_ran_has_no_report(tmp_path: Path):
    path = tmp_path / "new.toml"
    path.write_text(REPLICATED.format(run=TINY_STUDY_RUN, output=(tmp_path / "out").as_posix()),
                    encoding="utf-8")
    result = runner.invoke(app, ["report", str(path)])
    assert result.exit_code == 2
    assert "has not run yet" in result.output
