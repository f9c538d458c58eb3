"""benchmarks/time_to_quality.py in a tiny mode: scores at fixed intervals of images, resumes
without retraining, and says which targets were not reached and why."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest

from tests.conftest import TINY_STUDY_RUN

BENCHMARK = Path(__file__).parent.parent / "benchmarks" / "time_to_quality.py"
TINY = TINY_STUDY_RUN.replace("steps = 8", "steps = 6") + """
[eval]
metrics = ["fid"]
samples = 20
sampler = "ddim"
steps = 5
"""


@pytest.fixture
def benchmark(monkeypatch):
    spec = importlib.util.spec_from_file_location("time_to_quality", BENCHMARK)
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, module.__name__, module)  # dataclasses resolve through it
    spec.loader.exec_module(module)
    return module


def run(benchmark, tmp_path: Path, *recipes: str, budget: float = 600.0) -> list[str]:
    return ["--every", "32", "--samples", "20", "--floor-draws", "2", "--budget", str(budget),
            "--out", str(tmp_path / "out"), *recipes]


def test_recipes_are_scored_every_interval_and_compared_in_one_table(benchmark, tmp_path,
                                                                        capsys):
    (tmp_path / "tiny_a.toml").write_text(TINY, encoding="utf-8")
    (tmp_path / "tiny_b.toml").write_text(TINY.replace("steps = 6", "steps = 2"),
                                          encoding="utf-8")
    recipes = [str(tmp_path / "tiny_a.toml"), str(tmp_path / "tiny_b.toml")]
    assert benchmark.main(run(benchmark, tmp_path, *recipes)) == 0
    out = capsys.readouterr().out
    log = tmp_path / "out" / "tiny_a" / "time_to_quality.jsonl"
    points = [json.loads(line) for line in log.read_text(encoding="utf-8").splitlines()]
    assert [p["step"] for p in points] == [2, 4, 6]  # every 32 images of batch 16, to the end
    assert [p["images"] for p in points] == [32, 64, 96]
    assert points[0]["train_cpu_s"] < points[-1]["train_cpu_s"]
    assert "| tiny_a |" in out and "| tiny_b |" in out and "FID <= 2x floor" in out
    assert "not reached (run ended)" in out  # six steps on 64 digits draw no digits

    figure = tmp_path / "ttq.png"
    assert benchmark.main([*run(benchmark, tmp_path, *recipes), "--plot", str(figure)]) == 0
    assert figure.read_bytes().startswith(b"\x89PNG")  # resumed: drawn from the logged points
    assert len(log.read_text(encoding="utf-8").splitlines()) == 3
    assert "tiny_a: " not in capsys.readouterr().out  # no new point was scored


def test_a_spent_budget_stops_the_recipe_and_says_so(benchmark, tmp_path, capsys):
    (tmp_path / "tiny.toml").write_text(TINY, encoding="utf-8")
    assert benchmark.main(run(benchmark, tmp_path, str(tmp_path / "tiny.toml"),
                              budget=0.0)) == 0
    out = capsys.readouterr().out
    assert "not reached within budget" in out
    assert not (tmp_path / "out" / "tiny" / "time_to_quality.jsonl").exists()


def test_each_target_is_reached_at_the_first_point_that_meets_it(benchmark):
    point = benchmark.Point
    points = [point(16_000, 250, 60.0, 70.0, 5.0, 80.0, 6.0),
              point(32_000, 500, 120.0, 140.0, 10.0, 24.0, 8.5),
              point(48_000, 750, 180.0, 210.0, 15.0, 25.0, 9.2)]
    outcome = benchmark.Outcome("fast", points, "budget")
    row = benchmark.table([outcome], floor_fid=13.0).splitlines()[-1]
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert cells == ["fast", "32,000 images, 120 CPU-s, 140 s", "32,000 images, 120 CPU-s, 140 s",
                     "not reached within budget", "48,000 images, 180 CPU-s, 210 s",
                     "24.0 (32,000 images, 120 CPU-s)"]
