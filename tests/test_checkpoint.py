"""Checkpoints: safetensors only, atomic, and every kind of damage is a clear error."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from ablate.checkpoint import load_checkpoint, save_checkpoint
from ablate.errors import CheckpointError
from ablate.sampling import load_trained
from ablate.training import Trainer
from tests.conftest import tiny_config


def test_round_trip_keeps_tensors_and_metadata(tmp_path: Path):
    path = tmp_path / "c.safetensors"
    save_checkpoint(path, {"a": torch.arange(3.0)}, {"step": 7, "nested": {"x": [1, 2]}})
    tensors, meta = load_checkpoint(path)
    assert torch.equal(tensors["a"], torch.arange(3.0))
    assert meta == {"step": 7, "nested": {"x": [1, 2]}}
    assert [p.name for p in tmp_path.iterdir()] == ["c.safetensors"]  # no temporary left


def test_truncated_checkpoint_is_rejected(tmp_path: Path):
    path = tmp_path / "c.safetensors"
    save_checkpoint(path, {"a": torch.zeros(100)}, {})
    path.write_bytes(path.read_bytes()[:-50])
    with pytest.raises(CheckpointError, match="damaged"):
        load_checkpoint(path)


def test_plain_safetensors_file_is_not_taken_for_a_checkpoint(tmp_path: Path):
    from safetensors.torch import save_file

    path = tmp_path / "weights.safetensors"
    save_file({"a": torch.zeros(2)}, path)
    with pytest.raises(CheckpointError, match="not an ablate checkpoint"):
        load_checkpoint(path)


def test_checkpoint_of_another_model_shape_is_rejected(tmp_path: Path):
    result = Trainer(tiny_config(), tmp_path / "run").run()
    tensors, meta = load_checkpoint(result.checkpoint)
    meta["config"]["decoder"]["channels"] = [4, 16]
    save_checkpoint(tmp_path / "tampered.safetensors", tensors, meta)
    with pytest.raises(CheckpointError, match="does not fit this model"):
        load_trained(tmp_path / "tampered.safetensors")
