"""The ``mnist`` dataset: the bundled copy of MNIST, checked against its published md5 sums."""

from __future__ import annotations

import gzip
import hashlib
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch

import ablate
from ablate.components import param
from ablate.datasets import Dataset, ImageData, Split
from ablate.errors import DataError

BUNDLED_ROOT = Path(__file__).parent / "data" / "mnist"

# md5 of the *uncompressed* IDX files, as published for the canonical MNIST files.
FILES: dict[str, tuple[str, str]] = {
    "train-images-idx3-ubyte": ("6bbc9ace898e44ae57da46a324031adb", "images"),
    "train-labels-idx1-ubyte": ("a25bea736e30d166cdddb491f175f624", "labels"),
    "t10k-images-idx3-ubyte": ("2646ac647ad5339dbf082846283269ea", "images"),
    "t10k-labels-idx1-ubyte": ("27ae3e4e09519cfbb04c329615203637", "labels"),
}
SPLIT_PREFIX = {"train": "train", "test": "t10k"}


@dataclass(frozen=True)
class Mnist(Dataset):
    """MNIST handwritten digits, 28x28 grey, 60,000 train / 10,000 test (bundled, verified)."""

    name = "mnist"
    root: str = param("", "folder with the four IDX files (.gz or not); empty: the bundled copy")

    def load(self, split: Split) -> ImageData:
        root = Path(self.root) if self.root else BUNDLED_ROOT
        return load_split(root.resolve(), split)

    def size(self, split: Split) -> int:
        """The image count from the IDX header (no md5 check: ``load`` does that)."""
        root = (Path(self.root) if self.root else BUNDLED_ROOT).resolve()
        stem = f"{SPLIT_PREFIX[split]}-images-idx3-ubyte"
        for name in ("labels", "images"):  # every file of the split must be there
            _header(root, f"{SPLIT_PREFIX[split]}-{name}-idx{1 if name == 'labels' else 3}-ubyte")
        return int.from_bytes(_header(root, stem)[4:8], "big")


@lru_cache(maxsize=4)
def load_split(root: Path, split: Split) -> ImageData:
    """Read and verify one split once per process; images (N, 1, 28, 28) uint8."""
    prefix = SPLIT_PREFIX[split]
    images = _read_idx(root, f"{prefix}-images-idx3-ubyte")
    labels = _read_idx(root, f"{prefix}-labels-idx1-ubyte")
    return ImageData(images=torch.from_numpy(images).unsqueeze(1),
                     labels=torch.from_numpy(labels.astype(np.int64)))


def _read_idx(root: Path, stem: str) -> np.ndarray:
    expected_md5, kind = FILES[stem]
    raw = _read_bytes(root, stem)
    actual = hashlib.md5(raw).hexdigest()
    if actual != expected_md5:
        raise DataError(f"MNIST file {stem} in {root} is corrupt: md5 of its content is {actual}, "
                        f"expected {expected_md5}; restore it from a clean copy of ablate (or "
                        f"reinstall ablate) and run again")
    header = 16 if kind == "images" else 8
    count = int.from_bytes(raw[4:8], "big")
    data = np.frombuffer(raw, dtype=np.uint8, offset=header)
    return data.reshape(count, 28, 28).copy() if kind == "images" else data.copy()


def _header(root: Path, stem: str) -> bytes:
    """The first 16 bytes of an IDX file (magic number, count, sizes)."""
    plain, packed = root / stem, root / f"{stem}.gz"
    try:
        if plain.exists():
            with open(plain, "rb") as f:
                return f.read(16)
        with gzip.open(packed, "rb") as f:
            return f.read(16)
    except FileNotFoundError:
        raise DataError(f"MNIST file {packed.name} is missing from {root}; restore it from a clean "
                        f"copy of ablate, or point [run.dataset] root at a folder that has "
                        f"the four MNIST IDX files") from None
    except (OSError, EOFError) as exc:
        raise DataError(f"MNIST file {packed.name} in {root} cannot be read ({exc})") from None


def _read_bytes(root: Path, stem: str) -> bytes:
    plain, packed = root / stem, root / f"{stem}.gz"
    try:
        if plain.exists():
            return plain.read_bytes()
        with gzip.open(packed, "rb") as f:
            return f.read()
    except FileNotFoundError:
        raise DataError(f"MNIST file {packed.name} is missing from {root}; restore it from a clean "
                        f"copy of ablate, or point [run.dataset] root at a folder that has "
                        f"the four MNIST IDX files") from None
    except (OSError, EOFError) as exc:
        raise DataError(f"MNIST file {packed.name} in {root} cannot be read ({exc}); restore it "
                        f"from a clean copy of ablate") from None


@ablate.hookimpl
def register_datasets(register) -> None:
    register(Mnist)
