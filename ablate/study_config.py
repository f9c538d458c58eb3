"""Study files: ``[study]``, ``[run]``, ``[eval]`` and ``[search]``, validated whole before any
trial trains (every error names the file, the key and a fix).

``[study]`` keys: ``name`` (default: the file's stem), ``objective`` (a record key or a list of
them: ``loss``, ``train_seconds`` or a metric of ``[eval]``), ``direction`` (``minimize`` /
``maximize``, one per objective; default: the direction in which the metric is better),
``trials`` (the global budget: trials that trained, over every
invocation), ``timeout`` (the global budget in seconds of trial wall time), ``seed``, ``sampler``
and ``pruner`` (a name or a table with ``name`` and options), ``storage`` (an SQLAlchemy URL or
``journal:///PATH.log``; default ``sqlite:///<output>/<name>/study.db``, or the journal file
``<output>/<name>/journal.log`` for several workers), ``heartbeat_interval`` and
``heartbeat_grace`` (seconds; see ablate.storage), ``output`` (default ``studies-out``),
``constraints`` (see ablate.search_space), ``baselines`` (points trained first),
``replicates`` (seeds per configuration, default 1), ``common_random_numbers`` (default: on
when ``replicates`` > 1; see docs/replicates.md) and ``trackers`` (experiment trackers every
trial logs to; see ablate.tracking).

Trial seeds: replicate r of a trial trains with ``seed = base + r``. With common random numbers
the base is the ``[study] seed`` for every trial, so replicate r of every configuration shares its
seed (initialisation, data order, timesteps and noise); without them trial n's base is
``[study] seed + n * replicates``, so every run has its own seed (with one replicate: seed + n).
A retried trial keeps the base seed of the trial it continues.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Literal

from ablate.components import coerce, param, param_infos, shown, suggest
from ablate.config import RunConfig, check_keys, check_shape, parse_run, read_toml
from ablate.errors import Collector, ConfigError
from ablate.overrides import apply_overrides
from ablate.plugin_host import PluginHost, default_host
from ablate.search_space import (
    MAX_GRID_POINTS,
    Constraint,
    SearchSpace,
    normalized_run_table,
    parse_constraints,
    parse_search,
)
from ablate.storage import Heartbeat, masked
from ablate.study_view import Objective, StudyLayout, check_name, default_storage
from ablate.tracking import Tracker, flat_config, parse_trackers

if TYPE_CHECKING:
    from ablate.eval_config import EvalConfig

TOP_KEYS = ["study", "run", "eval", "search"]
STUDY_KEYS = ["name", "objective", "direction", "trials", "timeout", "seed", "sampler", "pruner",
              "storage", "output", "constraints", "baselines", "replicates",
              "common_random_numbers", "heartbeat_interval", "heartbeat_grace", "trackers"]
TRAINING_METRICS = {"loss": "minimize", "train_seconds": "minimize"}
"""Record keys every trial has, with their natural direction. ``train_seconds`` as an objective
is the run's total training time (the records hold it per epoch)."""
DIRECTIONS = ("minimize", "maximize")
STORAGE_SCHEMES = ("sqlite", "postgresql", "mysql", "journal")
MAX_STUDY_SEED = 2**31 - 1
MAX_TRIALS = 1_000_000
MAX_REPLICATES = 1_000
MAX_HEARTBEAT = 86_400
WORKERS_PER_CORE = 4
LIMIT_REASONS = {
    "seed": "Optuna's samplers take numpy's 32-bit seeds, and trial n adds n to this one",
    "trials": "a study of more trials than this would outlive its storage",
    "replicates": "each replicate trains the configuration once more",
    "heartbeat_interval": "a day: a longer silence could not tell a dead worker from a live one",
    "heartbeat_grace": "a day: a longer silence could not tell a dead worker from a live one",
}


