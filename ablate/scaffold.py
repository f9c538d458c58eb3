"""``ablate new-plugin``: write a small plugin package that works as generated.

The package holds one component of the chosen family (a real, working one whose docstring says
what to replace), the ``ablate`` entry point that registers it, tests that run the contract kit
on it, and a README. The files are filled in from ``ablate/templates``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from importlib.resources import files
from pathlib import Path
from string import Template

import ablate
from ablate.components import suggest
from ablate.errors import ConfigError
from ablate.plugin_host import PluginHost, default_host

NAME_PATTERN = re.compile(r"[a-z][a-z0-9]*(?:[-_][a-z0-9]+)*")
MAX_NAME_LENGTH = 40

USAGE: dict[str, str] = {
    "dataset": '[run]\ndataset = "{name}"',
    "schedule": '[run.schedule]\nname = "{name}"',
    "decoder": '[run.decoder]\nname = "{name}"',
    "degradation": '[run.degradation]\nname = "{name}"',
    "ema": '[run.ema]\nname = "{name}"',
    "metric": '[eval]\nmetrics = ["fid", "{name}"]',
    "optimizer": '[run.optimizer]\nname = "{name}"',
    "lr_schedule": '[run.lr_schedule]\nname = "{name}"',
}
"""How a run or study file selects a component of each family that has a template."""


@dataclass(frozen=True)
class PluginNames:
    """Every name a new plugin needs, derived from its component name."""

    name: str
    family: str

    @property
    def plugin(self) -> str:
        """The entry-point name, which ABLATE_LOAD_PLUGINS and ABLATE_BLOCK_PLUGINS use."""
        return self.name.replace("-", "_")

    @property
    def package(self) -> str:
        return f"ablate_{self.plugin}"

    @property
    def distribution(self) -> str:
        return f"ablate-{self.name.replace('_', '-')}"

    @property
    def class_name(self) -> str:
        return "".join(part.capitalize() for part in re.split(r"[-_]", self.name))


def plugin_names(name: str, family: str) -> PluginNames:
    """Validate a component name and family; raise ConfigError saying what would be valid."""
    if family not in USAGE:
        raise ConfigError(f"unknown family {family!r}", key="--family",
                          hint=suggest(family, USAGE) or f"one of {', '.join(USAGE)}")
    if len(name) > MAX_NAME_LENGTH or not NAME_PATTERN.fullmatch(name):
        raise ConfigError(
            f"{name!r} is not a valid plugin name", key="NAME",
            hint=f"use lowercase letters and digits, starting with a letter, with single - or _ "
                 f"between words, at most {MAX_NAME_LENGTH} characters, e.g. my-schedule")
    return PluginNames(name, family)


def scaffold(name: str, family: str, output: Path | None = None, *,
             host: PluginHost | None = None) -> Path:
    """Write the package for component ``name`` of ``family`` and return its folder."""
    names = plugin_names(name, family)
    installed = (host or default_host()).registry.entries[family].get(name)
    if installed is not None:
        raise ConfigError(
            f"a {family} named {name!r} is already installed (plugin "
            f"{installed.provenance.plugin!r} from {installed.provenance.distribution}); two "
            f"components of one name cannot be installed together", key="NAME",
            hint="choose another name")
    folder = output or Path(names.distribution)
    if folder.exists() and (not folder.is_dir() or any(folder.iterdir())):
        raise ConfigError(f"{folder} already exists and is not an empty folder", key="--output",
                          hint="choose another folder with -o")
    for target, template in _files(names).items():
        path = folder / target
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(_fill(template, names), encoding="utf-8")
        except OSError as exc:
            raise ConfigError(f"cannot write {path} ({exc.strerror or exc})", key="--output",
                              hint="choose a writable folder with -o") from None
    return folder


def _files(names: PluginNames) -> dict[str, str]:
    """Path in the new package -> template it is filled from."""
    return {
        "pyproject.toml": "pyproject.toml.tmpl",
        "README.md": "README.md.tmpl",
        f"{names.package}/__init__.py": f"{names.family}.py.tmpl",
        f"tests/test_{names.plugin}.py": "test_contracts.py.tmpl",
    }


def _fill(template: str, names: PluginNames) -> str:
    text = files("ablate").joinpath("templates", template).read_text(encoding="utf-8")
    return Template(text).substitute(
        name=names.name, family=names.family, plugin=names.plugin, package=names.package,
        distribution=names.distribution, class_name=names.class_name,
        ablate_version=_release(ablate.__version__),
        usage="```toml\n" + USAGE[names.family].format(name=names.name) + "\n```")


def _release(version: str) -> str:
    """The release part of a version (``0.1.0.dev3+g1234`` -> ``0.1.0``) for a lower bound."""
    match = re.match(r"\d+(?:\.\d+)*", version)
    return match.group(0) if match else "0"
