"""The plugin host: discovery, registration, and the errors plugin authors rely on."""

from __future__ import annotations

from dataclasses import dataclass
from dataclasses import field as dataclass_field

import pytest
from ablate_builtins.linear import Linear

import ablate
from ablate.components import param
from ablate.plugin_host import load_host
from ablate.schedules import NoiseSchedule


@dataclass(frozen=True)
class Constant(NoiseSchedule):
    """Test schedule: the same beta at every step."""

    name = "test-constant"
    beta: float = param(0.01, "beta at every step", gt=0, lt=1)

    def raw_betas(self, T):
        import torch

        return torch.full((T,), self.beta, dtype=torch.float64)


class ThrowawayPlugin:
    @ablate.hookimpl
    def register_schedules(self, register):
        register(Constant)


def test_builtins_are_registered_through_entry_points():
    host = load_host()
    for family, name in [("dataset", "mnist"), ("schedule", "linear"), ("decoder", "cnn"),
                         ("degradation", "gaussian"), ("ema", "ema"), ("ema", "none")]:
        assert host.registry.get(family, name) is not None, (family, name)
    assert host.plugins["linear"].distribution == "ablate"


def test_throwaway_plugin_registers_its_component():
    host = load_host([("throwaway", ThrowawayPlugin())])
    assert host.registry.get("schedule", "test-constant") is Constant
    assert host.registry.entries["schedule"]["test-constant"].provenance.plugin == "throwaway"


def broken(host, name: str) -> str:
    """The reason plugin ``name`` is broken; the host's other plugins stay registered."""
    errors = {b.name: b.error for b in host.broken}
    assert name in errors, host.broken
    assert name not in host.plugins
    return errors[name]


def test_duplicate_component_name_breaks_the_newcomer_not_the_builtin():
    class Duplicate:
        @ablate.hookimpl
        def register_schedules(self, register):
            register(Constant)
            register(Linear)

    host = load_host([("dup", Duplicate())])
    assert "'linear' is registered twice: already by plugin 'linear'" in broken(host, "dup")
    assert host.registry.get("schedule", "linear") is Linear
    assert host.registry.get("schedule", "test-constant") is None  # all or nothing


def test_unknown_hook_breaks_only_its_plugin_and_suggests_the_hook():
    class Misspelt:
        @ablate.hookimpl
        def register_schedule(self, register):  # missing the final "s"
            pass

    host = load_host([("misspelt", Misspelt()), ("throwaway", ThrowawayPlugin())],
                     use_entry_points=False)
    assert "did you mean 'register_schedules'?" in broken(host, "misspelt")
    assert host.registry.get("schedule", "test-constant") is Constant


def test_registering_a_non_component_breaks_the_plugin():
    class Wrong:
        @ablate.hookimpl
        def register_decoders(self, register):
            register(Constant)

    host = load_host([("wrong", Wrong())], use_entry_points=False)
    assert "not a subclass of ablate.decoders.Decoder" in broken(host, "wrong")


def registering(*components):
    class Plugin:
        @ablate.hookimpl
        def register_schedules(self, register):
            for component in components:
                register(component)

    return load_host([("author", Plugin())], use_entry_points=False)


def test_registering_an_instance_says_to_register_the_class():
    assert "register the class itself: register(Constant)" in broken(
        registering(Constant()), "author")


def test_a_component_without_a_name_breaks_its_plugin():
    @dataclass(frozen=True)
    class Nameless(NoiseSchedule):
        """No name."""

    assert "Nameless has no 'name'" in broken(registering(Nameless), "author")


def test_a_component_that_is_not_a_frozen_dataclass_breaks_its_plugin():
    class Undecorated(NoiseSchedule):  # its beta would silently not be a parameter
        """Undecorated."""

        name = "undecorated"
        beta: float = param(0.01, "beta")

    assert "must be a @dataclass(frozen=True)" in broken(registering(Undecorated), "author")


def schedule_declaring(annotation: type, default) -> type:
    """A schedule class with one parameter ``beta`` declared as given."""
    bad = type("Bad", (NoiseSchedule,), {"__doc__": "Bad.", "name": "bad", "beta": default,
                                          "__annotations__": {"beta": annotation}})
    return dataclass(frozen=True)(bad)


@pytest.mark.parametrize(("annotation", "default", "reason"), [
    (float, 0.01, "parameter 'beta' has no help"),
    (float, param(0.0, "beta", gt=0), "its default 0.0 is out of range (must be > 0)"),
    (int, param(0.5, "beta"), "its default 0.5 is not a valid int"),
    (float, dataclass_field(kw_only=True, metadata={"help": "beta"}),
     "parameter 'beta' has no default"),
], ids=["no_help", "default_outside_bounds", "default_of_another_type", "no_default"])
def test_parameter_declarations_are_checked_at_registration(annotation, default, reason):
    assert reason in broken(registering(schedule_declaring(annotation, default)), "author")


def test_plugin_raising_while_registering_is_reported_and_others_still_work():
    class Raising:
        @ablate.hookimpl
        def register_schedules(self, register):
            raise RuntimeError("boom")

    host = load_host([("raising", Raising())])
    assert [(b.name, "boom" in b.error) for b in host.broken] == [("raising", True)]
    assert host.registry.get("schedule", "linear") is Linear
    assert "raising" not in host.plugins


def test_load_plugins_variable_restricts_which_plugins_load(monkeypatch):
    monkeypatch.setenv("ABLATE_LOAD_PLUGINS", "linear,mnist")
    host = load_host()
    assert host.registry.names("schedule") == ["linear"]
    assert host.registry.names("decoder") == []


def test_block_plugins_variable_keeps_a_plugin_out(monkeypatch):
    monkeypatch.setenv("ABLATE_BLOCK_PLUGINS", "cnn")
    host = load_host()
    assert host.registry.get("decoder", "cnn") is None
    assert "cnn" not in host.plugins


def test_trace_variable_prints_every_hook_call(monkeypatch, capsys):
    monkeypatch.setenv("ABLATE_TRACE_PLUGINS", "1")
    load_host([("throwaway", ThrowawayPlugin())], use_entry_points=False)
    assert "register_schedules" in capsys.readouterr().err
