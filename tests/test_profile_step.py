"""benchmarks/profile_step.py on a tiny recipe: it names every phase of the training step with
shares that add up, lists operators, and prices a scoring in training steps."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

from tests.conftest import TINY_STUDY_RUN

BENCHMARK = Path(__file__).parent.parent / "benchmarks" / "profile_step.py"


def test_the_profile_splits_a_step_into_phases_and_prices_a_scoring(tmp_path, capsys):
    recipe = tmp_path / "tiny.toml"
    recipe.write_text(TINY_STUDY_RUN + '\n[eval]\nmetrics = ["fid"]\nsamples = 8\n'
                      'sampler = "ddim"\nsteps = 3\n', encoding="utf-8")
    spec = importlib.util.spec_from_file_location("profile_step", BENCHMARK)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert module.main([str(recipe), "--steps", "2", "--samples", "8", "--rows", "3"]) == 0
    out = capsys.readouterr().out
    shares = [int(m) for m in re.findall(r"^\s+(?:forward \(loss\)|backward|optimiser step|"
                                         r"EMA update)\s+[\d.]+ ms\s+(\d+)%$", out, re.M)]
    assert len(shares) == 4 and 97 <= sum(shares) <= 103, out
    assert "aten::" in out
    assert re.search(r"scoring 8 samples: sampling [\d.]+ s, metrics [\d.]+ s", out), out
