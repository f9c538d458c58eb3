"""One study trial trained with several seeds, in lockstep, so the study sees their mean.

Replicate r trains the trial's configuration with ``seed + r`` in ``<trial>/replicate_r/`` (an
ordinary run folder). The replicates take turns: each trains up to its next checkpointed epoch
and pauses, and once every replicate has passed an epoch the trial's own ``metrics.jsonl`` gets
that epoch's record: the mean of the replicates, with a 95% interval (see ablate.intervals) and
the replicate values. The trial's epoch callback then sees it, so Optuna's pruners compare
configurations on their replicate means at each epoch, and samplers get the mean as the value.

A pause is a stop and a resume of the Trainer, which continues exactly (same weights, data order
and noise), so lockstep changes no number; observer plugins see one run_start / run_end per
stretch. Replicates sync at the epochs that write a checkpoint (``checkpoint_every``).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import numbers
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from ablate import metrics_log
from ablate.atomic import write_text_atomic
from ablate.config import RunConfig
from ablate.errors import AblateError
from ablate.eval_config import EvalConfig
from ablate.metrics import Z_95
from ablate.plugin_host import PluginHost
from ablate.training import EarlyStop, EpochCallback, Reporter, Trainer

MEAN_ONLY = ("images_per_s", "train_seconds", "eval_seconds")
"""Record keys averaged over replicates without an interval."""
BOOKKEEPING = ("epoch", "step", "grid", "grids")


def replicate_dirs(run_dir: Path, replicates: int) -> list[Path]:
    """The run folders of a trial's replicates (the trial's own folder when there is one)."""
    if replicates == 1:
        return [run_dir]
    return [run_dir / f"replicate_{r}" for r in range(replicates)]


def replicate_config(config: RunConfig, index: int) -> RunConfig:
    """Replicate ``index`` of a trial whose configuration carries the base seed."""
    return dataclasses.replace(config, seed=config.seed + index)


def training_run(config: RunConfig, run_dir: Path, replicates: int, *, total_steps: int,
                 host: PluginHost, reporter: Reporter, evaluation: EvalConfig | None,
                 epoch_callback: EpochCallback) -> Trainer | ReplicatedRun:
    """What trains a study trial: a Trainer for one replicate, a ReplicatedRun for several."""
    if replicates == 1:
        return Trainer(config, run_dir, host=host, reporter=reporter, evaluation=evaluation,
                       epoch_callback=epoch_callback)
    return ReplicatedRun(config, run_dir, replicates, total_steps=total_steps, host=host,
                         reporter=reporter, evaluation=evaluation, epoch_callback=epoch_callback)


class Paused(EarlyStop):
    """A replicate finished a checkpointed epoch and waits for the others."""


class ReplicatedRun:
    """Trains ``replicates`` seeds of one configuration in lockstep; Trainer's ``run`` API."""

    def __init__(self, config: RunConfig, run_dir: Path, replicates: int, *, total_steps: int,
                 host: PluginHost, reporter: Reporter, evaluation: EvalConfig | None,
                 epoch_callback: EpochCallback) -> None:
        self.configs = [replicate_config(config, r) for r in range(replicates)]
        self.dirs = replicate_dirs(run_dir, replicates)
        self.log = run_dir / "metrics.jsonl"
        self.total_steps = total_steps
        self.host = host
        self.reporter = reporter
        self.evaluation = evaluation
        self.epoch_callback = epoch_callback
        self.bounds = metric_bounds(evaluation, host)
        self.published: set[int] = set()

    def run(self, *, resume: bool = False) -> None:
        """Train every replicate to the end (or until the callback raises EarlyStop)."""
        self.log.parent.mkdir(parents=True, exist_ok=True)
        begun = [resume] * len(self.configs)
        # A replicate whose process died after logging an epoch but before checkpointing it
        # repeats that epoch once on resume; a second stretch without progress is a fault.
        stalls = [0] * len(self.configs)
        while True:
            logs = [metrics_log.read(d / "metrics.jsonl") for d in self.dirs]
            waiting = [r for r, records in enumerate(logs) if not self._finished(records)]
            if not waiting:
                break
            behind = min(_epochs(logs[r]) for r in waiting)
            for r in waiting:
                if _epochs(logs[r]) == behind:
                    self._advance(r, resume=begun[r])
                    begun[r] = True
                    moved = _epochs(metrics_log.read(self.dirs[r] / "metrics.jsonl")) > behind
                    stalls[r] = 0 if moved else stalls[r] + 1
                    if stalls[r] > 1:
                        raise AblateError(f"replicate {r} in {self.dirs[r]} stopped before "
                                          f"step {self.total_steps} without finishing an epoch")
            self._publish()
        self._publish()

    def _finished(self, records: list[dict[str, Any]]) -> bool:
        return bool(records) and records[-1]["step"] >= self.total_steps

    def _advance(self, r: int, *, resume: bool) -> None:
        """Train replicate r up to its next checkpointed epoch (or its end)."""
        every = self.configs[r].checkpoint_every

        def pause(record: dict[str, Any]) -> None:
            if record["step"] < self.total_steps and record["epoch"] % every == 0:
                raise Paused

        trainer = Trainer(self.configs[r], self.dirs[r], host=self.host, reporter=self.reporter,
                          evaluation=self.evaluation, epoch_callback=pause)
        with contextlib.suppress(Paused):
            trainer.run(resume=resume)

    def _publish(self) -> None:
        """Rewrite the trial's log with every epoch all replicates passed; call back on new ones."""
        logs = [{r["epoch"]: r for r in metrics_log.read(d / "metrics.jsonl")} for d in self.dirs]
        common = sorted(set.intersection(*(set(log) for log in logs)))
        records = [aggregate([log[e] for log in logs], self.bounds) for e in common]
        write_text_atomic(self.log, "".join(json.dumps(r) + "\n" for r in records))
        for record in records:
            if record["epoch"] not in self.published:
                self.published.add(record["epoch"])
                self.epoch_callback(record)


