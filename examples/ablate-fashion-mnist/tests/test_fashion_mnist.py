"""The fashion-mnist dataset: the contract kit, the known counts, and clear errors.

Tests that read the data skip, saying how to get it, when Debian's files are absent.
"""

from __future__ import annotations

import gzip
import shutil
from pathlib import Path

import pytest
import torch
from ablate.config import parse_run
from ablate.errors import DataError
from ablate.testing import contract_tests
from ablate.training import Trainer

from ablate_fashion_mnist import DEBIAN_ROOT, FashionMnist

needs_files = pytest.mark.skipif(
    not (Path(DEBIAN_ROOT) / "t10k-labels-idx1-ubyte.gz").exists(),
    reason=f"Fashion-MNIST is not in {DEBIAN_ROOT}: sudo apt-get install dataset-fashion-mnist")

test_contracts = needs_files(contract_tests("ablate-fashion-mnist"))


@needs_files
def test_splits_have_the_published_sizes_and_balanced_classes():
    for split, count in (("train", 60_000), ("test", 10_000)):
        data = FashionMnist().load(split)
        assert data.images.shape == (count, 1, 28, 28)
        assert torch.bincount(data.labels).tolist() == [count // 10] * 10


@needs_files
def test_a_damaged_file_is_reported_as_corrupt(tmp_path: Path):
    for source in Path(DEBIAN_ROOT).glob("t10k-*.gz"):
        shutil.copy(source, tmp_path)
    labels = tmp_path / "t10k-labels-idx1-ubyte.gz"
    raw = bytearray(gzip.decompress(labels.read_bytes()))
    raw[100] = (raw[100] + 1) % 10
    labels.write_bytes(gzip.compress(bytes(raw)))
    with pytest.raises(DataError, match="t10k-labels-idx1-ubyte .* is corrupt"):
        FashionMnist(root=str(tmp_path)).load("test")


def test_missing_files_say_how_to_install_them(tmp_path: Path):
    with pytest.raises(DataError, match="apt-get install dataset-fashion-mnist"):
        FashionMnist(root=str(tmp_path)).load("test")


@needs_files
def test_a_run_trains_on_it_with_only_the_dataset_name_changed(tmp_path: Path):
    config = parse_run({"dataset": "fashion-mnist", "T": 20, "steps": 4, "batch_size": 16,
                        "subset": 64, "grid_size": 4, "device": "cpu",
                        "decoder": {"name": "cnn", "channels": [4, 8], "time_hidden": 16}},
                       source="test")
    result = Trainer(config, tmp_path / "run").run()
    assert result.metrics[-1]["step"] == 4
    assert (tmp_path / "run" / "checkpoints" / "last.safetensors").exists()
