"""What a study looks like in the terminal: live progress while it runs, then (and in
``ablate show``) a table of trials sorted by the objective, with JSON and CSV exports."""

from __future__ import annotations

import csv
import io
import json
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import optuna
from optuna.trial import FrozenTrial, TrialState
from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    Task,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table
from rich.text import Text

from ablate.storage import masked
from ablate.study_artifacts import trial_artifacts
from ablate.study_budget import duration

if TYPE_CHECKING:  # ablate show renders a StudyView without loading plugins
    from ablate.study_config import StudySpec
    from ablate.study_view import StudyView

OUTCOME_ORDER = {"completed": 0, "pruned": 1, "diverged": 2, "failed": 3, "interrupted": 4,
                 "running": 5, "waiting": 6, "invalid": 7, "rejected": 8}
OUTCOME_STYLE = {"completed": "green", "pruned": "yellow", "diverged": "red", "failed": "red",
                 "interrupted": "magenta", "invalid": "dim", "rejected": "dim"}


class StudyDisplay:
    """Live view: trials done of the budget, the current trial's steps with ETA, best so far."""

    def __init__(self, console: Console) -> None:
        self.console = console
        self.progress = Progress(
            TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
            TextColumn("{task.fields[info]}"), TimeElapsedColumn(), TextColumn("ETA"),
            DeadlineColumn(), console=console)
        self.study_task: TaskID | None = None
        self.trial_task: TaskID | None = None
        self.spec: StudySpec | None = None
        self.began = 0.0
        self.finished_here = 0

    def begin(self, spec: StudySpec, done: int, best: str | None) -> None:
        self.spec = spec
        self.console.print(f"study [bold]{escape(spec.name)}[/] in {escape(str(spec.folder))}: "
                           f"{done} trials done" + (f", best {escape(best)}" if best else ""))
        self.progress.start()
        self.study_task = self.progress.add_task("trials", total=spec.trials, completed=done,
                                                 info=self._best(best), deadline=None)
        self.began = time.monotonic()
        self.finished_here = 0

    def trial_started(self, number: int, params: Mapping[str, Any], label: str | None) -> None:
        shown = ", ".join(f"{k}={_short(v)}" for k, v in params.items())
        name = f"trial {number}" + (f" ({label})" if label else "")
        self.progress.console.print(f"[bold]{escape(name)}[/] {escape(shown)}")
        if self.trial_task is not None:
            self.progress.remove_task(self.trial_task)
        self.trial_task = self.progress.add_task(f"trial {number}", total=None, info="")

    def start(self, total_steps: int, done_steps: int) -> None:
        self.progress.update(self.trial_task, total=total_steps, completed=done_steps)

    def advance(self, step: int, loss: float | None) -> None:
        if loss is None:
            self.progress.update(self.trial_task, completed=step)
        else:
            self.progress.update(self.trial_task, completed=step, info=f"loss {loss:.4f}")

    def phase(self, doing: str) -> None:
        self.progress.update(self.trial_task, info=escape(doing))

    def epoch(self, metrics: dict[str, Any]) -> None:
        scored = [f"{k} {metrics[k]:.4g}" for k in self._metrics() if k in metrics]
        self.progress.update(self.trial_task, info=", ".join(
            [f"epoch {metrics['epoch']}", f"loss {metrics['loss']:.4f}", *scored]))

    def stop(self) -> None:
        """The trainer finished; the trial's line stays until the trial is recorded."""

    def trial_finished(self, trial: FrozenTrial, done: int, best: str | None,
                       spent: float) -> None:
        """``done``: trials that used up the trials budget; ``spent``: seconds of the time
        budget used, both over the whole study (every worker and invocation)."""
        outcome = outcome_of(trial)
        style = OUTCOME_STYLE.get(outcome, "")
        values = ""
        if trial.values is not None and self.spec is not None:
            values = " " + ", ".join(f"{o.metric} {v:.4g}"
                                     for o, v in zip(self.spec.objectives, trial.values,
                                                     strict=True))
        reason = trial.user_attrs.get("reason")
        self.progress.console.print(
            f"trial {trial.number} [{style}]{outcome}[/]{escape(values)} in "
            f"{duration(trial):.0f} s" + (f": {escape(reason)}" if reason else ""))
        if self.trial_task is not None:
            self.progress.remove_task(self.trial_task)
            self.trial_task = None
        self.finished_here += 1
        self.progress.update(self.study_task, completed=done, info=self._best(best),
                             deadline=self._deadline(done, spent))

    def _deadline(self, done: int, spent: float) -> float | None:
        """When the budget will be spent: the trials left at this session's mean time per
        trial (so an ETA shows once one trial has finished, where rich's own estimate needs
        several), or the time budget left, whichever ends first."""
        if self.spec is None:
            return None
        now = time.monotonic()
        left = []
        if self.spec.trials:
            per_trial = (now - self.began) / self.finished_here
            left.append(per_trial * max(self.spec.trials - done, 0))
        if self.spec.timeout:
            left.append(max(self.spec.timeout - spent, 0.0))
        return now + min(left) if left else None

    def end(self) -> None:
        self.progress.stop()

    def _metrics(self) -> list[str]:
        return [o.metric for o in self.spec.objectives if o.metric != "loss"] if self.spec else []

    @staticmethod
    def _best(best: str | None) -> str:
        return f"best {best}" if best else "no completed trial yet"


