"""``ablate report``: a self-contained folder that answers "does this factor matter, by how much,
and how sure are we?" for one study: index.html with PNG figures, and every table as Markdown
(report.md) and CSV (trials, effects, importances, loss_check)."""

from __future__ import annotations

import csv
import html
import io
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import optuna.visualization.matplotlib as optuna_plots

from ablate import report_figures as figures
from ablate.analysis import Analysis, analyse
from ablate.atomic import write_text_atomic
from ablate.study_config import StudySpec


@dataclass(frozen=True)
class Table:
    name: str  # file stem of its CSV
    title: str
    columns: list[str]
    rows: list[list[Any]]


@dataclass
class Report:
    folder: Path
    analysis: Analysis
    tables: list[Table] = field(default_factory=list)
    figures: list[tuple[str, Path]] = field(default_factory=list)  # caption, file


def write_report(spec: StudySpec, folder: Path | None = None) -> Report:
    """Analyse the study and write its report folder (default: <study output>/report)."""
    analysis = analyse(spec)
    report = Report(folder or spec.folder / "report", analysis)
    report.folder.mkdir(parents=True, exist_ok=True)
    report.tables = [trials_table(analysis), effects_table(analysis),
                     importances_table(analysis), loss_check_table(analysis)]
    report.figures = draw_figures(analysis, report.folder / "figures")
    for table in report.tables:
        write_text_atomic(report.folder / f"{table.name}.csv", to_csv(table))
    write_text_atomic(report.folder / "report.md", to_markdown(report))
    write_text_atomic(report.folder / "index.html", to_html(report))
    return report


def trials_table(analysis: Analysis) -> Table:
    data = analysis.data
    params = sorted({name for t in data.trials for name in t.params})
    columns = ["trial", "baseline", *params]
    for m in data.metrics:
        columns += [m.name, f"{m.name}_low", f"{m.name}_high", f"{m.name}_replicates"]
    rows = []
    for t in data.trials:
        row: list[Any] = [t.number, t.baseline or "", *(t.params.get(p, "") for p in params)]
        for m in data.metrics:
            mean = t.mean(m.name)
            row += [mean.estimate, mean.low, mean.high,
                    " ".join(f"{v:.6g}" for v in t.values[m.name])]
        rows.append(row)
    first = data.spec.objectives[0]
    sign = 1.0 if first.direction == "minimize" else -1.0
    if first.metric in (m.name for m in data.metrics):
        at = columns.index(first.metric)
        rows.sort(key=lambda r: sign * r[at])
    return Table("trials", f"Trials (replicate means, best {first.metric} first)", columns, rows)


def effects_table(analysis: Analysis) -> Table:
    columns = ["factor", "level", "reference", "metric", "trials", "reference_trials",
               "level_mean", "reference_mean", "effect", "effect_low", "effect_high", "test",
               "p_value", "sign_flip_p", "verdict"]
    rows = [[e.factor, e.level, e.reference, e.metric, e.trials, e.reference_trials,
             e.level_mean, e.reference_mean, e.effect.estimate, e.effect.low, e.effect.high,
             e.test.name, _blank(e.test.p_value), _blank(e.test.sign_flip_p), e.verdict]
            for e in analysis.effects]
    return Table("effects", "Effects: level minus reference, 95% interval (bootstrap over "
                            "replicates and evaluation samples)", columns, rows)


def importances_table(analysis: Analysis) -> Table:
    rows = [[metric, name, value] for metric, values in analysis.importances.items()
            for name, value in values.items()]
    return Table("importances", "Parameter importances (Optuna, PED-ANOVA; shares that sum "
                                "to 1 per metric)", ["metric", "parameter", "importance"], rows)


def loss_check_table(analysis: Analysis) -> Table:
    rows = [[c.metric, c.spearman, c.kendall, c.best_by_loss, c.best_by_metric,
             "yes" if c.flagged else "no", c.reason] for c in analysis.rank_checks]
    return Table("loss_check", "Does the training loss rank configurations like the quality "
                               "metrics?", ["metric", "spearman", "kendall", "best_by_loss",
                                            "best_by_metric", "flagged", "reason"], rows)