class Options:
    """Base of sampler and pruner options: fields are the Optuna class's keyword arguments."""

    optuna_class: ClassVar[str]
    seeded: ClassVar[bool] = False
    reseeded: ClassVar[bool] = True  # a resumed study gets seed + trials so far (see ablate.study)

    def kwargs(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}

    def validate(self) -> None:
        """Raise ValueError when options do not fit together."""


@dataclass(frozen=True)
class Tpe(Options):
    """Tree-structured Parzen estimator: models where good and bad trials lie (default)."""

    optuna_class = "TPESampler"
    seeded = True
    n_startup_trials: int = param(10, "random trials before the model is used", ge=0)
    n_ei_candidates: int = param(24, "candidates scored per suggestion", ge=1)
    multivariate: bool = param(False, "model the parameters jointly")
    group: bool = param(False, "model each conditional branch apart (needs multivariate)")

    def validate(self) -> None:
        if self.group and not self.multivariate:
            raise ValueError("group = true needs multivariate = true")


@dataclass(frozen=True)
class Random(Options):
    """Independent uniform (or log-uniform) draws."""

    optuna_class = "RandomSampler"
    seeded = True


@dataclass(frozen=True)
class Grid(Options):
    """Every combination of the listed values, in random order (discrete, fixed spaces)."""

    optuna_class = "GridSampler"
    seeded = True
    reseeded = False  # the seed shuffles the grid, and trials record a point by its index


@dataclass(frozen=True)
class BruteForce(Options):
    """Every point of a discrete space, conditional branches included."""

    optuna_class = "BruteForceSampler"
    seeded = True
    avoid_premature_stop: bool = param(False, "keep going while running trials could branch")


@dataclass(frozen=True)
class CmaEs(Options):
    """CMA evolution strategy over the numeric parameters (single objective)."""

    optuna_class = "CmaEsSampler"
    seeded = True
    n_startup_trials: int = param(1, "random trials before CMA-ES starts", ge=0)
    sigma0: float | None = param(None, "initial step size (default: a sixth of each range)",
                                 gt=0)
    use_separable_cma: bool = param(False, "diagonal covariance (faster, ignores correlations)")
    with_margin: bool = param(False, "keep discrete parameters from collapsing (CMA-ES with "
                                     "margin)")
    lr_adapt: bool = param(False, "adapt the learning rate (noisy or multimodal objectives)")


@dataclass(frozen=True)
class Gp(Options):
    """Gaussian-process Bayesian optimisation (logEI / logEHVI)."""

    optuna_class = "GPSampler"
    seeded = True
    n_startup_trials: int = param(10, "random trials before the GP is used", ge=0)
    deterministic_objective: bool = param(False, "assume no noise in the objective")


@dataclass(frozen=True)
class Qmc(Options):
    """Quasi-Monte Carlo: a low-discrepancy sequence covering the space evenly."""

    optuna_class = "QMCSampler"
    seeded = True
    reseeded = False  # the sequence continues by index; a new seed would re-scramble it
    qmc_type: Literal["sobol", "halton"] = param("sobol", "the sequence")
    scramble: bool = param(False, "randomise the sequence with the seed")


@dataclass(frozen=True)
class NoPruning(Options):
    """Never prune."""

    optuna_class = "NopPruner"


@dataclass(frozen=True)
class Median(Options):
    """Prune when the objective is worse than the median of earlier trials at the same epoch."""

    optuna_class = "MedianPruner"
    n_startup_trials: int = param(5, "trials that finish before any is pruned", ge=0)
    n_warmup_steps: int = param(0, "epochs of each trial before it can be pruned", ge=0)
    interval_steps: int = param(1, "epochs between pruning checks", ge=1)
    n_min_trials: int = param(1, "trials reporting at that epoch before comparing", ge=1)


@dataclass(frozen=True)
class Percentile(Options):
    """Prune when the objective is outside the best percentile of earlier trials."""

    optuna_class = "PercentilePruner"
    percentile: float = param(25.0, "keep trials within this best percentile", ge=0, le=100)
    n_startup_trials: int = param(5, "trials that finish before any is pruned", ge=0)
    n_warmup_steps: int = param(0, "epochs of each trial before it can be pruned", ge=0)
    interval_steps: int = param(1, "epochs between pruning checks", ge=1)
    n_min_trials: int = param(1, "trials reporting at that epoch before comparing", ge=1)


