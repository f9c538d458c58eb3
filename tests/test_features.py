"""Feature networks: a reproducible recipe, the shipped MNIST network, and refusing bad files."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from ablate_builtins.mnist import Mnist
from typer.testing import CliRunner

from ablate import features
from ablate.cli import app
from ablate.errors import ConfigError, DataError

runner = CliRunner()


def train_tiny(folder: Path, seed: int = 0) -> dict:
    result = runner.invoke(app, ["features-train", "--dataset", "mnist", "--epochs", "1",
                                 "--subset", "512", "--seed", str(seed), "-o", str(folder)])
    assert result.exit_code == 0, result.output
    return json.loads((folder / "mnist.json").read_text())


def test_recipe_reproduces_the_weights_bit_for_bit_and_depends_on_the_seed(tmp_path: Path):
    first, second = train_tiny(tmp_path / "a"), train_tiny(tmp_path / "b")
    assert first["sha256"] == second["sha256"]
    assert (tmp_path / "a" / "mnist.safetensors").read_bytes() == (
        tmp_path / "b" / "mnist.safetensors").read_bytes()
    assert first["recipe"] == {"seed": 0, "epochs": 1, "batch_size": 128, "lr": 2e-3,
                               "subset": 512}
    assert train_tiny(tmp_path / "c", seed=1)["sha256"] != first["sha256"]


def test_a_network_in_the_search_path_comes_before_the_bundled_one(tmp_path: Path,
                                                                    monkeypatch):
    folder = tmp_path / "nets"
    folder.mkdir()
    shipped = json.loads((features.bundled_dir() / "mnist.json").read_text())
    (folder / "mnist.json").write_text(json.dumps({**shipped, "sha256": "0" * 64}))
    shutil.copy(features.bundled_dir() / "mnist.safetensors", folder)
    monkeypatch.setenv(features.SEARCH_ENV, str(folder))
    assert features.search_dirs() == [folder, features.bundled_dir()]
    with pytest.raises(DataError, match=str(folder)):
        features.load("mnist")


def test_shipped_mnist_network_matches_its_record_and_classifies_test_digits():
    net = features.load("mnist", [features.bundled_dir()])
    assert net.record["test_accuracy"] >= 0.99
    assert (features.bundled_dir() / "mnist.safetensors").stat().st_size < 1_000_000
    test = Mnist().load("test")
    logits = net.embed(test.images[:2000].float() / 255).logits
    assert (logits.argmax(1) == test.labels[:2000]).double().mean() >= 0.985


def test_embedding_has_the_penultimate_width_and_the_class_count():
    net = features.load("mnist", [features.bundled_dir()])
    embedding = net.embed(torch.rand(3, 1, 28, 28))
    assert embedding.features.shape == (3, 128) and embedding.logits.shape == (3, 10)
    assert (embedding.features >= 0).all()


def copy_of_shipped(folder: Path) -> Path:
    folder.mkdir()
    for suffix in ("json", "safetensors"):
        shutil.copy(features.bundled_dir() / f"mnist.{suffix}", folder)
    return folder


def test_weights_that_differ_from_their_record_are_refused(tmp_path: Path):
    folder = copy_of_shipped(tmp_path / "nets")
    weights = folder / "mnist.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 1
    weights.write_bytes(bytes(data))
    with pytest.raises(DataError, match="do not match their record.*features-train"):
        features.load("mnist", [folder])


def test_missing_weights_next_to_a_record_are_refused(tmp_path: Path):
    folder = copy_of_shipped(tmp_path / "nets")
    (folder / "mnist.safetensors").unlink()
    with pytest.raises(DataError, match="are missing"):
        features.load("mnist", [folder])


def test_a_dataset_without_a_network_names_the_command_that_creates_it(tmp_path: Path):
    with pytest.raises(DataError, match=r"no feature network for dataset 'fashion-mnist'.*"
                                        r"ablate features-train --dataset fashion-mnist"):
        features.load("fashion-mnist", [tmp_path])


def test_images_of_another_shape_are_a_clear_error():
    net = features.load("mnist", [features.bundled_dir()])
    with pytest.raises(ConfigError, match=r"takes images of shape \[1, 28, 28\], got \[3, 32"):
        net.embed(torch.rand(2, 3, 32, 32))


def test_features_train_with_an_unknown_dataset_exits_2():
    result = runner.invoke(app, ["features-train", "--dataset", "mnsit"])
    assert result.exit_code == 2
    assert "unknown dataset 'mnsit'" in result.output and "mnist" in result.output
