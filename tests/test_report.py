"""``ablate report`` and ``ablate compare`` on shrunk copies of the shipped studies that prune
(every trial counts, compared at equal budget), and on a tiny replicated grid whose numbers are
checked against the replicates' own logs; the page is rendered by headless Chromium."""

from __future__ import annotations

import csv
import html
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

runner = CliRunner()
STUDIES = Path(__file__).resolve().parents[1] / "studies"
PRUNING = ["beta_range", "decoders", "schedules"]
TRIALS = {"beta_range": 3, "decoders": 4, "schedules": 3}
"""The fewest trials with which each shrunk study prunes one."""
REPLICATES = {"schedules": 2}
"""The shrunk schedules study trains two replicates: pairing and one degree of freedom."""
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


def shrunk(name: str, folder: Path, trials: int, replicates: int = 1,
           shipped: Path = STUDIES) -> Path:
    """The shipped study ``name`` (in ``shipped``) with its search, sampler, pruner and
    baselines, on sub-second trials: two epochs of four steps, 16 samples scored per epoch, and
    the tiny CNN wherever the decoder is not what the study searches."""
    doc = tomllib.loads((shipped / f"{name}.toml").read_text(encoding="utf-8"))
    doc["study"] |= {"trials": trials, "output": (folder / "out").as_posix(),
                     "replicates": replicates}
    doc["study"].pop("timeout", None)
    run = doc["run"] | {"steps": 8, "batch_size": 16, "subset": 64, "grid_size": 4,
                        "device": "cpu"}
    run.pop("epochs", None)
    if not any(key.startswith("run.decoder") for key in doc["search"]):
        run["decoder"] = {"name": "cnn", "channels": [4, 8], "time_hidden": 16}
    elif run["decoder"]["name"] == "cnn":
        run["decoder"] |= {"channels": [4, 8], "time_hidden": 16}
    doc["run"] = run
    doc["eval"] |= {"samples": 16, "steps": 4, "every": 1}
    text = "".join(f"[{table}]\n" + "".join(f"{json.dumps(k)} = {toml_value(v)}\n"
                                           for k, v in values.items()) + "\n"
                   for table, values in doc.items())
    path = folder / f"{name}.toml"
    path.write_text(text, encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def studies(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, Path]]:
    """Shrunk shipped studies, each run and reported through the CLI once per module."""
    return {}


def run_and_report(studies: dict, name: str, folder: Path) -> tuple[Path, Path]:
    if name not in studies:
        path = shrunk(name, folder, trials=TRIALS[name], replicates=REPLICATES.get(name, 1))
        result = runner.invoke(app, ["run", str(path)])
        assert result.exit_code == 0, result.output
        result = runner.invoke(app, ["report", str(path), "-o", str(folder / "report")])
        assert result.exit_code == 0, result.output
        studies[name] = (path, folder / "report")
    return studies[name]


