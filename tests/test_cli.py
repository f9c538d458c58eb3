"""The command line, driven through typer's CliRunner as a user would."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from ablate.cli import app

runner = CliRunner()


def test_train_then_resume_then_sample(tiny_run_file: Path, tmp_path: Path):
    out = tmp_path / "out"
    result = runner.invoke(app, ["train", str(tiny_run_file), "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert "done: 12 steps" in result.output
    again = runner.invoke(app, ["train", str(tiny_run_file), "-o", str(out)])
    assert again.exit_code == 1
    assert "already holds a run" in again.output
    resumed = runner.invoke(app, ["train", str(tiny_run_file), "-o", str(out), "--resume"])
    assert resumed.exit_code == 0, resumed.output
    grid = tmp_path / "grid.png"
    sampled = runner.invoke(app, ["sample", str(out / "checkpoints" / "last.safetensors"),
                                  "-n", "5", "-o", str(grid)])
    assert sampled.exit_code == 0, sampled.output
    assert grid.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_invalid_run_file_exits_2_with_one_clear_line(tmp_path: Path):
    path = tmp_path / "bad.toml"
    path.write_text('[run]\ndecoder = "unett"\n', encoding="utf-8")
    result = runner.invoke(app, ["train", str(path)])
    assert result.exit_code == 2
    assert "bad.toml: run.decoder: unknown decoder 'unett'" in result.output
    assert "Traceback" not in result.output


def test_sample_from_a_damaged_checkpoint_is_a_clear_error(tmp_path: Path):
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json}")
    result = runner.invoke(app, ["sample", str(bad)])
    assert result.exit_code == 2
    assert "damaged or not a safetensors file" in result.output


def test_list_plugins_table_and_json():
    table = runner.invoke(app, ["list-plugins"])
    assert table.exit_code == 0
    assert "cnn" in table.output and "built-in" in table.output
    listing = json.loads(runner.invoke(app, ["list-plugins", "--json", "--family",
                                             "schedule"]).output)
    assert list(listing["families"]) == ["schedule"]
    linear = next(c for c in listing["families"]["schedule"] if c["name"] == "linear")
    beta_min = linear["parameters"][0]
    assert beta_min == {"name": "beta_min", "type": "float", "default": 1e-4,
                        "help": beta_min["help"]}
    assert linear["source"].startswith("built-in")


def test_list_plugins_unknown_family_exits_2():
    result = runner.invoke(app, ["list-plugins", "--family", "decoderz"])
    assert result.exit_code == 2
    assert "unknown family" in result.output