class DeadlineColumn(TimeRemainingColumn):
    """Time left to a task's ``deadline`` field (a time.monotonic() value) where it has one,
    else rich's estimate from the task's speed."""

    def render(self, task: Task) -> Text:
        deadline = task.fields.get("deadline")
        if deadline is None:
            return super().render(task)
        left = max(0, int(deadline - time.monotonic()))
        hours, rest = divmod(left, 3600)
        return Text(f"{hours}:{rest // 60:02d}:{rest % 60:02d}", style="progress.remaining")


def outcome_of(trial: FrozenTrial) -> str:
    """The ablate outcome of a trial (see ablate.study), or Optuna's state for foreign trials."""
    if trial.state in (TrialState.RUNNING, TrialState.WAITING):
        return trial.state.name.lower()
    attrs = trial.user_attrs
    if trial.state == TrialState.FAIL and "outcome" not in attrs and \
            ("worker" in attrs or "run_dir" in attrs):
        return "interrupted"  # it started but its worker died before recording how it ended
    return trial.user_attrs.get("outcome") or {
        TrialState.COMPLETE: "completed", TrialState.PRUNED: "pruned"}.get(trial.state, "failed")


def trial_rows(spec: StudySpec | StudyView, study: optuna.Study,
               storage: optuna.storages.BaseStorage) -> list[dict[str, Any]]:
    """Every trial as plain data, best first (by the first objective), then the rest."""
    pareto = {t.number for t in study.best_trials} if spec.multi_objective and any(
        t.state == TrialState.COMPLETE for t in study.get_trials(deepcopy=False)) else set()
    rows = []
    for t in study.get_trials(deepcopy=False):
        values = dict(zip((o.metric for o in spec.objectives), t.values, strict=True)) \
            if t.values is not None else {}
        rows.append({
            "number": t.number,
            "outcome": outcome_of(t),
            "values": values,
            "intervals": {o.metric: t.user_attrs[f"{o.metric}_interval"]
                          for o in spec.objectives if f"{o.metric}_interval" in t.user_attrs},
            "last_reported": _last_reported(t),
            "pareto": t.number in pareto,
            "params": dict(t.params),
            "baseline": t.user_attrs.get("baseline"),
            "seed": t.user_attrs.get("seed"),
            "seconds": duration(t),
            "epochs": t.user_attrs.get("epochs"),
            "images_per_s": t.user_attrs.get("images_per_s"),
            "parameter_count": t.user_attrs.get("parameter_count"),
            "reason": t.user_attrs.get("reason"),
            "run_dir": t.user_attrs.get("run_dir"),
            "artifacts": trial_artifacts(storage, t, spec.artifacts_dir),
        })
    first = spec.objectives[0]
    sign = 1.0 if first.direction == "minimize" else -1.0

    def order(row: dict[str, Any]) -> tuple[int, float, int]:
        value = row["values"].get(first.metric, row["last_reported"])
        return (OUTCOME_ORDER.get(row["outcome"], 9),
                sign * value if value is not None else 0.0, row["number"])

    return sorted(rows, key=order)


