"""What a study says: per searched factor, its effect on each metric with a 95% interval and a
test, Optuna's parameter importances, and whether the training loss ranks configurations as the
sample-quality metrics do (it often does not: a loss is not a quality score).

Every trial with scored evaluations counts, pruned ones included, compared at equal training
budget: at an evaluated epoch the trials that reached it form a comparison set, valued by what
they recorded at that epoch. A study that prunes has several sets (all trials after the first
rung, fewer after each later one); each set is analysed at the last epoch it stays the same,
and a finding is stated at the largest budget that supports it, with how many trials back it.

Effects compare marginal means: a level's mean is the mean over the trials at that level of
their replicate means, so with random or TPE sampling (unbalanced designs) part of a factor's
effect can be another factor's; a grid gives balanced comparisons. Intervals come from a
two-level bootstrap over replicates and evaluation samples (ablate.intervals); trials whose
replicates share seeds (common random numbers) are resampled and tested in pairs.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import optuna
from optuna.trial import TrialState

from ablate import metrics_log
from ablate.errors import AblateError
from ablate.intervals import (
    Interval,
    Test,
    bootstrap_interval,
    mean_interval,
    normal_test,
    paired_test,
    rank_agreement,
    unpaired_test,
)
from ablate.replicates import eval_error, replicate_dirs
from ablate.search_space import SearchParam
from ablate.study import load_existing, quiet_optuna
from ablate.study_config import TRAINING_METRICS, StudySpec

MAX_LEVELS = 5
"""A numeric factor with more distinct values than this is cut into three ranges."""
RANKED_BINS = 3
RANK_AGREEMENT = 0.5
"""Spearman's rho below this between loss and a quality metric flags the loss as misleading."""
SUPPORT = 3
"""Trials a budget needs to back a headline finding, when some budget has that many."""
ANALYSED_STATES = {TrialState.COMPLETE: "completed", TrialState.PRUNED: "pruned"}


class AnalysisError(AblateError):
    """The study has nothing to analyse yet, or a trial asked for is not there."""

    exit_code = 2


@dataclass(frozen=True)
class MetricInfo:
    name: str
    goal: str  # "minimize" or "maximize"
    lowest: float = -math.inf  # what the metric can take (its declaration)
    highest: float = math.inf

    @property
    def difference_bounds(self) -> tuple[float, float]:
        """What a difference of two values of the metric can take."""
        return self.lowest - self.highest, self.highest - self.lowest


@dataclass(frozen=True)
class TrialLog:
    """A trial with scored evaluations: what it is, and each replicate's records by epoch."""

    number: int
    params: Mapping[str, Any]
    seed: int | None
    replicates: int
    baseline: str | None
    run_dir: Path
    state: str  # "completed" or "pruned"
    records: list[dict[str, Any]]  # the trial's own log: replicate means for several replicates
    logs: list[dict[int, dict[str, Any]]]  # per replicate: epoch -> record

    @property
    def epochs(self) -> list[int]:
        """The epochs every replicate finished."""
        return sorted(set.intersection(*(set(log) for log in self.logs)))

    @property
    def last_epoch(self) -> int:
        return self.epochs[-1] if self.epochs else 0

    def grid(self, epoch: int) -> Path | None:
        """Replicate 0's sample grid at ``epoch``, if one was saved there."""
        record = self.logs[0].get(epoch, {})
        path = Path(record["grid"]) if "grid" in record else None
        return path if path is not None and path.is_file() else None


@dataclass(frozen=True)
class TrialData:
    """A trial at one budget: its point, its records and each metric's value per replicate."""

    number: int
    params: Mapping[str, Any]
    seed: int | None
    replicates: int
    baseline: str | None
    run_dir: Path
    records: list[dict[str, Any]]  # the trial's log up to this epoch
    values: Mapping[str, np.ndarray]  # metric -> value of each replicate at this epoch
    errors: Mapping[str, np.ndarray]  # metric -> evaluation standard error of each value
    epoch: int = 0  # the budget: the epoch these values were recorded at
    state: str = "completed"
    grid: Path | None = None  # replicate 0's sample grid at this epoch

    def mean(self, metric: str, info: MetricInfo | None = None) -> Interval:
        """The replicate mean, inside the metric's range when ``info`` says it."""
        lowest, highest = (info.lowest, info.highest) if info else (-math.inf, math.inf)
        return mean_interval(self.values[metric], self.errors[metric], lowest=lowest,
                             highest=highest)


