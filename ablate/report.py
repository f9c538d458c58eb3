"""``ablate report``: a folder that answers "what matters, by how much, how sure are we, and at
what training budget?" for one study.

- ``index.html``: one self-contained page (figures inlined as data URIs, so it can be mailed),
  headline first: factors ranked by their effect on the objective with interval, p and verdict;
- ``report.md``: that headline in Markdown, to paste into a README; ``tables.md``: every table;
- one CSV per table; ``figures/``: every figure as PNG and SVG.

The page and the Markdown come from Jinja2 templates in ``ablate/templates``.
"""

from __future__ import annotations

import base64
import csv
import io
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ablate import report_figures as figures
from ablate.analysis import Analysis, Budget, Finding, analyse
from ablate.atomic import write_text_atomic
from ablate.intervals import Interval
from ablate.report_figures import Drawn
from ablate.study_config import TRAINING_METRICS, StudySpec

MAX_PANELS = 3
"""Metrics drawn against each factor: the objective, the loss, one more quality metric."""


@dataclass(frozen=True)
class Table:
    name: str  # file stem of its CSV
    title: str
    columns: list[str]
    rows: list[list[Any]]


@dataclass(frozen=True)
class FactorSection:
    """What the page shows for one factor: its finding and figures."""

    finding: Finding
    plot: Drawn | None
    grids: Drawn | None
    grids_missing: str  # why there are no grids, when there are none


@dataclass
class Report:
    folder: Path
    analysis: Analysis
    tables: list[Table] = field(default_factory=list)
    figures: list[Drawn] = field(default_factory=list)
    factors: list[FactorSection] = field(default_factory=list)
    callouts: list[str] = field(default_factory=list)  # loss-versus-quality disagreements


def write_report(spec: StudySpec, folder: Path | None = None, *,
                 completed_only: bool = False) -> Report:
    """Analyse the study and write its report folder (default: <study output>/report)."""
    analysis = analyse(spec, completed_only=completed_only)
    report = Report(folder or spec.folder / "report", analysis)
    report.folder.mkdir(parents=True, exist_ok=True)
    report.tables = [headline_table(analysis), budgets_table(analysis), trials_table(analysis),
                     effects_table(analysis), importances_table(analysis),
                     loss_check_table(analysis)]
    report.callouts = callouts(analysis)
    draw_figures(report, report.folder / "figures")
    drawn = {p.name for d in report.figures for p in (d.png, d.svg)}
    for stale in (report.folder / "figures").glob("*"):  # an earlier report's, now wrong
        if stale.suffix in (".png", ".svg") and stale.name not in drawn:
            stale.unlink()
    for table in report.tables:
        write_text_atomic(report.folder / f"{table.name}.csv", to_csv(table))
    write_text_atomic(report.folder / "report.md", render(report, "report.md.j2"))
    write_text_atomic(report.folder / "tables.md", render(report, "tables.md.j2"))
    write_text_atomic(report.folder / "index.html", render(report, "report.html.j2"))
    return report


def headline_table(analysis: Analysis) -> Table:
    columns = ["rank", "factor", "verdict", "epoch", "trials", "level", "reference", "effect",
               "effect_low", "effect_high", "interval_note", "test", "p_value", "summary"]
    rows = []
    for rank, f in enumerate(analysis.findings, 1):
        e = f.effect
        rows.append([rank, f.factor, f.verdict, f.budget.epoch if f.budget else "", f.trials,
                     *((e.level, e.reference, e.effect.estimate, e.effect.low, e.effect.high,
                        e.effect.uninformative, e.test.name, _blank(e.test.p_value))
                       if e else [""] * 8), f.summary])
    return Table("headline", f"What matters for {analysis.objective}", columns, rows)


def budgets_table(analysis: Analysis) -> Table:
    rows = []
    for b in analysis.budgets:
        states = [t.state for t in b.data.trials]
        rows.append([b.epoch, len(states), states.count("completed"), states.count("pruned"),
                     ", ".join(f.name for f in b.factors) or "none"])
    return Table("budgets", "Comparison sets: the trials that reached each budget",
                 ["epoch", "trials", "completed", "pruned", "factors_varied"], rows)


