"""Two trials of a study side by side: for each metric, the difference of their replicate means
with a 95% interval and a paired test across replicates (unpaired when their seeds differ)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from ablate.analysis import AnalysisError, StudyData, difference, verdict
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


def compare(data: StudyData, a: int, b: int) -> list[Comparison]:
    """Trial ``a`` against trial ``b`` on every metric the study recorded."""
    if a == b:
        raise AnalysisError(f"compare needs two different trials, got trial {a} twice")
    first, second = data.trial(a), data.trial(b)
    index = {t.number: i for i, t in enumerate(data.trials)}
    paired_data = dataclasses.replace(data, paired=paired(data, a, b))
    out = []
    for m in data.metrics:
        interval, test = difference(paired_data, [index[a]], [index[b]], m.name)
        out.append(Comparison(m.name, m.goal, first.mean(m.name), second.mean(m.name), interval,
                              test, verdict(interval, m.goal)))
    return out


def as_json(data: StudyData, a: int, b: int, comparisons: list[Comparison]) -> dict[str, Any]:
    return {"study": data.spec.name, "a": a, "b": b, "replicates": data.replicates,
            "paired": paired(data, a, b),
            "metrics": [dataclasses.asdict(c) for c in comparisons]}


def paired(data: StudyData, a: int, b: int) -> bool:
    """Whether replicate r of both trials trained with the same seed."""
    first, second = data.trial(a), data.trial(b)
    return (first.seed, first.replicates) == (second.seed, second.replicates)