@dataclass(frozen=True)
class StudyData:
    """The trials of a comparison set: those that reached ``epoch``, valued there."""

    spec: StudySpec
    study: optuna.Study
    trials: list[TrialData]
    metrics: list[MetricInfo]
    replicates: int
    paired: bool  # every trial's replicate r has the same seed
    epoch: int = 0

    def metric(self, name: str) -> MetricInfo:
        return next(m for m in self.metrics if m.name == name)

    def mean(self, trial: TrialData, metric: str) -> Interval:
        return trial.mean(metric, self.metric(metric))

    def trial(self, number: int) -> TrialData:
        """A trial of this set by number; a clear error for any other."""
        for t in self.trials:
            if t.number == number:
                return t
        there = ", ".join(str(t.number) for t in self.trials)
        raise AnalysisError(f"trial {number} has no scored values at epoch {self.epoch} "
                            f"(trials with some: {there})")


@dataclass(frozen=True)
class StudyLogs:
    """Every analysable trial of a study with the metrics they recorded."""

    spec: StudySpec
    study: optuna.Study
    trials: list[TrialLog]
    metrics: list[MetricInfo]
    completed_only: bool

    def log(self, number: int) -> TrialLog:
        """A trial by number; a clear error for one that is missing or has nothing scored."""
        for t in self.trials:
            if t.number == number:
                return t
        known = {t.number: t for t in self.study.get_trials(deepcopy=False)}
        there = ", ".join(f"{t.number} ({t.state})" for t in self.trials)
        if number in known:
            state = known[number].user_attrs.get("outcome") or known[number].state.name.lower()
            raise AnalysisError(f"trial {number} of study {self.spec.name!r} is {state} and has "
                                f"no scored evaluations to compare (trials with some: {there})")
        raise AnalysisError(f"study {self.spec.name!r} has no trial {number} (trials with "
                            f"scored evaluations: {there})")


@dataclass(frozen=True)
class Level:
    """One level of a factor: a value, or a range of values of a finely searched number."""

    label: str
    members: tuple[int, ...]  # indices into StudyData.trials
    position: float | None  # where to plot it on a numeric axis; None for categories
    low: Any = None  # the values it holds: [low, high]
    high: Any = None


@dataclass(frozen=True)
class Factor:
    name: str  # the Optuna parameter name
    key: str  # as written in [search]
    levels: tuple[Level, ...]
    reference: int  # index of the level effects are measured from
    log: bool  # searched on a log scale

    @property
    def numeric(self) -> bool:
        return all(level.position is not None for level in self.levels)


@dataclass(frozen=True)
class Effect:
    """Changing a factor from its reference level to ``level``: the metric's change, at the
    budget ``epoch``."""

    factor: str
    level: str
    reference: str
    metric: str
    trials: int
    reference_trials: int
    level_mean: float
    reference_mean: float
    effect: Interval
    test: Test
    verdict: str  # "better", "worse" (the interval excludes 0) or "unclear"
    epoch: int = 0


@dataclass(frozen=True)
class RankCheck:
    """Does the training loss order configurations as a quality metric does?"""

    metric: str
    spearman: float
    kendall: float
    best_by_loss: int
    best_by_metric: int
    flagged: bool
    reason: str
    epoch: int = 0
    trials: int = 0


@dataclass(frozen=True)
class Budget:
    """The analysis of one comparison set."""

    epoch: int
    data: StudyData
    factors: list[Factor]
    level_means: dict[tuple[str, str, str], Interval]  # (factor, level, metric) -> mean
    effects: list[Effect]
    importances: dict[str, dict[str, float]]  # metric -> parameter -> importance
    rank_checks: list[RankCheck]
    notes: list[str]

    def factor(self, name: str) -> Factor | None:
        return next((f for f in self.factors if f.name == name), None)


@dataclass(frozen=True)
class Finding:
    """What one searched factor does to the objective, at the largest budget that tests it."""

    factor: str
    key: str
    verdict: str  # "clear", "unclear" or "not tested"
    summary: str  # the verdict in one line
    effect: Effect | None  # the level furthest from the reference on the objective
    budget: Budget | None
    trials: int  # trials behind it


