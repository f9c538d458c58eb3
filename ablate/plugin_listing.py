"""What ``ablate list-plugins`` shows, as data (for --json) and as rich tables."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from ablate.components import param_infos
from ablate.plugin_host import BUILTIN_DISTRIBUTION, PluginHost
from ablate.registry import FAMILIES


def describe(host: PluginHost, family: str | None = None) -> dict[str, Any]:
    """Components per family with provenance and parameters, plus broken plugins."""
    families: dict[str, list[dict[str, Any]]] = {}
    for name in FAMILIES:
        if family is not None and name != family:
            continue
        families[name] = [
            {
                "name": entry.component.name,
                "summary": entry.component.summary(),
                "plugin": entry.provenance.plugin,
                "source": _source(entry.provenance.distribution, entry.provenance.version),
                "parameters": [
                    {"name": p.name, "type": p.type_name, "default": p.default, "help": p.help}
                    for p in param_infos(entry.component)
                ],
            }
            for entry in host.registry.entries[name].values()
        ]
        families[name].sort(key=lambda c: c["name"])
    broken = [{"plugin": b.name, "source": b.distribution, "error": b.error}
              for b in host.broken]
    return {"families": families, "trackers": [] if family else _trackers(host),
            "broken": broken}


def _trackers(host: PluginHost) -> list[dict[str, Any]]:
    """Experiment trackers (not a [run] family: switched on by trackers = [...] or --tracker)."""
    from ablate.tracking import tracker_plugins

    listed = []
    for name, (cls, plugin) in tracker_plugins(host).items():
        known = host.plugins.get(plugin)
        listed.append({
            "name": name, "summary": cls.summary(), "plugin": plugin,
            "source": _source(known.distribution, known.version) if known else "",
            "parameters": [{"name": p.name, "type": p.type_name, "default": p.default,
                            "help": p.help} for p in param_infos(cls)]})
    return listed


def render(listing: dict[str, Any], console: Console) -> None:
    sections = {f"{family} plugins": components
                for family, components in listing["families"].items()}
    if listing.get("trackers"):
        sections["experiment trackers (trackers = [...] or --tracker)"] = listing["trackers"]
    for title, components in sections.items():
        table = Table(title=title, title_justify="left", show_lines=True)
        table.add_column("component", style="bold cyan", no_wrap=True)
        table.add_column("plugin (source)")
        table.add_column("parameters")
        table.add_column("summary")
        for c in components:
            params = "\n".join(f"{p['name']}: {p['type']} = {p['default']!r}"
                               for p in c["parameters"]) or "-"
            table.add_row(c["name"], escape(f"{c['plugin']}\n({c['source']})"), escape(params),
                          escape(c["summary"]))
        console.print(table)
    if listing["broken"]:
        table = Table(title="broken plugins (not loaded)", title_justify="left",
                      title_style="bold red")
        table.add_column("plugin", style="red")
        table.add_column("source")
        table.add_column("error")
        for b in listing["broken"]:
            table.add_row(escape(b["plugin"]), escape(b["source"]), escape(b["error"]))
        console.print(table)


def _source(distribution: str, version: str) -> str:
    if distribution == BUILTIN_DISTRIBUTION:
        return f"built-in {version}"
    return f"{distribution} {version}".strip()
