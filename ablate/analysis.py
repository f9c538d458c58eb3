"""What a finished study says: per searched factor, its effect on each metric with a 95% interval
and a test, Optuna's parameter importances, and whether the training loss ranks configurations
as the sample-quality metrics do (it often does not: a loss is not a quality score).

Effects compare marginal means: a level's mean is the mean over the completed trials at that
level of their replicate means, so with random or TPE sampling (unbalanced designs) part of a
factor's effect can be another factor's; a grid gives balanced comparisons. Intervals come from
a two-level bootstrap over replicates and evaluation samples (ablate.intervals); trials whose
replicates share seeds (common random numbers) are resampled and tested in pairs.
"""

from __future__ import annotations

import dataclasses
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
    paired_test,
    rank_agreement,
    unpaired_test,
)
from ablate.replicates import eval_error, replicate_dirs
from ablate.search_space import SearchParam
from ablate.study import load_existing, objective_value, quiet_optuna
from ablate.study_config import TRAINING_METRICS, StudySpec

MAX_LEVELS = 5
"""A numeric factor with more distinct values than this is cut into three ranges."""
RANKED_BINS = 3
RANK_AGREEMENT = 0.5
"""Spearman's rho below this between loss and a quality metric flags the loss as misleading."""


class AnalysisError(AblateError):
    """The study has nothing to analyse yet, or a trial asked for is not there."""

    exit_code = 2


@dataclass(frozen=True)
class MetricInfo:
    name: str
    goal: str  # "minimize" or "maximize"


@dataclass(frozen=True)
class TrialData:
    """A completed trial: its point, its records and each metric's final value per replicate."""

    number: int
    params: Mapping[str, Any]
    seed: int | None
    replicates: int
    baseline: str | None
    run_dir: Path
    records: list[dict[str, Any]]  # the trial's log: replicate means for several replicates
    values: Mapping[str, np.ndarray]  # metric -> final value of each replicate
    errors: Mapping[str, np.ndarray]  # metric -> evaluation standard error of each value

    def mean(self, metric: str) -> Interval:
        return mean_interval(self.values[metric], self.errors[metric])


@dataclass(frozen=True)
class StudyData:
    spec: StudySpec
    study: optuna.Study
    trials: list[TrialData]
    metrics: list[MetricInfo]
    replicates: int
    paired: bool  # every trial's replicate r has the same seed

    def metric(self, name: str) -> MetricInfo:
        return next(m for m in self.metrics if m.name == name)

    def trial(self, number: int) -> TrialData:
        """A completed trial by number; a clear error for any other."""
        for t in self.trials:
            if t.number == number:
                return t
        known = {t.number: t for t in self.study.get_trials(deepcopy=False)}
        completed = ", ".join(str(t.number) for t in self.trials)
        if number in known:
            state = known[number].user_attrs.get("outcome") or known[number].state.name.lower()
            raise AnalysisError(f"trial {number} of study {self.spec.name!r} is {state}; only "
                                f"completed trials compare (completed: {completed})")
        raise AnalysisError(f"study {self.spec.name!r} has no trial {number} (completed: "
                            f"{completed})")


@dataclass(frozen=True)
class Level:
    """One level of a factor: a value, or a range of values of a finely searched number."""

    label: str
    members: tuple[int, ...]  # indices into StudyData.trials
    position: float | None  # where to plot it on a numeric axis; None for categories


@dataclass(frozen=True)
class Factor:
    name: str  # the Optuna parameter name
    key: str  # as written in [search]
    levels: tuple[Level, ...]
    reference: int  # index of the level effects are measured from
    log: bool  # searched on a log scale


@dataclass(frozen=True)
class Effect:
    """Changing a factor from its reference level to ``level``: the metric's change."""

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


@dataclass(frozen=True)
class Analysis:
    data: StudyData
    factors: list[Factor]
    level_means: dict[tuple[str, str, str], Interval]  # (factor, level, metric) -> mean
    effects: list[Effect]
    importances: dict[str, dict[str, float]]  # metric -> parameter -> importance
    rank_checks: list[RankCheck]
    notes: list[str]


def load(spec: StudySpec, *, epoch: int | None = None) -> StudyData:
    """The completed trials of a study with each metric's final value per replicate, or its
    latest value up to ``epoch`` (to compare configurations early in training)."""
    study, _ = load_existing(spec)
    finished = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    if not finished:
        raise AnalysisError(f"study {spec.name!r} has no completed trial yet; run it with: "
                            f"ablate run {spec.path}")
    trials = [_trial_data(t, epoch) for t in finished]
    metrics = _metrics(spec, trials)
    trials = [_with_values(t, metrics, epoch) for t in trials]
    return StudyData(spec, study, trials, metrics, max(t.replicates for t in trials),
                     len({(t.seed, t.replicates) for t in trials}) == 1)


