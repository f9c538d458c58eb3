"""`ablate new-plugin`: names are checked, every family's package works as generated, and an
installed one is a real third-party plugin (listed with its provenance, its own tests passing).

The installed-package tests pip-install into this test environment, offline, and uninstall in
the end; the Fashion-MNIST example package is installed alongside and its tests run too.
"""

from __future__ import annotations

import importlib
import importlib.util
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from ablate.cli import app
from ablate.plugin_host import load_host
from ablate.registry import FAMILIES
from ablate.scaffold import USAGE, plugin_names, scaffold
from ablate.testing import check_component

runner = CliRunner()
EXAMPLE = Path(__file__).parent.parent / "examples" / "ablate-fashion-mnist"
CLI = [sys.executable, "-c", "from ablate.cli import app; app()"]


@pytest.mark.parametrize("name", ["Schedule", "my schedule", "2fast", "my--schedule", "x" * 41,
                                  "my-schedule-"])
def test_invalid_names_are_one_clear_error(name, tmp_path):
    result = runner.invoke(app, ["new-plugin", name, "-o", str(tmp_path / "out")])
    assert result.exit_code == 2
    assert f"{name!r} is not a valid plugin name" in result.output
    assert not (tmp_path / "out").exists()


def test_name_of_an_installed_component_is_refused(tmp_path):
    result = runner.invoke(app, ["new-plugin", "cosine", "-o", str(tmp_path / "out")])
    assert result.exit_code == 2
    assert "a schedule named 'cosine' is already installed" in result.output


def test_unknown_family_suggests_the_closest(tmp_path):
    result = runner.invoke(app, ["new-plugin", "mine", "--family", "decodr"])
    assert result.exit_code == 2
    assert "unknown family 'decodr' (did you mean 'decoder'?)" in result.output


def test_a_folder_with_files_is_not_overwritten(tmp_path):
    (tmp_path / "keep.txt").write_text("mine", encoding="utf-8")
    result = runner.invoke(app, ["new-plugin", "mine", "-o", str(tmp_path)])
    assert result.exit_code == 2
    assert "already exists and is not an empty folder" in result.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["keep.txt"]


def test_an_unwritable_output_is_one_clear_error(tmp_path):
    (tmp_path / "file").write_text("not a folder", encoding="utf-8")
    result = runner.invoke(app, ["new-plugin", "mine", "-o", str(tmp_path / "file" / "plugin")])
    assert result.exit_code == 2
    assert "cannot write" in result.output and "Traceback" not in result.output


def test_names_follow_python_packaging_conventions():
    names = plugin_names("my-fancy_ema", "ema")
    assert (names.distribution, names.package, names.plugin, names.class_name) == (
        "ablate-my-fancy-ema", "ablate_my_fancy_ema", "my_fancy_ema", "MyFancyEma")


def test_every_family_has_a_template():
    assert set(USAGE) == set(FAMILIES)


def test_family_option_help_names_every_family():
    command = typer.main.get_command(app).commands["new-plugin"]
    [family] = [p for p in command.params if p.name == "family"]
    assert all(name in family.help for name in USAGE)


@pytest.mark.parametrize("family", sorted(USAGE))
def test_generated_component_keeps_its_contract(family, tmp_path, monkeypatch):
    folder = scaffold(f"fresh-{family}", family, tmp_path / "plugin")
    names = plugin_names(f"fresh-{family}", family)
    monkeypatch.syspath_prepend(str(folder))
    module = importlib.import_module(names.package)
    monkeypatch.delitem(sys.modules, names.package)
    host = load_host([(names.plugin, module)])
    check_component(family, names.name, host=host)


def _offline_install_unavailable() -> str | None:
    """Why pip cannot install a local package offline here, or None when it can."""
    if importlib.util.find_spec("pip") is None:
        return "pip is not installed in the test environment"
    try:
        setuptools = version("setuptools")
    except PackageNotFoundError:
        return "setuptools (needed by --no-build-isolation) is not installed"
    if int(setuptools.split(".")[0]) < 64:
        return f"setuptools {setuptools} cannot make editable installs (needs 64 or later)"
    return None


needs_offline_pip = pytest.mark.skipif(_offline_install_unavailable() is not None,
                                       reason=str(_offline_install_unavailable()))


def _pip(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "pip", "--disable-pip-version-check", *args],
                          capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Iterator[Path]:
    """A freshly scaffolded schedule plugin and the example package, pip-installed editable."""
    name = f"probe-{os.getpid()}"  # unique, so concurrent runs do not collide
    folder = scaffold(name, "schedule", tmp_path_factory.mktemp("scaffold") / "plugin")
    distributions = [plugin_names(name, "schedule").distribution, "ablate-fashion-mnist"]
    try:
        done = _pip("install", "--no-deps", "--no-build-isolation", "--no-index", "-q",
                    "-e", str(folder), "-e", str(EXAMPLE))
        assert done.returncode == 0, done.stderr
        yield folder
    finally:
        _pip("uninstall", "-y", "-q", *distributions)


@needs_offline_pip
def test_installed_plugin_is_listed_with_its_distribution_and_version(installed):
    listed = subprocess.run([*CLI, "list-plugins", "--json"], capture_output=True, text=True,
                            timeout=300)
    assert listed.returncode == 0, listed.stderr
    listing = json.loads(listed.stdout)
    names = plugin_names(f"probe-{os.getpid()}", "schedule")
    [schedule] = [c for c in listing["families"]["schedule"] if c["name"] == names.name]
    assert (schedule["plugin"], schedule["source"]) == (names.plugin,
                                                        f"{names.distribution} 0.1.0")
    assert {p["name"] for p in schedule["parameters"]} == {"zero_terminal_snr", "power",
                                                            "alpha_bar_min"}
    [dataset] = [c for c in listing["families"]["dataset"] if c["name"] == "fashion-mnist"]
    assert dataset["source"] == "ablate-fashion-mnist 0.1.0"
    assert listing["broken"] == []


@needs_offline_pip
def test_installed_plugin_passes_its_own_generated_tests(installed):
    tested = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"],
                            cwd=installed, capture_output=True, text=True, timeout=300)
    assert tested.returncode == 0, tested.stdout + tested.stderr
    assert "1 passed" in tested.stdout


@needs_offline_pip
def test_example_package_passes_its_tests(installed):
    tested = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"],
                            cwd=EXAMPLE, capture_output=True, text=True, timeout=300)
    assert tested.returncode == 0, tested.stdout + tested.stderr
