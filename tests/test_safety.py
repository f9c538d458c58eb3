"""Safe by construction: no pickle anywhere, stored paths cannot leave their folders, the
dashboard listens on this machine only, and a folder that cannot be written is one clear error
with nothing half-written left behind."""

from __future__ import annotations

import errno
import inspect
import json
import random
import re
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from ablate.checkpoint import load_checkpoint, save_checkpoint
from ablate.cli import app, dashboard
from ablate.errors import AblateError, CheckpointError
from ablate.safe_paths import UnsafePathError, inside, plain_name
from ablate.sampling import load_trained

runner = CliRunner()
ROOT = Path(__file__).parent.parent


def test_no_code_loads_pickle():
    unsafe = re.compile(r"\bpickle\b|\bcPickle\b|\bdill\b|torch\.load\((?![^)]*weights_only=True)")
    found = [f"{path.relative_to(ROOT)}:{n}"
             for folder in ("ablate", "plugins", "benchmarks", "examples")
             for path in sorted((ROOT / folder).rglob("*.py"))
             for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
             if unsafe.search(line) and not line.lstrip().startswith("#")]
    assert found == []


def test_the_dashboard_listens_on_this_machine_only_by_default():
    assert inspect.signature(dashboard).parameters["host"].default == "127.0.0.1"


@pytest.mark.parametrize("path", ["../elsewhere", "/etc", "trials/../../x"])
def test_a_stored_path_outside_its_folder_is_refused(tmp_path: Path, monkeypatch, path: str):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "trials").mkdir()
    with pytest.raises(UnsafePathError, match="lies outside"):
        inside(Path("trials"), path, what="run folder")
    assert inside(Path("trials"), "trials/trial_0001", what="run folder") == \
        Path("trials/trial_0001")


@pytest.mark.parametrize(("name", "plain"), [("0a1b-uuid", True), ("../x", False),
                                             ("a/b", False), ("..", False), ("", False)])
def test_artifact_ids_must_be_plain_file_names(name: str, plain: bool):
    assert plain_name(name) is plain


