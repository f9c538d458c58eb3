"""Broken third-party plugins are reported by name and never stop anything else from working.

Each test puts throwaway distributions (a dist-info folder with an ``ablate`` entry point, and
the module it names) on ``sys.path``, where ``importlib.metadata`` finds them as if installed.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from rich.console import Console
from typer.testing import CliRunner

from ablate import cli, plugin_host
from ablate.cli import app
from ablate.config import parse_run

runner = CliRunner()

MODULES = {
    "robustness_missing_dependency": "import robustness_library_that_is_not_installed\n",
    "robustness_raises_while_registering": (
        "from dataclasses import dataclass\n"
        "import ablate\n"
        "from ablate.schedules import NoiseSchedule\n\n"
        "@dataclass(frozen=True)\n"
        "class Half(NoiseSchedule):\n"
        '    """Registered before the plugin raises: must not stay registered."""\n'
        '    name = "robustness-half"\n\n'
        "@ablate.hookimpl\n"
        "def register_schedules(register):\n"
        "    register(Half)\n"
        '    raise RuntimeError("boom while registering")\n'
    ),
}
DISTRIBUTIONS = {  # distribution -> (version, plugin name, module)
    "robustness-missing-dependency": ("1.2", "missing_dependency", "robustness_missing_dependency"),
    "robustness-raising": ("3.4", "raising", "robustness_raises_while_registering"),
}


@pytest.fixture
def broken_plugins(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Two broken third-party plugins on sys.path, seen by a freshly loaded plugin host."""
    for distribution, (version, plugin, module) in DISTRIBUTIONS.items():
        info = tmp_path / f"{distribution.replace('-', '_')}-{version}.dist-info"
        info.mkdir()
        (info / "METADATA").write_text(
            f"Metadata-Version: 2.1\nName: {distribution}\nVersion: {version}\n", encoding="utf-8")
        (info / "entry_points.txt").write_text(f"[ablate]\n{plugin} = {module}\n",
                                               encoding="utf-8")
    for module, source in MODULES.items():
        (tmp_path / f"{module}.py").write_text(source, encoding="utf-8")
        monkeypatch.delitem(sys.modules, module, raising=False)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(plugin_host, "_default", None)


def test_broken_plugins_are_listed_with_their_errors(broken_plugins):
    result = runner.invoke(app, ["list-plugins", "--json"])
    assert result.exit_code == 0, result.output
    broken = {b["plugin"]: b for b in json.loads(result.output)["broken"]}
    assert broken["missing_dependency"]["source"] == "robustness-missing-dependency"
    assert broken["missing_dependency"]["error"].startswith(
        "import failed: ModuleNotFoundError: No module named "
        "'robustness_library_that_is_not_installed'")
    assert broken["raising"] == {"plugin": "raising", "source": "robustness-raising",
                                 "error": "register_schedules raised RuntimeError: boom while "
                                          "registering"}


def test_table_shows_the_broken_plugins(broken_plugins, monkeypatch):
    monkeypatch.setattr(cli, "console", Console(width=250))  # no wrapping inside cells
    result = runner.invoke(app, ["list-plugins"])
    assert result.exit_code == 0, result.output
    assert "broken plugins (not loaded)" in result.output
    assert "missing_dependency" in result.output and "boom while registering" in result.output


def test_other_plugins_keep_working_beside_broken_ones(broken_plugins):
    listing = json.loads(runner.invoke(app, ["list-plugins", "--json"]).output)
    schedules = [c["name"] for c in listing["families"]["schedule"]]
    assert "linear" in schedules and "robustness-half" not in schedules
    config = parse_run({"schedule": "cosine", "decoder": "unet"}, source="test")
    assert (config.schedule.name, config.decoder.name, config.dataset.name) == (
        "cosine", "unet", "mnist")
