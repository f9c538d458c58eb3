"""Many workers on one study, with real parts: a PostgreSQL server started for the tests and
Optuna journal files; worker processes that share the budget exactly, a worker killed with
SIGKILL mid-trial whose trial is failed and retried, and passwords that never show."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import optuna
import pytest
import torch
from optuna.trial import TrialState
from typer.testing import CliRunner

from ablate.cli import app
from ablate.storage import ClaimLock, masked, open_storage, redact
from ablate.study import load_existing
from ablate.study_config import load_study_file
from ablate.study_display import outcome_of, trial_rows
from ablate.workers import threads_per_worker
from tests.postgres import new_database

runner = CliRunner()

RUN = """
[run]
T = 5
steps = {steps}
batch_size = 8
subset = 16
grid_size = 2
device = "cpu"
decoder = {{name = "cnn", channels = [4, 8], time_hidden = 16}}

[search]
"run.lr" = {{low = 1e-4, high = 1e-2, log = true}}
"run.schedule.beta_max" = {{low = 0.01, high = 0.05}}
"""
ARTIFACTS = {"epoch_0001.png", "curves.png", "last.safetensors", "metrics.jsonl"}


@pytest.fixture(autouse=True)
def one_thread_per_worker(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Worker processes (and this one) share two cores: one thread each keeps them from
    fighting."""
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def write_study(folder: Path, trials: int, *, steps: int = 2, extra: str = "") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "study.toml"
    path.write_text(f'[study]\nname = "tiny"\noutput = "{(folder / "out").as_posix()}"\n'
                    f'trials = {trials}\nsampler = "random"\nheartbeat_interval = 1\n'
                    f"heartbeat_grace = 3\n{extra}\n{RUN.format(steps=steps)}",
                    encoding="utf-8")
    return path


def finished_study(path: Path, storage: str | None = None) -> tuple[optuna.Study, list]:
    spec = load_study_file(path, storage=storage)
    study, storage_ = load_existing(spec)
    return study, trial_rows(spec, study, storage_)


def assert_exactly_completed(path: Path, n: int, storage: str | None = None) -> None:
    """n trials completed, none failed, lost, left running or queued, none duplicated, every
    one with its files in the artifact store."""
    study, rows = finished_study(path, storage)
    trials = study.get_trials()
    assert [t.state for t in trials] == [TrialState.COMPLETE] * n
    assert sorted(t.number for t in trials) == list(range(n))
    for key in ("run_dir", "seed"):
        assert len({t.user_attrs[key] for t in trials}) == n
    assert len({tuple(sorted(t.params.items())) for t in trials}) == n
    assert len({t.user_attrs["worker"]["pid"] for t in trials}) > 1
    for row in rows:
        files = {a["filename"]: Path(a["path"]) for a in row["artifacts"]}
        assert set(files) == ARTIFACTS
        assert all(f.is_file() and f.stat().st_size > 0 for f in files.values())


def test_four_workers_share_forty_trials_on_postgresql(postgres_server: str, tmp_path: Path):
    url = new_database(postgres_server, "forty")
    path = write_study(tmp_path, 40)
    result = runner.invoke(app, ["run", str(path), "--workers", "4", "--storage", url])
    assert result.exit_code == 0, result.output
    assert "the study's budget is spent" in result.output
    assert_exactly_completed(path, 40, url)


def test_four_workers_share_forty_trials_on_a_journal_file(tmp_path: Path):
    path = write_study(tmp_path, 40)
    result = runner.invoke(app, ["run", str(path), "--workers", "4"])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "out" / "tiny" / "journal.log").is_file()
    assert not (tmp_path / "out" / "tiny" / "study.db").exists()
    assert_exactly_completed(path, 40)  # show and load find the journal by themselves