@dataclass(frozen=True)
class Analysis:
    logs: StudyLogs
    budgets: list[Budget]  # by epoch
    findings: list[Finding]  # ranked by the size of their effect on the objective
    objective: str
    notes: list[str]

    @property
    def spec(self) -> StudySpec:
        return self.logs.spec

    @property
    def effects(self) -> list[Effect]:
        return [e for b in self.budgets for e in b.effects]

    @property
    def rank_checks(self) -> list[RankCheck]:
        return [c for b in self.budgets for c in b.rank_checks]

    @property
    def final(self) -> list[TrialData]:
        """Every trial at the last epoch it reached."""
        return [t for log in self.logs.trials
                if (t := at_epoch(log, log.last_epoch, self.logs.metrics)) is not None]


def load_logs(spec: StudySpec, *, completed_only: bool = False) -> StudyLogs:
    """Every trial with scored evaluations (completed and pruned; completed only if asked)."""
    study, _ = load_existing(spec)
    states = (TrialState.COMPLETE,) if completed_only else tuple(ANALYSED_STATES)
    finished = study.get_trials(deepcopy=False, states=states)
    logs = [log for t in finished if (log := _trial_log(t)) is not None]
    if not logs:
        which = "completed trial" if completed_only else "trial with scored epochs"
        raise AnalysisError(f"study {spec.name!r} has no {which} yet; run it with: "
                            f"ablate run {spec.path}")
    return StudyLogs(spec, study, logs, _metrics(spec, logs), completed_only)


def objective_metric(spec: StudySpec) -> str:
    return spec.objectives[0].metric


def rungs(logs: StudyLogs) -> list[int]:
    """The budgets to analyse: for each distinct set of trials that reached an evaluated epoch
    (the objective scored there), the last such epoch before the set shrinks."""
    objective = objective_metric(logs.spec)
    scored = sorted({e for t in logs.trials for e in t.epochs
                     if _scored(t, e, objective)})
    members = {e: frozenset(t.number for t in logs.trials if _scored(t, e, objective))
               for e in scored}
    return [e for i, e in enumerate(scored)
            if i + 1 == len(scored) or members[scored[i + 1]] != members[e]]


def budget_data(logs: StudyLogs, epoch: int, numbers: Sequence[int] | None = None) -> StudyData:
    """The trials (all, or ``numbers``) that reached ``epoch`` with the objective scored there,
    each valued at that epoch, and the metrics all of them recorded there."""
    objective = objective_metric(logs.spec)
    chosen = [t for t in logs.trials if numbers is None or t.number in numbers]
    reached = [t for t in chosen if epoch in t.epochs
               and (_scored(t, epoch, objective) or numbers is not None)]
    metrics = [m for m in logs.metrics
               if all(_scored(t, epoch, m.name) for t in reached) and reached]
    trials = [t for log in reached if (t := at_epoch(log, epoch, metrics)) is not None]
    replicates = max((t.replicates for t in trials), default=1)
    paired = len({(t.seed, t.replicates) for t in trials}) <= 1
    return StudyData(logs.spec, logs.study, trials, metrics, replicates, paired, epoch)


def at_epoch(log: TrialLog, epoch: int, metrics: Sequence[MetricInfo]) -> TrialData | None:
    """A trial valued by what every replicate recorded at ``epoch`` (None if it did not reach
    it); metrics not scored there, or not finite, are left out."""
    if epoch not in log.epochs:
        return None
    rows = [replicate[epoch] for replicate in log.logs]
    values, errors = {}, {}
    for m in metrics:
        if m.name == "train_seconds":  # an objective as the run's training time so far
            finals = [sum(r["train_seconds"] for e, r in replicate.items() if e <= epoch)
                      for replicate in log.logs]
        else:
            finals = [r.get(m.name) for r in rows]
        if any(v is None or not math.isfinite(v) for v in finals):
            continue
        values[m.name] = np.array(finals, dtype=np.float64)
        errors[m.name] = np.array([eval_error(r, m.name) for r in rows])
    return TrialData(log.number, log.params, log.seed, log.replicates, log.baseline,
                     log.run_dir, [r for r in log.records if r["epoch"] <= epoch], values,
                     errors, epoch, log.state, log.grid(epoch))


