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
from ablate.errors import ConfigError
from ablate.evaluation import resolve_metrics

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
HEADER = ("from dataclasses import dataclass\n"
          "import ablate\n"
          "from ablate.components import param\n"
          "from ablate.decoders import Decoder\n"
          "from ablate.schedules import NoiseSchedule\n\n")
MISTAKES = {  # the four ordinary author mistakes, one plugin module each
    "robustness_clash": HEADER + (
        "@dataclass(frozen=True)\n"
        "class Linear(NoiseSchedule):\n"
        '    """Reuses a built-in name."""\n'
        '    name = "linear"\n\n'
        "@dataclass(frozen=True)\n"
        "class Wide(Decoder):\n"
        '    """A decoder the clash takes down with it."""\n'
        '    name = "robustness-wide"\n\n'
        "@ablate.hookimpl\n"
        "def register_schedules(register):\n"
        "    register(Linear)\n\n"
        "@ablate.hookimpl\n"
        "def register_decoders(register):\n"
        "    register(Wide)\n"),
    "robustness_misspelt": HEADER + (
        "@ablate.hookimpl\n"
        "def register_schedule(register):\n"
        "    pass\n"),
    "robustness_nameless": HEADER + (
        "@dataclass(frozen=True)\n"
        "class Nameless(NoiseSchedule):\n"
        '    """Forgot its name."""\n\n'
        "@ablate.hookimpl\n"
        "def register_schedules(register):\n"
        "    register(Nameless)\n"),
    "robustness_instance": HEADER + (
        "@dataclass(frozen=True)\n"
        "class Flat(NoiseSchedule):\n"
        '    """Registered as an instance."""\n'
        '    name = "robustness-flat"\n'
        '    beta: float = param(0.01, "beta", gt=0, lt=1)\n\n'
        "@ablate.hookimpl\n"
        "def register_schedules(register):\n"
        "    register(Flat())\n"),
}
MISTAKES["robustness_runtime"] = HEADER + (  # registers fine, breaks when it runs
    "import torch\n\n"
    "class Net(torch.nn.Module):\n"
    "    def __init__(self, cut):\n"
    "        super().__init__()\n"
    "        self.conv = torch.nn.Conv2d(1, 1, 3, padding=1)\n"
    "        self.cut = cut\n\n"
    "    def forward(self, x, t):\n"
    "        return self.conv(x)[..., :x.shape[-1] - self.cut]\n\n"
    "@dataclass(frozen=True)\n"
    "class WrongShape(Decoder):\n"
    '    """Returns one column too few."""\n'
    '    name = "robustness-wrong-shape"\n\n'
    "    def build(self, channels, image_size):\n"
    "        return Net(1)\n\n"
    "@dataclass(frozen=True)\n"
    "class BadDefault(Decoder):\n"
    '    """Its own default breaks its build."""\n'
    '    name = "robustness-bad-default"\n'
    '    width: int = param(0, "channels of the hidden layer")\n\n'
    "    def build(self, channels, image_size):\n"
    "        return Net(image_size // self.width)\n\n"
    "@ablate.hookimpl\n"
    "def register_decoders(register):\n"
    "    register(WrongShape)\n"
    "    register(BadDefault)\n")