@dataclass(frozen=True)
class SuccessiveHalving(Options):
    """Asynchronous successive halving: keep the best 1/reduction_factor at each rung."""

    optuna_class = "SuccessiveHalvingPruner"
    min_resource: int | None = param(None, "epochs before the first rung (default: auto)", ge=1)
    reduction_factor: int = param(4, "fraction of trials promoted per rung, 1/N", ge=2)
    min_early_stopping_rate: int = param(0, "rungs skipped before pruning starts", ge=0)
    bootstrap_count: int = param(0, "trials that must finish a rung before promotion", ge=0)

    def kwargs(self) -> dict[str, Any]:
        return {**super().kwargs(), "min_resource": self.min_resource or "auto"}


@dataclass(frozen=True)
class Hyperband(Options):
    """Hyperband: successive halving over several brackets of budgets."""

    optuna_class = "HyperbandPruner"
    min_resource: int = param(1, "epochs of the smallest bracket", ge=1)
    max_resource: int | None = param(None, "epochs of a full trial (default: auto)", ge=1)
    reduction_factor: int = param(3, "fraction of trials promoted per rung, 1/N", ge=2)
    bootstrap_count: int = param(0, "trials that must finish a rung before promotion", ge=0)

    def kwargs(self) -> dict[str, Any]:
        return {**super().kwargs(), "max_resource": self.max_resource or "auto"}

    def validate(self) -> None:
        if self.max_resource is not None and self.min_resource > self.max_resource:
            raise ValueError(f"min_resource ({self.min_resource}) is above max_resource "
                             f"({self.max_resource}): no bracket would fit")


@dataclass(frozen=True)
class Wilcoxon(Options):
    """Prune by a Wilcoxon signed-rank test against the best trial, epoch by epoch."""

    optuna_class = "WilcoxonPruner"
    p_threshold: float = param(0.1, "prune when p is below this", gt=0, lt=1)
    n_startup_steps: int = param(2, "epochs before any test", ge=0)


SAMPLERS: dict[str, type[Options]] = {
    "tpe": Tpe, "random": Random, "grid": Grid, "brute-force": BruteForce, "cmaes": CmaEs,
    "gp": Gp, "qmc": Qmc,
}
PRUNERS: dict[str, type[Options]] = {
    "none": NoPruning, "median": Median, "percentile": Percentile,
    "successive-halving": SuccessiveHalving, "hyperband": Hyperband, "wilcoxon": Wilcoxon,
}


@dataclass(frozen=True)
class Algorithm:
    """A sampler or pruner by name, with its validated options."""

    name: str
    options: Options


@dataclass(frozen=True)
class Baseline:
    """A reference point trained before the sampler's own suggestions."""

    label: str
    point: Mapping[str, Any]  # Optuna parameter name -> sampled value


