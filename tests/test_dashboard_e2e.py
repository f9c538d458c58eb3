"""``ablate dashboard`` end to end: a finished study served by optuna-dashboard, checked through
its JSON API and rendered by headless Chromium (DOM checked, screenshot kept for the record)."""

from __future__ import annotations

import io
import json
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
import torch
from rich.console import Console

from ablate.study import run_study
from ablate.study_config import load_study_file
from ablate.study_display import StudyDisplay
from tests.conftest import TINY_STUDY_RUN

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
SCREENSHOT = Path(__file__).parent / "artifacts" / "dashboard_trials.png"

pytestmark = pytest.mark.skipif(
    CHROMIUM is None, reason="needs headless Chromium: apt-get install chromium")

STUDY = """
[study]
name = "dash"
output = "{output}"
trials = 2
sampler = "random"
baselines = [{{name = "coursework"}}]
{run}
[search]
"run.lr" = {{low = 1e-4, high = 1e-2, log = true}}
"""


@pytest.fixture
def one_thread():
    """Tiny models train fastest on one thread when other jobs share the two cores."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def get(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=10) as response:
        return response.read()


def wait_for(url: str, server: subprocess.Popen, seconds: float = 90) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if server.poll() is not None:
            pytest.fail(f"the dashboard exited: {server.stdout.read()}")
        try:
            get(url)
            return
        except (urllib.error.URLError, ConnectionError):
            time.sleep(0.5)
    pytest.fail(f"the dashboard did not answer at {url} within {seconds} s")


PRUNED_REPLICATED = """
[study]
name = "dash"
output = "{output}"
trials = 2
objective = "loss"
replicates = 2
pruner = {{name = "median", n_startup_trials = 1}}
baselines = [{{"run.lr" = 1e-2}}, {{"run.lr" = 1e-4}}]
{run}
[eval]
metrics = ["fid"]
samples = 8
every = 1

[search]
"run.lr" = {{low = 1e-4, high = 1e-2, log = true}}
"""
"""Two trials of two replicates, evaluated every epoch; the second (lr 1e-4) is pruned."""


def test_dashboard_shows_every_trials_grid_of_every_evaluated_epoch(tmp_path: Path, one_thread):
    path = tmp_path / "dash.toml"
    path.write_text(PRUNED_REPLICATED.format(run=TINY_STUDY_RUN,
                                             output=(tmp_path / "out").as_posix()),
                    encoding="utf-8")
    run_study(load_study_file(path), StudyDisplay(Console(file=io.StringIO())))
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    server = subprocess.Popen(
        [sys.executable, "-c", "from ablate.cli import app; app()", "dashboard", str(path),
         "--port", str(port)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        wait_for(f"{base}/api/studies", server)
        summaries = json.loads(get(f"{base}/api/studies"))["study_summaries"]
        (study,) = [s for s in summaries if s["study_name"] == "dash"]
        detail = json.loads(get(f"{base}/api/studies/{study['study_id']}"))
        assert [t["state"] for t in detail["trials"]] == ["Complete", "Pruned"]
        evaluated = {0: [1, 2], 1: [1]}  # the pruned trial stopped after its first epoch
        for trial in detail["trials"]:
            grids = {f"replicate_{r}_epoch_{e:04d}.png" for r in (0, 1)
                     for e in evaluated[trial["number"]]}
            names = {a["filename"] for a in trial["artifacts"]}
            assert names == grids | {"replicate_0_last.safetensors",
                                     "replicate_1_last.safetensors", "curves.png",
                                     "metrics.jsonl"}

        SCREENSHOT.parent.mkdir(exist_ok=True)
        numbers = ",".join(str(t["number"]) for t in detail["trials"])
        page = f"{base}/dashboard/studies/{study['study_id']}/trials?numbers={numbers}"
        dom = headless(page, SCREENSHOT, tmp_path / "chromium")  # every trial on one page
        text = re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", dom))
        assert "dash (id=" in text and "Trial 0" in text and "Trial 1" in text
        for trial in detail["trials"]:
            number = trial["number"]
            trial_dir = tmp_path / "out" / "dash" / "trials" / f"trial_{number:04d}"
            src = f"/artifacts/{study['study_id']}/{trial['trial_id']}/"
            for r in (0, 1):
                for e in evaluated[number]:
                    name = f"replicate_{r}_epoch_{e:04d}.png"
                    grid = re.search(rf'<img[^>]*alt="{name}"[^>]*src="({src}[^"]+)"', dom)
                    assert grid is not None, f"trial {number}'s page shows no {name}"
                    on_disk = trial_dir / f"replicate_{r}" / "samples" / f"epoch_{e:04d}.png"
                    assert get(base + grid.group(1)) == on_disk.read_bytes()
        assert text.count("replicate_1_last.safetensors") >= 2  # both trials' checkpoints
        assert SCREENSHOT.read_bytes()[:4] == b"\x89PNG"
    finally:
        server.terminate()
        server.wait(timeout=30)


def headless(url: str, screenshot: Path, profile: Path, *, height: int = 1500,
             budget_ms: int = 15000) -> str:
    """The DOM of a page after headless Chromium rendered it; a screenshot is kept."""
    screenshot.parent.mkdir(exist_ok=True)
    return subprocess.run(
        [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         f"--user-data-dir={profile}", f"--virtual-time-budget={budget_ms}",
         f"--window-size=1280,{height}", f"--screenshot={screenshot}", "--dump-dom", url],
        capture_output=True, text=True, timeout=120).stdout
