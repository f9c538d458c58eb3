"""Two trials of a study side by side at equal training budget: for each metric both recorded at
that epoch, the difference of their replicate means with a 95% interval and a paired test across
replicates (unpaired when their seeds differ). Pruned trials compare like completed ones, at any
epoch both reached."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from ablate.analysis import AnalysisError, StudyData, StudyLogs, TrialLog, budget_data, verdict
from ablate.analysis import difference as level_difference
from ablate.analysis import objective_metric as study_objective
from ablate.intervals import Interval, Test


@dataclass(frozen=True)
class Comparison:
    metric: str
    goal: str
    a: Interval  # trial A's replicate mean
    b: Interval
    difference: Interval  # A - B
    test: Test
    verdict: str  # A is "better" / "worse" than B, or "unclear"


@dataclass(frozen=True)
class Pair:
    """Trial ``a`` against trial ``b`` at ``epoch``."""

    a: int
    b: int
    epoch: int
    data: StudyData  # the two trials at that epoch
    paired: bool  # replicate r of both trained with the same seed
    comparisons: list[Comparison]

    @property
    def replicates(self) -> int:
        return self.data.trial(self.a).replicates

    def as_json(self) -> dict[str, Any]:
        states = {t.number: t.state for t in self.data.trials}
        return {"study": self.data.spec.name, "a": self.a, "b": self.b, "epoch": self.epoch,
                "states": {"a": states[self.a], "b": states[self.b]},
                "replicates": self.replicates, "paired": self.paired,
                "metrics": [dataclasses.asdict(c) for c in self.comparisons]}


def compare(logs: StudyLogs, a: int, b: int, epoch: int | None = None) -> Pair:
    """Trial ``a`` against trial ``b`` at ``epoch`` (default: the last epoch both reached
    where the objective was scored), on every metric both recorded there."""
    if a == b:
        raise AnalysisError(f"compare needs two different trials, got trial {a} twice")
    first, second = logs.log(a), logs.log(b)
    epoch = common_epoch(logs, first, second, epoch)
    data = budget_data(logs, epoch, [a, b])
    same_seeds = (first.seed, first.replicates) == (second.seed, second.replicates)
    data = dataclasses.replace(data, paired=same_seeds)
    index = {t.number: i for i, t in enumerate(data.trials)}
    out = []
    for m in data.metrics:
        interval, test = level_difference(data, [index[a]], [index[b]], m.name)
        out.append(Comparison(m.name, m.goal, data.mean(data.trials[index[a]], m.name),
                              data.mean(data.trials[index[b]], m.name), interval, test,
                              verdict(interval, m.goal)))
    return Pair(a, b, epoch, data, same_seeds, out)


def common_epoch(logs: StudyLogs, first: TrialLog, second: TrialLog, epoch: int | None) -> int:
    """The epoch to compare at; a clear error naming what each trial reached otherwise."""
    both = sorted(set(first.epochs) & set(second.epochs))
    reached = (f"trial {first.number} ({first.state}) reached epoch {_span(first.epochs)}, "
               f"trial {second.number} ({second.state}) reached epoch {_span(second.epochs)}")
    if not both:
        raise AnalysisError(f"no epoch to compare at: {reached}")
    if epoch is None:
        objective = study_objective(logs.spec)
        scored = [e for e in both if all(objective in r.get(e, {}) for t in (first, second)
                                         for r in t.logs)]
        return (scored or both)[-1]
    if epoch not in both:
        raise AnalysisError(f"trials {first.number} and {second.number} cannot be compared at "
                            f"epoch {epoch}: {reached}; pick --epoch from {_span(both)}")
    return epoch


def _span(epochs: list[int]) -> str:
    if not epochs:
        return "none"
    if epochs == list(range(epochs[0], epochs[-1] + 1)) and len(epochs) > 1:
        return f"{epochs[0]} to {epochs[-1]}"
    return ", ".join(str(e) for e in epochs)
