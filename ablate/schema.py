"""JSON Schemas of run files and study files, generated from the component declarations.

Every family of ``[run]``, every installed plugin (its parameters with their types, bounds,
defaults and help; one ``oneOf`` branch per plugin name), the scalar settings, ``[eval]``, the
trackers, and the ``[study]`` keys with the samplers' and pruners' options come from the same
declarations that validate a file, so a plugin installed later appears without any change here.
TOML language servers (taplo, Even Better TOML) complete and check files against it: see
docs/reference.md, which :mod:`ablate.reference` writes from this module's data.

The schema checks what a single table can show (names, types, bounds, unknown keys); what needs
several values at once (a subset smaller than a batch, a search range against its parameter's
bounds) stays with ablate's own validation.
"""

from __future__ import annotations

import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from ablate.components import Component, ParamInfo, param_infos
from ablate.config import DEFAULT_COMPONENTS, setting_infos
from ablate.eval_config import EvalConfig
from ablate.plugin_host import PluginHost
from ablate.search_space import DISTRIBUTION_KEYS
from ablate.study_config import PRUNERS, SAMPLERS
from ablate.tracking import installed_trackers

DRAFT = "http://json-schema.org/draft-04/schema#"
"""Draft 4, the newest that every TOML language server's validator reads (taplo included):
so no ``const`` (a one-value ``enum``) and exclusive bounds as booleans."""
BOUNDS = {"ge": {"minimum": False}, "gt": {"minimum": True}, "le": {"maximum": False},
          "lt": {"maximum": True}}


@dataclass(frozen=True)
class Key:
    """A ``[study]`` key: its JSON Schema and one line of help (the reference shows both)."""

    schema: Mapping[str, Any]
    help: str
    default: Any = None


def _strings() -> dict[str, Any]:
    return {"anyOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"},
                                           "minItems": 1}]}


STUDY_TABLE: dict[str, Key] = {
    "name": Key({"type": "string", "pattern": "^[A-Za-z0-9][A-Za-z0-9_.-]*$"},
                "the study's name; names its folder (default: the file's stem)"),
    "objective": Key(_strings(), "record key(s) to optimise: loss, train_seconds or a metric of "
                                 "[eval]; a list gives a Pareto front", "loss"),
    "direction": Key({"anyOf": [{"enum": ["minimize", "maximize"]},
                                {"type": "array", "items": {"enum": ["minimize", "maximize"]}}]},
                     "one per objective (default: the direction in which each is better)"),
    "trials": Key({"type": "integer", "minimum": 1},
                  "global budget: trials that trained, over every invocation"),
    "timeout": Key({"type": "number", "minimum": 0, "exclusiveMinimum": True},
                   "global budget in seconds of trial wall time"),
    "seed": Key({"type": "integer", "minimum": 0}, "base seed: trial n trains with seed + n", 0),
    "sampler": Key({}, "Optuna sampler: a name or a table with name and options", "tpe"),
    "pruner": Key({}, "Optuna pruner: a name or a table with name and options", "none"),
    "storage": Key({"type": "string"}, "SQLAlchemy URL or journal:///PATH.log (default: "
                                       "sqlite:///<output>/<name>/study.db)"),
    "output": Key({"type": "string", "minLength": 1}, "folder holding <name>/",
                  "studies-out"),
    "constraints": Key({"type": "array", "items": {"type": "string"}},
                       'e.g. "run.schedule.beta_min < run.schedule.beta_max"; violating points '
                       "are never trained"),
    "baselines": Key({"type": "array", "items": {"type": "object",
                                                 "properties": {"name": {"type": "string"}}}},
                     "points trained first: [{name = ..., \"run.lr\" = ...}], missing keys "
                     "keep the [run] value"),
    "replicates": Key({"type": "integer", "minimum": 1}, "seeds per configuration", 1),
    "common_random_numbers": Key({"type": "boolean"}, "replicate r of every configuration "
                                                      "shares one seed (default: on when "
                                                      "replicates > 1)"),
    "heartbeat_interval": Key({"type": "integer", "minimum": 1},
                              "seconds between a running trial's heartbeats"),
    "heartbeat_grace": Key({"type": "integer", "minimum": 1},
                           "seconds of silence before a running trial counts as dead"),
    "trackers": Key({}, "experiment trackers every trial logs to (see [run] trackers)"),
}
"""The ``[study]`` keys (``tests/test_schema.py`` keeps them equal to ablate.study_config's)."""


