"""A study's search space: distributions over dotted ``[run]`` keys, conditional on plugin
choices, and constraints between the values of one trial.

Keys (``[search]`` table; nested tables and quoted dotted keys are the same thing in TOML):

- ``run.T``, ``run.lr``, ...: a scalar setting of ``[run]``;
- ``run.decoder.name``: which plugin of a family (categorical over registered names);
- ``run.decoder.channels``: that parameter of whichever searched plugin declares it;
- ``run.decoder.unet.base_width``: that parameter of ``unet`` only.

A distribution is ``{low, high, log, step}`` (int or float, following the parameter's declared
type) or ``{values = [...]}`` / a bare list (categorical). Every key and value is checked against
the components' declared parameters (type and bounds) before anything trains.

Conditional spaces: when ``run.<family>.name`` is searched, a trial samples the plugin first and
then only the parameters that plugin declares; the base table's parameters that the chosen plugin
does not declare are dropped.

Constraints (``"run.schedule.beta_min < run.schedule.beta_max"``) are checked on the trial's
resolved configuration before training. A violating point is never trained: the trial is ended
as failed with the reason recorded and does not count against the budget (rejection). Rejection
was chosen over Optuna's ``constraints_func`` because that only scores a point after it has been
trained, and only TPE, GP and NSGA-II support it; rejection costs no training and works with
every sampler. A constraint naming a key that the trial's configuration lacks (a parameter of a
plugin that was not chosen) does not apply to that trial.
"""

from __future__ import annotations

import copy
import json
import math
import operator
import re
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from optuna.distributions import (
    BaseDistribution,
    CategoricalDistribution,
    FloatDistribution,
    IntDistribution,
)
from optuna.trial import Trial

from ablate.components import ParamInfo, coerce, param_infos, suggest
from ablate.config import DEFAULT_COMPONENTS, check_keys, setting_infos
from ablate.errors import Collector, ConfigError
from ablate.plugin_host import PluginHost, unknown_component

DISTRIBUTION_KEYS = ["low", "high", "log", "step", "values"]
MAX_GRID_POINTS = 100_000
"""Values per stepped parameter, and points of a whole grid: a grid of more points than this
would not finish training, and listing it would fill the memory first."""
NOT_SEARCHABLE = {
    "seed": "a trial's seed comes from [study] seed and the trial number",
    "device": "the device is not a modelling choice; set it in [run]",
}


@dataclass(frozen=True)
class SearchParam:
    """One searched value: where it goes in ``[run]`` and what Optuna samples it from."""

    key: str  # as written in the file, e.g. run.decoder.unet.base_width
    name: str  # the Optuna parameter name, e.g. decoder.unet.base_width
    path: tuple[str, ...]  # where it goes in the [run] table, e.g. ("decoder", "base_width")
    distribution: BaseDistribution
    family: str | None = None  # the component family it belongs to
    plugins: tuple[str, ...] = ()  # searched only when the family's chosen plugin is one of these
    conditional: bool = False  # True when some candidate plugin does not take it
    labels: Mapping[str, Any] = field(default_factory=dict)  # categorical label -> list value

    @property
    def chooses_plugin(self) -> bool:
        return self.family is not None and self.path[-1] == "name"

    def active(self, chosen: Mapping[str, str]) -> bool:
        """Whether a trial whose plugins are ``chosen`` (family -> name) samples this."""
        return self.chooses_plugin or self.family is None or chosen[self.family] in self.plugins

    def suggest(self, trial: Trial) -> Any:
        d = self.distribution
        if isinstance(d, FloatDistribution):
            return trial.suggest_float(self.name, d.low, d.high, step=d.step, log=d.log)
        if isinstance(d, IntDistribution):
            return trial.suggest_int(self.name, d.low, d.high, step=d.step, log=d.log)
        return trial.suggest_categorical(self.name, list(d.choices))

    def value(self, sampled: Any) -> Any:
        """The configuration value of a sampled (Optuna-side) value."""
        return self.labels.get(sampled, sampled) if isinstance(sampled, str) else sampled

    def sampled(self, value: Any) -> Any:
        """The Optuna-side value of a configuration value (lists become their labels)."""
        return _label(value) if isinstance(value, list | tuple) else value

    def contains(self, value: Any) -> bool:
        d, v = self.distribution, self.sampled(value)
        if isinstance(d, CategoricalDistribution):
            return v in d.choices
        if isinstance(v, bool) or not isinstance(v, int | float):
            return False
        if isinstance(d, IntDistribution) and not isinstance(v, int):
            return False
        if not d.low <= v <= d.high:
            return False
        return d.step is None or _on_grid(v - d.low, d.step)

    def describe(self) -> str:
        d = self.distribution
        if isinstance(d, CategoricalDistribution):
            return "one of " + ", ".join(str(c) for c in d.choices)
        kind = "int" if isinstance(d, IntDistribution) else "float"
        extra = " log" if d.log else ""
        if d.step is not None and not (kind == "int" and d.step == 1):
            extra += f" step {d.step}"
        return f"{kind} [{d.low}, {d.high}]{extra}"

    def condition(self) -> str | None:
        """When the parameter is searched, for display; None when always."""
        if not self.conditional:
            return None
        return f"{self.family}.name in {', '.join(self.plugins)}"

    def grid_count(self) -> int:
        """How many values ``grid_values`` would list, without listing them."""
        d = self.distribution
        if isinstance(d, CategoricalDistribution):
            return len(d.choices)
        if d.step is None:
            raise ValueError(f"{self.key} is a float range without a step")
        return int(round((d.high - d.low) / d.step)) + 1

    def grid_values(self) -> list[Any]:
        d = self.distribution
        if isinstance(d, CategoricalDistribution):
            return list(d.choices)
        if isinstance(d, IntDistribution):
            return list(range(d.low, d.high + 1, d.step))
        if d.step is None:
            raise ValueError(f"{self.key} is a float range without a step")
        count = round((d.high - d.low) / d.step)
        return [round(d.low + i * d.step, 12) for i in range(count + 1)]