@dataclass(frozen=True)
class StudySpec(StudyLayout):
    """A validated study file."""

    path: Path
    name: str
    objectives: tuple[Objective, ...]
    trials: int | None
    timeout: float | None
    seed: int
    sampler: Algorithm
    pruner: Algorithm
    storage: str
    folder: Path
    base: RunConfig
    eval_table: Mapping[str, Any] | None
    evaluation: EvalConfig | None
    space: SearchSpace
    constraints: tuple[Constraint, ...]
    baselines: tuple[Baseline, ...]
    definition: Mapping[str, Any]  # what a resumed study must still match
    host: PluginHost
    replicates: int = 1  # seeds per configuration; its value is their mean
    common_random_numbers: bool = False  # replicate r of every trial shares one seed
    heartbeat: Heartbeat = Heartbeat()  # how running trials prove their worker alive
    trackers: tuple[Tracker, ...] = ()  # experiment trackers every trial logs to
    overrides: tuple[str, ...] = ()  # the command line's KEY=VALUE, passed on to workers

    @property
    def source(self) -> str:
        return str(self.path)

    def trial_seed(self, number: int) -> int:
        """The base seed of trial ``number``: its replicate r trains with base + r."""
        if self.common_random_numbers:
            return self.seed
        return self.seed + number * self.replicates

    def resolve(self, point: Mapping[str, Any], seed: int, *,
                key: str = "run") -> tuple[RunConfig, EvalConfig | None]:
        """The trial's configuration and evaluation; ConfigError for an invalid point."""
        table = self.space.run_table(point)
        table["seed"] = seed
        config = parse_run(table, source=self.source, key=key, host=self.host)
        evaluation = None
        if self.eval_table is not None:
            from ablate.eval_config import parse_eval

            evaluation = parse_eval(self.eval_table, config, source=self.source, host=self.host)
        return config, evaluation

    def baseline_label(self, point: Mapping[str, Any]) -> str | None:
        """The label of the baseline at this point, if any (grids train baselines unqueued)."""
        for baseline in self.baselines:
            if baseline.point.keys() == point.keys() and all(
                    _same(baseline.point[k], point[k]) for k in point):
                return baseline.label
        return None

    def violated(self, config: RunConfig) -> Constraint | None:
        resolved = config.to_dict()
        return next((c for c in self.constraints if c.violated(resolved)), None)