@pytest.fixture(params=PRUNING)
def pruned(request, studies, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A shrunk shipped study that prunes: (study file, report folder)."""
    return run_and_report(studies, request.param, tmp_path_factory.mktemp(request.param))


@pytest.fixture
def beta_range(studies, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return run_and_report(studies, "beta_range", tmp_path_factory.mktemp("beta_range"))


def table(folder: Path, name: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO((folder / f"{name}.csv").read_text())))


def test_a_pruning_study_is_analysed_at_every_budget_with_its_pruned_trials(pruned):
    path, folder = pruned
    budgets = table(folder, "budgets")
    assert [int(b["epoch"]) for b in budgets] == sorted(int(b["epoch"]) for b in budgets)
    first = budgets[0]
    assert int(first["pruned"]) >= 1, "the shrunk study pruned nothing"
    trials = TRIALS[path.stem]
    assert int(first["trials"]) == trials  # every trial reached the first rung: compared there
    assert int(budgets[-1]["trials"]) < trials  # the pruned ones did not reach the last
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


def test_completed_trials_only_is_an_option(beta_range):
    path, folder = beta_range
    result = runner.invoke(app, ["report", str(path), "--completed-only", "-o",
                                 str(folder.parent / "completed")])
    assert result.exit_code == 0, result.output
    budgets = table(folder.parent / "completed", "budgets")
    assert all(b["pruned"] == "0" for b in budgets)


@pytest.mark.skipif(CHROMIUM is None, reason="needs headless Chromium: apt-get install chromium")
def test_the_page_renders_at_1400_pixels_in_chromium(beta_range, tmp_path: Path):
    _, folder = beta_range
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


def trial_folder(path: Path, number: int | str) -> Path:
    name = tomllib.loads(path.read_text())["study"]["name"]
    return path.parent / "out" / name / "trials" / f"trial_{int(number):04d}"


def replicate_values(path: Path, number: int | str, metric: str, epoch: int) -> np.ndarray:
    """Each replicate's value of a metric at an epoch, from the replicates' own logs."""
    folder = trial_folder(path, number)
    logs = [metrics_log.read(d / "metrics.jsonl") for d in sorted(folder.glob("replicate_*"))]
    return np.array([next(r[metric] for r in log if r["epoch"] == epoch) for log in logs])


@pytest.fixture
def replicated(studies, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """The shrunk schedules study, two replicates paired by seed: file, report folder."""
    return run_and_report(studies, "schedules", tmp_path_factory.mktemp("schedules"))


def test_the_trials_table_holds_each_configuration_s_replicate_mean(replicated):
    path, folder = replicated
    for row in table(folder, "trials"):
        epoch = int(row["epochs"])
        for metric in ("fid", "loss"):
            values = replicate_values(path, row["trial"], metric, epoch)
            assert float(row[metric]) == pytest.approx(values.mean(), rel=1e-9)
        assert 0 <= float(row["fid_low"]) <= float(row["fid"]) < float(row["fid_high"])


def test_effects_of_two_replicates_are_paired_and_marked_uninformative(replicated):
    path, folder = replicated
    trials = table(folder, "trials")
    rows = [r for r in table(folder, "effects")
            if r["metric"] == "fid" and r["epoch"] == "1" and r["factor"] == "schedule.name"]
    assert rows
    for row in rows:
        def level(label: str) -> np.ndarray:
            return np.mean([replicate_values(path, t["trial"], "fid", 1) for t in trials
                            if t["schedule.name"] == label], axis=0)

        d = level(row["level"]) - level(row["reference"])  # per replicate: seeds pair them
        assert float(row["effect"]) == pytest.approx(d.mean(), rel=1e-9)
        t = d.mean() / (d.std(ddof=1) / np.sqrt(2))
        assert row["test"] == "paired t"
        assert float(row["p_value"]) == pytest.approx(2 * stats.t.sf(abs(t), 1), rel=1e-6)
        assert row["interval_note"].startswith("2 replicates: t on 1 degree of freedom")
    for row in table(folder, "headline"):
        assert row["verdict"] != "clear"  # nothing is clear on one degree of freedom


def test_the_loss_check_ranks_the_trials_by_loss_and_by_fid(replicated):
    path, folder = replicated
    trials = table(folder, "trials")
    check = next(r for r in table(folder, "loss_check") if r["metric"] == "fid"
                 and r["epoch"] == "1")
    loss = [-replicate_values(path, t["trial"], "loss", 1).mean() for t in trials]
    fid = [-replicate_values(path, t["trial"], "fid", 1).mean() for t in trials]
    assert float(check["spearman"]) == pytest.approx(stats.spearmanr(loss, fid).statistic)


def test_compare_gives_the_paired_difference_of_two_trials_at_an_epoch(replicated):
    path, _ = replicated
    result = runner.invoke(app, ["compare", str(path), "1", "0", "--epoch", "1", "--json"])
    assert result.exit_code == 0, result.output
    out = json.loads(result.output)
    assert out["paired"] and out["replicates"] == 2 and out["epoch"] == 1
    by_name = {m["metric"]: m for m in out["metrics"]}
    assert by_name["loss"]["a"]["estimate"] == pytest.approx(
        replicate_values(path, 1, "loss", 1).mean(), rel=1e-12)
    fid = by_name["fid"]
    d = replicate_values(path, 1, "fid", 1) - replicate_values(path, 0, "fid", 1)
    assert fid["difference"]["estimate"] == pytest.approx(d.mean(), rel=1e-9)
    assert fid["test"]["name"] == "paired t"
    assert fid["difference"]["uninformative"].startswith("2 replicates")
    shown = runner.invoke(app, ["compare", str(path), "1", "0"])
    assert shown.exit_code == 0 and "paired by seed" in shown.output


@pytest.mark.parametrize(("args", "message"), [
    (["0", "7"], "has no trial 7 (trials with scored evaluations: 0 (completed)"),
    (["1", "1"], "compare needs two different trials"),
])
def test_compare_names_what_is_wrong_with_the_trials_asked_for(replicated, args, message):
    path, _ = replicated
    result = runner.invoke(app, ["compare", str(path), *args])
    assert result.exit_code == 2
    assert message in " ".join(result.output.split())


def test_a_study_that_never_ran_has_no_report(tmp_path: Path):
    path = shrunk("beta_range", tmp_path, trials=2)
    result = runner.invoke(app, ["report", str(path)])
    assert result.exit_code == 2
    assert "has not run yet" in result.output


def test_without_sample_grids_the_report_says_so(beta_range):
    """Last in the module: it deletes the shared study's grids."""
    path, folder = beta_range
    grids = list((path.parent / "out").rglob("samples/*.png"))
    assert grids, "the study saved no grid to delete"
    for grid in grids:
        grid.unlink()
    result = runner.invoke(app, ["report", str(path), "-o", str(folder.parent / "no_grids")])
    assert result.exit_code == 0, result.output
    page = (folder.parent / "no_grids" / "index.html").read_text()
    tested = [r for r in table(folder, "headline") if r["verdict"] != "not tested"]
    assert page.count("No sample grids: no sample grid was saved at epoch") == len(tested)
    assert not list((folder.parent / "no_grids" / "figures").glob("grids_*"))


def test_the_curves_legend_names_each_baseline_trial(beta_range):
    path, folder = beta_range
    names = [b["name"] for b in tomllib.loads(path.read_text())["study"]["baselines"]]
    svg = (folder / "figures" / "curves.svg").read_text()
    for number, name in enumerate(names):  # baselines are queued first, in the file's order
        assert f"trial {number}: {name}" in html.unescape(svg)


def test_a_study_scored_every_epoch_shows_each_trial_s_samples_against_budget(tmp_path):
    """docs/results/ema_early.toml (the EMA question: do digits form earlier?) as shipped,
    shrunk and run under another name (as a longer run of the same file would be): report and
    compare find it by the same overrides, and the report draws every trial's grid at every
    epoch, named by trial."""
    path = shrunk("ema_early", tmp_path, trials=2, replicates=2,
                  shipped=STUDIES.parent / "docs" / "results")
    renamed = "study.name='ema_early_renamed'"
    assert runner.invoke(app, ["run", str(path), renamed]).exit_code == 0
    result = runner.invoke(app, ["report", str(path), "-o", str(tmp_path / "report"), renamed])
    assert result.exit_code == 0, result.output
    result = runner.invoke(app, ["compare", str(path), "0", "1", "--json", renamed])
    assert result.exit_code == 0, result.output
    pair = json.loads(result.output)
    assert pair["study"] == "ema_early_renamed" and pair["paired"] and pair["epoch"] == 2
    svg = html.unescape((tmp_path / "report" / "figures" / "progress.svg").read_text())
    assert "epoch 1" in svg and "epoch 2" in svg
    assert "trial 0" in svg and "trial 1" in svg
    assert "trial 0: ema.name=none" in svg and "trial 1: EMA 0.992" in svg
    assert svg.count("<image") == 4  # two trials, two epochs
