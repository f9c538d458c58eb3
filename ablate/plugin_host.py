"""Discovers plugins through entry points and collects the components they register.

Built-in plugins go through exactly the same path as third-party ones: the ``ablate`` entry-point
group. Environment variables:

- ``ABLATE_LOAD_PLUGINS``: comma-separated plugin names; only these load (built-ins included).
- ``ABLATE_BLOCK_PLUGINS``: comma-separated plugin names that never load. Use these two to run
  with untrusted plugins installed.
- ``ABLATE_TRACE_PLUGINS``: when set to a non-empty value, every hook call is printed to stderr.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable
from dataclasses import dataclass, field
from importlib.metadata import EntryPoint, entry_points

import pluggy

from ablate import hookspecs
from ablate.errors import PluginError
from ablate.registry import FAMILIES, Provenance, Registry

ENTRY_POINT_GROUP = "ablate"
LOAD_ENV = "ABLATE_LOAD_PLUGINS"
BLOCK_ENV = "ABLATE_BLOCK_PLUGINS"
TRACE_ENV = "ABLATE_TRACE_PLUGINS"
BUILTIN_DISTRIBUTION = "ablate"


@dataclass(frozen=True)
class BrokenPlugin:
    """A plugin that failed to import or raised while registering; the others still work."""

    name: str
    distribution: str
    error: str


@dataclass
class PluginHost:
    """The plugin manager, the registered components, and the plugins that broke."""

    manager: pluggy.PluginManager
    registry: Registry = field(default_factory=Registry)
    plugins: dict[str, Provenance] = field(default_factory=dict)
    broken: list[BrokenPlugin] = field(default_factory=list)

    @property
    def hook(self) -> pluggy.HookRelay:
        return self.manager.hook


def load_host(extra_plugins: Iterable[tuple[str, object]] = (), *,
              use_entry_points: bool = True) -> PluginHost:
    """Load every allowed plugin and collect its components.

    ``extra_plugins`` are (name, plugin object) pairs registered after the entry points; tests
    use it for throwaway plugins.
    """
    manager = pluggy.PluginManager("ablate")
    manager.add_hookspecs(hookspecs)
    if os.environ.get(TRACE_ENV):
        manager.trace.root.setwriter(sys.stderr.write)
        manager.enable_tracing()
    host = PluginHost(manager)
    candidates: list[tuple[str, object, Provenance]] = []
    if use_entry_points:
        candidates += _load_entry_points(host)
    candidates += [(name, plugin, Provenance(name, "(registered in-process)", ""))
                   for name, plugin in extra_plugins]
    for name, plugin, provenance in candidates:
        _register_plugin(host, name, plugin, provenance)
    _check_unknown_hooks(host)
    for name, provenance in list(host.plugins.items()):
        _collect_components(host, name, provenance)
    return host


def _allowed(name: str) -> bool:
    only = _names(os.environ.get(LOAD_ENV))
    blocked = _names(os.environ.get(BLOCK_ENV))
    return (only is None or name in only) and name not in (blocked or set())


def _names(value: str | None) -> set[str] | None:
    if value is None:
        return None
    return {part.strip() for part in value.split(",") if part.strip()}


def _load_entry_points(host: PluginHost) -> list[tuple[str, object, Provenance]]:
    loaded = []
    for ep in sorted(entry_points(group=ENTRY_POINT_GROUP), key=lambda e: e.name):
        if not _allowed(ep.name):
            continue
        provenance = _provenance(ep)
        try:
            plugin = ep.load()
        except Exception as exc:  # a broken third-party import must not take the host down
            host.broken.append(BrokenPlugin(ep.name, provenance.distribution,
                                            f"import failed: {type(exc).__name__}: {exc}"))
            continue
        loaded.append((ep.name, plugin, provenance))
    return loaded


def _provenance(ep: EntryPoint) -> Provenance:
    dist = ep.dist
    if dist is None:
        return Provenance(ep.name, "unknown", "")
    return Provenance(ep.name, dist.name, dist.version)


def _register_plugin(host: PluginHost, name: str, plugin: object, provenance: Provenance) -> None:
    if name in host.plugins:
        known = host.plugins[name]
        raise PluginError(f"two plugins are named {name!r}: from {known.distribution} and from "
                          f"{provenance.distribution}; block one with {BLOCK_ENV}")
    try:
        host.manager.register(plugin, name=name)
    except pluggy.PluginValidationError as exc:
        raise PluginError(f"plugin {name!r} ({provenance.distribution}) has an invalid hook "
                          f"implementation: {exc}") from None
    host.plugins[name] = provenance


def _check_unknown_hooks(host: PluginHost) -> None:
    try:
        host.manager.check_pending()
    except pluggy.PluginValidationError as exc:
        raise PluginError(f"{exc}; ablate's hooks are: {', '.join(_hook_names())}") from None


def _hook_names() -> list[str]:
    return sorted(name for name, value in vars(hookspecs).items()
                  if hasattr(value, "ablate_spec"))


def _collect_components(host: PluginHost, name: str, provenance: Provenance) -> None:
    others = [p for other, p in host.manager.list_name_plugin() if other != name]
    for family in FAMILIES.values():
        caller = host.manager.subset_hook_caller(family.hook, remove_plugins=others)
        if not caller.get_hookimpls():
            continue

        def register(component: type, family=family) -> None:
            host.registry.add(family, component, provenance)

        try:
            caller(register=register)
        except PluginError:
            raise
        except Exception as exc:  # a plugin that raises while registering is reported, not fatal
            host.broken.append(BrokenPlugin(name, provenance.distribution,
                                            f"{family.hook} raised {type(exc).__name__}: {exc}"))
            host.registry.remove_plugin(name)
            host.manager.unregister(name=name)
            del host.plugins[name]
            return


_default: PluginHost | None = None


def default_host() -> PluginHost:
    """The process-wide host, loaded on first use."""
    global _default
    if _default is None:
        _default = load_host()
    return _default