@dataclass(frozen=True)
class Operand:
    """A constraint side: a dotted configuration key or a number."""

    key: str | None = None
    number: float | None = None

    def resolve(self, config: Mapping[str, Any]) -> float | None:
        if self.key is None:
            return self.number
        node: Any = config
        for part in self.key.split(".")[1:]:
            if not isinstance(node, Mapping) or part not in node:
                return None
            node = node[part]
        return node


COMPARISONS: dict[str, Callable[[Any, Any], bool]] = {
    "<=": operator.le, ">=": operator.ge, "<": operator.lt, ">": operator.gt,
    "==": operator.eq, "!=": operator.ne,
}
_CONSTRAINT = re.compile(r"^\s*(\S+)\s*(<=|>=|==|!=|<|>)\s*(\S+)\s*$")


@dataclass(frozen=True)
class Constraint:
    """``left op right`` between configuration values, e.g. beta_min < beta_max."""

    text: str
    left: Operand
    op: str
    right: Operand

    def violated(self, config: Mapping[str, Any]) -> bool:
        """True when the constraint applies to this resolved ``[run]`` and fails."""
        left, right = self.left.resolve(config), self.right.resolve(config)
        if left is None or right is None:
            return False
        return not COMPARISONS[self.op](left, right)


@dataclass(frozen=True)
class SearchSpace:
    """The searched parameters, in sampling order (plugin choices first)."""

    params: tuple[SearchParam, ...]
    base_table: Mapping[str, Any]  # [run] with every component as a {name, ...} table
    base_names: Mapping[str, str]  # family -> the base table's plugin
    host: PluginHost

    @property
    def conditional(self) -> bool:
        return any(p.conditional for p in self.params)

    def sample(self, trial: Trial) -> dict[str, Any]:
        """Sample one point define-by-run: a plugin's parameters only once it is chosen."""
        chosen = dict(self.base_names)
        point: dict[str, Any] = {}
        for p in self.params:
            if not p.active(chosen):
                continue
            point[p.name] = p.suggest(trial)
            if p.chooses_plugin:
                chosen[p.family] = point[p.name]
        return point

    def run_table(self, point: Mapping[str, Any]) -> dict[str, Any]:
        """The ``[run]`` table of a point: the base table with the sampled values applied."""
        table = copy.deepcopy(dict(self.base_table))
        for p in self.params:
            if p.chooses_plugin and p.name in point and point[p.name] != self.base_names[p.family]:
                declared = {i.name for i in self._infos(p.family, point[p.name])}
                kept = {k: v for k, v in table[p.family].items() if k in declared}
                table[p.family] = {"name": point[p.name], **kept}
        for p in self.params:
            if p.name in point and not p.chooses_plugin:
                target = table[p.path[0]] if len(p.path) == 2 else table
                target[p.path[-1]] = p.value(point[p.name])
        return table

    def baseline_point(self, values: Mapping[str, Any], resolved_base: Mapping[str, Any], *,
                       source: str | None, key: str) -> dict[str, Any]:
        """A complete point from a baseline's values; unnamed keys keep the base run's value."""
        by_key = {p.key: p for p in self.params}
        for name in values:
            if name not in by_key:
                hint = suggest(name, by_key)
                raise ConfigError(f"{name!r} is not a searched key", source=source,
                                  key=f"{key}.{name}",
                                  hint=hint or f"searched keys: {', '.join(by_key) or 'none'}")
        chosen = dict(self.base_names)
        point: dict[str, Any] = {}
        for p in self.params:
            if not p.active(chosen):
                if p.key in values:
                    raise ConfigError(f"{p.key} is only searched when {p.condition()}",
                                      source=source, key=f"{key}.{p.key}")
                continue
            value = values[p.key] if p.key in values else self._default(p, chosen, resolved_base)
            if not p.contains(value):
                raise ConfigError(f"{value!r} is outside the searched {p.describe()}",
                                  source=source, key=f"{key}.{p.key}",
                                  hint="give the baseline a searched value, or widen the range")
            point[p.name] = p.sampled(value)
            if p.chooses_plugin:
                chosen[p.family] = value
        return point

    def grid(self) -> dict[str, list[Any]]:
        """Every parameter's values, for the grid sampler (a fixed, discrete space)."""
        return {p.name: p.grid_values() for p in self.params}

    def _default(self, p: SearchParam, chosen: Mapping[str, str],
                 resolved_base: Mapping[str, Any]) -> Any:
        if p.family is None:
            return resolved_base[p.path[0]]
        if p.chooses_plugin or chosen[p.family] == self.base_names[p.family]:
            return resolved_base[p.family][p.path[-1]]
        infos = {i.name: i for i in self._infos(p.family, chosen[p.family])}
        return infos[p.path[-1]].default

    def _infos(self, family: str, plugin: str) -> list[ParamInfo]:
        return param_infos(self.host.registry.get(family, plugin))