MODULES.update(MISTAKES)
DISTRIBUTIONS = {  # distribution -> (version, plugin name, module)
    "robustness-missing-dependency": ("1.2", "missing_dependency", "robustness_missing_dependency"),
    "robustness-raising": ("3.4", "raising", "robustness_raises_while_registering"),
    "robustness-clash": ("1.0", "clash", "robustness_clash"),
    "robustness-misspelt": ("1.0", "misspelt", "robustness_misspelt"),
    "robustness-nameless": ("1.0", "nameless", "robustness_nameless"),
    "robustness-instance": ("1.0", "instance", "robustness_instance"),
    "robustness-runtime": ("2.0", "runtime", "robustness_runtime"),
}
REASONS = {
    "clash": "schedule 'linear' is registered twice: already by plugin 'linear'",
    "misspelt": "implements 'register_schedule', which is not an ablate hook (did you mean "
                "'register_schedules'?",
    "nameless": "Nameless has no 'name'",
    "instance": "registered an instance of Flat as a schedule; register the class itself",
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
    broken = {b["plugin"]: b for b in json.loads(result.stdout)["broken"]}
    assert broken["missing_dependency"]["source"] == "robustness-missing-dependency"
    assert broken["missing_dependency"]["error"].startswith(
        "import failed: ModuleNotFoundError: No module named "
        "'robustness_library_that_is_not_installed'")
    assert broken["raising"] == {"plugin": "raising", "source": "robustness-raising",
                                 "error": "register_schedules raised RuntimeError: boom while "
                                          "registering"}
    for plugin, reason in REASONS.items():
        assert reason in broken[plugin]["error"], broken[plugin]


def test_table_shows_the_broken_plugins(broken_plugins, monkeypatch):
    monkeypatch.setattr(cli, "console", Console(width=250))  # no wrapping inside cells
    result = runner.invoke(app, ["list-plugins"])
    assert result.exit_code == 0, result.output
    assert "broken plugins (not loaded)" in result.output
    assert "missing_dependency" in result.output and "boom while registering" in result.output


def test_other_plugins_keep_working_beside_broken_ones(broken_plugins):
    listing = json.loads(runner.invoke(app, ["list-plugins", "--json"]).stdout)
    schedules = [c["name"] for c in listing["families"]["schedule"]]
    assert "linear" in schedules and "robustness-half" not in schedules
    config = parse_run({"schedule": "cosine", "decoder": "unet"}, source="test")
    assert (config.schedule.name, config.decoder.name, config.dataset.name) == (
        "cosine", "unet", "mnist")


def test_every_command_reports_each_broken_plugin_once_and_keeps_working(broken_plugins,
                                                                         tmp_path: Path):
    study = tmp_path / "study.toml"
    study.write_text('[study]\nname = "ok"\ntrials = 1\n\n[run]\nT = 10\nsteps = 2\n'
                     'device = "cpu"\n\n[search]\n"run.lr" = {low = 1e-4, high = 1e-2}\n',
                     encoding="utf-8")
    result = runner.invoke(app, ["run", str(study), "--dry-run"])
    assert result.exit_code == 0, result.output
    warnings = [line for line in result.stderr.splitlines() if line.startswith("warning: plugin")]
    assert sorted(w.split("'")[1] for w in warnings) == sorted(
        set(DISTRIBUTIONS_BY_PLUGIN) - {"runtime"}), warnings
    for plugin, reason in REASONS.items():
        assert any(f"'{plugin}'" in w and reason in w for w in warnings), (plugin, warnings)
    assert "Traceback" not in result.output


DISTRIBUTIONS_BY_PLUGIN = {plugin: dist for dist, (_, plugin, _) in DISTRIBUTIONS.items()}


def test_unknown_component_names_the_broken_plugin_that_provides_it(broken_plugins,
                                                                    tmp_path: Path):
    run = tmp_path / "wide.toml"
    run.write_text('[run]\nT = 10\nsteps = 2\ndevice = "cpu"\ndecoder = "robustness-wide"\n',
                   encoding="utf-8")
    result = runner.invoke(app, ["train", str(run), "-o", str(tmp_path / "out")])
    assert result.exit_code == 2, result.output
    error = " ".join(result.stderr.split("error: ")[1].split())
    assert "unknown decoder 'robustness-wide'" in error
    assert "it comes from plugin 'clash', which is broken: schedule 'linear' is registered " \
           "twice" in error


def test_a_searched_decoder_and_an_eval_metric_name_the_broken_plugins_too(broken_plugins,
                                                                           tmp_path: Path):
    study = tmp_path / "study.toml"
    study.write_text('[study]\nname = "b"\ntrials = 1\n[run]\nT = 10\nsteps = 2\n'
                     'device = "cpu"\n[eval]\nmetrics = ["robustness-score"]\n[search]\n'
                     '"run.decoder.name" = ["cnn", "robustness-wide"]\n', encoding="utf-8")
    result = runner.invoke(app, ["run", str(study), "--dry-run"])
    assert result.exit_code == 2, result.output
    errors = [" ".join(e.split()) for e in result.stderr.split("error: ")[1:]]
    decoder = next(e for e in errors if "unknown decoder 'robustness-wide'" in e)
    assert "it comes from plugin 'clash', which is broken" in decoder
    metric = next(e for e in errors if "unknown metric 'robustness-score'" in e)
    assert "broken plugins that may provide it: 'missing_dependency'" in metric
    with pytest.raises(ConfigError, match="unknown metric 'robustness-score'.*broken plugins "
                                          "that may provide it"):
        resolve_metrics(["fid", "robustness-score"])  # ablate evaluate --metrics


def test_contract_tests_fail_for_each_broken_plugin_of_the_package(broken_plugins):
    from ablate.testing import BROKEN, ContractError, contract_tests

    test = contract_tests("robustness-clash")
    (cases,) = [mark.args[1] for mark in test.pytestmark if mark.name == "parametrize"]
    assert cases == [(BROKEN, "clash")]  # its decoder is not silently dropped: the plugin fails
    with pytest.raises(ContractError, match="plugin 'clash' .* is broken and was not loaded: "
                                            "schedule 'linear' is registered twice"):
        test(BROKEN, "clash")


@pytest.mark.parametrize(("decoder", "raised"), [
    ("robustness-wrong-shape", "DecoderOutputError: decoder 'robustness-wrong-shape' returned "
                               "a tensor of shape (16, 1, 28, 27) for input of shape "
                               "(16, 1, 28, 28)"),
    ("robustness-bad-default", "ZeroDivisionError: integer division or modulo by zero"),
])
def test_an_exception_in_plugin_code_is_one_line_naming_plugin_and_component(
        broken_plugins, tmp_path: Path, decoder: str, raised: str):
    run = tmp_path / "run.toml"
    run.write_text(f'[run]\nT = 10\nsteps = 2\nbatch_size = 16\nsubset = 32\ngrid_size = 2\n'
                   f'device = "cpu"\ndecoder = "{decoder}"\n', encoding="utf-8")
    result = runner.invoke(app, ["train", str(run), "-o", str(tmp_path / "out")])
    assert result.exit_code == 1, result.output
    error = " ".join(result.stderr.split("error: ")[1].split())
    assert error.startswith(f"decoder '{decoder}' of plugin 'runtime' (robustness-runtime) "
                            f"raised {raised}"), error
    kept = tmp_path / "out" / "error.txt"
    assert f"the traceback is in {kept}" in error
    assert "Traceback" not in result.output and "Traceback" in kept.read_text(encoding="utf-8")


def test_list_plugins_shows_each_broken_plugin_once(broken_plugins, monkeypatch):
    monkeypatch.setattr(cli, "console", Console(width=250))
    result = runner.invoke(app, ["list-plugins", "--family", "schedule"])
    assert result.exit_code == 0, result.output
    assert result.output.count("boom while registering") == 1


def test_a_study_trial_failing_in_plugin_code_names_the_plugin(broken_plugins, tmp_path: Path):
    import optuna

    study = tmp_path / "study.toml"
    study.write_text(f'[study]\nname = "faulty"\ntrials = 1\noutput = "{tmp_path}"\n\n'
                     '[run]\nT = 10\nsteps = 2\nbatch_size = 16\nsubset = 32\ngrid_size = 2\n'
                     'device = "cpu"\ndecoder = "robustness-bad-default"\n\n'
                     '[search]\n"run.lr" = [2e-4, 1e-3]\n', encoding="utf-8")
    result = runner.invoke(app, ["run", str(study)])
    assert "Traceback" not in result.output, result.output
    assert (tmp_path / "faulty" / "study.db").exists(), result.output
    stored = optuna.load_study(study_name="faulty",
                               storage=f"sqlite:///{tmp_path}/faulty/study.db")
    reason = stored.trials[0].user_attrs["reason"]
    assert reason.startswith("decoder 'robustness-bad-default' of plugin 'runtime' "
                             "(robustness-runtime) raised ZeroDivisionError"), reason
