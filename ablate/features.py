"""Feature networks: the per-dataset classifier whose penultimate layer metrics measure in.

FID-style metrics need a feature space that knows the data. Inception-v3 features mean little
for 28x28 digits and the weights cannot be downloaded here, so each dataset gets a small
LeNet-style classifier (``FeatureNet``) trained by ``ablate features-train --dataset NAME`` with
a fixed, seeded recipe. Its weights (safetensors) and a JSON record of the recipe, test accuracy
and the weights' sha256 live in a feature-net folder under the dataset's name; loading refuses
weights whose checksum differs from the record. Folders searched: those in ``ABLATE_FEATURE_NETS``
(``os.pathsep``-separated), then the bundled ``ablate_builtins/data/feature_nets``.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from functools import lru_cache
from importlib.resources import files
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from ablate.atomic import write_atomic, write_text_atomic
from ablate.datasets import Dataset
from ablate.errors import ConfigError, DataError

FORMAT = "ablate-feature-net/1"
SEARCH_ENV = "ABLATE_FEATURE_NETS"
REFERENCE_SPLIT = "test"
"""The split generated samples are compared with (the training split trains the network)."""


def bundled_dir() -> Path:
    """Where the built-in feature networks ship: ``plugins/data/feature_nets``."""
    return Path(str(files("ablate_builtins"))) / "data" / "feature_nets"


def search_dirs() -> list[Path]:
    extra = os.environ.get(SEARCH_ENV, "")
    return [Path(p) for p in extra.split(os.pathsep) if p] + [bundled_dir()]


@dataclass(frozen=True)
class Recipe:
    """How a feature network is trained; recorded next to its weights."""

    seed: int = 0
    epochs: int = 6
    batch_size: int = 128
    lr: float = 2e-3
    subset: int = 0
    """Use the first ``subset`` images of each split only; 0 = all (tests use a tiny subset)."""


class FeatureNet(nn.Module):
    """LeNet-style classifier: two 5x5 conv + max-pool stages, a hidden layer, the class logits.

    Input is images in [0, 1]. ``features`` is the hidden layer after its ReLU (``width`` values
    per image), the space FID, KID, precision and recall measure in.
    """

    def __init__(self, channels: int, height: int, width: int, classes: int,
                 hidden: int = 128) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(channels, 16, 5, stride=2, padding=2)
        self.conv2 = nn.Conv2d(16, 32, 5, stride=2, padding=2)
        self.hidden = nn.Linear(32 * _halved(_halved(height)) * _halved(_halved(width)), hidden)
        self.head = nn.Linear(hidden, classes)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        h = F.relu(self.conv1(2 * x - 1))
        h = F.relu(self.conv2(h))
        return F.relu(self.hidden(h.flatten(1)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


def _halved(size: int) -> int:
    """Output size of a 5x5 convolution with stride 2 and padding 2."""
    return (size - 1) // 2 + 1


@dataclass(frozen=True)
class Embedding:
    """Penultimate features (N, hidden) and class logits (N, classes) of a set of images."""

    features: torch.Tensor
    logits: torch.Tensor


@dataclass(frozen=True)
class LoadedNet:
    """A verified feature network and its record."""

    dataset: str
    network: FeatureNet
    record: dict[str, Any]

    @property
    def sha256(self) -> str:
        return self.record["sha256"]

    @torch.no_grad()
    def embed(self, images_unit: torch.Tensor, batch_size: int = 1000) -> Embedding:
        """Features and logits of images in [0, 1], computed on the images' device."""
        expected = tuple(self.record["image_shape"])
        if images_unit.dim() != 4 or tuple(images_unit.shape[1:]) != expected:
            raise ConfigError(f"the {self.dataset} feature network takes images of shape "
                              f"{list(expected)}, got {list(images_unit.shape[1:])}")
        network = self.network.to(images_unit.device)
        features = torch.cat([network.features(chunk.float())
                              for chunk in images_unit.split(batch_size)])
        return Embedding(features, network.head(features))