def load_study_file(path: Path, *, storage: str | None = None, trials: int | None = None,
                    timeout: float | None = None, host: PluginHost | None = None,
                    workers: int = 1, overrides: Sequence[str] = ()) -> StudySpec:
    """Read and validate a study file; ``storage``, ``trials`` and ``timeout`` (the command
    line's) override the ``[study]`` values. ``workers`` > 1 local processes need a storage
    that takes concurrent writers (see ``ablate.study_view.default_storage``)."""
    host = host or default_host()
    source = str(path)
    data = apply_overrides(read_toml(path), overrides)  # run.lr=1e-3 from the command line
    if overrides:
        check_shape(data, source=source)  # the command line's values, held to the same limits
    errors = Collector()  # every mistake of the file at once, each with its key
    errors.attempt(check_keys, data, TOP_KEYS, source=source, key=None)
    for table in ("study", "run"):
        if not isinstance(data.get(table), Mapping):
            errors.add(ConfigError(f"no [{table}] table", source=source,
                                   hint="a study file needs [study] and [run]; see "
                                        "studies/beta_range.toml"))
    if errors.failed and not all(isinstance(data.get(t), Mapping) for t in ("study", "run")):
        errors.raise_errors()
    study = data["study"]
    errors.attempt(check_keys, study, STUDY_KEYS, source=source, key="study")
    if "seed" in data["run"]:
        errors.add(ConfigError("trials get their seeds from [study]", source=source,
                               key="run.seed", hint="move it to [study] seed; trial n uses "
                                                    "seed + n"))
    if "trackers" in data["run"]:
        errors.add(ConfigError("a study's trackers are set for every trial in [study]",
                               source=source, key="run.trackers",
                               hint="move it to [study] trackers"))
    run = {k: v for k, v in data["run"].items() if k not in ("seed", "trackers")}
    base = errors.attempt(parse_run, run, source=source, host=host)
    run_table = normalized_run_table(run) if base is not None else None
    eval_table = evaluation = space = None
    if base is None and isinstance(data.get("eval"), Mapping) and data["eval"]:
        errors.attempt(_evaluation, data["eval"], None, source=source, host=host)
    if base is not None:
        eval_table, evaluation = errors.attempt(_evaluation, data.get("eval"), base,
                                                source=source, host=host) or (None, None)
        space = errors.attempt(parse_search, data.get("search", {}), run_table, source=source,
                               host=host)
    name = errors.attempt(check_name, study.get("name", path.stem), source=source)
    objectives = None
    if base is not None and (evaluation is not None or data.get("eval") in (None, {})):
        objectives = errors.attempt(_objectives, study, evaluation, source=source, host=host)
    seed = errors.attempt(_integer, study.get("seed", 0), source=source, key="study.seed",
                          minimum=0, maximum=MAX_STUDY_SEED)
    if trials is None and "trials" in study:
        trials = errors.attempt(_integer, study["trials"], source=source, key="study.trials",
                                minimum=1, maximum=MAX_TRIALS)
    timeout = timeout or errors.attempt(_timeout, study.get("timeout"), source=source)
    replicates = errors.attempt(_integer, study.get("replicates", 1), source=source,
                                key="study.replicates", minimum=1, maximum=MAX_REPLICATES)
    common = errors.attempt(_boolean, study.get("common_random_numbers", (replicates or 1) > 1),
                            source=source, key="study.common_random_numbers")
    sampler = errors.attempt(_algorithm, study.get("sampler", "tpe"), SAMPLERS, source=source,
                             key="study.sampler")
    pruner = errors.attempt(_algorithm, study.get("pruner", "none"), PRUNERS, source=source,
                            key="study.pruner")
    if not errors.failed:  # how the parts fit together, once each part is right
        errors.attempt(_check_combination, sampler, pruner, objectives, evaluation, space,
                       trials, timeout, source=source)
        errors.attempt(_check_pruner_budget, pruner, base, space, source=source)
    constraints = None
    if space is not None:
        constraints = errors.attempt(parse_constraints, study.get("constraints", []), space,
                                     source=source, key="study.constraints")
    output = errors.attempt(_string, study.get("output", "studies-out"), source=source,
                            key="study.output")
    folder = Path(output) / name if output is not None and name is not None else None
    storage_key = "--storage" if storage else "study.storage"
    if folder is not None:
        storage = storage or study.get("storage") or default_storage(folder, workers)
        known = len(errors.errors)
        errors.attempt(_check_storage, storage, source=source, key=storage_key)
        if len(errors.errors) == known and workers > 1 and storage.startswith("sqlite"):
            errors.add(ConfigError(
                f"SQLite cannot serve {workers} workers (concurrent writers fail with "
                f"'database is locked' and can run a queued trial twice)",
                source=source, key=storage_key,
                hint="leave [study] storage unset for a journal file, or use "
                     "journal:///PATH.log or postgresql://USER@HOST/DB"))
    heartbeat = errors.attempt(_heartbeat, study, source=source)
    trackers = errors.attempt(parse_trackers, study.get("trackers", []), host, source=source,
                              key="study.trackers")
    cores = os.cpu_count() or 1
    if workers > WORKERS_PER_CORE * cores:  # far beyond the machine: each would get a sliver
        errors.add(ConfigError(f"{workers} local workers on a machine with {cores} CPU cores",
                               key="--workers", source=source,
                               hint=f"use at most {WORKERS_PER_CORE * cores} (ideally {cores}); "
                                    f"more machines join with ablate worker"))
    errors.raise_errors()
    definition = {"run": run_table, "eval": eval_table, "search": data.get("search", {}),
                  "objectives": [dataclasses.asdict(o) for o in objectives],
                  "constraints": [c.text for c in constraints]}
    if replicates > 1 or common:
        definition["replication"] = {"replicates": replicates, "common_random_numbers": common}
    spec = StudySpec(path, name, objectives, trials, timeout, seed, sampler, pruner, storage,
                     folder, base, eval_table, evaluation, space, constraints, (),
                     json.loads(json.dumps(definition)), host, replicates=replicates,
                     common_random_numbers=common)
    baselines = _baselines(study.get("baselines", [{"name": "base"}]), spec)
    return dataclasses.replace(spec, baselines=baselines, heartbeat=heartbeat,
                               trackers=trackers, overrides=tuple(overrides))


