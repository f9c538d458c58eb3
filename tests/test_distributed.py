"""Many workers on one study, with real parts: a PostgreSQL server started for the tests and
Optuna journal files; worker processes that share the budget exactly, a worker killed with
SIGKILL mid-trial whose trial is failed and retried, and passwords that never show."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import suppress
from pathlib import Path

import optuna
import pytest
import torch
from optuna.trial import TrialState
from typer.testing import CliRunner

from ablate.claims import run_trials
from ablate.cli import app
from ablate.storage import ClaimLock, masked, open_storage, redact
from ablate.study import duration, enqueue_dead, load_existing, open_study
from ablate.study_config import StudySpec, load_study_file
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


def write_study(folder: Path, trials: int | None, *, steps: int = 2, extra: str = "",
                grace: int = 3, sampler: str = "random", search: str | None = None) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "study.toml"
    budget = f"trials = {trials}\n" if trials is not None else ""
    run = RUN.format(steps=steps)
    if search is not None:
        run = run.split("[search]")[0] + search
    path.write_text(f'[study]\nname = "tiny"\noutput = "{(folder / "out").as_posix()}"\n'
                    f'{budget}sampler = "{sampler}"\nheartbeat_interval = 1\n'
                    f"heartbeat_grace = {grace}\n{extra}\n{run}", encoding="utf-8")
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


def test_two_workers_share_twelve_trials_on_postgresql(postgres_server: str, tmp_path: Path):
    url = new_database(postgres_server, "twelve")
    path = write_study(tmp_path, 12)
    result = runner.invoke(app, ["run", str(path), "--workers", "2", "--storage", url])
    assert result.exit_code == 0, result.output
    assert "the study's budget is spent" in result.output
    assert_exactly_completed(path, 12, url)


def test_two_workers_share_twelve_trials_on_a_journal_file(tmp_path: Path):
    path = write_study(tmp_path, 12)
    result = runner.invoke(app, ["run", str(path), "--workers", "2"])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "out" / "tiny" / "journal.log").is_file()
    assert not (tmp_path / "out" / "tiny" / "study.db").exists()
    assert_exactly_completed(path, 12)  # show and load find the journal by themselves


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
    """The first trial seen training (its run folder recorded), polling until ``deadline``."""
    while time.monotonic() < deadline:
        try:
            study, _ = load_existing(load_study_file(path, storage=storage))
        except Exception:  # noqa: BLE001 - the study may not exist yet
            time.sleep(0.05)
            continue
        for trial in study.get_trials(states=(TrialState.RUNNING,)):
            if "run_dir" in trial.user_attrs:
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
    reason = retry.user_attrs["retry_reason"]  # whichever noticed first: same host, or silence
    assert "is gone" in reason or "stopped sending heartbeats" in reason
    states = [t.state for t in trials.values()]
    assert states.count(TrialState.COMPLETE) == 4
    assert states.count(TrialState.FAIL) == 1 and len(states) == 5


def test_sigterm_to_the_parent_stops_every_worker_in_time_and_the_next_run_finishes(
        tmp_path: Path):
    """What Slurm does at the end of a job: SIGTERM, then SIGKILL 30 s later."""
    path = write_study(tmp_path, 2, steps=60)
    parent = start_workers(path, None, 2)
    try:
        victim = running_trial(path, None, time.monotonic() + 60)
        parent.send_signal(signal.SIGTERM)
        sent = time.monotonic()
        output, _ = parent.communicate(timeout=60)
        took = time.monotonic() - sent
    finally:
        parent.kill()
    text = " ".join(output.decode().split())
    assert parent.returncode == 143, text
    assert took < 30
    assert "stopped by SIGTERM" in text and "resumes the study" in text
    assert f"saved trial {victim.number} (stopped at step" in text
    study, _ = finished_study(path)
    for trial in study.get_trials():  # every worker is gone, none left training
        pid = trial.user_attrs.get("worker", {}).get("pid")
        assert pid is None or not Path(f"/proc/{pid}").exists() or \
            Path(f"/proc/{pid}/stat").read_text().split(")")[1].split()[0] == "Z"
    result = runner.invoke(app, ["run", str(path)])  # one worker finds the journal and goes on
    assert result.exit_code == 0, result.output

    result = runner.invoke(app, ["run", str(path)])  # one worker finds the journal and goes on
    assert result.exit_code == 0, result.output
    study, _ = finished_study(path)
    trials = study.get_trials()
    done = [t for t in trials if t.state == TrialState.COMPLETE]
    assert len(done) == 2
    stopped = [t for t in trials if t.state == TrialState.FAIL]  # none if stopped between
    assert all(outcome_of(t) == "interrupted" for t in stopped)
    retried = {t.user_attrs["retry_of"] for t in done if "retry_of" in t.user_attrs}
    assert retried == {t.number for t in stopped}  # each stopped trial resumed exactly once
    assert victim.number in retried
    assert len({t.user_attrs["run_dir"] for t in done}) == 2


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


def start_run(path: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-m", "ablate", "run", str(path)],
                            env={**os.environ, "OMP_NUM_THREADS": "1"}, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT)


def test_sigterm_saves_the_trial_queues_it_again_and_exits_143(tmp_path: Path):
    path = write_study(tmp_path, 1, steps=400)
    process = start_run(path)
    try:
        running_trial(path, None, time.monotonic() + 60)
        time.sleep(0.5)
        process.send_signal(signal.SIGTERM)
        output, _ = process.communicate(timeout=30)
    finally:
        process.kill()
    assert process.returncode == 143, output.decode()
    stopped, queued = finished_study(path)[0].get_trials()
    assert stopped.state == TrialState.FAIL and outcome_of(stopped) == "interrupted"
    assert "stopped at step" in stopped.user_attrs["reason"]
    assert queued.state == TrialState.WAITING and queued.user_attrs["retry_of"] == 0
    assert Path(stopped.user_attrs["run_dir"], "checkpoints", "last.safetensors").is_file()


def test_after_kill_9_the_next_run_retries_at_once_and_books_only_the_time_trained(
        tmp_path: Path):
    """Same host, process gone: no need to wait out the heartbeat grace (ten minutes here)."""
    path = write_study(tmp_path, 1, steps=400, grace=600)
    process = start_run(path)
    try:
        victim = running_trial(path, None, time.monotonic() + 60)
        time.sleep(1.0)
        process.kill()
        process.wait()
        trained = time.time() - victim.datetime_start.timestamp()
        time.sleep(2.0)  # the time until the rerun is no training
        rerun = start_run(path)
        deadline = time.monotonic() + 20
        retry = None
        while retry is None and time.monotonic() < deadline:
            trials = finished_study(path)[0].get_trials()
            retry = next((t for t in trials if t.user_attrs.get("retry_of") == victim.number
                          and t.state == TrialState.RUNNING), None)
            time.sleep(0.1)
    finally:
        process.kill()
        with suppress(NameError):
            rerun.kill()
    assert retry is not None, "the retry did not start within 20 s"
    assert "is gone" in retry.user_attrs["retry_reason"]
    dead = finished_study(path)[0].get_trials()[victim.number]
    assert dead.state == TrialState.FAIL
    assert duration(dead) <= trained
    assert (dead.datetime_complete - dead.datetime_start).total_seconds() >= trained + 2


GRID = '[search]\n"run.lr" = [2e-4, 1e-3, 1e-2]\n"run.schedule.beta_max" = [0.01, 0.02]\n'


@pytest.mark.parametrize("backend", ["sqlite", "journal", "postgresql"])
def test_concurrent_claims_train_every_grid_point_exactly_once(
        backend: str, request: pytest.FixtureRequest, tmp_path: Path):
    """Three workers claiming at once, with random timing, in three fresh studies: each of the
    six points is trained once (the objective here only takes its time)."""
    for attempt in range(3):
        folder = tmp_path / str(attempt)
        url = {"sqlite": f"sqlite:///{folder / 'grid.db'}",
               "journal": f"journal:///{folder / 'grid.log'}"}.get(backend) or new_database(
            request.getfixturevalue("postgres_server"), f"grid{attempt}")
        spec = load_study_file(write_study(folder, None, sampler="grid", search=GRID),
                               storage=url)
        open_study(spec, open_storage(url))
        rng = random.Random(attempt)
        delays = [[rng.uniform(0, 0.05) for _ in range(6)] for _ in range(3)]
        errors: list[BaseException] = []

        def work(k: int, url: str = url, spec: StudySpec = spec,
                 delays: list[list[float]] = delays, errors: list = errors) -> None:
            try:
                storage = open_storage(url)
                study = optuna.load_study(study_name=spec.name, storage=storage)

                def objective(trial: optuna.Trial) -> float:
                    spec.space.sample(trial)
                    time.sleep(delays[k][trial.number % 6])
                    return 0.0

                run_trials(spec, study, storage, objective, stop=lambda: False, catch=(),
                           callbacks=[], retry=enqueue_dead, poll=0.05)
            except BaseException as exc:  # noqa: BLE001 - reported below
                errors.append(exc)

        threads = [threading.Thread(target=work, args=(k,)) for k in range(3)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
        assert errors == []
        trials = optuna.load_study(study_name=spec.name, storage=open_storage(url)).get_trials()
        assert [t.state for t in trials] == [TrialState.COMPLETE] * 6
        points = [tuple(sorted(t.params.items())) for t in trials]
        assert len(set(points)) == 6


def test_two_workers_train_a_replicated_grid_once_per_point_and_exit_0(tmp_path: Path):
    path = write_study(tmp_path, None, sampler="grid", search=GRID, extra="replicates = 2")
    result = runner.invoke(app, ["run", str(path), "--workers", "2"])
    assert result.exit_code == 0, result.output
    trials = finished_study(path)[0].get_trials()
    assert [t.state for t in trials] == [TrialState.COMPLETE] * 6
    assert len({tuple(sorted(t.params.items())) for t in trials}) == 6
    for trial in trials:
        assert sorted(p.name for p in Path(trial.user_attrs["run_dir"]).glob("replicate_*")) \
            == ["replicate_0", "replicate_1"]


def test_two_workers_starting_together_on_a_new_sqlite_study_both_work(tmp_path: Path):
    path = write_study(tmp_path, 4)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    workers = [subprocess.Popen([sys.executable, "-m", "ablate", "worker", str(path),
                                 "--worker-index", str(k)], env=env, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT) for k in range(2)]
    outputs = [w.communicate(timeout=120)[0].decode() for w in workers]
    assert [w.returncode for w in workers] == [0, 0], outputs
    trials = finished_study(path)[0].get_trials()
    assert [t.state for t in trials] == [TrialState.COMPLETE] * 4


@pytest.mark.parametrize("url", ["sqlite:///:memory:", "sqlite://", "sqlite:///x.db?mode=memory"])
def test_an_in_memory_storage_is_refused_before_anything_trains(url: str, tmp_path: Path):
    path = write_study(tmp_path, 2)
    for command in (["run", str(path), "--storage", url],
                    ["run", str(path), "--dry-run", "--storage", url]):
        result = runner.invoke(app, command)
        assert result.exit_code == 2, result.output
        assert "in-memory database keeps nothing" in " ".join(result.output.split())
    assert not (tmp_path / "out" / "tiny" / "trials").exists()


def test_sigterm_to_ablate_train_saves_exits_143_and_leaves_no_temporary_file(
        tmp_path: Path, tiny_run_file: Path):
    run_file = tmp_path / "long.toml"
    run_file.write_text(tiny_run_file.read_text().replace("steps = 12", "steps = 3000"))
    out = tmp_path / "run"
    process = subprocess.Popen([sys.executable, "-m", "ablate", "train", str(run_file), "-o",
                                str(out)], env={**os.environ, "OMP_NUM_THREADS": "1"},
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 60
        while not (out / "metrics.jsonl").exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        process.send_signal(signal.SIGTERM)
        output, _ = process.communicate(timeout=30)
    finally:
        process.kill()
    assert process.returncode == 143, output.decode()
    assert "continue with --resume" in " ".join(output.decode().split())
    assert (out / "checkpoints" / "last.safetensors").is_file()
    assert not list(out.rglob("*.tmp"))


@pytest.mark.filterwarnings("ignore:Heartbeat of storage")  # ask() stands in for optimize
def test_only_a_dead_owner_on_this_machine_is_retried_before_the_heartbeat_grace(
        tmp_path: Path):
    from ablate.claims import retry_orphans
    from ablate.storage import Heartbeat, fail_stale

    gone = int(subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                              capture_output=True, text=True).stdout)
    stale: list[int] = []
    storage = open_storage(f"journal:///{tmp_path / 'j.log'}", heartbeat=Heartbeat(1, 2),
                           on_stale=lambda study, trial: stale.append(trial.number))
    study = optuna.create_study(storage=storage, study_name="s")
    owners = [{"host": "another-machine", "pid": gone}, {"host": os.uname().nodename,
                                                         "pid": os.getpid()},
              {"host": os.uname().nodename, "pid": gone}]
    for owner in owners:
        study.ask().set_user_attr("worker", {**owner, "index": 0})
    retried: list[tuple[int, str]] = []
    retry_orphans(study, storage, lambda study, trial, why: retried.append((trial.number, why)))
    # Another machine's pid says nothing here; this very process, between trials, runs none.
    assert [n for n, _ in retried] == [1, 2] and all("is gone" in why for _, why in retried)
    assert [t.state for t in study.get_trials()] == [TrialState.RUNNING, TrialState.FAIL,
                                                     TrialState.FAIL]
    time.sleep(2.5)
    fail_stale(study)  # the other machine's trial: silent beyond the grace
    assert stale == [0] and study.get_trials()[0].state == TrialState.FAIL
