"""docs/reference.md: every run-file and study-file key, written from the component declarations.

The same declarations build the JSON Schemas (ablate.schema) and validate files, so the
reference cannot drift from them; ``tests/test_schema.py`` fails when the committed page differs
from ``ablate schema --markdown``. Only built-in plugins are listed, so the page is the same on
every machine (``ablate list-plugins`` shows what is installed).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

from ablate.components import Component, ParamInfo, param_infos
from ablate.config import DEFAULT_COMPONENTS, setting_infos
from ablate.eval_config import EvalConfig
from ablate.plugin_host import PluginHost
from ablate.schema import STUDY_TABLE, families
from ablate.study_config import PRUNERS, SAMPLERS
from ablate.tracking import installed_trackers

BUILTIN_MODULES = ("ablate.", "ablate_builtins.")
SYMBOLS = {"ge": ">=", "gt": ">", "le": "<=", "lt": "<"}


def builtin(cls: type) -> bool:
    """Whether a class ships with ablate (a built-in plugin or the core)."""
    return cls.__module__.startswith(BUILTIN_MODULES)


def render(host: PluginHost) -> str:
    """The whole reference page as Markdown."""
    out = [
        "# Reference: run files and study files",
        "",
        "Every key of a run file and of a study file, with its type, default, bounds and help,",
        "generated from the component declarations by `ablate schema --markdown >",
        "docs/reference.md` (built-in plugins only; `ablate list-plugins` shows what is",
        "installed). Editors with a TOML language server (taplo, Even Better TOML) complete and",
        "check files against `ablate schema run` / `ablate schema study` (see the README).",
        "",
        "## Run files",
        "",
        "A run file has a `[run]` table and an optional `[eval]` table.",
        "",
        "### `[run]` settings",
        "",
        *_param_table(setting_infos()),
        "",
        "`trackers`: experiment trackers to log to, names or tables with settings (see",
        "[Trackers](#trackers)). Not part of the stored configuration.",
        "",
        "### `[run]` components",
        "",
        "Each family is a key of `[run]`: a plugin name (`decoder = \"unet\"`) or a table with",
        "`name` and that plugin's parameters (`[run.decoder]`). Default plugin in brackets.",
        "",
    ]
    for family, classes in families(host, builtin).items():
        out += [f"#### `{family}` [{DEFAULT_COMPONENTS[family]}]", ""]
        for name, cls in classes.items():
            out += _component(name, cls)
    out += ["### `[eval]`", "", *_param_table(param_infos(EvalConfig)), "",
            "<a id=\"trackers\"></a>", "", "### Trackers", ""]
    for name, cls in installed_trackers(host).items():
        if builtin(cls):
            out += _component(name, cls)
    out += [
        "## Study files",
        "",
        "A study file has `[study]`, `[run]` (the base configuration, as in a run file but",
        "without `seed`, which trials get from `[study]`, and without `trackers`, which go in",
        "`[study]`), an optional `[eval]` and a `[search]` table.",
        "",
        "### `[study]`",
        "",
        "| key | type | default | help |",
        "|---|---|---|---|",
    ]
    for name, key in STUDY_TABLE.items():
        out.append(f"| `{name}` | {_json_type(key.schema)} | {_value(key.default)} | "
                   f"{_cell(key.help)} |")
    out += ["", "#### `sampler`", ""]
    for name, cls in SAMPLERS.items():
        out += _options(name, cls)
    out += ["#### `pruner`", ""]
    for name, cls in PRUNERS.items():
        out += _options(name, cls)
    out += [
        "### `[search]`",
        "",
        "Keys are dotted `[run]` keys, quoted: `\"run.lr\"`, `\"run.decoder.name\"` (which",
        "plugin), `\"run.decoder.channels\"` (that parameter of whichever searched plugin",
        "declares it), `\"run.decoder.unet.base_width\"` (of `unet` only). Values:",
        "",
        "| form | meaning |",
        "|---|---|",
        "| `{low = .., high = .., log = true, step = ..}` | a range, int or float as the "
        "parameter is declared (`log` and `step` optional) |",
        "| `[a, b, c]` or `{values = [a, b, c]}` | categorical |",
        "",
    ]
    return "\n".join(out)


def _component(name: str, cls: type[Component]) -> list[str]:
    infos = param_infos(cls)
    lines = [f"- **`{name}`**: {_cell(cls.summary())}"]
    if not infos:
        return [*lines, ""]
    return [*lines, "", *_param_table(infos, indent="  "), ""]


def _options(name: str, cls: type) -> list[str]:
    infos = param_infos(cls)
    summary = (cls.__doc__ or "").strip().splitlines()[0]
    lines = [f"- **`{name}`**: {_cell(summary)}"]
    return [*lines, "", *_param_table(infos, indent="  "), ""] if infos else [*lines, ""]


def _param_table(infos: Iterable[ParamInfo], indent: str = "") -> list[str]:
    rows = [f"{indent}| key | type | default | bounds | help |", f"{indent}|---|---|---|---|---|"]
    for info in infos:
        bounds = ", ".join(f"{SYMBOLS[op]} {v}" for op, v in info.bounds.items())
        rows.append(f"{indent}| `{info.name}` | {_cell(info.type_name)} | "
                    f"{_value(info.default)} | {bounds} | {_cell(info.help)} |")
    return rows


def _json_type(schema: dict[str, Any]) -> str:
    if "type" in schema:
        return schema["type"]
    if "anyOf" in schema:
        return " or ".join(_json_type(s) for s in schema["anyOf"])
    if "enum" in schema:
        return " \\| ".join(json.dumps(v) for v in schema["enum"])
    return "name or table"


def _value(value: Any) -> str:
    return "" if value is None else f"`{json.dumps(value)}`"


def _cell(text: str) -> str:
    return text.replace("|", "\\|")
