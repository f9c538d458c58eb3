"""Safe by construction: no pickle anywhere, stored paths cannot leave their folders, the
dashboard listens on this machine only, and a folder that cannot be written is one clear error
with nothing half-written left behind."""

from __future__ import annotations

import errno
import inspect
import random
import re
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
    assert f"error: {blocker / 'run'}: Not a directory" in " ".join(result.output.split())
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