def _heartbeat(study: Mapping[str, Any], *, source: str) -> Heartbeat:
    """Seconds between a running trial's heartbeats and of silence before it counts as dead."""
    interval = _integer(study.get("heartbeat_interval", Heartbeat.interval), source=source,
                        key="study.heartbeat_interval", minimum=1, maximum=MAX_HEARTBEAT)
    grace = _integer(study.get("heartbeat_grace", Heartbeat.grace), source=source,
                     key="study.heartbeat_grace", minimum=1, maximum=MAX_HEARTBEAT)
    if grace <= interval:
        raise ConfigError(f"a grace of {grace} s would declare a worker dead between two of its "
                          f"heartbeats ({interval} s apart)", source=source,
                          key="study.heartbeat_grace",
                          hint=f"make it a few intervals, e.g. {3 * interval}")
    return Heartbeat(interval, grace)


def _evaluation(table: Any, base: RunConfig | None, *, source: str,
                host: PluginHost) -> tuple[Mapping[str, Any] | None, EvalConfig | None]:
    if table is None or table == {}:
        return None, None
    if importlib.util.find_spec("ablate.evaluation") is None:
        raise ConfigError("evaluation is not available in this version of ablate",
                          source=source, key="eval",
                          hint="remove [eval] and use objective = \"loss\"")
    from ablate.eval_config import parse_eval

    return table, parse_eval(table, base, source=source, host=host)


def _objectives(study: Mapping[str, Any], evaluation: EvalConfig | None, *, source: str,
                host: PluginHost) -> tuple[Objective, ...]:
    """Objectives are record keys: the training ones and those the [eval] metrics report."""
    metrics = _string_list(study.get("objective", "loss"), source=source, key="study.objective")
    goals = dict(TRAINING_METRICS)
    if evaluation is not None:
        from ablate.evaluation import reported_keys

        goals |= {name: key.goal for name, key in
                  reported_keys(evaluation.metrics, host).items()}
    available = list(goals)
    for metric in metrics:
        if metric not in available:
            hint = suggest(metric, available)
            where = "" if evaluation else " (add [eval] metrics to score samples)"
            valid = f"available: {', '.join(available)}{where}"
            raise ConfigError(f"unknown objective {metric!r}", source=source,
                              key="study.objective", hint=f"{hint} {valid}" if hint else valid)
    if len(set(metrics)) != len(metrics):
        raise ConfigError("an objective is listed twice", source=source, key="study.objective")
    if "direction" in study:
        directions = _string_list(study["direction"], source=source, key="study.direction")
    else:
        directions = [goals[m] for m in metrics]
    if len(directions) != len(metrics):
        raise ConfigError(f"{len(directions)} directions for {len(metrics)} objectives",
                          source=source, key="study.direction", hint="give one per objective")
    for direction in directions:
        if direction not in DIRECTIONS:
            raise ConfigError(f"unknown direction {direction!r}", source=source,
                              key="study.direction",
                              hint=suggest(direction, DIRECTIONS) or "minimize or maximize")
    return tuple(Objective(m, d) for m, d in zip(metrics, directions, strict=True))


def _algorithm(value: Any, known: Mapping[str, type[Options]], *, source: str,
               key: str) -> Algorithm:
    if isinstance(value, str):
        name, options = value, {}
    elif isinstance(value, Mapping):
        options = dict(value)
        name = options.pop("name", None)
        if not isinstance(name, str):
            raise ConfigError("needs a 'name'", source=source, key=f"{key}.name",
                              hint=f"one of {', '.join(known)}")
    else:
        raise ConfigError(f"expected a name or a table with a 'name', got {value!r}",
                          source=source, key=key)
    if name not in known:
        hint = suggest(name, known)
        valid = f"one of {', '.join(known)}"
        raise ConfigError(f"unknown {key.split('.')[-1]} {name!r}", source=source, key=key,
                          hint=f"{hint} {valid}" if hint else valid)
    cls = known[name]
    infos = {info.name: info for info in param_infos(cls)}
    check_keys(options, ["name", *infos], source=source, key=key)
    instance = cls(**{k: coerce(infos[k], v, source=source, key=f"{key}.{k}")
                      for k, v in options.items()})
    try:
        instance.validate()
    except ValueError as exc:
        raise ConfigError(str(exc), source=source, key=key) from None
    return Algorithm(name, instance)


