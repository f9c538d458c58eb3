"""The ``fashion-mnist`` dataset for ablate: Zalando's Fashion-MNIST as Debian packages it.

Debian's ``dataset-fashion-mnist`` installs the four IDX files, gzipped, under
/usr/share/datasets/fashion-mnist/. Debian recompressed them, so upstream's md5 sums of the .gz
files do not match; the checksums below are those of the uncompressed IDX content, which every
load verifies.
"""

from __future__ import annotations

import gzip
import hashlib
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import ablate
import numpy as np
import torch
from ablate.components import param
from ablate.datasets import Dataset, ImageData, Split
from ablate.errors import DataError

DEBIAN_ROOT = "/usr/share/datasets/fashion-mnist"
INSTALL_HINT = ("install Debian's package with `sudo apt-get install dataset-fashion-mnist`, or "
                "point [run.dataset] root at a folder holding the four Fashion-MNIST IDX files")

SHA256: dict[str, str] = {
    "train-images-idx3-ubyte": "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888",
    "train-labels-idx1-ubyte": "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9",
    "t10k-images-idx3-ubyte": "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b",
    "t10k-labels-idx1-ubyte": "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34",
}
"""sha256 of each uncompressed IDX file of dataset-fashion-mnist 0.0~git20200523.55506a9-1."""

SPLIT_PREFIX = {"train": "train", "test": "t10k"}
CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker",
           "Bag", "Ankle boot")
"""Label i names class i (from the dataset's README)."""


@dataclass(frozen=True)
class FashionMnist(Dataset):
    """Fashion-MNIST clothing, 28x28 grey, 60,000 train / 10,000 test (Debian's copy, verified)."""

    name = "fashion-mnist"
    root: str = param(DEBIAN_ROOT, "folder with the four IDX files (.gz or not)")

    def load(self, split: Split) -> ImageData:
        return load_split(Path(self.root).resolve(), split)


@lru_cache(maxsize=4)
def load_split(root: Path, split: Split) -> ImageData:
    """Read and verify one split once per process: images (N, 1, 28, 28) uint8, labels int64."""
    prefix = SPLIT_PREFIX[split]
    images = read_idx(root, f"{prefix}-images-idx3-ubyte")
    labels = read_idx(root, f"{prefix}-labels-idx1-ubyte")
    if images.ndim != 3 or labels.ndim != 1 or len(images) != len(labels):
        raise DataError(f"Fashion-MNIST {split} files in {root} do not fit together: images "
                        f"{images.shape}, labels {labels.shape}")
    return ImageData(images=torch.from_numpy(images).unsqueeze(1),
                     labels=torch.from_numpy(labels.astype(np.int64)))


def read_idx(root: Path, stem: str) -> np.ndarray:
    """One verified IDX file of unsigned bytes, shaped as its header says."""
    raw = _read_bytes(root, stem)
    digest = hashlib.sha256(raw).hexdigest()
    if digest != SHA256[stem]:
        raise DataError(f"Fashion-MNIST file {stem} in {root} is corrupt: its sha256 is "
                        f"{digest}, expected {SHA256[stem]}; reinstall it "
                        f"(`sudo apt-get install --reinstall dataset-fashion-mnist`)")
    # IDX header: two zero bytes, the type (0x08: unsigned byte), the number of dimensions,
    # then each dimension as a big-endian 32-bit integer.
    dims = raw[3]
    shape = tuple(int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(dims))
    return np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * dims).reshape(shape).copy()


def _read_bytes(root: Path, stem: str) -> bytes:
    plain, packed = root / stem, root / f"{stem}.gz"
    try:
        if plain.exists():
            return plain.read_bytes()
        with gzip.open(packed, "rb") as f:
            return f.read()
    except FileNotFoundError:
        raise DataError(f"Fashion-MNIST file {packed.name} is missing from {root}; "
                        f"{INSTALL_HINT}") from None
    except (OSError, EOFError) as exc:
        raise DataError(f"Fashion-MNIST file {packed.name} in {root} cannot be read ({exc}); "
                        f"{INSTALL_HINT}") from None


@ablate.hookimpl
def register_datasets(register) -> None:
    register(FashionMnist)
