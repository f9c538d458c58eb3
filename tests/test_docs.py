"""docs/plugins.md cannot drift from the code: every hook, every family, every example."""

from __future__ import annotations

import inspect
import re
import sys
import types
from pathlib import Path

import pytest

from ablate import hookspecs
from ablate.plugin_host import load_host
from ablate.registry import FAMILIES
from ablate.testing import check_component
from ablate.training import Trainer
from tests.conftest import tiny_config

PLUGINS_DOC = Path(__file__).parent.parent / "docs" / "plugins.md"
HEADING = re.compile(r"^### `(\w+)\((.*)\)`$", re.MULTILINE)
EXAMPLE = re.compile(r"```python\n(.*?)```", re.DOTALL)
OBSERVERS = ("run_start", "epoch_end", "run_end")


def hook_specs() -> dict[str, str]:
    """Each hook's name and its documented heading, from the hook specifications."""
    return {name: f"{name}({', '.join(inspect.signature(spec).parameters)})"
            for name, spec in vars(hookspecs).items() if hasattr(spec, "ablate_spec")}


def sections() -> dict[str, str]:
    """Each '### `hook(args)`' heading of the docs, with the text up to the next heading."""
    text = PLUGINS_DOC.read_text(encoding="utf-8")
    headings = list(HEADING.finditer(text))
    ends = [m.start() for m in headings[1:]] + [len(text)]
    return {f"{m.group(1)}({m.group(2)})": text[m.end():end]
            for m, end in zip(headings, ends, strict=True)}


def example_of(hook: str, monkeypatch: pytest.MonkeyPatch) -> types.ModuleType:
    """The section's Python example, run as a module of its own (registered for the test)."""
    heading = hook_specs()[hook]
    code = EXAMPLE.findall(sections()[heading])
    assert len(code) == 1, f"the section of {heading} must have exactly one python example"
    module = types.ModuleType(f"doc_example_{hook}")
    monkeypatch.setitem(sys.modules, module.__name__, module)  # dataclasses resolve through it
    exec(compile(code[0], f"{PLUGINS_DOC}:{hook}", "exec"), module.__dict__)
    return module


@pytest.mark.parametrize("hook", sorted(hook_specs()))
def test_every_hook_has_a_section_headed_by_its_signature(hook):
    heading = hook_specs()[hook]
    documented = {h.split("(")[0]: h for h in sections()}
    assert hook in documented, f"docs/plugins.md has no section '### `{heading}`'"
    assert documented[hook] == heading, f"the docs say {documented[hook]}, the hook is {heading}"


def test_no_section_documents_a_hook_that_does_not_exist():
    assert set(sections()) <= set(hook_specs().values())


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_every_family_is_documented_under_its_hook(family):
    spec = FAMILIES[family]
    text = sections()[hook_specs()[spec.hook]]
    base = f"`{spec.base.__module__}.{spec.base.__qualname__}`"
    assert f"**Family** `{family}`, base class {base}" in text


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_component_example_keeps_its_family_contract(family, monkeypatch):
    module = example_of(FAMILIES[family].hook, monkeypatch)
    host = load_host([(module.__name__, module)])
    registered = [e.component.name for e in host.registry.entries[family].values()
                  if e.provenance.plugin == module.__name__]
    assert len(registered) == 1
    check_component(family, registered[0], host=host)


def test_observer_examples_run_during_a_training_run(tmp_path, capsys, monkeypatch):
    examples = [example_of(hook, monkeypatch) for hook in OBSERVERS]
    host = load_host([(module.__name__, module) for module in examples])
    called: list[str] = []
    host.manager.add_hookcall_monitoring(
        lambda hook, impls, kwargs: called.extend(
            hook for impl in impls if impl.plugin_name.startswith("doc_example_")),
        lambda *args: None)
    Trainer(tiny_config(steps=4), tmp_path / "run", host=host).run()  # one epoch
    assert called == ["run_start", "epoch_end", "run_end"]
    printed = capsys.readouterr().out
    assert f"into {tmp_path / 'run'}" in printed and f"{tmp_path / 'run'}: completed" in printed
    assert '"epoch": 1' in (tmp_path / "run" / "losses.jsonl").read_text(encoding="utf-8")