def test_an_output_folder_that_cannot_be_created_is_one_clear_line(tmp_path: Path,
                                                                   tiny_run_file: Path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    result = runner.invoke(app, ["train", str(tiny_run_file), "-o", str(blocker / "run")])
    assert result.exit_code == 2
    text = " ".join(result.output.split())
    assert f"{blocker / 'run'}" in text
    assert "Not a directory" in text or "cannot be a folder" in text
    assert "Traceback" not in result.output


def test_a_full_disk_while_checkpointing_leaves_no_half_written_file(
        tmp_path: Path, tiny_run_file: Path, monkeypatch: pytest.MonkeyPatch):
    """Root ignores read-only folders, so the disk filling up is simulated where bytes go."""
    import ablate.checkpoint

    def full(tensors, path, metadata=None):
        Path(path).write_bytes(b"half a checkpoint")
        raise OSError(errno.ENOSPC, "No space left on device", str(path))

    monkeypatch.setattr(ablate.checkpoint, "save_file", full)
    out = tmp_path / "run"
    result = runner.invoke(app, ["train", str(tiny_run_file), "-o", str(out)])
    assert result.exit_code == 2, result.output
    assert "No space left on device" in result.output and "Traceback" not in result.output
    left = sorted(p.name for p in out.rglob("*") if p.is_file())
    assert not any(name.endswith((".tmp", ".safetensors")) for name in left), left


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from ablate.training import Trainer
    from tests.conftest import tiny_config

    return Trainer(tiny_config(steps=2), tmp_path_factory.mktemp("run")).run().checkpoint


def test_random_damage_to_a_checkpoint_header_is_always_a_clear_error(checkpoint: Path,
                                                                      tmp_path: Path):
    """Bytes changed anywhere in the length field or the JSON header: load_trained works or
    raises ablate's own error, never anything else."""
    data = checkpoint.read_bytes()
    header = 8 + int.from_bytes(data[:8], "little")
    rng = random.Random(0)
    errors = 0
    for i in range(40):
        damaged = bytearray(data)
        for _ in range(rng.choice([1, 3])):
            damaged[rng.randrange(header)] = rng.randrange(256)
        path = tmp_path / f"damaged_{i}.safetensors"
        path.write_bytes(bytes(damaged))
        try:
            load_trained(path, device="cpu")
        except AblateError:
            errors += 1
    assert errors > 30


def test_a_checkpoint_relabelled_as_another_model_is_refused(checkpoint: Path, tmp_path: Path):
    tensors, meta = load_checkpoint(checkpoint)
    meta["config"]["decoder"] = {"name": "unet"}
    save_checkpoint(tmp_path / "relabelled.safetensors", tensors, meta)
    with pytest.raises(CheckpointError, match="does not fit this model"):
        load_trained(tmp_path / "relabelled.safetensors", device="cpu")


def test_a_file_outside_the_trial_folder_is_never_uploaded(tmp_path: Path):
    """A record naming another file, or a link in the trial folder: refused, store untouched."""
    import optuna

    from ablate.study_artifacts import TrialArtifacts, artifact_store

    secret = tmp_path / "secret.txt"
    secret.write_text("not for the dashboard")
    run_dir = tmp_path / "trials" / "trial_0000"
    run_dir.mkdir(parents=True)
    store = artifact_store(tmp_path / "artifacts")
    artifacts = TrialArtifacts(store, optuna.create_study().ask(), run_dir)
    with pytest.raises(UnsafePathError, match="lies outside"):
        artifacts.grids([{"epoch": 1, "grid": str(secret)}])
    with pytest.raises(UnsafePathError, match="lies outside"):
        artifacts.grids([{"epoch": 1, "grid": str(run_dir / ".." / ".." / "secret.txt")}])
    (run_dir / "metrics.jsonl").symlink_to(secret)
    with pytest.raises(UnsafePathError, match="lies outside"):
        artifacts.upload(run_dir / "metrics.jsonl")
    assert list((tmp_path / "artifacts").iterdir()) == []


def test_the_artifact_store_does_not_serve_a_planted_link(tmp_path: Path):
    from optuna.artifacts.exceptions import ArtifactNotFound

    from ablate.study_artifacts import artifact_store

    store = artifact_store(tmp_path / "artifacts")
    (tmp_path / "artifacts" / "0a1b").symlink_to("/etc/hostname")
    for artifact_id in ("0a1b", "../secret", "/etc/hostname"):
        with pytest.raises((ArtifactNotFound, ValueError)):
            store.open_reader(artifact_id)


@pytest.fixture
def interrupted_study(tmp_path: Path) -> Path:
    """A one-trial study stopped by Ctrl-C in its second epoch: a folder to tamper with."""
    from optuna.trial import TrialState

    from ablate.study import load_existing, run_study
    from ablate.study_config import load_study_file
    from ablate.training import Interrupted
    from tests.conftest import CtrlCAt
    from tests.test_study_run import write_study

    path = write_study(tmp_path, "trials = 1")
    with pytest.raises(Interrupted):
        run_study(load_study_file(path), CtrlCAt(step=6))
    study, _ = load_existing(load_study_file(path))
    assert [t.state for t in study.get_trials()] == [TrialState.FAIL, TrialState.WAITING]
    return path


def trial_folder(study_file: Path) -> Path:
    return study_file.parent / "out" / "tiny" / "trials" / "trial_0000"


def test_a_hand_edited_record_naming_a_system_file_stops_the_study_and_uploads_nothing(
        interrupted_study: Path):
    log = trial_folder(interrupted_study) / "metrics.jsonl"
    records = [json.loads(line) for line in log.read_text().splitlines()]
    records[0]["grid"] = "/etc/hostname"
    log.write_text("".join(json.dumps(r) + "\n" for r in records))
    result = runner.invoke(app, ["run", str(interrupted_study)])
    assert result.exit_code == 2, result.output
    assert "'/etc/hostname' lies outside" in " ".join(result.output.split())
    hostname = Path("/etc/hostname").read_bytes()
    store = interrupted_study.parent / "out" / "tiny" / "artifacts"
    assert all(p.read_bytes() != hostname for p in store.iterdir())


@pytest.mark.parametrize("where", ["metrics.jsonl", "checkpoints", "."])
def test_a_symbolic_link_planted_in_a_study_folder_is_refused_before_training(
        interrupted_study: Path, tmp_path: Path, where: str):
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    folder = trial_folder(interrupted_study)
    planted = folder / where if where != "." else folder
    shutil.move(planted, outside / planted.name)
    planted.symlink_to(outside / planted.name)
    before = sorted(p.name for p in outside.rglob("*"))
    result = runner.invoke(app, ["run", str(interrupted_study)])
    assert result.exit_code == 2, result.output
    text = " ".join(result.output.split())
    assert "symbolic link" in text or "lies outside" in text
    assert "Traceback" not in result.output
    assert sorted(p.name for p in outside.rglob("*")) == before  # nothing written there


def test_leftover_temporary_files_of_killed_writers_are_removed_and_live_ones_kept(
        tmp_path: Path):
    import os
    import subprocess
    import sys

    from ablate.atomic import remove_leftovers

    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True).stdout.strip()
    host = os.uname().nodename
    folder = tmp_path / "trials" / "trial_0000" / "checkpoints"
    folder.mkdir(parents=True)
    dead = folder / f".last.safetensors.ablate-{host}-{gone}.k2j4h1aa.tmp"
    live = folder / f".last.safetensors.ablate-{host}-{os.getpid()}.p0q9w8bb.tmp"
    other = folder / f".last.safetensors.ablate-otherhost-{gone}.zz11yy22.tmp"
    for path in (dead, live, other):
        path.write_bytes(b"half")
    assert remove_leftovers(tmp_path) == [dead]
    assert live.exists() and other.exists()


