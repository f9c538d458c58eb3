"""The components that plugins registered, per family, with where each one came from."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from dataclasses import dataclass, field

from ablate.components import Component, coerce, param_infos
from ablate.datasets import Dataset
from ablate.decoders import Decoder
from ablate.degradations import Degradation
from ablate.ema import EmaStrategy
from ablate.errors import ConfigError, PluginError
from ablate.lr_schedules import LrSchedule
from ablate.metrics import Metric
from ablate.optimizers import Optimizer
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
        Family("optimizer", Optimizer, "register_optimizers"),
        Family("lr_schedule", LrSchedule, "register_lr_schedules"),
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
    """A registered component class and the plugin it came from."""

    component: type[Component]
    provenance: Provenance


@dataclass
class Registry:
    """Component classes by family and name."""

    entries: dict[str, dict[str, Entry]] = field(
        default_factory=lambda: {name: {} for name in FAMILIES})

    def add(self, family: Family, component: type[Component], provenance: Provenance) -> None:
        """Store a component the host has checked (``check_component``, ``clash``) already."""
        self.entries[family.name][component.name] = Entry(component, provenance)

    def clash(self, family: Family, component: type[Component]) -> str | None:
        """Why ``component`` cannot join the family: its name is taken; None when free."""
        known = self.entries[family.name].get(component.name)
        if known is None:
            return None
        return (f"{family.name} {component.name!r} is registered twice: already by plugin "
                f"{known.provenance.plugin!r} ({known.provenance.distribution}); rename it, or "
                f"block one with ABLATE_BLOCK_PLUGINS")

    def get(self, family: str, name: str) -> type[Component] | None:
        entry = self.entries[family].get(name)
        return entry.component if entry else None

    def names(self, family: str) -> list[str]:
        return sorted(self.entries[family])

    def __iter__(self) -> Iterator[tuple[str, Entry]]:
        for family, entries in self.entries.items():
            for name in sorted(entries):
                yield family, entries[name]


def check_component(family: Family, component: object) -> None:
    """Raise PluginError (the reason, one line) unless ``component`` is a usable class of the
    family: a frozen dataclass subclass with a name, a docstring, and parameters that each have
    a default inside their own bounds and one line of help."""
    base = f"{family.base.__module__}.{family.base.__qualname__}"
    if isinstance(component, family.base):
        cls = type(component).__qualname__
        raise PluginError(f"registered an instance of {cls} as a {family.name}; register the "
                          f"class itself: register({cls})")
    if not (isinstance(component, type) and issubclass(component, family.base)):
        raise PluginError(f"registered {component!r} as a {family.name}, but it is not a "
                          f"subclass of {base}")
    # Its own decorator, not only the base's: an undecorated subclass inherits the dataclass
    # machinery, but its annotated parameters would silently not be fields.
    if "__dataclass_fields__" not in vars(component) or \
            not component.__dataclass_params__.frozen:  # type: ignore[attr-defined]
        raise PluginError(f"{component.__qualname__} must be a @dataclass(frozen=True): "
                          f"components are values, compared and stored by their parameters")
    name = getattr(component, "name", None)
    if not isinstance(name, str) or not name:
        raise PluginError(f"{component.__qualname__} has no 'name' (set name = \"...\" on the "
                          f"class: run files choose it by that name)")
    if not component.summary():
        raise PluginError(f"{family.name} {name!r} has no docstring to summarise it")
    for f in dataclasses.fields(component):
        _check_parameter(family, name, component, f)


def _check_parameter(family: Family, name: str, component: type[Component],
                     f: dataclasses.Field) -> None:
    what = f"{family.name} {name!r}: parameter {f.name!r}"
    if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
        raise PluginError(f"{what} has no default (every parameter needs one, so a run file "
                          f"may leave it out)")
    if not f.metadata.get("help"):
        raise PluginError(f"{what} has no help (declare it with ablate.components.param("
                          f"default, help))")
    info = next(i for i in param_infos(component) if i.name == f.name)
    if f.default is not dataclasses.MISSING:
        try:
            coerce(info, info.default, source=None, key=f.name)
        except ConfigError as exc:
            raise PluginError(f"{what}: its default {exc.message}"
                              + (f" ({exc.hint})" if exc.hint else "")) from None