def train(dataset: Dataset, recipe: Recipe, device: torch.device,
          on_epoch: Callable[[int, float], None] | None = None
          ) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Train a feature network on the training split; returns its weights and record.

    Everything random (initial weights, data order) comes from ``recipe.seed``, so the same
    recipe on the same machine reproduces the weights bit for bit. ``on_epoch(epoch, loss)``
    reports progress.
    """
    train_split, test_split = dataset.load("train"), dataset.load(REFERENCE_SPLIT)
    images, labels = train_split.images, train_split.labels
    test_images, test_labels = test_split.images, test_split.labels
    if recipe.subset:
        images, labels = images[:recipe.subset], labels[:recipe.subset]
        test_images, test_labels = test_images[:recipe.subset], test_labels[:recipe.subset]
    classes = int(train_split.labels.max()) + 1
    channels, height, width = train_split.shape
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(recipe.seed)
        network = FeatureNet(channels, height, width, classes)
    network = network.to(device)
    images, labels = images.to(device), labels.to(device)
    generator = torch.Generator(device).manual_seed(recipe.seed)
    steps_per_epoch = -(-len(images) // recipe.batch_size)
    total = recipe.epochs * steps_per_epoch
    optimizer = torch.optim.Adam(network.parameters(), lr=recipe.lr)
    # Linear decay to zero: a few epochs reach their best accuracy at the end, not mid-way.
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1 - step / total)
    for epoch in range(1, recipe.epochs + 1):
        order = torch.randperm(len(images), device=device, generator=generator)
        loss_sum = torch.zeros((), device=device)
        for batch in order.split(recipe.batch_size):
            loss = F.cross_entropy(network(images[batch].float() / 255), labels[batch])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
            loss_sum += loss.detach()
        if on_epoch is not None:
            on_epoch(epoch, float(loss_sum) / steps_per_epoch)
    network.eval()
    accuracy = _accuracy(network, test_images.to(device), test_labels.to(device))
    tensors = {k: v.detach().cpu().contiguous() for k, v in network.state_dict().items()}
    record = {
        "format": FORMAT,
        "dataset": dataset.name,
        "dataset_params": dataset.params(),
        "image_shape": [channels, height, width],
        "classes": classes,
        "architecture": "lenet-16-32-128",
        "recipe": asdict(recipe),
        "test_accuracy": accuracy,
        "torch": torch.__version__,
        "device": device.type,
    }
    return tensors, record


@torch.no_grad()
def _accuracy(network: FeatureNet, images: torch.Tensor, labels: torch.Tensor) -> float:
    correct = torch.zeros((), dtype=torch.int64, device=images.device)
    for chunk, truth in zip(images.split(1000), labels.split(1000), strict=True):
        correct += (network(chunk.float() / 255).argmax(1) == truth).sum()
    return int(correct) / len(images)


def save(tensors: dict[str, torch.Tensor], record: dict[str, Any], folder: Path) -> Path:
    """Write ``<dataset>.safetensors`` and ``<dataset>.json`` (with the sha256) into ``folder``."""
    name = record["dataset"]
    weights = folder / f"{name}.safetensors"
    write_atomic(weights, lambda tmp: save_file(tensors, tmp))
    record = {**record, "sha256": _sha256(weights)}
    write_text_atomic(folder / f"{name}.json", json.dumps(record, indent=2) + "\n")
    return weights


def load(dataset: str, folders: Sequence[Path] | None = None) -> LoadedNet:
    """The verified feature network of ``dataset`` from the first folder that has one."""
    folders = list(folders) if folders is not None else search_dirs()
    for folder in folders:
        if (folder / f"{dataset}.json").is_file():
            return _load_from(folder, dataset)
    looked = ", ".join(str(f) for f in folders)
    raise DataError(f"there is no feature network for dataset {dataset!r} (looked in {looked}); "
                    f"create it with `ablate features-train --dataset {dataset}`")


@lru_cache(maxsize=8)
def load_cached(dataset: str) -> LoadedNet:
    """``load`` once per process (the search folders are read on first use)."""
    return load(dataset)


def _load_from(folder: Path, dataset: str) -> LoadedNet:
    record_path, weights = folder / f"{dataset}.json", folder / f"{dataset}.safetensors"
    retrain = f"recreate it with `ablate features-train --dataset {dataset}`"
    try:
        record = json.loads(record_path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise DataError(f"feature-network record {record_path} cannot be read ({exc}); "
                        f"{retrain}") from None
    if not isinstance(record, dict) or record.get("format") != FORMAT:
        raise DataError(f"{record_path} is not an ablate feature-network record; {retrain}")
    if not weights.is_file():
        raise DataError(f"feature-network weights {weights} are missing; {retrain}")
    actual = _sha256(weights)
    if actual != record.get("sha256"):
        raise DataError(f"feature-network weights {weights} do not match their record (sha256 "
                        f"{actual}, recorded {record.get('sha256')}); {retrain}")
    try:
        channels, height, width = record["image_shape"]
        network = FeatureNet(channels, height, width, record["classes"])
        network.load_state_dict(load_file(weights))
    except (KeyError, TypeError, ValueError, RuntimeError, SafetensorError) as exc:
        raise DataError(f"feature network {weights} does not fit its record "
                        f"({str(exc).splitlines()[0]}); {retrain}") from None
    return LoadedNet(dataset, network.eval().requires_grad_(False), record)


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@lru_cache(maxsize=8)
def reference_embedding(dataset: Dataset, device: torch.device) -> Embedding:
    """Features of the dataset's reference split, computed once per process and device."""
    net = load_cached(dataset.name)
    images = dataset.load(REFERENCE_SPLIT).images.to(device)
    return net.embed(images.float() / 255)