def normalized_run_table(table: Mapping[str, Any]) -> dict[str, Any]:
    """``[run]`` with every component as a ``{name, ...}`` table (defaults filled in)."""
    out = copy.deepcopy(dict(table))
    for family, default in DEFAULT_COMPONENTS.items():
        value = out.get(family, default)
        out[family] = {"name": value} if isinstance(value, str) else {"name": default, **value}
    return out


def parse_search(table: Any, base_table: Mapping[str, Any], *, source: str | None,
                 host: PluginHost, key: str = "search") -> SearchSpace:
    """Validate a ``[search]`` table against the base run and the installed plugins."""
    if not isinstance(table, Mapping):
        raise ConfigError("must be a table", source=source, key=key)
    entries = _flatten(table, source=source, key=key)
    base_names = {family: base_table[family]["name"] for family in DEFAULT_COMPONENTS}
    candidates = {family: [name] for family, name in base_names.items()}
    params: list[SearchParam] = []
    errors = Collector()  # every wrong key at once; plugin choices first, the rest depend on them
    choices = {dotted: spec for dotted, spec in entries.items() if _chooses_plugin(dotted)}
    for dotted, spec in choices.items():
        param = errors.attempt(_plugin_choice, dotted.split(".")[1], spec, host, source=source,
                               key=f"{key}.{dotted}")
        if param is not None:
            candidates[param.family] = list(param.distribution.choices)
            params.append(param)
    errors.raise_errors()
    for dotted, spec in entries.items():
        if dotted not in choices:
            param = errors.attempt(_parameter, dotted, spec, candidates, host, source=source,
                                   key=f"{key}.{dotted}")
            params += [param] if param is not None else []
    errors.raise_errors()
    _check_duplicates(params, source=source, key=key)
    return SearchSpace(tuple(params), base_table, base_names, host)


