"""The CPU thread policy for busy machines (ablate.threads): passive waiting set before torch
loads when other work competes, a thread per usable core, and the overrides."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest
import torch

from ablate.errors import ConfigError
from ablate.threads import (
    apply_thread_policy,
    other_load,
    thread_count,
    wait_policy,
)


def test_threads_take_every_core_the_process_may_use(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.delenv("ABLATE_THREADS", raising=False)
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    assert thread_count() == len(os.sched_getaffinity(0))


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


def test_idle_threads_sleep_only_when_other_work_competes():
    assert wait_policy(0.0) is None and wait_policy(0.4) is None
    assert wait_policy(1.0) == "PASSIVE" and wait_policy(7.0) == "PASSIVE"


def test_on_a_busy_machine_the_command_line_sets_passive_waiting_before_torch_loads():
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    code = ("import sys, ablate.cli, os; assert 'torch' not in sys.modules; "
            "print(os.environ.get('OMP_WAIT_POLICY'))")
    busy = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(2)]
    try:
        time.sleep(0.3)
        done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                              text=True, check=True)
        assert done.stdout.strip() == "PASSIVE"
        env["OMP_WAIT_POLICY"] = "ACTIVE"  # the user's own choice is kept
        done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                              text=True, check=True)
        assert done.stdout.strip() == "ACTIVE"
    finally:
        for process in busy:
            process.kill()
            process.wait()