def trials_table(analysis: Analysis) -> Table:
    logs = analysis.logs
    final = analysis.final
    params = sorted({name for t in final for name in t.params})
    metrics = [m for m in logs.metrics if any(m.name in t.values for t in final)]
    columns = ["trial", "state", "epochs", "baseline", *params]
    for m in metrics:
        columns += [m.name, f"{m.name}_low", f"{m.name}_high"]
    rows = []
    for t in final:
        row: list[Any] = [t.number, t.state, t.epoch, t.baseline or "",
                          *(t.params.get(p, "") for p in params)]
        for m in metrics:
            if m.name in t.values:
                mean = t.mean(m.name, m)
                row += [mean.estimate, mean.low, mean.high]
            else:
                row += ["", "", ""]
        rows.append(row)
    objective = analysis.objective
    sign = -1.0 if logs.spec.objectives[0].direction == "maximize" else 1.0
    if objective in columns:
        at = columns.index(objective)
        rows.sort(key=lambda r: (-r[2], sign * r[at] if r[at] != "" else math.inf))
    return Table("trials", f"Trials at the last epoch each reached (replicate means; longest "
                           f"trained first, then best {objective})", columns, rows)


def effects_table(analysis: Analysis) -> Table:
    columns = ["epoch", "budget_trials", "factor", "level", "reference", "metric", "trials",
               "reference_trials", "level_mean", "reference_mean", "effect", "effect_low",
               "effect_high", "interval_note", "test", "p_value", "sign_flip_p", "verdict"]
    rows = [[b.epoch, len(b.data.trials), e.factor, e.level, e.reference, e.metric, e.trials,
             e.reference_trials, e.level_mean, e.reference_mean, e.effect.estimate,
             e.effect.low, e.effect.high, e.effect.uninformative, e.test.name,
             _blank(e.test.p_value), _blank(e.test.sign_flip_p), e.verdict]
            for b in analysis.budgets for e in b.effects]
    return Table("effects", "Effects at each budget: level minus reference, 95% interval "
                            "(bootstrap over replicates and evaluation samples)", columns, rows)


def importances_table(analysis: Analysis) -> Table:
    rows = [[b.epoch, len(b.data.trials), metric, name, value] for b in analysis.budgets
            for metric, values in b.importances.items() for name, value in values.items()]
    return Table("importances", "Parameter importances at each budget (Optuna, PED-ANOVA; "
                                "shares that sum to 1 per metric)",
                 ["epoch", "budget_trials", "metric", "parameter", "importance"], rows)


def loss_check_table(analysis: Analysis) -> Table:
    rows = [[c.epoch, c.trials, c.metric, c.spearman, c.kendall, c.best_by_loss,
             c.best_by_metric, "yes" if c.flagged else "no", c.reason]
            for c in analysis.rank_checks]
    return Table("loss_check", "Does the training loss rank configurations like the quality "
                               "metrics?", ["epoch", "trials", "metric", "spearman", "kendall",
                                            "best_by_loss", "best_by_metric", "flagged",
                                            "reason"], rows)


def callouts(analysis: Analysis) -> list[str]:
    """One line per budget where the training loss ranks configurations unlike a quality
    metric."""
    out = []
    for b in analysis.budgets:
        flagged = [c for c in b.rank_checks if c.flagged]
        if flagged:
            out.append(f"At epoch {b.epoch} ({len(b.data.trials)} trials) the training loss "
                       f"misleads on " + "; on ".join(f"{c.metric}: {c.reason}" for c in flagged)
                       + ".")
    return out