def _chooses_plugin(dotted: str) -> bool:
    """``run.<family>.name``: the key that searches which plugin of a family a trial uses."""
    parts = dotted.split(".")
    return len(parts) == 3 and parts[0] == "run" and parts[1] in DEFAULT_COMPONENTS \
        and parts[2] == "name"


def parse_constraints(value: Any, space: SearchSpace, *, source: str | None,
                      key: str) -> tuple[Constraint, ...]:
    """``["run.schedule.beta_min < run.schedule.beta_max", ...]``: numeric comparisons."""
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ConfigError("must be a list of strings such as \"run.schedule.beta_min < "
                          "run.schedule.beta_max\"", source=source, key=key)
    candidates = {family: [name] for family, name in space.base_names.items()}
    for p in space.params:
        if p.chooses_plugin:
            candidates[p.family] = list(p.distribution.choices)
    errors = Collector()  # every wrong constraint at once
    constraints = [errors.attempt(_constraint, text, candidates, space.host, source=source,
                                  key=f"{key}[{i}]") for i, text in enumerate(value)]
    errors.raise_errors()
    return tuple(c for c in constraints if c is not None)


def _constraint(text: str, candidates: Mapping[str, list[str]], host: PluginHost, *,
                source: str | None, key: str) -> Constraint:
    match = _CONSTRAINT.match(text)
    if not match:
        raise ConfigError(f"cannot read constraint {text!r}", source=source, key=key,
                          hint="write KEY OP KEY or KEY OP NUMBER with OP one of "
                               "< <= > >= == !=")
    left, op, right = match.groups()
    sides = [_operand(s, candidates, host, source=source, key=key) for s in (left, right)]
    if all(s.key is None for s in sides):
        raise ConfigError(f"constraint {text!r} compares two numbers", source=source,
                          key=key, hint="name at least one run.* key")
    return Constraint(text, sides[0], op, sides[1])


def _flatten(table: Mapping[str, Any], *, source: str | None, key: str,
             prefix: str = "") -> dict[str, Any]:
    """Nested tables down to the distributions; a leaf is a list or a table of DISTRIBUTION_KEYS."""
    out: dict[str, Any] = {}
    for name, value in table.items():
        dotted = f"{prefix}{name}"
        if isinstance(value, list) or (isinstance(value, Mapping) and
                                       any(k in value for k in DISTRIBUTION_KEYS)):
            out[dotted] = value
        elif isinstance(value, Mapping) and value:
            out.update(_flatten(value, source=source, key=key, prefix=f"{dotted}."))
        else:
            raise ConfigError(f"expected a distribution, got {value!r}", source=source,
                              key=f"{key}.{dotted}",
                              hint="write {low = .., high = ..} (log, step optional) or "
                                   "{values = [...]} or a list of values")
    return out


def _plugin_choice(family: str, spec: Any, host: PluginHost, *, source: str | None,
                   key: str) -> SearchParam:
    values = _values(spec, source=source, key=key)
    known = host.registry.names(family)
    for value in values:
        if not isinstance(value, str) or value not in known:
            raise unknown_component(host, family, value, source=source, key=key)
    return SearchParam(f"run.{family}.name", f"{family}.name", (family, "name"),
                       CategoricalDistribution(values), family=family, plugins=tuple(values))


def _parameter(dotted: str, spec: Any, candidates: Mapping[str, list[str]], host: PluginHost,
               *, source: str | None, key: str) -> SearchParam:
    family, plugins, name, infos = _target(dotted, candidates, host, source=source, key=key)
    distribution, labels = _distribution(spec, infos, source=source, key=key)
    if family is None:
        return SearchParam(dotted, name, (name,), distribution, labels=labels)
    return SearchParam(dotted, ".".join(dotted.split(".")[1:]), (family, name), distribution,
                       family=family, plugins=tuple(plugins),
                       conditional=set(plugins) != set(candidates[family]), labels=labels)


