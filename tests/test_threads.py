"""The CPU thread policy for busy machines (ablate.threads): passive waiting set before torch
loads, one thread per core other work leaves free, and the overrides."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest
import torch

from ablate.errors import ConfigError
from ablate.threads import apply_thread_policy, choose_threads, other_load, thread_count


@pytest.mark.parametrize(("cores", "load", "threads"), [
    (2, 0.0, 2), (2, 0.4, 2), (2, 1.0, 1), (2, 2.0, 1), (2, 7.0, 1), (16, 3.0, 13),
    (16, 0.0, 16), (1, 0.0, 1)])
def test_threads_take_the_cores_other_work_leaves_free(cores: int, load: float, threads: int):
    assert choose_threads(cores, load) == threads


def test_two_busy_processes_are_seen_as_load():
    busy = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(2)]
    try:
        time.sleep(0.3)
        assert other_load() >= 2
    finally:
        for process in busy:
            process.kill()
            process.wait()


def test_ablate_threads_overrides_and_omp_num_threads_is_left_to_torch(
        monkeypatch: pytest.MonkeyPatch):
    before = torch.get_num_threads()
    try:
        monkeypatch.setenv("ABLATE_THREADS", "1")
        assert apply_thread_policy() == 1 and torch.get_num_threads() == 1
        monkeypatch.delenv("ABLATE_THREADS")
        monkeypatch.setenv("OMP_NUM_THREADS", "3")
        assert thread_count() is None
        for bad in ("0", "two", "-1"):
            monkeypatch.setenv("ABLATE_THREADS", bad)
            with pytest.raises(ConfigError, match="ABLATE_THREADS"):
                thread_count()
    finally:
        torch.set_num_threads(before)


def test_the_command_line_sets_passive_waiting_before_torch_loads():
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    code = ("import sys, ablate.cli, os; assert 'torch' not in sys.modules; "
            "print(os.environ['OMP_WAIT_POLICY'])")
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                          text=True, check=True)
    assert done.stdout.strip() == "PASSIVE"
    env["OMP_WAIT_POLICY"] = "ACTIVE"  # the user's own choice is kept
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                          text=True, check=True)
    assert done.stdout.strip() == "ACTIVE"
