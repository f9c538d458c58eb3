"""`ablate show`'s trial table stays readable whatever the width of the search space."""

from __future__ import annotations

import io
from types import SimpleNamespace

from rich.console import Console

from ablate.study_display import render_table

SPEC = SimpleNamespace(name="wide", multi_objective=False, trials_dir="out/trials",
                       artifacts_dir="out/artifacts", path="wide.toml",
                       objectives=[SimpleNamespace(metric="fid", direction="minimize")])


def _row(number: int, params: dict) -> dict:
    return {"number": number, "outcome": "completed", "values": {"fid": 40.0 + number},
            "intervals": {}, "last_reported": None, "pareto": False, "params": params,
            "baseline": None, "seconds": 12.0, "reason": None}


def _shown(rows: list[dict], width: int) -> str:
    out = io.StringIO()
    render_table(SPEC, rows, Console(file=out, width=width))
    return out.getvalue()


def test_a_wide_search_space_lists_each_trials_parameters_as_key_value_lines():
    params = {f"degradation.flow_matching.parameter_{i}": i for i in range(12)}
    shown = _shown([_row(0, params), _row(1, {**params, "lr": 0.002})], width=100)
    lines = shown.splitlines()
    for key, value in params.items():  # whole, on one line: no name folded letter by letter
        assert any(f"{key}={value}" in line for line in lines), (key, shown)
    assert any("lr=0.002" in line for line in lines)
    assert "parameters" in shown


def test_a_narrow_search_space_keeps_a_column_per_parameter():
    shown = _shown([_row(0, {"lr": 0.002, "batch_size": 64})], width=100)
    header = next(line for line in shown.splitlines() if "outcome" in line)
    assert "lr" in header and "batch_size" in header and "parameters" not in header