def analyse(spec: StudySpec, *, completed_only: bool = False) -> Analysis:
    logs = load_logs(spec, completed_only=completed_only)
    objective = objective_metric(spec)
    values: dict[str, list[Any]] = {}
    for t in logs.trials:
        for name, value in t.params.items():
            values.setdefault(name, []).append(value)
    budgets = [analyse_budget(budget_data(logs, e), values) for e in rungs(logs)]
    notes: list[str] = []
    states = [t.state for t in logs.trials]
    notes.append(f"{len(states)} trials with scored evaluations ({states.count('completed')} "
                 f"completed, {states.count('pruned')} pruned), compared at "
                 f"{len(budgets)} budget{'s' if len(budgets) != 1 else ''}: "
                 + ", ".join(f"epoch {b.epoch} ({_trials(len(b.data.trials))})"
                             for b in budgets))
    if completed_only:
        notes.append("completed trials only (--completed-only): pruned trials are left out")
    replicates = max(t.replicates for t in logs.trials)
    if replicates == 1:
        notes.append("one replicate per configuration: intervals hold evaluation noise only, "
                     "not seed noise; set [study] replicates = 3 (or more) to measure it")
    elif replicates == 2:
        notes.append("two replicates per configuration: t intervals on one degree of freedom "
                     "are 12.7 standard errors wide and marked uninformative; use three or more")
    if len({(t.seed, t.replicates) for t in logs.trials}) > 1:
        notes.append("trials do not share seeds (common_random_numbers = false): comparisons "
                     "are unpaired, and wider")
    if any(len(level.members) > 1 for b in budgets for f in b.factors for level in f.levels):
        notes.append("a level's interval counts replicate and evaluation noise, not the spread "
                     "between the configurations that share the level (other factors differ "
                     "among them): read effects of levels with several trials as marginal")
    findings = [finding(p, budgets, objective) for p in spec.space.params]
    return Analysis(logs, budgets, rank_findings(findings), objective, notes)


def analyse_budget(data: StudyData, values: Mapping[str, Sequence[Any]]) -> Budget:
    """Factors, level means, effects, importances and loss checks of one comparison set;
    ``values``: every value each searched parameter took in the study, which sets levels."""
    notes: list[str] = []
    factors = [f for p in data.spec.space.params
               if (f := factor(data, p, values.get(p.name))) is not None]
    if not factors:
        notes.append(f"at epoch {data.epoch} no searched factor took two values among the "
                     f"{len(data.trials)} trials that reached it: no effect to estimate")
    level_means = {(f.name, level.label, m.name): level_mean(data, level, m.name)
                   for f in factors for level in f.levels for m in data.metrics}
    effects = [effect(data, f, i, m.name) for f in factors for i in range(len(f.levels))
               if i != f.reference for m in data.metrics]
    importances = param_importances(data, notes)
    checks = rank_checks(data, notes)
    return Budget(data.epoch, data, factors, level_means, effects, importances, checks, notes)


def factor(data: StudyData, param: SearchParam,
           distinct: Sequence[Any] | None = None) -> Factor | None:
    """A searched parameter's levels among the set's trials; None if it took one value there.

    ``distinct`` is every value the parameter took in the study: levels (and the ranges of a
    finely searched number) come from it, so that they mean the same at every budget.
    """
    name = param.name
    present = [(i, t.params[name]) for i, t in enumerate(data.trials) if name in t.params]
    here = sorted({v for _, v in present}, key=_sort_key)
    distinct = sorted(set(distinct), key=_sort_key) if distinct is not None else here
    if len(here) < 2:
        return None
    numeric = all(isinstance(v, int | float) and not isinstance(v, bool) for v in distinct)
    if numeric and len(distinct) > MAX_LEVELS:
        bounds = [(float(g[0]), float(g[-1])) for g in
                  np.array_split(np.array(distinct, dtype=np.float64), RANKED_BINS)]
    else:
        bounds = [(v, v) for v in distinct]
    levels = []
    for low, high in bounds:
        members = tuple(i for i, v in present if _within(v, low, high))
        if not members:
            continue
        position = float(np.median([float(data.trials[i].params[name]) for i in members])) \
            if numeric else None
        label = _label(low) if low == high else f"{_bound(low)} to {_bound(high)}"
        levels.append(Level(label, members, position, low, high))
    if len(levels) < 2:
        return None
    baseline = next((i for i, t in enumerate(data.trials) if t.baseline and name in t.params),
                    None)
    reference = next((j for j, level in enumerate(levels) if baseline in level.members), 0)
    log = bool(getattr(param.distribution, "log", False))
    return Factor(name, param.key, tuple(levels), reference, log)