def test_sqlite_with_several_workers_is_refused_naming_the_alternatives(tmp_path: Path):
    path = write_study(tmp_path, 4)
    result = runner.invoke(app, ["run", str(path), "--workers", "2", "--storage",
                                 f"sqlite:///{tmp_path / 'x.db'}"])
    assert result.exit_code == 2
    text = " ".join(result.output.split())
    assert "--storage: SQLite cannot serve 2 workers" in text
    assert "journal:///" in text and "postgresql://" in text
    assert "Traceback" not in result.output


def start_workers(path: Path, storage: str | None, workers: int) -> subprocess.Popen[bytes]:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    if storage:
        env["ABLATE_STORAGE"] = storage
    return subprocess.Popen([sys.executable, "-m", "ablate", "run", str(path), "--workers",
                             str(workers)], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT)


def running_trial(path: Path, storage: str | None, deadline: float) -> optuna.trial.FrozenTrial:
    """The first trial seen training (its worker recorded), polling until ``deadline``."""
    while time.monotonic() < deadline:
        try:
            study, _ = load_existing(load_study_file(path, storage=storage))
        except Exception:  # noqa: BLE001 - the study may not exist yet
            time.sleep(0.05)
            continue
        for trial in study.get_trials(states=(TrialState.RUNNING,)):
            if "worker" in trial.user_attrs:
                return trial
        time.sleep(0.05)
    raise AssertionError("no trial started in time")


@pytest.mark.parametrize("backend", ["journal", "postgresql"])
def test_a_worker_killed_mid_trial_is_retried_and_the_budget_completes(
        backend: str, request: pytest.FixtureRequest, tmp_path: Path):
    storage = None
    if backend == "postgresql":
        storage = new_database(request.getfixturevalue("postgres_server"), "killed")
    path = write_study(tmp_path, 4, steps=30)
    parent = start_workers(path, storage, 2)
    try:
        victim = running_trial(path, storage, time.monotonic() + 60)
        os.kill(victim.user_attrs["worker"]["pid"], signal.SIGKILL)
        output, _ = parent.communicate(timeout=120)
    finally:
        parent.kill()
    text = output.decode()
    assert parent.returncode == 0, text
    assert "stopped with exit code -9" in text
    study, _ = finished_study(path, storage)
    trials = {t.number: t for t in study.get_trials()}
    dead = trials[victim.number]
    assert dead.state == TrialState.FAIL and outcome_of(dead) == "interrupted"
    retries = [t for t in trials.values() if t.user_attrs.get("retry_of") == victim.number]
    assert len(retries) == 1
    retry = retries[0]
    assert retry.state == TrialState.COMPLETE and retry.params == dead.params
    assert retry.user_attrs["seed"] == dead.user_attrs["seed"]
    assert "stopped sending heartbeats" in retry.user_attrs["retry_reason"]
    states = [t.state for t in trials.values()]
    assert states.count(TrialState.COMPLETE) == 4
    assert states.count(TrialState.FAIL) == 1 and len(states) == 5


def test_ctrl_c_stops_every_worker_cleanly_and_the_next_run_finishes_without_duplicates(
        tmp_path: Path):
    path = write_study(tmp_path, 4, steps=30)
    parent = start_workers(path, None, 2)
    try:
        running_trial(path, None, time.monotonic() + 60)
        parent.send_signal(signal.SIGINT)
        output, _ = parent.communicate(timeout=60)
    finally:
        parent.kill()
    assert parent.returncode == 130, output.decode()
    assert "resumes them" in output.decode()
    result = runner.invoke(app, ["run", str(path)])  # one worker finds the journal and goes on
    assert result.exit_code == 0, result.output
    study, _ = finished_study(path)
    trials = study.get_trials()
    done = [t for t in trials if t.state == TrialState.COMPLETE]
    assert len(done) == 4
    stopped = [t for t in trials if t.state == TrialState.FAIL]  # none if stopped between
    assert all(outcome_of(t) == "interrupted" for t in stopped)
    retried = {t.user_attrs["retry_of"] for t in done if "retry_of" in t.user_attrs}
    assert retried == {t.number for t in stopped}  # each stopped trial resumed exactly once
    assert len({t.user_attrs["run_dir"] for t in done}) == 4