def analyse(spec: StudySpec) -> Analysis:
    data = load(spec)
    notes: list[str] = []
    factors = [f for p in spec.space.params if (f := factor(data, p)) is not None]
    if not factors:
        notes.append("no searched factor took two values among the completed trials: there is "
                     "no effect to estimate")
    level_means = {(f.name, level.label, m.name): level_mean(data, level, m.name)
                   for f in factors for level in f.levels for m in data.metrics}
    effects = [effect(data, f, i, m.name) for f in factors for i in range(len(f.levels))
               if i != f.reference for m in data.metrics]
    importances = param_importances(data, notes)
    checks = rank_checks(data, notes)
    if data.replicates == 1:
        notes.append("one replicate per configuration: intervals hold evaluation noise only, "
                     "not seed noise; set [study] replicates = 3 (or more) to measure it")
    if not data.paired:
        notes.append("trials do not share seeds (common_random_numbers = false): comparisons "
                     "are unpaired, and wider")
    return Analysis(data, factors, level_means, effects, importances, checks, notes)


def factor(data: StudyData, param: SearchParam) -> Factor | None:
    """A searched parameter's levels among the completed trials; None if it took one value."""
    name = param.name
    present = [(i, t.params[name]) for i, t in enumerate(data.trials) if name in t.params]
    distinct = sorted({v for _, v in present}, key=_sort_key)
    if len(distinct) < 2:
        return None
    numeric = all(isinstance(v, int | float) and not isinstance(v, bool) for v in distinct)
    if numeric and len(distinct) > MAX_LEVELS:
        groups = [list(g) for g in np.array_split(np.array(distinct, dtype=np.float64),
                                                  RANKED_BINS)]
        levels = []
        for group in groups:
            members = tuple(i for i, v in present if group[0] <= v <= group[-1])
            values = [float(v) for i, v in present if i in members]
            levels.append(Level(f"{group[0]:.3g} to {group[-1]:.3g}", members,
                                float(np.median(values))))
    else:
        levels = [Level(_label(value), tuple(i for i, v in present if v == value),
                        float(value) if numeric else None) for value in distinct]
    baseline = next((i for i, t in enumerate(data.trials) if t.baseline and name in t.params),
                    None)
    reference = next((j for j, level in enumerate(levels) if baseline in level.members), 0)
    log = bool(getattr(param.distribution, "log", False))
    return Factor(name, param.key, tuple(levels), reference, log)


def level_mean(data: StudyData, level: Level, metric: str) -> Interval:
    values, errors = _stack(data, level.members, metric)
    return bootstrap_interval(lambda x: x.mean(axis=(-2, -1)), values, errors,
                              paired=data.paired)


def effect(data: StudyData, f: Factor, index: int, metric: str) -> Effect:
    """Level ``index`` minus the reference level, with its interval and test."""
    level, reference = f.levels[index], f.levels[f.reference]
    interval, test = difference(data, level.members, reference.members, metric)
    goal = data.metric(metric).goal
    return Effect(f.name, level.label, reference.label, metric, len(level.members),
                  len(reference.members), float(_stack(data, level.members, metric)[0].mean()),
                  float(_stack(data, reference.members, metric)[0].mean()), interval, test,
                  verdict(interval, goal))


def difference(data: StudyData, a: Sequence[int], b: Sequence[int],
               metric: str) -> tuple[Interval, Test]:
    """Mean over trials ``a`` minus mean over trials ``b`` (indices), with a test.

    Paired: the per-replicate differences of the two means (replicate r shares its seed on
    both sides). Unpaired: Welch's test on the replicate values of each side.
    """
    values_a, errors_a = _stack(data, a, metric)
    values_b, errors_b = _stack(data, b, metric)
    n = len(a)
    values = np.concatenate([values_a, values_b])
    errors = np.concatenate([errors_a, errors_b])

    def statistic(x: np.ndarray) -> np.ndarray:
        return x[..., :n, :].mean(axis=(-2, -1)) - x[..., n:, :].mean(axis=(-2, -1))

    interval = bootstrap_interval(statistic, values, errors, paired=data.paired)
    if data.paired:
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
    """Optuna's PED-ANOVA importances of the searched parameters for each metric's mean
    (fANOVA would need scikit-learn)."""
    if len(data.trials) < 2 or not data.spec.space.params:
        notes.append("parameter importances need two completed trials and a searched parameter")
        return {}
    out = {}
    for m in data.metrics:
        means = {t.number: float(t.values[m.name].mean()) for t in data.trials}
        try:
            with quiet_optuna():
                out[m.name] = optuna.importance.get_param_importances(
                    data.study, target=lambda t, means=means: means[t.number],
                    evaluator=optuna.importance.PedAnovaImportanceEvaluator())
        except (RuntimeError, ValueError) as exc:
            notes.append(f"no parameter importances for {m.name}: {exc}")
    return out