def _check_pruner_budget(pruner: Algorithm, base: RunConfig, space: SearchSpace, *,
                         source: str) -> None:
    """A pruner's resources are epochs: they must fit in what a trial trains. Checked where the
    file fixes the epochs: none of their inputs searched, and a steps budget only over a
    subset (the whole dataset's size is the machine's to say)."""
    inputs = ("run.epochs", "run.steps", "run.subset", "run.batch_size")
    if any(p.key in inputs for p in space.params) or (base.steps and not base.subset):
        return
    epochs = -(-base.steps // (base.subset // base.batch_size)) if base.steps else base.epochs
    options = pruner.options
    for name in ("min_resource", "max_resource"):
        value = getattr(options, name, None)
        if isinstance(value, int) and value > epochs:
            raise ConfigError(f"{name} ({value}) is above the {epochs} epochs a trial "
                              f"trains: no trial would reach it", source=source,
                              key=f"study.pruner.{name}",
                              hint=f"use at most {epochs}, or leave it to auto")


def _check_combination(sampler: Algorithm, pruner: Algorithm, objectives: tuple[Objective, ...],
                       evaluation: EvalConfig | None, space: SearchSpace, trials: int | None,
                       timeout: float | None, *, source: str) -> None:
    """Reject what Optuna cannot do, before it fails half-way through a study."""
    pruning = pruner.name != "none"
    if pruning and len(objectives) > 1:
        raise ConfigError("pruning needs a single objective (Optuna cannot compare trials "
                          "half-way on several)", source=source, key="study.pruner",
                          hint="use pruner = \"none\" or one objective")
    first = objectives[0].metric
    if pruning and first not in TRAINING_METRICS and not (evaluation and evaluation.every):
        raise ConfigError(f"pruning needs {first!r} at several epochs, but [eval] scores the "
                          f"last epoch only", source=source, key="study.pruner",
                          hint="set [eval] every = 1 (or more), or pruner = \"none\"")
    if sampler.name == "cmaes" and len(objectives) > 1:
        raise ConfigError("cmaes optimises a single objective", source=source,
                          key="study.sampler", hint="use tpe, gp, random or qmc")
    if sampler.name in ("grid", "brute-force"):
        points = 1
        for p in space.params:
            try:
                points *= p.grid_count()
            except ValueError:
                raise ConfigError(f"{sampler.name} needs discrete values, but {p.key} is a "
                                  f"float range without a step", source=source,
                                  key=f"search.{p.key}", hint="add a step, or list values "
                                  "= [...]") from None
        if points > MAX_GRID_POINTS:
            raise ConfigError(f"the {sampler.name} has {points:,} points", source=source,
                              key="study.sampler",
                              hint=f"at most {MAX_GRID_POINTS:,}: use larger steps or fewer "
                                   f"values, or a sampler such as tpe or qmc with trials = N")
    if sampler.name == "grid" and space.conditional:
        key = next(p.key for p in space.params if p.conditional)
        raise ConfigError(f"grid needs a fixed space, but {key} is only searched for some "
                          f"plugins", source=source, key="study.sampler",
                          hint="use brute-force, which explores conditional spaces")
    if trials is None and timeout is None and sampler.name not in ("grid", "brute-force"):
        raise ConfigError("no budget: the study would never end", source=source,
                          key="study.trials", hint="set trials = N and/or timeout = SECONDS")


def _baselines(value: Any, spec: StudySpec) -> tuple[Baseline, ...]:
    source = spec.source
    if not isinstance(value, list) or not all(isinstance(v, Mapping) for v in value):
        raise ConfigError("must be a list of tables", source=source, key="study.baselines",
                          hint='e.g. baselines = [{name = "coursework"}] (missing keys keep '
                               'the [run] value)')
    resolved = spec.base.to_dict()
    baselines: list[Baseline] = []
    errors = Collector()  # every baseline's mistakes at once
    for i, entry in enumerate(value):
        baseline = errors.attempt(_baseline, i, entry, spec, resolved, baselines)
        if baseline is not None:
            baselines.append(baseline)
    errors.raise_errors()
    return tuple(baselines)


def _baseline(i: int, entry: Mapping[str, Any], spec: StudySpec, resolved: Mapping[str, Any],
              earlier: list[Baseline]) -> Baseline:
    source, key = spec.source, f"study.baselines[{i}]"
    values = flat_config(entry)
    label = values.pop("name", f"baseline {i}")
    if not isinstance(label, str):
        raise ConfigError("name must be a string", source=source, key=f"{key}.name")
    point = spec.space.baseline_point(values, resolved, source=source, key=key)
    config, _ = spec.resolve(point, spec.trial_seed(i), key=f"{key} -> run")
    broken = spec.violated(config)
    if broken is not None:
        raise ConfigError(f"the baseline breaks the constraint {broken.text!r}",
                          source=source, key=key)
    for j, other in enumerate(earlier):  # baselines are a set: each point once
        if other.label == label:
            raise ConfigError(f"the name {label!r} is already baseline {j}'s",
                              source=source, key=f"{key}.name",
                              hint="give every baseline its own name")
        if other.point.keys() == point.keys() and all(
                _same(other.point[k], point[k]) for k in point):
            raise ConfigError(f"the same point as baseline {j} ({other.label!r})",
                              source=source, key=key,
                              hint="list each point once; replicates = N trains seeds")
    return Baseline(label, point)


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, float) or isinstance(b, float):
        return isinstance(a, int | float) and isinstance(b, int | float) and \
            math.isclose(a, b, rel_tol=1e-9)
    return a == b