def metric_bounds(evaluation: EvalConfig | None,
                  host: PluginHost) -> dict[str, tuple[float, float]]:
    """What each scored key can take, from its metric's declaration (FID >= 0, shares in
    [0, 1]); replicate intervals are clipped to it."""
    if evaluation is None:
        return {}
    from ablate.evaluation import reported_keys

    return {name: (key.lowest, key.highest)
            for name, key in reported_keys(evaluation.metrics, host).items()}


def aggregate(records: list[dict[str, Any]],
              bounds: Mapping[str, tuple[float, float]] | None = None) -> dict[str, Any]:
    """One epoch's record of several replicates: means, 95% intervals and replicate values.

    The loss and every metric (keys with ``_low`` / ``_high``) get an interval over the
    replicates, inside the metric's range (``bounds``: key -> (lowest, highest)), and a
    ``<key>_replicates`` list; timings are averaged; ``grid`` is replicate 0's (every
    replicate's grid would show the same noise with another model) and ``grids`` lists every
    replicate's, in replicate order.
    """
    from ablate.intervals import mean_interval  # scipy: only once replicates are aggregated

    bounds = bounds or {}
    first = records[0]
    out: dict[str, Any] = {"epoch": first["epoch"], "step": first["step"],
                           "replicates": len(records)}
    if "grid" in first:
        out["grid"] = first["grid"]
    if all("grid" in r for r in records):
        out["grids"] = [r["grid"] for r in records]
    for key in _valued_keys(records):
        values = np.array([r[key] for r in records], dtype=np.float64)
        errors = np.array([eval_error(r, key) for r in records])
        lowest, highest = bounds.get(key, (-math.inf, math.inf))
        interval = mean_interval(values, errors, lowest=lowest, highest=highest)
        out.update({key: interval.estimate, f"{key}_low": interval.low,
                    f"{key}_high": interval.high, f"{key}_replicates": values.tolist()})
        if f"{key}_n" in first:
            out[f"{key}_n"] = first[f"{key}_n"]
    for key in MEAN_ONLY:
        if all(key in r for r in records):
            out[key] = float(np.mean([r[key] for r in records]))
    return out


def eval_error(record: dict[str, Any], key: str) -> float:
    """The standard error behind a metric's 95% bootstrap interval (0 for the training loss)."""
    if f"{key}_low" not in record or f"{key}_high" not in record:
        return 0.0
    return (record[f"{key}_high"] - record[f"{key}_low"]) / (2 * Z_95)


def _valued_keys(records: list[dict[str, Any]]) -> list[str]:
    """The loss and the metrics every replicate scored at this epoch."""
    first = records[0]
    keys = [k for k in first if k not in BOOKKEEPING and k not in MEAN_ONLY
            and isinstance(first[k], numbers.Real) and not isinstance(first[k], bool)
            and not k.endswith(("_low", "_high", "_n"))
            and (k == "loss" or f"{k}_low" in first)]
    return [k for k in keys if all(k in r for r in records)]


def _epochs(records: list[dict[str, Any]]) -> int:
    return records[-1]["epoch"] if records else 0