def rank_checks(data: StudyData, notes: list[str]) -> list[RankCheck]:
    """For each quality metric, whether ranking configurations by loss would mislead."""
    quality = [m for m in data.metrics if m.name not in TRAINING_METRICS]
    if not quality:
        notes.append("no sample-quality metric ([eval]): nothing tells whether the loss ranks "
                     "configurations correctly")
        return []
    if len(data.trials) < 2:
        notes.append("the loss-versus-quality check needs two completed trials")
        return []
    loss_goodness = -np.array([t.values["loss"].mean() for t in data.trials])
    numbers = [t.number for t in data.trials]
    checks = []
    for m in quality:
        sign = 1.0 if m.goal == "maximize" else -1.0
        goodness = sign * np.array([t.values[m.name].mean() for t in data.trials])
        if np.ptp(goodness) == 0 or np.ptp(loss_goodness) == 0:
            notes.append(f"{m.name} or the loss is the same for every trial: no ranking check")
            continue
        rho, tau = rank_agreement(loss_goodness, goodness)
        by_loss = numbers[int(np.argmax(loss_goodness))]
        by_metric = numbers[int(np.argmax(goodness))]
        reasons = []
        if by_loss != by_metric:
            gap, _ = difference(data, [numbers.index(by_metric)], [numbers.index(by_loss)],
                                m.name)
            reasons.append(f"the lowest loss picks trial {by_loss}, {m.name} picks trial "
                           f"{by_metric} ({m.name} {gap.estimate:+.4g} [{gap.low:.4g}, "
                           f"{gap.high:.4g}] from the loss's pick, "
                           f"{'clear' if verdict(gap, m.goal) != 'unclear' else 'unclear'})")
        if rho < RANK_AGREEMENT:
            reasons.append(f"rank correlation {rho:.2f} < {RANK_AGREEMENT}")
        checks.append(RankCheck(m.name, rho, tau, by_loss, by_metric, bool(reasons),
                                "; ".join(reasons) or "the loss ranks configurations like "
                                f"{m.name}"))
    return checks


def _stack(data: StudyData, members: Sequence[int], metric: str) -> tuple[np.ndarray, np.ndarray]:
    """Values and evaluation errors of trials ``members``: arrays of trials x replicates."""
    values = np.stack([data.trials[i].values[metric] for i in members])
    errors = np.stack([data.trials[i].errors[metric] for i in members])
    return values, errors


def _trial_data(trial: optuna.trial.FrozenTrial, epoch: int | None) -> TrialData:
    attrs = trial.user_attrs
    run_dir = Path(attrs.get("run_dir", ""))
    if not attrs.get("run_dir") or not (run_dir / "metrics.jsonl").is_file():
        raise AnalysisError(f"trial {trial.number}'s run folder {run_dir} is missing (the "
                            f"report reads the trials' metrics.jsonl; run ablate from the "
                            f"folder the study ran in)")
    return TrialData(trial.number, dict(trial.params), attrs.get("seed"),
                     attrs.get("replicates", 1), attrs.get("baseline"), run_dir,
                     [r for r in metrics_log.read(run_dir / "metrics.jsonl")
                      if epoch is None or r["epoch"] <= epoch], {}, {})


def _metrics(spec: StudySpec, trials: list[TrialData]) -> list[MetricInfo]:
    """The loss, the objectives and every metric the final records of all trials hold."""
    goals = dict(TRAINING_METRICS)
    if spec.evaluation is not None:
        from ablate.evaluation import reported_keys

        goals |= {name: key.goal for name, key in
                  reported_keys(spec.evaluation.metrics, spec.host).items()}
    goals |= {o.metric: o.direction for o in spec.objectives}
    objectives = [o.metric for o in spec.objectives]

    def recorded(metric: str) -> bool:
        if metric == "train_seconds":  # every record has it; analyse it when it is optimised
            return metric in objectives
        return all(any(metric in r for r in t.records) for t in trials)

    names = [m for m in dict.fromkeys(["loss", *objectives, *goals]) if recorded(m)]
    return [MetricInfo(m, goals[m]) for m in names]


def _with_values(trial: TrialData, metrics: list[MetricInfo], epoch: int | None) -> TrialData:
    logs = []
    for folder in replicate_dirs(trial.run_dir, trial.replicates):
        records = [r for r in metrics_log.read(folder / "metrics.jsonl")
                   if epoch is None or r["epoch"] <= epoch]
        if not records:
            raise AnalysisError(f"trial {trial.number}: {folder / 'metrics.jsonl'} has no "
                                f"record" + (f" up to epoch {epoch}" if epoch else ""))
        logs.append(records)
    values, errors = {}, {}
    for m in metrics:
        finals = [objective_value(records, m.name) for records in logs]
        if any(v is None or not math.isfinite(v) for v in finals):
            raise AnalysisError(f"trial {trial.number} has no finite {m.name} in every replicate"
                                + (f" up to epoch {epoch}" if epoch else ""))
        values[m.name] = np.array(finals, dtype=np.float64)
        errors[m.name] = np.array([_final_error(records, m.name) for records in logs])
    return dataclasses.replace(trial, values=values, errors=errors)


def _final_error(records: list[dict[str, Any]], metric: str) -> float:
    scored = [r for r in records if metric in r]
    return eval_error(scored[-1], metric) if scored else 0.0


def _sort_key(value: Any) -> tuple[int, Any]:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return (0, value)
    return (1, str(value))


def _label(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)