def type_schema(tp: Any) -> dict[str, Any]:
    """The JSON Schema of a declared parameter type (TOML has no null: None means unset)."""
    origin = typing.get_origin(tp)
    if origin is Literal:
        return {"enum": list(typing.get_args(tp))}
    if origin in (typing.Union, types.UnionType):
        options = [type_schema(a) for a in typing.get_args(tp) if a is not type(None)]
        return options[0] if len(options) == 1 else {"anyOf": options}
    if origin is tuple:
        return {"type": "array", "items": type_schema(typing.get_args(tp)[0])}
    return {bool: {"type": "boolean"}, int: {"type": "integer"}, float: {"type": "number"},
            str: {"type": "string"}}.get(tp, {})


def param_schema(info: ParamInfo) -> dict[str, Any]:
    out = {**type_schema(info.type), "description": info.help}
    for op, bound in info.bounds.items():
        ((keyword, exclusive),) = BOUNDS[op].items()
        out[keyword] = bound
        if exclusive:
            out[f"exclusive{keyword.capitalize()}"] = True
    if info.default is not None:
        out["default"] = info.default
    return out


def component_schema(cls: type[Component], *, default: bool) -> dict[str, Any]:
    """One plugin as a table: ``name`` and its parameters, nothing else."""
    properties = {"name": {"enum": [cls.name], "description": cls.summary()}}
    properties |= {info.name: param_schema(info) for info in param_infos(cls)}
    out = {"type": "object", "title": cls.name, "description": cls.summary(),
           "properties": properties, "additionalProperties": False}
    if not default:
        out["required"] = ["name"]
    return out


def choice_schema(classes: Mapping[str, type[Component]], default: str | None,
                  description: str) -> dict[str, Any]:
    """A plugin by name, or a table of one plugin's parameters: one branch per plugin."""
    names = list(classes)
    branches = [component_schema(cls, default=name == default) for name, cls in classes.items()]
    out: dict[str, Any] = {"description": description,
                           "oneOf": [{"type": "string", "enum": names}, *branches]}
    if default is not None:
        out["default"] = default
    return out


def families(host: PluginHost, only: Any = None) -> dict[str, dict[str, type[Component]]]:
    """The components of each ``[run]`` family, by name (``only`` filters the classes)."""
    return {family: {name: entry.component
                     for name, entry in sorted(host.registry.entries[family].items())
                     if only is None or only(entry.component)}
            for family in DEFAULT_COMPONENTS}


def trackers_schema(host: PluginHost, only: Any = None) -> dict[str, Any]:
    classes = {n: c for n, c in installed_trackers(host).items() if only is None or only(c)}
    return {"type": "array", "description": "experiment trackers: names or tables with settings",
            "items": {"oneOf": choice_schema(classes, None, "")["oneOf"]}}


def run_table(host: PluginHost, *, study: bool, only: Any = None) -> dict[str, Any]:
    """``[run]``: the scalar settings and one entry per family. A study's base run has no seed
    (trials get theirs from [study]) and no trackers (those go in [study])."""
    properties: dict[str, Any] = {}
    for family, classes in families(host, only).items():
        properties[family] = choice_schema(classes, DEFAULT_COMPONENTS[family],
                                           f"the {family} plugin: a name or a table")
    for info in setting_infos():
        if not (study and info.name == "seed"):
            properties[info.name] = param_schema(info)
    if not study:
        properties["trackers"] = trackers_schema(host, only)
    return {"type": "object", "description": "the training configuration",
            "properties": properties, "additionalProperties": False}