def level_mean(data: StudyData, level: Level, metric: str) -> Interval:
    values, errors = _stack(data, level.members, metric)
    info = data.metric(metric)
    return bootstrap_interval(lambda x: x.mean(axis=(-2, -1)), values, errors,
                              paired=data.paired, lowest=info.lowest, highest=info.highest)


def effect(data: StudyData, f: Factor, index: int, metric: str) -> Effect:
    """Level ``index`` minus the reference level, with its interval and test."""
    level, reference = f.levels[index], f.levels[f.reference]
    interval, test = difference(data, level.members, reference.members, metric)
    goal = data.metric(metric).goal
    return Effect(f.name, level.label, reference.label, metric, len(level.members),
                  len(reference.members), float(_stack(data, level.members, metric)[0].mean()),
                  float(_stack(data, reference.members, metric)[0].mean()), interval, test,
                  verdict(interval, goal), data.epoch)


def difference(data: StudyData, a: Sequence[int], b: Sequence[int],
               metric: str) -> tuple[Interval, Test]:
    """Mean over trials ``a`` minus mean over trials ``b`` (indices), with a test.

    Paired: the per-replicate differences of the two means (replicate r shares its seed on
    both sides). Unpaired: Welch's test on the replicate values of each side. One replicate:
    a z test on the evaluation noise behind the interval.
    """
    values_a, errors_a = _stack(data, a, metric)
    values_b, errors_b = _stack(data, b, metric)
    n = len(a)
    values = np.concatenate([values_a, values_b])
    errors = np.concatenate([errors_a, errors_b])

    def statistic(x: np.ndarray) -> np.ndarray:
        return x[..., :n, :].mean(axis=(-2, -1)) - x[..., n:, :].mean(axis=(-2, -1))

    lowest, highest = data.metric(metric).difference_bounds
    interval = bootstrap_interval(statistic, values, errors, paired=data.paired,
                                  lowest=lowest, highest=highest)
    if values.shape[1] == 1:
        test = normal_test(interval)
    elif data.paired:
        test = paired_test(values_a.mean(axis=0) - values_b.mean(axis=0))
    else:
        test = unpaired_test(values_a.ravel(), values_b.ravel())
    return interval, test


def verdict(interval: Interval, goal: str) -> str:
    """'better' or 'worse' when the 95% interval of a difference excludes zero."""
    if interval.low <= 0 <= interval.high:
        return "unclear"
    lower = interval.high < 0
    return "better" if lower == (goal == "minimize") else "worse"


def param_importances(data: StudyData, notes: list[str]) -> dict[str, dict[str, float]]:
    """Optuna's PED-ANOVA importances of the searched parameters for each metric's mean over
    the set's trials (pruned ones included: they are added to an in-memory study as complete
    trials valued at this budget; fANOVA would need scikit-learn)."""
    varied = {p.name for p in data.spec.space.params
              if len({repr(t.params.get(p.name)) for t in data.trials}) > 1}
    if len(data.trials) < 3 or not varied:
        notes.append(f"at epoch {data.epoch} parameter importances need three trials and a "
                     f"searched parameter that varies ({len(data.trials)} trials)")
        return {}
    stored = {t.number: t for t in data.study.get_trials(deepcopy=False)}
    out = {}
    for m in data.metrics:
        try:
            with quiet_optuna():
                study = optuna.create_study(direction=m.goal)
                study.add_trials([optuna.trial.create_trial(
                    params=dict(t.params), distributions=stored[t.number].distributions,
                    value=float(t.values[m.name].mean())) for t in data.trials])
                out[m.name] = optuna.importance.get_param_importances(
                    study, evaluator=optuna.importance.PedAnovaImportanceEvaluator())
        except (RuntimeError, ValueError) as exc:
            notes.append(f"at epoch {data.epoch} no parameter importances for {m.name}: {exc}")
    return out


