"""The plugin host: discovery, registration, and the errors plugin authors rely on."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from ablate_builtins.linear import Linear

import ablate
from ablate.errors import PluginError
from ablate.plugin_host import load_host
from ablate.schedules import NoiseSchedule


@dataclass(frozen=True)
class Constant(NoiseSchedule):
    """Test schedule: the same beta at every step."""

    name = "test-constant"
    beta: float = 0.01

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


def test_duplicate_component_name_names_both_plugins():
    class Duplicate:
        @ablate.hookimpl
        def register_schedules(self, register):
            register(Linear)

    with pytest.raises(PluginError, match=r"'linear' is registered twice.*'linear'.*'dup'"):
        load_host([("dup", Duplicate())])


def test_unknown_hook_is_an_error():
    class Misspelt:
        @ablate.hookimpl
        def register_schedule(self, register):  # missing the final "s"
            pass

    with pytest.raises(PluginError, match="register_schedule"):
        load_host([("misspelt", Misspelt())], use_entry_points=False)


def test_registering_a_non_component_is_an_error():
    class Wrong:
        @ablate.hookimpl
        def register_decoders(self, register):
            register(Constant)

    with pytest.raises(PluginError, match="not a subclass of ablate.decoders.Decoder"):
        load_host([("wrong", Wrong())], use_entry_points=False)


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