def _target(dotted: str, candidates: Mapping[str, list[str]], host: PluginHost, *,
            source: str | None, key: str) -> tuple[str | None, list[str], str,
                                                   list[tuple[str, ParamInfo]]]:
    """(family, plugins declaring it, parameter, [(plugin, info)]) of a dotted key."""
    parts = dotted.split(".")
    settings = {i.name: i for i in setting_infos()}
    if parts[0] != "run" or len(parts) < 2:
        raise ConfigError("search keys start with 'run.'", source=source, key=key,
                          hint=f"e.g. run.{dotted}")
    head = parts[1]
    if head in NOT_SEARCHABLE:
        raise ConfigError(f"run.{head} cannot be searched", source=source, key=key,
                          hint=NOT_SEARCHABLE[head])
    if len(parts) == 2:
        if head in DEFAULT_COMPONENTS:
            raise ConfigError(f"run.{head} is a component", source=source, key=key,
                              hint=f"search its plugin with run.{head}.name and its parameters "
                                   f"with run.{head}.PARAMETER")
        if head not in settings:
            valid = [*settings, *DEFAULT_COMPONENTS]
            hint = suggest(head, valid)
            raise ConfigError(f"unknown [run] key {head!r}", source=source, key=key,
                              hint=hint or f"valid: {', '.join(valid)}")
        return None, [], head, [("run", settings[head])]
    if head not in DEFAULT_COMPONENTS:
        hint = suggest(head, DEFAULT_COMPONENTS)
        raise ConfigError(f"unknown component family {head!r}", source=source, key=key,
                          hint=hint or f"families: {', '.join(DEFAULT_COMPONENTS)}")
    if len(parts) == 3:
        name = parts[2]
        plugins = [p for p in candidates[head]
                   if name in {i.name for i in param_infos(host.registry.get(head, p))}]
        if not plugins:
            declared = sorted({i.name for p in candidates[head]
                               for i in param_infos(host.registry.get(head, p))})
            hint = suggest(name, declared)
            raise ConfigError(f"no searched {head} plugin ({', '.join(candidates[head])}) "
                              f"has a parameter {name!r}", source=source, key=key,
                              hint=hint or f"their parameters: {', '.join(declared) or 'none'}")
    elif len(parts) == 4:
        plugin, name = parts[2], parts[3]
        if plugin not in candidates[head]:
            raise ConfigError(f"{head} {plugin!r} is not among the searched plugins "
                              f"({', '.join(candidates[head])})", source=source, key=key,
                              hint=f"add it to run.{head}.name, or write run.{head}.{name}")
        declared = [i.name for i in param_infos(host.registry.get(head, plugin))]
        if name not in declared:
            hint = suggest(name, declared)
            raise ConfigError(f"{head} {plugin!r} has no parameter {name!r}", source=source,
                              key=key, hint=hint or f"its parameters: {', '.join(declared)}")
        plugins = [plugin]
    else:
        raise ConfigError("too many dots", source=source, key=key,
                          hint=f"run.{head}.PARAMETER or run.{head}.PLUGIN.PARAMETER")
    infos = [(p, i) for p in plugins for i in param_infos(host.registry.get(head, p))
             if i.name == name]
    return head, plugins, name, infos


def _values(spec: Any, *, source: str | None, key: str) -> list[Any]:
    if isinstance(spec, Mapping):
        extra = [k for k in spec if k != "values"]
        if extra:
            raise ConfigError(f"a categorical takes only 'values', not {extra[0]!r}",
                              source=source, key=f"{key}.{extra[0]}",
                              hint="use {low, high, log, step} for a range instead")
        spec = spec["values"]
    if not isinstance(spec, list) or not spec:
        raise ConfigError("values must be a non-empty list", source=source, key=key)
    if len({_label(v) if isinstance(v, list) else repr(v) for v in spec}) != len(spec):
        raise ConfigError("values repeat", source=source, key=key, hint="list each value once")
    return spec


