"""The command line, driven through typer's CliRunner as a user would."""

from __future__ import annotations

import io
import json
import os
import re
import stat
import subprocess
import sys
from pathlib import Path

import click
import pytest
import typer
from rich.console import Console
from typer.testing import CliRunner

import ablate
from ablate import sampler_defaults
from ablate.cli import app
from ablate.study import run_study
from ablate.study_config import load_study_file
from ablate.study_display import StudyDisplay
from ablate.training import Interrupted, Trainer
from tests.conftest import TINY_STUDY_RUN, CtrlCAt, tiny_config

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


@pytest.fixture(scope="module")
def long_chain(tmp_path_factory) -> Path:
    """A tiny run with T = 200: the default sampler must not pay 200 steps per batch."""
    out = tmp_path_factory.mktemp("long") / "run"
    return Trainer(tiny_config(T=200, steps=4), out).run().checkpoint


def test_ablate_version_prints_the_version():
    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0
    assert result.output.strip() == f"ablate {ablate.__version__}"


def _flat(text: str) -> str:
    """Help text without rich's box drawing and line wrapping."""
    return " ".join(re.sub(r"[│╭╮╰╯─]", " ", text).split())


def _commands(group: click.Group, prefix: tuple[str, ...] = ()):
    for name, command in group.commands.items():
        if isinstance(command, click.Group):
            yield from _commands(command, (*prefix, name))
        else:
            yield (*prefix, name), command


def test_help_keeps_every_bracketed_word_that_rich_could_eat():
    assert "TOML file with a [run] table" in _flat(runner.invoke(app, ["train", "--help"]).output)
    for path, command in _commands(typer.main.get_command(app)):
        shown = _flat(runner.invoke(app, [*path, "--help"], terminal_width=400).output)
        texts = [command.help or ""] + [getattr(p, "help", None) or "" for p in command.params]
        for text in texts:
            for word in re.findall(r"\[[a-z][^\]]*\]", text.replace("\\[", "[")):
                assert word in shown, f"ablate {' '.join(path)} --help lost {word}"