def rank_checks(data: StudyData, notes: list[str]) -> list[RankCheck]:
    """For each quality metric, whether ranking configurations by loss would mislead."""
    quality = [m for m in data.metrics if m.name not in TRAINING_METRICS]
    if not quality:
        notes.append(f"at epoch {data.epoch} no sample-quality metric was scored: nothing tells "
                     f"whether the loss ranks configurations correctly")
        return []
    if len(data.trials) < 2:
        notes.append(f"at epoch {data.epoch} the loss-versus-quality check needs two trials")
        return []
    loss_goodness = -np.array([t.values["loss"].mean() for t in data.trials])
    numbers = [t.number for t in data.trials]
    checks = []
    for m in quality:
        sign = 1.0 if m.goal == "maximize" else -1.0
        goodness = sign * np.array([t.values[m.name].mean() for t in data.trials])
        if np.ptp(goodness) == 0 or np.ptp(loss_goodness) == 0:
            notes.append(f"at epoch {data.epoch} {m.name} or the loss is the same for every "
                         f"trial: no ranking check")
            continue
        rho, tau = rank_agreement(loss_goodness, goodness)
        by_loss = numbers[int(np.argmax(loss_goodness))]
        by_metric = numbers[int(np.argmax(goodness))]
        reasons = []
        flagged = rho < RANK_AGREEMENT
        if by_loss != by_metric:
            gap, _ = difference(data, [numbers.index(by_metric)], [numbers.index(by_loss)],
                                m.name)
            clear = verdict(gap, m.goal) != "unclear" and gap.informative
            flagged = flagged or clear
            reasons.append(f"the lowest loss picks trial {by_loss}, {m.name} picks trial "
                           f"{by_metric} ({m.name} {gap.estimate:+.4g} [{gap.low:.4g}, "
                           f"{gap.high:.4g}] from the loss's pick, "
                           f"{'clear' if clear else 'unclear'})")
        if rho < RANK_AGREEMENT:
            reasons.append(f"rank correlation {rho:.2f} < {RANK_AGREEMENT}")
        checks.append(RankCheck(m.name, rho, tau, by_loss, by_metric, flagged,
                                "; ".join(reasons) or "the loss ranks configurations like "
                                f"{m.name}", data.epoch, len(data.trials)))
    return checks


def finding(param: SearchParam, budgets: Sequence[Budget], objective: str) -> Finding:
    """A factor's effect on the objective at the largest budget that supports it: where it
    took two values among at least SUPPORT trials (two trials that differ in several factors
    would credit each of them with the same difference), or else among any; a budget where
    another factor splits the trials the same way is used only if no other budget tests it."""
    varied = [b for b in budgets if b.factor(param.name) is not None
              and any(e.factor == param.name and e.metric == objective for e in b.effects)]
    backed = [b for b in varied
              if sum(len(level.members) for level in b.factor(param.name).levels) >= SUPPORT]
    candidates = list(reversed(backed or varied))
    separable = [b for b in candidates if not confounded_with(b, param.name)]
    for budget in separable or candidates:
        f = budget.factor(param.name)
        effects = [e for e in budget.effects if e.factor == param.name and e.metric == objective]
        strongest = max(effects, key=lambda e: abs(e.effect.estimate))
        trials = sum(len(level.members) for level in f.levels)
        where = f"at epoch {budget.epoch} ({_trials(trials)})"
        if confounds := confounded_with(budget, param.name):
            summary = (f"confounded with {', '.join(confounds)} {where}: the same trials "
                       f"split both, so the difference belongs to neither alone")
            return Finding(param.name, param.key, "unclear", summary, strongest, budget, trials)
        if strongest.verdict != "unclear" and strongest.effect.informative:
            change = "lowers" if strongest.effect.estimate < 0 else "raises"
            summary = (f"{strongest.level} {change} {objective} by "
                       f"{abs(strongest.effect.estimate):.3g} against {strongest.reference} "
                       f"{where}: {strongest.verdict}")
            return Finding(param.name, param.key, "clear", summary, strongest, budget, trials)
        why = strongest.effect.uninformative or "every interval includes 0"
        summary = f"no clear effect {where}: {why}"
        return Finding(param.name, param.key, "unclear", summary, strongest, budget, trials)
    return Finding(param.name, param.key, "not tested",
                   "took one value among the trials at every budget", None, None, 0)