@pytest.mark.parametrize(("host", "loopback"), [
    ("127.0.0.1", True), ("localhost", True), ("::1", True), ("127.0.0.2", True),
    ("", False), ("0", False), ("0.0.0.0", False), ("::", False), (" ", False)])
def test_only_loopback_addresses_count_as_this_machine(host: str, loopback: bool):
    from ablate.dashboard import is_loopback

    assert is_loopback(host) is loopback


@pytest.mark.parametrize("host", ["", "0", "0.0.0.0", "::"])
def test_listening_beyond_this_machine_needs_allow_remote(host: str, tmp_path: Path):
    study = tmp_path / "study.toml"
    study.write_text("not even read")
    result = runner.invoke(app, ["dashboard", str(study), "--host", host])
    assert result.exit_code == 2, result.output
    text = " ".join(result.output.split())
    assert "listens beyond this machine" in text and "--allow-remote" in text


def test_a_read_only_dashboard_refuses_changes_and_keeps_the_study(tmp_path: Path):
    """A real server on 127.0.0.1: reading works, an HTTP DELETE of the study is refused."""
    import threading
    import urllib.error
    import urllib.request

    import optuna

    from ablate.dashboard import make_dashboard
    from ablate.study_config import load_study_file
    from tests.test_study_run import write_study

    pytest.importorskip("optuna_dashboard")
    spec = load_study_file(write_study(tmp_path, "trials = 1"))
    spec.folder.mkdir(parents=True)
    study = optuna.create_study(storage=spec.storage, study_name=spec.name)
    study.optimize(lambda trial: trial.suggest_float("x", 0, 1), n_trials=1)
    server, url = make_dashboard(spec, "127.0.0.1", 0, read_only=True)
    study_id = url.rsplit("/", 1)[1]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        with urllib.request.urlopen(f"{base}/api/studies", timeout=10) as response:
            assert spec.name in response.read().decode()
        for method in ("DELETE", "POST", "PUT", "PATCH"):
            request = urllib.request.Request(f"{base}/api/studies/{study_id}",
                                             method=method, data=b"{}")
            with pytest.raises(urllib.error.HTTPError) as refused:
                urllib.request.urlopen(request, timeout=10)
            assert refused.value.code == 405
    finally:
        server.shutdown()
        server.server_close()
    assert optuna.load_study(study_name=spec.name, storage=spec.storage).trials