def test_passwords_in_storage_urls_never_show(postgres_server: str, tmp_path: Path):
    secret = f"pw-{uuid.uuid4().hex}"
    database = new_database(postgres_server, "secret")
    url = database.replace("ablate@", f"ablate:{secret}@")  # trust auth takes any password
    path = write_study(tmp_path, 2)
    outputs = [runner.invoke(app, ["run", str(path), "--workers", "2"],
                             env={"ABLATE_STORAGE": url}),
               runner.invoke(app, ["run", str(path), "--dry-run", "--storage", url]),
               runner.invoke(app, ["show", str(path), "--json", "--storage", url]),
               runner.invoke(app, ["run", str(path), "--storage",
                                   url.replace(postgres_server.rsplit(":", 1)[1], "1")]),
               runner.invoke(app, ["run", str(path), "--storage",
                                   f"postgresq://ablate:{secret}@localhost/x"])]
    assert outputs[0].exit_code == 0, outputs[0].output
    assert "ablate:***@127.0.0.1" in outputs[1].output
    assert outputs[3].exit_code == 2 and "cannot open the study storage" in outputs[3].output
    assert outputs[4].exit_code == 2 and "not a storage URL" in outputs[4].output
    for result in outputs:
        assert secret not in result.output
    study, _ = finished_study(path, url)
    system = study._storage.get_study_system_attrs(study._study_id)
    stored = json.dumps([study.user_attrs, system] +
                        [[t.user_attrs, t.system_attrs] for t in study.get_trials()])
    assert secret not in stored
    logs = tmp_path / "out" / "tiny" / "workers"
    assert all(secret not in log.read_text() for log in logs.iterdir())


@pytest.mark.parametrize(("url", "shown"), [
    ("postgresql://me:pa%40ss@db.example:5432/st", "postgresql://me:***@db.example:5432/st"),
    ("postgresql+psycopg://me@db/s?sslpassword=x&sslmode=require",
     "postgresql+psycopg://me@db/s?sslpassword=***&sslmode=require"),
    ("sqlite:///studies-out/a/study.db", "sqlite:///studies-out/a/study.db"),
    ("journal:////abs/journal.log", "journal:////abs/journal.log"),
])
def test_masked_hides_passwords_and_secret_query_values(url: str, shown: str):
    assert masked(url) == shown


def test_redact_masks_a_password_wherever_a_driver_message_repeats_it():
    url = "postgresql://me:hunter22@db/s"
    message = f'connection to {url} failed: password "hunter22" rejected'
    assert "hunter22" not in redact(message, url)


@pytest.mark.parametrize("backend", ["journal", "postgresql"])
def test_the_claim_lock_holds_other_workers_back_until_released(
        backend: str, request: pytest.FixtureRequest, tmp_path: Path):
    url = f"journal:///{tmp_path / 'j.log'}" if backend == "journal" else \
        new_database(request.getfixturevalue("postgres_server"), "lock")
    first = ClaimLock(open_storage(url), url, "tiny")
    second_got_it = threading.Event()

    def second() -> None:
        with ClaimLock(open_storage(url), url, "tiny"):
            second_got_it.set()

    with first:
        waiter = threading.Thread(target=second)
        waiter.start()
        assert not second_got_it.wait(0.5)
    assert second_got_it.wait(10)
    waiter.join()


@pytest.mark.parametrize("workers,cores,threads", [(1, 2, 2), (2, 2, 1), (4, 2, 1), (2, 8, 4),
                                                   (3, None, 1)])
def test_local_workers_share_the_cores_instead_of_oversubscribing_them(workers, cores, threads):
    assert threads_per_worker(workers, cores) == threads