def test_ablate_help_does_not_import_torch():
    probe = ("import sys\nfrom typer.testing import CliRunner\nfrom ablate.cli import app\n"
             "result = CliRunner().invoke(app, ['--help'])\n"
             "assert result.exit_code == 0, result.output\n"
             "print('torch' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "False"


def test_files_follow_the_umask(tiny_run_file: Path, tmp_path: Path):
    previous = os.umask(0o022)
    try:
        out = tmp_path / "out"
        result = runner.invoke(app, ["train", str(tiny_run_file), "-o", str(out)])
        assert result.exit_code == 0, result.output
        os.umask(0o027)
        grid = tmp_path / "grid.png"
        sampled = runner.invoke(app, ["sample", str(out / "checkpoints" / "last.safetensors"),
                                      "-n", "4", "-o", str(grid)])
        assert sampled.exit_code == 0, sampled.output
    finally:
        os.umask(previous)
    for path in (out / "config.json", out / "checkpoints" / "last.safetensors",
                 out / "samples" / "epoch_0003.png", out / "metrics.jsonl"):
        assert stat.S_IMODE(path.stat().st_mode) == 0o644, path
    assert stat.S_IMODE(grid.stat().st_mode) == 0o640


def test_sample_and_evaluate_default_to_a_sampler_whose_cost_does_not_grow_with_T(
        long_chain: Path, tmp_path: Path):
    assert sampler_defaults.HELP in _flat(runner.invoke(app, ["sample", "--help"],
                                                        terminal_width=400).output)
    sampled = runner.invoke(app, ["sample", str(long_chain), "-n", "3",
                                  "-o", str(tmp_path / "g.png")])
    assert sampled.exit_code == 0, sampled.output
    said = (f"sampling 3 images with {sampler_defaults.SAMPLER} on {sampler_defaults.STEPS} "
            f"of T = 200 steps")
    assert said in sampled.output
    assert f"{sampler_defaults.STEPS}/{sampler_defaults.STEPS} network evaluations" in \
        sampled.output
    scored = runner.invoke(app, ["evaluate", str(long_chain), "-n", "4", "--metrics", "fid"])
    assert scored.exit_code == 0, scored.output
    assert f"{sampler_defaults.STEPS}/{sampler_defaults.STEPS} network evaluations" in \
        scored.output


def test_sample_takes_sampler_and_steps_and_counts_them_in_its_progress_bar(
        long_chain: Path, tmp_path: Path):
    result = runner.invoke(app, ["sample", str(long_chain), "-n", "300", "--sampler", "ddim",
                                 "--steps", "7", "-o", str(tmp_path / "g.png")],
                           env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert "sampling 300 images with ddim on 7 of T = 200 steps" in result.output
    assert "14/14 network evaluations" in result.output  # two batches of at most 256
    assert "evaluations/s" in result.output and "ETA" in result.output
    unknown = runner.invoke(app, ["sample", str(long_chain), "--sampler", "ddpm"])
    assert unknown.exit_code == 2
    assert "ddpm" in unknown.output and "ancestral" in unknown.output


def test_train_says_what_it_does_after_the_last_step_and_prints_the_final_scores(
        tiny_run_file: Path, tmp_path: Path):
    path = tmp_path / "scored.toml"
    path.write_text(tiny_run_file.read_text() + '\n[eval]\nmetrics = ["fid"]\nsamples = 8\n',
                    encoding="utf-8")
    result = runner.invoke(app, ["train", str(path), "-o", str(tmp_path / "out")])
    assert result.exit_code == 0, result.output
    assert "training done; epoch 3: sampling 8 images and scoring fid" in result.output
    record = json.loads((tmp_path / "out" / "metrics.jsonl").read_text().splitlines()[-1])
    assert (f"final scores (epoch 3, 95% intervals): fid {record['fid']:.4g} "
            f"[{record['fid_low']:.4g}, {record['fid_high']:.4g}]") in _flat(result.output)


class WatchedStudy(StudyDisplay):
    """Records what the study bar's ETA column shows after each finished trial."""

    def __init__(self) -> None:
        super().__init__(Console(file=io.StringIO()))
        self.etas: list[str] = []

    def trial_finished(self, trial, done: int, best: str | None, spent: float) -> None:
        super().trial_finished(trial, done, best, spent)
        study_bar = self.progress.tasks[0]
        self.etas.append(self.progress.columns[-1].render(study_bar).plain)


def _watched_lr_study(tmp_path: Path, name: str, budget: str) -> list[str]:
    """The ETAs the study bar showed after each trial of a random lr search with ``budget``."""
    path = tmp_path / f"{name}.toml"
    path.write_text(f'[study]\nname = "{name}"\noutput = "{(tmp_path / "out").as_posix()}"\n'
                    f'{budget}\nsampler = "random"\n{TINY_STUDY_RUN}\n[search]\n'
                    f'"run.lr" = {{low = 1e-4, high = 1e-2, log = true}}\n', encoding="utf-8")
    display = WatchedStudy()
    run_study(load_study_file(path), display)
    return display.etas


def test_the_study_bar_shows_an_eta_once_one_trial_has_finished(tmp_path: Path):
    etas = _watched_lr_study(tmp_path, "eta", "trials = 2")
    assert len(etas) == 2
    assert all(re.fullmatch(r"\d+:\d\d:\d\d", eta) for eta in etas), etas
    assert etas[-1] == "0:00:00"


def test_the_study_eta_ends_with_the_time_budget_when_that_comes_first(tmp_path: Path):
    etas = _watched_lr_study(tmp_path, "eta_timeout", "trials = 500\ntimeout = 2")
    # 500 trials at this pace would take minutes; the 2 s budget ends within 2 s of the start
    seconds = [int(h) * 3600 + int(m) * 60 + int(s) for h, m, s in (e.split(":") for e in etas)]
    assert seconds and all(s <= 2 for s in seconds), etas
    assert seconds[-1] == 0


def test_show_tells_an_interrupted_trial_how_to_continue(tmp_path: Path):
    path = tmp_path / "stopped.toml"
    path.write_text(f'[study]\nname = "stopped"\noutput = "{(tmp_path / "out").as_posix()}"\n'
                    f'trials = 1\n{TINY_STUDY_RUN}\n[search]\n'
                    f'"run.lr" = {{low = 1e-4, high = 1e-2, log = true}}\n', encoding="utf-8")
    with pytest.raises(Interrupted):
        run_study(load_study_file(path), CtrlCAt(step=6))
    shown = runner.invoke(app, ["show", str(path)], env={"COLUMNS": "400"})
    assert shown.exit_code == 0, shown.output
    assert "interrupted" in shown.output
    assert f"ablate run {path} continues it" in _flat(shown.output)
    assert "--resume" not in shown.output


def test_show_reads_a_study_without_importing_torch(tmp_path: Path):
    path = tmp_path / "light.toml"
    path.write_text(f'[study]\nname = "light"\noutput = "{(tmp_path / "out").as_posix()}"\n'
                    f'trials = 1\n{TINY_STUDY_RUN}\n[search]\n'
                    f'"run.lr" = {{low = 1e-4, high = 1e-2, log = true}}\n', encoding="utf-8")
    run_study(load_study_file(path), StudyDisplay(Console(file=io.StringIO())))
    probe = ("import sys\nfrom typer.testing import CliRunner\nfrom ablate.cli import app\n"
             f"result = CliRunner().invoke(app, ['show', {str(path)!r}, '--json'])\n"
             "assert result.exit_code == 0, result.output\n"
             "import json; rows = json.loads(result.output)\n"
             "print(len(rows), rows[0]['outcome'], 'torch' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["1", "completed", "False"]
