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
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from importlib.metadata import EntryPoint, entry_points

import pluggy

from ablate import hookspecs
from ablate.components import suggest
from ablate.errors import ConfigError, PluginError
from ablate.registry import FAMILIES, Family, Provenance, Registry, check_component

ENTRY_POINT_GROUP = "ablate"
LOAD_ENV = "ABLATE_LOAD_PLUGINS"
BLOCK_ENV = "ABLATE_BLOCK_PLUGINS"
TRACE_ENV = "ABLATE_TRACE_PLUGINS"
BUILTIN_DISTRIBUTION = "ablate"


@dataclass(frozen=True)
class BrokenPlugin:
    """A plugin that failed to import, raised while registering or broke a registration rule
    (a clashing name, a misspelt hook, a component without a name, an instance instead of a
    class, a parameter without default or help); it is left out and the others still work."""

    name: str
    distribution: str
    error: str
    provides: tuple[tuple[str, str], ...] = ()  # (family, name) it tried to register

    def line(self) -> str:
        return f"plugin {self.name!r} ({self.distribution}) is broken and was not loaded: " \
               f"{self.error}"


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
    # Built-ins first, so a third-party component reusing a built-in name is the one left out.
    candidates.sort(key=lambda c: c[2].distribution != BUILTIN_DISTRIBUTION)
    for name, plugin, provenance in candidates:
        _register_plugin(host, name, plugin, provenance)
    _drop_unknown_hooks(host)
    for name, provenance in list(host.plugins.items()):
        _collect_components(host, name, provenance)
    return host


def broken_provider(host: PluginHost, family: str, name: str) -> BrokenPlugin | None:
    """The broken plugin that tried to register ``name`` in ``family``, if one did."""
    return next((b for b in host.broken if (family, name) in b.provides), None)


def broken_hint(host: PluginHost, family: str, name: str) -> str:
    """What to add to "unknown FAMILY 'NAME'": the broken plugin that would have provided it,
    or every broken plugin (one that failed to import may have been the provider)."""
    provider = broken_provider(host, family, name)
    if provider is not None:
        return f"; it comes from plugin {provider.name!r}, which is broken: {provider.error}"
    if host.broken:
        names = ", ".join(f"{b.name!r} ({b.error})" for b in host.broken)
        return f"; broken plugins that may provide it: {names}"
    return ""


def unknown_component(host: PluginHost, family: str, name: object, *, source: str | None,
                      key: str | None) -> ConfigError:
    """The error for a name that no loaded plugin registers in ``family``: the closest name,
    every installed one, and the broken plugin that would have provided it."""
    known = host.registry.names(family)
    hint = suggest(str(name), known)
    valid = f"installed {family} plugins: {', '.join(known) or 'none'}"
    return ConfigError(f"unknown {family} {name!r}", source=source, key=key,
                       hint=(f"{hint} {valid}" if hint else valid)
                       + broken_hint(host, family, str(name)))


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
        _mark_broken(host, name, provenance, f"another plugin is named {name!r} (from "
                     f"{known.distribution}); rename one, or block one with {BLOCK_ENV}",
                     registered=False)
        return
    try:
        host.manager.register(plugin, name=name)
    except pluggy.PluginValidationError as exc:
        _mark_broken(host, name, provenance, f"invalid hook implementation: {exc}",
                     registered=False)
        return
    host.plugins[name] = provenance


def _drop_unknown_hooks(host: PluginHost) -> None:
    """A hook implementation without a spec (a misspelt hook name) breaks only its plugin, as
    pluggy's ``check_pending`` would find it, but without stopping every other plugin."""
    known = _hook_names()
    for hook_name in list(vars(host.manager.hook)):
        if hook_name.startswith("_"):
            continue
        caller = getattr(host.manager.hook, hook_name)
        if caller.has_spec():
            continue
        for impl in caller.get_hookimpls():
            if impl.optionalhook or impl.plugin_name not in host.plugins:
                continue
            hint = suggest(hook_name, known)
            _mark_broken(host, impl.plugin_name, host.plugins[impl.plugin_name],
                         f"implements {hook_name!r}, which is not an ablate hook ("
                         + (f"{hint} " if hint else "") + f"ablate's hooks are: "
                         f"{', '.join(known)})")


def _hook_names() -> list[str]:
    return sorted(name for name, value in vars(hookspecs).items()
                  if hasattr(value, "ablate_spec"))


def _collect_components(host: PluginHost, name: str, provenance: Provenance) -> None:
    """Collect a plugin's components all or nothing: one that breaks a rule, clashes with an
    earlier name or raises leaves the whole plugin out, reported as broken."""
    others = [p for other, p in host.manager.list_name_plugin() if other != name]
    staged: list[tuple[Family, object]] = []
    for family in FAMILIES.values():
        caller = host.manager.subset_hook_caller(family.hook, remove_plugins=others)
        if not caller.get_hookimpls():
            continue

        def register(component: object, family: Family = family) -> None:
            staged.append((family, component))

        try:
            caller(register=register)
        except Exception as exc:  # a plugin that raises while registering is reported, not fatal
            _mark_broken(host, name, provenance,
                         f"{family.hook} raised {type(exc).__name__}: {exc}", staged)
            return
    seen: dict[tuple[str, str], str] = {}
    for family, component in staged:
        try:
            check_component(family, component)
        except PluginError as exc:
            _mark_broken(host, name, provenance, str(exc), staged)
            return
        clash = host.registry.clash(family, component)
        if clash is None and (family.name, component.name) in seen:
            clash = f"{family.name} {component.name!r} is registered twice by this plugin"
        if clash is not None:
            _mark_broken(host, name, provenance, clash, staged)
            return
        seen[(family.name, component.name)] = component.__qualname__
    for family, component in staged:
        host.registry.add(family, component, provenance)


def _mark_broken(host: PluginHost, name: str, provenance: Provenance, reason: str,
                 staged: Sequence[tuple[Family, object]] = (), *,
                 registered: bool = True) -> None:
    provides = tuple((family.name, n) for family, component in staged
                     if isinstance(n := getattr(component, "name", None), str))
    host.broken.append(BrokenPlugin(name, provenance.distribution, reason, provides))
    if registered and name in host.plugins:  # its components were never added: all or none
        host.manager.unregister(name=name)
        del host.plugins[name]


_default: PluginHost | None = None


def default_host(*, report_broken: bool = True) -> PluginHost:
    """The process-wide host, loaded on first use; each broken plugin is reported once, on
    stderr, by whichever command loads it first (``report_broken=False``: a command that
    shows them itself, such as ``ablate list-plugins``)."""
    global _default
    if _default is None:
        _default = load_host()
        for broken in _default.broken if report_broken else ():
            sys.stderr.write(f"warning: {broken.line()}\n")
    return _default
