"""The bundled MNIST: verified on load, loaded once, clear errors when damaged."""

from __future__ import annotations

import gzip
import shutil
from pathlib import Path

import pytest
import torch
from ablate_builtins.mnist import BUNDLED_ROOT, Mnist

from ablate.datasets import to_model_range, to_unit_range
from ablate.errors import DataError


def test_bundled_splits_have_the_published_shapes():
    train, test = Mnist().load("train"), Mnist().load("test")
    assert train.images.shape == (60000, 1, 28, 28) and train.images.dtype == torch.uint8
    assert test.images.shape == (10000, 1, 28, 28)
    assert test.labels.dtype == torch.int64
    assert sorted(test.labels.unique().tolist()) == list(range(10))


def test_scalings_map_pixels_to_the_documented_ranges():
    pixels = torch.tensor([0, 255], dtype=torch.uint8)
    assert to_model_range(pixels, "centered").tolist() == [-0.5, 0.5]
    assert to_model_range(pixels, "symmetric").tolist() == [-1.0, 1.0]
    assert to_unit_range(to_model_range(pixels, "symmetric"), "symmetric").tolist() == [0, 1]


def _copy_bundle(tmp_path: Path) -> Path:
    for f in BUNDLED_ROOT.iterdir():
        shutil.copy(f, tmp_path / f.name)
    return tmp_path


def test_corrupt_file_names_the_file_and_the_remedy(tmp_path: Path):
    root = _copy_bundle(tmp_path)
    with gzip.open(root / "t10k-labels-idx1-ubyte.gz", "wb") as f:
        f.write(b"\x00" * 10008)
    with pytest.raises(DataError, match=r"t10k-labels-idx1-ubyte .* corrupt.*restore"):
        Mnist(root=str(root)).load("test")


def test_missing_file_names_the_file(tmp_path: Path):
    root = _copy_bundle(tmp_path)
    (root / "t10k-images-idx3-ubyte.gz").unlink()
    with pytest.raises(DataError, match="t10k-images-idx3-ubyte.gz is missing"):
        Mnist(root=str(root)).load("test")