def render_table(spec: StudySpec | StudyView, rows: list[dict[str, Any]],
                 console: Console) -> None:
    """One row per trial. A column per parameter where they fit the terminal; otherwise (a
    wide search space) one "parameters" column of ``key=value`` lines, since columns folded a
    letter wide name nothing."""
    table = Table(title=f"study {spec.name}: {len(rows)} trials, best first",
                  title_justify="left")
    table.add_column("#", justify="right")
    table.add_column("outcome")
    for o in spec.objectives:
        table.add_column(f"{o.metric} ({o.direction[:3]})", justify="right")
    params = sorted({name for row in rows for name in row["params"]})
    value_cells = [[_value_cell(row, o.metric) for o in spec.objectives] for row in rows]
    per_column = _fits(console.width, params, rows, value_cells)
    if per_column:
        for name in params:
            table.add_column(name, overflow="fold")
    else:
        longest = max((len(f"{n}={_short(r['params'][n])}") for r in rows for n in r["params"]),
                      default=10)
        table.add_column("parameters", overflow="fold", min_width=min(longest, console.width // 2))
    table.add_column("time", justify="right")
    table.add_column("note", overflow="fold")
    for row, values in zip(rows, value_cells, strict=True):
        outcome = row["outcome"] + (" *" if row["pareto"] else "")
        style = OUTCOME_STYLE.get(row["outcome"], "")
        cells = [str(row["number"]), f"[{style}]{outcome}[/]" if style else outcome, *values]
        if per_column:
            cells += [escape(_short(row["params"][n])) if n in row["params"] else "-"
                      for n in params]
        else:
            cells.append(escape("\n".join(f"{n}={_short(row['params'][n])}" for n in params
                                          if n in row["params"])))
        cells.append(f"{row['seconds']:.0f} s")
        note = row["reason"] or (f"baseline {row['baseline']}" if row["baseline"] else "")
        cells.append(escape(note))
        table.add_row(*cells)
    console.print(table)
    if spec.multi_objective:
        console.print("* on the Pareto front")
    console.print(f"trial folders: {escape(str(spec.trials_dir))}; artifacts (grids, curves, "
                  f"checkpoints, metrics): {escape(str(spec.artifacts_dir))}; browse them with: "
                  f"ablate dashboard {escape(str(spec.path))}")


def render_plan(spec: StudySpec, console: Console, *, done: int | None) -> None:
    """The resolved plan of ``ablate run --dry-run``: budget, algorithms, base run, space."""
    def options(algorithm) -> str:
        values = ", ".join(f"{k}={v}" for k, v in algorithm.options.kwargs().items())
        return f"{algorithm.name}" + (f" ({values})" if values else "")

    budget = [f"{spec.trials} trials" if spec.trials else "",
              f"{spec.timeout:g} s of trial time" if spec.timeout else ""]
    lines = [
        ("study", f"{spec.name} ({spec.path})"),
        ("storage", masked(spec.storage) + (" (new study)" if done is None else
                                    f" ({done} trials done)")),
        ("output", f"trials in {spec.trials_dir}, artifacts in {spec.artifacts_dir}"),
        ("objective", ", ".join(f"{o.direction} {o.metric}" for o in spec.objectives)),
        ("budget", " and ".join(b for b in budget if b) or "until the grid is exhausted"),
        ("sampler", options(spec.sampler) + _seeding(spec)),
        ("pruner", options(spec.pruner)),
        ("seeds", _seeds(spec)),
        ("base run", json.dumps(spec.base.to_dict())),
        ("eval", json.dumps(spec.evaluation.to_dict()) if spec.evaluation
         else "none: objectives come from the training records"),
    ]
    for name, value in lines:
        console.print(f"[bold]{name:>9}[/] {escape(value)}", soft_wrap=True)
    table = Table(title="search space", title_justify="left")
    # folded, never cut: a truncated key ("run.degradation.gaussi...") names no parameter
    table.add_column("key", style="bold cyan", overflow="fold")
    table.add_column("distribution", overflow="fold")
    table.add_column("searched when", overflow="fold")
    for p in spec.space.params:
        table.add_row(escape(p.key), escape(p.describe()), escape(p.condition() or "always"))
    if spec.space.params:
        console.print(table)
    else:
        console.print("search space: empty (every trial trains the base run with its own seed)")
    for c in spec.constraints:
        console.print(f"constraint: {escape(c.text)}")
    for b in spec.baselines:
        point = ", ".join(f"{k}={_short(v)}" for k, v in b.point.items()) or "the base run"
        console.print(f"baseline {escape(b.label)}: {escape(point)}")
    console.print("dry run: nothing was trained or written")


def _seeds(spec: StudySpec) -> str:
    k = spec.replicates
    if spec.common_random_numbers:
        runs = "replicate r of every trial" if k > 1 else "every trial"
        return f"{runs} trains with seed {spec.seed}" + (" + r" if k > 1 else "") + \
            " (common random numbers)"
    if k > 1:
        return f"replicate r of trial n trains with seed {spec.seed} + {k} n + r"
    return f"trial n trains with seed {spec.seed} + n"


def _seeding(spec: StudySpec) -> str:
    options = spec.sampler.options
    if not options.seeded:
        return ""
    return f", seed {spec.seed}" + (" + trials already run" if options.reseeded else "")


def rows_json(rows: list[dict[str, Any]]) -> str:
    return json.dumps(rows, indent=2, default=str)


def rows_csv(spec: StudySpec | StudyView, rows: list[dict[str, Any]]) -> str:
    """One line per trial: objectives with interval bounds, parameters, timing, reason."""
    params = sorted({name for row in rows for name in row["params"]})
    metrics = [o.metric for o in spec.objectives]
    header = ["number", "outcome", *[c for m in metrics for c in (m, f"{m}_low", f"{m}_high")],
              *params, "seed", "seconds", "epochs", "images_per_s", "parameter_count",
              "baseline", "reason", "run_dir"]
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(header)
    for row in rows:
        interval = row["intervals"]
        writer.writerow([
            row["number"], row["outcome"],
            *[c for m in metrics for c in (row["values"].get(m, ""),
                                           *(interval.get(m) or ("", "")))],
            *[row["params"].get(n, "") for n in params],
            row["seed"], f"{row['seconds']:.3f}", row["epochs"], row["images_per_s"],
            row["parameter_count"], row["baseline"] or "", row["reason"] or "",
            row["run_dir"] or ""])
    return out.getvalue()


def _value_cell(row: dict[str, Any], metric: str) -> str:
    value = row["values"].get(metric)
    if value is None:
        last = row["last_reported"] if row["outcome"] == "pruned" else None
        return f"({last:.4g})" if last is not None else "-"
    interval = row["intervals"].get(metric)
    if interval:
        return f"{value:.4g} [{interval[0]:.4g}, {interval[1]:.4g}]"
    return f"{value:.4g}"


def _fits(width: int, params: list[str], rows: list[dict[str, Any]],
          value_cells: list[list[str]]) -> bool:
    """Whether a column per parameter, each as wide as its name or widest value, fits in
    ``width`` beside the fixed columns (number, outcome, objectives, time, a short note)."""
    def widest(header: str, cells: list[str]) -> int:
        return max([len(header), *map(len, cells)]) + 3  # padding and the rule

    fixed = [widest("#", [str(r["number"]) for r in rows]),
             widest("outcome", [r["outcome"] + " *" for r in rows]),
             *(widest("objective", list(column)) for column in zip(*value_cells, strict=True)),
             widest("time", ["00000 s"]), 20]
    searched = [widest(n, [_short(r["params"][n]) for r in rows if n in r["params"]])
                for n in params]
    return sum(fixed) + sum(searched) <= width


def _last_reported(trial: FrozenTrial) -> float | None:
    steps = trial.intermediate_values
    return steps[max(steps)] if steps else None


def _short(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)