def draw_figures(report: Report, folder: Path) -> None:
    """Every figure of the report, and the sections that show them per factor."""
    analysis = report.analysis
    objective = analysis.objective
    out = report.figures
    forest = figures.forest_figure(analysis, folder)
    if forest is not None:
        out.append(forest)
    for finding in analysis.findings:
        budget = finding.budget
        f = budget.factor(finding.factor) if budget else None
        if budget is None or f is None:
            report.factors.append(FactorSection(finding, None, None, ""))
            continue
        plot = figures.factor_figure(budget, f, panel_metrics(budget, objective), folder)
        grids = figures.grids_figure(budget, f, objective, folder)
        missing = "" if grids else (f"no sample grid was saved at epoch {budget.epoch} by the "
                                    f"trials of this comparison")
        report.factors.append(FactorSection(finding, plot, grids, missing))
        out += [d for d in (plot, grids) if d is not None]
    names = list(dict.fromkeys(["loss", *(o.metric for o in analysis.spec.objectives
                                          if o.metric != "train_seconds")]))
    out.append(figures.curves_figure(analysis.logs, names, folder))
    progress = figures.progress_figure(analysis.logs, objective, folder)
    if progress is not None:
        out.append(progress)
    for budget, check in disagreements(analysis):
        out.append(figures.disagreement_figure(budget, check, folder))
    largest = max((b for b in analysis.budgets if b.importances),
                  key=lambda b: len(b.data.trials), default=None)
    if largest is not None:
        drawn = figures.importance_figure(largest, objective, folder)
        if drawn is not None:
            out.append(drawn)
    if analysis.spec.multi_objective:
        out.append(figures.pareto_figure(analysis, folder))


def panel_metrics(budget: Budget, objective: str) -> list[str]:
    names = [m.name for m in budget.data.metrics]
    quality = [n for n in names if n not in TRAINING_METRICS and n != objective]
    return [n for n in dict.fromkeys([objective, "loss", *quality]) if n in names][:MAX_PANELS]


def disagreements(analysis: Analysis) -> list[tuple[Budget, Any]]:
    """The budget with the most trials where the loss misleads on the objective (or, if it
    does not, on another metric), to draw; the callouts name every one."""
    flagged = [(b, c) for b in analysis.budgets for c in b.rank_checks if c.flagged]
    if not flagged:
        return []
    return [max(flagged, key=lambda bc: (bc[1].metric == analysis.objective,
                                         len(bc[0].data.trials)))]


def render(report: Report, template: str) -> str:
    from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape

    env = Environment(loader=PackageLoader("ablate", "templates"),
                      autoescape=select_autoescape(["html.j2"]), undefined=StrictUndefined,
                      trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=True)
    env.filters.update(num=_number, interval=_interval, p=_p, data_uri=_data_uri,
                       cell=_cell, md=_md_cell)
    spec = report.analysis.spec
    return env.get_template(template).render(
        report=report, analysis=report.analysis, spec=spec, tables=report.tables,
        headline=report.tables[0], notes=report.analysis.notes,
        objective=report.analysis.objective, direction=spec.objectives[0].direction,
        tables_by_name={t.name: t for t in report.tables})


def to_csv(table: Table) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(table.columns)
    writer.writerows(table.rows)
    return out.getvalue()


def _number(value: Any) -> str:
    return figures.number(value) if isinstance(value, float) else str(value)


def _interval(interval: Interval) -> str:
    """Estimate and bounds to the same decimals: three significant digits of the largest."""
    values = (interval.estimate, interval.low, interval.high)
    largest = max((abs(v) for v in values if math.isfinite(v)), default=0.0)
    if 1e-3 <= largest < 1e6:
        decimals = max(0, 2 - math.floor(math.log10(largest)))
        low, estimate, high = (f"{v:.{decimals}f}" if math.isfinite(v) else str(v)
                               for v in (interval.low, interval.estimate, interval.high))
    else:
        low, estimate, high = (f"{v:.3g}" for v in (interval.low, interval.estimate,
                                                     interval.high))
    text = f"{estimate} [{low}, {high}]"
    return text if interval.informative else f"{text} (uninformative)"


def _p(value: float | None | str) -> str:
    if value is None or value == "":
        return "-"
    return "< 0.001" if value < 0.001 else f"{value:.2g}"


def _data_uri(path: Path) -> str:
    return "data:image/png;base64," + base64.b64encode(path.read_bytes()).decode("ascii")


def _cell(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def _md_cell(value: Any) -> str:
    return _cell(value).replace("|", "\\|").replace("\n", " ")


def _blank(value: float | None) -> float | str:
    return "" if value is None else value