def draw_figures(analysis: Analysis, folder: Path) -> list[tuple[str, Path]]:
    data = analysis.data
    out: list[tuple[str, Path]] = []
    for f in analysis.factors:
        path = folder / f"factor_{figures.file_name(f.name)}.png"
        out.append((f"Each metric against {f.name}: trials (points, replicate-mean 95% "
                    f"intervals) and level means with 95% bands",
                    figures.factor_figure(analysis, f, path)))
    for metric in analysis.importances:
        means = {t.number: float(t.values[metric].mean()) for t in data.trials}
        path = folder / f"importance_{figures.file_name(metric)}.png"
        out.append((f"Parameter importances for {metric}",
                    figures.importance_figure(data.study, metric, means, path)))
    out.append(("Loss and objective curves per trial (replicate means, 95% bands)",
                figures.curves_figure(analysis, folder / "curves.png")))
    if data.spec.multi_objective:
        names = [o.metric for o in data.spec.objectives]
        out.append(("Pareto front", figures.optuna_figure(
            lambda: optuna_plots.plot_pareto_front(data.study, target_names=names),
            folder / "pareto.png")))
    else:
        out.append(("Optimisation history", figures.optuna_figure(
            lambda: optuna_plots.plot_optimization_history(
                data.study, target_name=data.spec.objectives[0].metric),
            folder / "history.png")))
    first = data.spec.objectives[0]
    if len(data.trials) >= 2 and first.metric in (m.name for m in data.metrics):
        ranked = sorted(data.trials, key=lambda t: t.mean(first.metric).estimate,
                        reverse=first.direction == "maximize")
        path = figures.samples_figure(ranked[0], ranked[-1], first.metric,
                                      folder / "samples_best_worst.png")
        if path is not None:
            out.append((f"Samples of the best and the worst trial by {first.metric} "
                        f"(replicate 0, same noise)", path))
    return out


def to_csv(table: Table) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(table.columns)
    writer.writerows(table.rows)
    return out.getvalue()


def to_markdown(report: Report) -> str:
    spec = report.analysis.data.spec
    lines = [f"# Study {spec.name}", "", *(f"- {line}" for line in summary(report)), ""]
    for table in report.tables:
        lines += [f"## {table.title}", ""]
        if not table.rows:
            lines += ["(none)", ""]
            continue
        lines.append("| " + " | ".join(table.columns) + " |")
        lines.append("|" + "---|" * len(table.columns))
        lines += ["| " + " | ".join(_cell(v).replace("|", "\\|") for v in row) + " |"
                  for row in table.rows]
        lines.append("")
    lines += ["## Figures", ""]
    lines += [f"![{caption}](figures/{path.name})" for caption, path in report.figures]
    return "\n".join(lines) + "\n"


def to_html(report: Report) -> str:
    spec = report.analysis.data.spec
    parts = [f"<h1>Study {html.escape(spec.name)}</h1>", "<ul>",
             *(f"<li>{html.escape(line)}</li>" for line in summary(report)), "</ul>"]
    for check in report.analysis.rank_checks:
        if check.flagged:
            parts.append(f'<p class="flag">The loss misleads on {html.escape(check.metric)}: '
                         f"{html.escape(check.reason)}</p>")
    for table in report.tables:
        parts.append(f'<h2 id="{table.name}">{html.escape(table.title)}</h2>')
        if not table.rows:
            parts.append("<p>(none)</p>")
            continue
        head = "".join(f"<th>{html.escape(c)}</th>" for c in table.columns)
        body = "".join("<tr>" + "".join(f"<td>{html.escape(_cell(v))}</td>" for v in row)
                       + "</tr>" for row in table.rows)
        parts.append(f'<table class="{table.name}"><tr>{head}</tr>{body}</table>')
    parts.append("<h2>Figures</h2>")
    for caption, path in report.figures:
        parts.append(f'<figure><img src="figures/{html.escape(path.name)}" '
                     f'alt="{html.escape(caption)}"><figcaption>{html.escape(caption)}'
                     f"</figcaption></figure>")
    style = ("body{font-family:sans-serif;margin:2em;max-width:1400px}"
             "table{border-collapse:collapse;font-size:13px;margin-bottom:1em}"
             "td,th{border:1px solid #ccc;padding:3px 6px;text-align:right}"
             "th{background:#eee}.flag{background:#fdd;padding:.5em;border-left:4px solid #c00}"
             "img{max-width:100%}figure{margin:1em 0}")
    return (f'<!doctype html><html lang="en"><head><meta charset="utf-8"><title>'
            f"{html.escape(spec.name)}: ablate report</title><style>{style}</style></head>"
            f"<body>{''.join(parts)}</body></html>\n")


def summary(report: Report) -> list[str]:
    data = report.analysis.data
    spec = data.spec
    lines = [f"study file: {spec.path}; {len(data.trials)} completed trials",
             f"objectives: {', '.join(f'{o.direction} {o.metric}' for o in spec.objectives)}",
             f"replicates per configuration: {data.replicates}; common random numbers: "
             f"{'yes' if spec.common_random_numbers else 'no'}; comparisons "
             f"{'paired' if data.paired else 'unpaired'}"]
    return lines + report.analysis.notes


def _cell(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def _blank(value: float | None) -> float | str:
    return "" if value is None else value