def eval_table(host: PluginHost, only: Any = None) -> dict[str, Any]:
    properties = {info.name: param_schema(info) for info in param_infos(EvalConfig)}
    metrics = [n for n, e in sorted(host.registry.entries["metric"].items())
               if only is None or only(e.component)]
    properties["metrics"]["items"] = {"enum": metrics}
    return {"type": "object", "description": "how samples are scored, and how often",
            "properties": properties, "additionalProperties": False}


def algorithm_schema(known: Mapping[str, type], description: str) -> dict[str, Any]:
    branches = []
    for name, cls in known.items():
        properties = {"name": {"enum": [name]}} | {
            info.name: param_schema(info) for info in param_infos(cls)}
        branches.append({"type": "object", "title": name,
                         "description": (cls.__doc__ or "").strip().splitlines()[0],
                         "properties": properties, "required": ["name"],
                         "additionalProperties": False})
    return {"description": description,
            "oneOf": [{"type": "string", "enum": list(known)}, *branches]}


def study_table(host: PluginHost, only: Any = None) -> dict[str, Any]:
    properties = {}
    for name, key in STUDY_TABLE.items():
        properties[name] = {**key.schema, "description": key.help}
        if key.default is not None:
            properties[name]["default"] = key.default
    properties["sampler"] |= algorithm_schema(SAMPLERS, STUDY_TABLE["sampler"].help)
    properties["pruner"] |= algorithm_schema(PRUNERS, STUDY_TABLE["pruner"].help)
    properties["trackers"] |= trackers_schema(host, only)
    properties["trackers"]["description"] = STUDY_TABLE["trackers"].help
    return {"type": "object", "description": "the study: objective, budget, sampler, pruner",
            "properties": properties, "additionalProperties": False}


DISTRIBUTION_TYPES = {
    "low": {"type": "number"}, "high": {"type": "number"}, "log": {"type": "boolean"},
    "step": {"type": "number", "minimum": 0, "exclusiveMinimum": True},
    "values": {"type": "array", "minItems": 1}}
"""What each key of a ``[search]`` distribution table holds (ablate.search_space's keys)."""


def distribution_schema() -> dict[str, Any]:
    return {"oneOf": [
        {"type": "array", "minItems": 1, "description": "categorical: these values"},
        {"type": "object", "properties": {k: DISTRIBUTION_TYPES[k] for k in DISTRIBUTION_KEYS},
         "additionalProperties": False},
    ]}


def search_table() -> dict[str, Any]:
    return {"type": "object",
            "description": 'distributions over dotted [run] keys: "run.lr" = {low, high, log}, '
                           '"run.decoder.name" = ["cnn", "unet"]',
            "properties": {"run": {"type": "object"}},
            "patternProperties": {r"^run\.": distribution_schema()},
            "additionalProperties": False}


def run_file_schema(host: PluginHost, only: Any = None) -> dict[str, Any]:
    """The schema of a run file: ``[run]`` and an optional ``[eval]``."""
    return {"$schema": DRAFT, "title": "ablate run file", "type": "object",
            "properties": {"run": run_table(host, study=False, only=only),
                           "eval": eval_table(host, only)},
            "required": ["run"], "additionalProperties": False}


def study_file_schema(host: PluginHost, only: Any = None) -> dict[str, Any]:
    """The schema of a study file: ``[study]``, ``[run]``, ``[eval]`` and ``[search]``."""
    return {"$schema": DRAFT, "title": "ablate study file", "type": "object",
            "properties": {"study": study_table(host, only),
                           "run": run_table(host, study=True, only=only),
                           "eval": eval_table(host, only), "search": search_table()},
            "required": ["study", "run"], "additionalProperties": False}