def _integer(value: Any, *, source: str, key: str, minimum: int,
             maximum: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ConfigError(f"{shown(value)} is not an integer >= {minimum}", source=source,
                          key=key)
    if maximum is not None and value > maximum:
        raise ConfigError(f"{shown(value)} is above the limit of {maximum}", source=source,
                          key=key, hint=LIMIT_REASONS.get(key.split(".")[-1], ""))
    return value



def _boolean(value: Any, *, source: str, key: str) -> bool:
    if not isinstance(value, bool):
        raise ConfigError(f"{value!r} is not true or false", source=source, key=key)
    return value


def _timeout(value: Any, *, source: str) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or \
            not math.isfinite(value) or value <= 0:
        raise ConfigError(f"{shown(value)} is not a positive, finite number of seconds",
                          source=source,
                          key="study.timeout", hint="e.g. timeout = 1200 for 20 minutes")
    return float(value)


def _string(value: Any, *, source: str, key: str) -> str:
    if not isinstance(value, str) or not value:
        raise ConfigError(f"expected a non-empty string, got {value!r}", source=source, key=key)
    return value


def _string_list(value: Any, *, source: str, key: str) -> list[str]:
    values = [value] if isinstance(value, str) else value
    if not isinstance(values, list) or not values or \
            not all(isinstance(v, str) for v in values):
        raise ConfigError(f"expected a string or a list of strings, got {value!r}",
                          source=source, key=key)
    return values


def _check_storage(url: Any, *, source: str, key: str) -> None:
    scheme = url.split(":", 1)[0].split("+", 1)[0] if isinstance(url, str) else ""
    if scheme not in STORAGE_SCHEMES or "://" not in url:
        shown = masked(url) if isinstance(url, str) else repr(url)
        raise ConfigError(f"{shown!r} is not a storage URL Optuna can keep a study in",
                          source=source, key=key,
                          hint="e.g. sqlite:///studies-out/NAME/study.db, "
                               "journal:///studies-out/NAME/journal.log or "
                               "postgresql://user@host/db")