def confounded_with(budget: Budget, name: str) -> list[str]:
    """The other factors that split this budget's trials into the same groups as ``name``:
    their effects are one and the same difference, which the set cannot attribute."""

    def groups(f: Factor) -> frozenset[frozenset[int]]:
        return frozenset(frozenset(level.members) for level in f.levels)

    mine = groups(budget.factor(name))
    return [f.key for f in budget.factors if f.name != name and groups(f) == mine]


def rank_findings(findings: Sequence[Finding]) -> list[Finding]:
    """Tested factors by the size of their effect on the objective, then untested ones."""
    return sorted(findings, key=lambda f: (f.effect is None,
                                           -abs(f.effect.effect.estimate) if f.effect else 0.0))


def _trials(n: int) -> str:
    return f"{n} trial{'s' if n != 1 else ''}"


def _scored(log: TrialLog, epoch: int, metric: str) -> bool:
    """Whether every replicate recorded a finite value of ``metric`` at ``epoch``."""
    if metric == "train_seconds":
        return epoch in log.epochs
    values = [replicate.get(epoch, {}).get(metric) for replicate in log.logs]
    return all(isinstance(v, int | float) and math.isfinite(v) for v in values)


def _stack(data: StudyData, members: Sequence[int], metric: str) -> tuple[np.ndarray, np.ndarray]:
    """Values and evaluation errors of trials ``members``: arrays of trials x replicates."""
    values = np.stack([data.trials[i].values[metric] for i in members])
    errors = np.stack([data.trials[i].errors[metric] for i in members])
    return values, errors


def _trial_log(trial: optuna.trial.FrozenTrial) -> TrialLog | None:
    attrs = trial.user_attrs
    run_dir = Path(attrs.get("run_dir", ""))
    if not attrs.get("run_dir") or not (run_dir / "metrics.jsonl").is_file():
        raise AnalysisError(f"trial {trial.number}'s run folder {run_dir} is missing (the "
                            f"report reads the trials' metrics.jsonl; run ablate from the "
                            f"folder the study ran in)")
    replicates = attrs.get("replicates", 1)
    logs = [{r["epoch"]: r for r in metrics_log.read(folder / "metrics.jsonl")}
            for folder in replicate_dirs(run_dir, replicates)]
    log = TrialLog(trial.number, dict(trial.params), attrs.get("seed"), replicates,
                   attrs.get("baseline"), run_dir, ANALYSED_STATES[trial.state],
                   metrics_log.read(run_dir / "metrics.jsonl"), logs)
    return log if log.epochs else None


def _metrics(spec: StudySpec, trials: list[TrialLog]) -> list[MetricInfo]:
    """The loss, the objectives and every metric some trial recorded, with their ranges."""
    goals: dict[str, tuple[str, float, float]] = {
        name: (goal, -math.inf, math.inf) for name, goal in TRAINING_METRICS.items()}
    if spec.evaluation is not None:
        from ablate.evaluation import reported_keys

        goals |= {name: (key.goal, key.lowest, key.highest) for name, key in
                  reported_keys(spec.evaluation.metrics, spec.host).items()}
    for o in spec.objectives:
        _, lowest, highest = goals.get(o.metric, (o.direction, -math.inf, math.inf))
        goals[o.metric] = (o.direction, lowest, highest)
    objectives = [o.metric for o in spec.objectives]

    def recorded(metric: str) -> bool:
        if metric == "train_seconds":  # every record has it; analyse it when it is optimised
            return metric in objectives
        return any(metric in r for t in trials for log in t.logs for r in log.values())

    names = [m for m in dict.fromkeys(["loss", *objectives, *goals]) if recorded(m)]
    return [MetricInfo(m, *goals[m]) for m in names]


def _within(value: Any, low: Any, high: Any) -> bool:
    if low == high:
        return value == low
    return low <= value <= high


def _sort_key(value: Any) -> tuple[int, Any]:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return (0, value)
    return (1, str(value))


def _bound(value: float) -> str:
    return f"{value:.0f}" if 1000 <= abs(value) < 1e6 else f"{value:.3g}"


def _label(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)