def _distribution(spec: Any, infos: list[tuple[str, ParamInfo]], *, source: str | None,
                  key: str) -> tuple[BaseDistribution, dict[str, Any]]:
    if isinstance(spec, Mapping):
        check_keys(spec, DISTRIBUTION_KEYS, source=source, key=key)
    if isinstance(spec, list) or "values" in spec:
        values = _values(spec, source=source, key=key)
        for plugin, info in infos:
            for i, value in enumerate(values):
                coerce(info, value, source=source,
                       key=f"{key}.values[{i}]{_which(plugin, infos)}")
        labels = {_label(v): v for v in values if isinstance(v, list)}
        return CategoricalDistribution([_label(v) if isinstance(v, list) else v
                                        for v in values]), labels
    for needed in ("low", "high"):
        if needed not in spec:
            raise ConfigError(f"a range needs '{needed}'", source=source, key=key,
                              hint="write {low = .., high = ..} or {values = [...]}")
    kinds = {_numeric_type(info) for _, info in infos}
    if None in kinds or len(kinds) != 1:
        described = ", ".join(f"{p}: {i.type_name}" for p, i in infos)
        raise ConfigError(f"a range needs an int or float parameter ({described})",
                          source=source, key=key, hint="search it with values = [...]")
    kind = kinds.pop()
    for plugin, info in infos:
        suffix = _which(plugin, infos)
        low = coerce(info, spec["low"], source=source, key=f"{key}.low{suffix}")
        high = coerce(info, spec["high"], source=source, key=f"{key}.high{suffix}")
    log, step = spec.get("log", False), spec.get("step")
    if not isinstance(log, bool):
        raise ConfigError(f"log must be true or false, got {log!r}", source=source,
                          key=f"{key}.log")
    if low >= high:
        raise ConfigError(f"low ({low}) must be below high ({high})", source=source, key=key)
    if log and low <= 0:
        raise ConfigError(f"a log range needs low > 0, got {low}", source=source,
                          key=f"{key}.low")
    if step is not None:
        if log:
            raise ConfigError("a range cannot be both log and stepped", source=source,
                              key=f"{key}.step", hint="drop log or step")
        allowed = int if kind is int else (int, float)
        if not isinstance(step, allowed) or isinstance(step, bool) or \
                not math.isfinite(step) or step <= 0:
            raise ConfigError(f"step must be a positive, finite {kind.__name__}, got {step!r}",
                              source=source, key=f"{key}.step")
        if (high - low) / step > MAX_GRID_POINTS:
            raise ConfigError(f"{(high - low) / step + 1:.4g} steps from low to high",
                              source=source, key=f"{key}.step",
                              hint=f"at most {MAX_GRID_POINTS:,} values per parameter; use a "
                                   f"larger step")
        if not _on_grid(high - low, step):
            raise ConfigError(f"high - low ({high - low:g}) is not a multiple of step ({step})",
                              source=source, key=f"{key}.step",
                              hint=f"e.g. high = {low + step * math.floor((high - low) / step):g}")
    if kind is int:
        return IntDistribution(low, high, log=log, step=step or 1), {}
    return FloatDistribution(float(low), float(high), log=log,
                             step=None if step is None else float(step)), {}


def _which(plugin: str, infos: list[tuple[str, ParamInfo]]) -> str:
    """Which plugin a value failed for, when several plugins share the parameter."""
    return f" ({plugin})" if len(infos) > 1 else ""


def _numeric_type(info: ParamInfo) -> type | None:
    options = typing.get_args(info.type) or (info.type,)
    numeric = [t for t in options if t in (int, float)]
    others = [t for t in options if t not in (int, float, type(None))]
    return numeric[0] if len(numeric) == 1 and not others else None


def _operand(text: str, candidates: Mapping[str, list[str]], host: PluginHost, *,
             source: str | None, key: str) -> Operand:
    try:
        number = float(text)
    except ValueError:
        pass
    else:
        if not math.isfinite(number):  # every comparison with NaN fails: no trial would run
            raise ConfigError(f"{text} is not a finite number", source=source, key=key)
        return Operand(number=number)
    _, _, _, infos = _target(text, candidates, host, source=source, key=key)
    for plugin, info in infos:
        if _numeric_type(info) is None:
            raise ConfigError(f"{text} is a {info.type_name}"
                              + ("" if plugin == "run" else f" in {plugin}")
                              + ", not a number", source=source, key=key)
    return Operand(key=text)


def _check_duplicates(params: list[SearchParam], *, source: str | None, key: str) -> None:
    seen: dict[tuple[tuple[str, ...], str], str] = {}
    for p in params:
        for plugin in p.plugins or ("run",):
            where = (p.path, plugin)
            if where in seen:
                raise ConfigError(f"{p.key} and {seen[where]} search the same parameter",
                                  source=source, key=f"{key}.{p.key}", hint="keep one of them")
            seen[where] = p.key


def _label(value: list[Any] | tuple[Any, ...]) -> str:
    """Optuna's categorical choices are scalars: a list value is sampled as its JSON text."""
    return json.dumps(list(value))


def _on_grid(span: float, step: float) -> bool:
    count = span / step
    return abs(count - round(count)) <= 1e-9 * max(1.0, abs(count))
