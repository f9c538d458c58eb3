"""Shared fixtures: tiny, fast run configurations on the bundled MNIST."""

from __future__ import annotations

import io
import os
import signal
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

from ablate.config import RunConfig, parse_run
from ablate.study_display import StudyDisplay
from tests.postgres import postgres_server  # noqa: F401 - a fixture for every test module

TINY_RUN: dict[str, Any] = {
    "T": 20,
    "steps": 12,
    "batch_size": 16,
    "subset": 64,
    "grid_size": 4,
    "device": "cpu",
    "decoder": {"name": "cnn", "channels": [4, 8], "time_hidden": 16},
}


def tiny_config(**overrides: Any) -> RunConfig:
    """A configuration that trains in a second or two on two CPU cores."""
    return parse_run({**TINY_RUN, **overrides}, source="test")


@pytest.fixture
def tiny_run_file(tmp_path: Path) -> Path:
    path = tmp_path / "tiny.toml"
    path.write_text(
        "[run]\nT = 20\nsteps = 12\nbatch_size = 16\nsubset = 64\ngrid_size = 4\n"
        'device = "cpu"\n\n[run.decoder]\nname = "cnn"\nchannels = [4, 8]\ntime_hidden = 16\n',
        encoding="utf-8",
    )
    return path


TINY_STUDY_RUN = """
[run]
T = 10
steps = 8
batch_size = 16
subset = 64
grid_size = 4
device = "cpu"
decoder = {name = "cnn", channels = [4, 8], time_hidden = 16}
"""
"""The [run] table of the tiny studies in the tests: sub-second trials on 64 real digits."""


class CtrlCAt(StudyDisplay):
    """Sends a real SIGINT at a given step of the first run that reaches it, as Ctrl-C would."""

    def __init__(self, step: int) -> None:
        super().__init__(Console(file=io.StringIO()))
        self.step = step
        self.sent = False

    def advance(self, step: int, loss: float | None) -> None:
        super().advance(step, loss)
        if step == self.step and not self.sent:
            self.sent = True
            os.kill(os.getpid(), signal.SIGINT)
