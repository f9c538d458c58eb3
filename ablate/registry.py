"""The components that plugins registered, per family, with where each one came from."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from dataclasses import dataclass, field

from ablate.components import Component
from ablate.datasets import Dataset
from ablate.decoders import Decoder
from ablate.degradations import Degradation
from ablate.ema import EmaStrategy
from ablate.errors import PluginError
from ablate.metrics import Metric
from ablate.schedules import NoiseSchedule


@dataclass(frozen=True)
class Family:
    """A kind of component: its base class and the hook that registers it."""

    name: str
    base: type[Component]
    hook: str


FAMILIES: dict[str, Family] = {
    f.name: f
    for f in (
        Family("dataset", Dataset, "register_datasets"),
        Family("schedule", NoiseSchedule, "register_schedules"),
        Family("decoder", Decoder, "register_decoders"),
        Family("degradation", Degradation, "register_degradations"),
        Family("ema", EmaStrategy, "register_ema_strategies"),
        Family("metric", Metric, "register_metrics"),
    )
}


@dataclass(frozen=True)
class Provenance:
    """Which plugin provided a component, and from which distribution."""

    plugin: str
    distribution: str
    version: str


@dataclass(frozen=True)
class Entry:
    component: type[Component]
    provenance: Provenance


@dataclass
class Registry:
    """Component classes by family and name."""

    entries: dict[str, dict[str, Entry]] = field(
        default_factory=lambda: {name: {} for name in FAMILIES})

    def add(self, family: Family, component: type[Component], provenance: Provenance) -> None:
        _check_component(family, component, provenance)
        known = self.entries[family.name].get(component.name)
        if known is not None:
            raise PluginError(
                f"{family.name} {component.name!r} is registered twice: by plugin "
                f"{known.provenance.plugin!r} ({known.provenance.distribution}) and by plugin "
                f"{provenance.plugin!r} ({provenance.distribution}); block one with "
                f"ABLATE_BLOCK_PLUGINS")
        self.entries[family.name][component.name] = Entry(component, provenance)

    def remove_plugin(self, plugin: str) -> None:
        """Forget every component a plugin registered (used when it breaks half-way)."""
        for entries in self.entries.values():
            for name in [n for n, e in entries.items() if e.provenance.plugin == plugin]:
                del entries[name]

    def get(self, family: str, name: str) -> type[Component] | None:
        entry = self.entries[family].get(name)
        return entry.component if entry else None

    def names(self, family: str) -> list[str]:
        return sorted(self.entries[family])

    def __iter__(self) -> Iterator[tuple[str, Entry]]:
        for family, entries in self.entries.items():
            for name in sorted(entries):
                yield family, entries[name]


def _check_component(family: Family, component: object, provenance: Provenance) -> None:
    where = f"plugin {provenance.plugin!r} ({provenance.distribution})"
    if not (isinstance(component, type) and issubclass(component, family.base)):
        raise PluginError(f"{where} registered {component!r} as a {family.name}, but it is not a "
                          f"subclass of {family.base.__module__}.{family.base.__qualname__}")
    if not dataclasses.is_dataclass(component):
        raise PluginError(f"{where}: {component.__qualname__} must be a @dataclass(frozen=True)")
    name = getattr(component, "name", None)
    if not isinstance(name, str) or not name:
        raise PluginError(f"{where}: {component.__qualname__} has no 'name'")
    if not component.summary():
        raise PluginError(f"{where}: {family.name} {name!r} has no docstring to summarise it")
