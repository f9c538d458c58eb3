"""The report's figures, each saved as PNG (for the page) and SVG (for a paper), sized for a
printed page (6.5 in wide at most) with labelled axes: a forest plot of effects, each metric
against each factor with its good and bad regions, sample grids per level (best, median and
worst trial), loss and objective curves, each trial's samples against training budget, the
loss-versus-quality scatter where they disagree, importances, and the Pareto front of
multi-objective studies.

Drawn on ``matplotlib.figure.Figure`` objects rather than pyplot, so nothing global changes.
"""

from __future__ import annotations

import math
import re
import struct
import textwrap
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from matplotlib import rc_context
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from ablate.analysis import Analysis, Budget, Factor, RankCheck, StudyLogs, TrialLog
from ablate.atomic import write_atomic

WIDTH = 6.5
"""Inches: the text width of a US-letter or A4 page with one-inch margins."""
DPI = 200
SCREEN_PPI = 150
"""A 6.5-inch figure shows 975 px wide on screen: readable in a 1400 px window."""
STYLE = {"font.size": 8, "axes.titlesize": 8, "axes.labelsize": 8, "legend.fontsize": 7,
         "xtick.labelsize": 7, "ytick.labelsize": 7, "svg.fonttype": "none",
         "axes.spines.top": False, "axes.spines.right": False}
GOOD, BAD, NEUTRAL, REFERENCE = "#1a9850", "#d73027", "#7f7f7f", "#bdbdbd"
ROLES = ("best", "median", "worst")
UNITS = {"loss": "training loss", "train_seconds": "training time (s)", "fid": "FID",
         "kid": "KID (x 1000)", "T": "T (diffusion steps)", "lr": "learning rate"}
"""Axis labels of known quantities; anything else is labelled by its name."""
MAX_POINT_LABEL = 32
"""Characters of a trial's point that a legend entry shows; a longer one shows the number."""
MAX_PROGRESS_TRIALS = 8
"""Rows of the samples-against-budget figure: beyond this it would not fit a page."""


@dataclass(frozen=True)
class Drawn:
    """One figure of the report: its caption and its files."""

    name: str
    caption: str
    png: Path
    svg: Path
    width: int  # CSS pixels to show it at: SCREEN_PPI per inch of the figure



def file_name(text: str) -> str:
    """A name safe in a file name and a URL."""
    return re.sub(r"[^A-Za-z0-9_.-]", "_", text)


def number(value: float) -> str:
    """Three significant digits, without an exponent for values up to a million."""
    if not math.isfinite(value):
        return str(value)
    if 1000 <= abs(value) < 1e6:
        return f"{value:.0f}"
    return f"{value:.3g}"


def axis_label(name: str, goal: str | None = None) -> str:
    short = name.rsplit(".", 1)[-1]
    label = UNITS.get(name) or UNITS.get(short) or name
    if goal is not None:
        label += f" ({'lower' if goal == 'minimize' else 'higher'} is better)"
    return label


def save(figure: Figure, folder: Path, name: str, caption: str) -> Drawn:
    """Write the figure as ``name``.png and ``name``.svg."""
    paths = {}
    for fmt in ("png", "svg"):
        path = folder / f"{name}.{fmt}"
        write_atomic(path, lambda tmp, fmt=fmt: figure.savefig(
            tmp, format=fmt, dpi=DPI, bbox_inches="tight"))
        paths[fmt] = path
    width, _ = struct.unpack(">II", paths["png"].read_bytes()[16:24])  # the PNG's IHDR chunk
    return Drawn(name, caption, paths["png"], paths["svg"], round(width * SCREEN_PPI / DPI))


def styled(draw: Callable[[], Figure | None]) -> Figure | None:
    with rc_context(STYLE):
        return draw()


def forest_figure(analysis: Analysis, folder: Path) -> Drawn | None:
    """Every level's effect on the objective against its reference, at each factor's budget."""
    rows = [e for f in analysis.findings if f.budget is not None
            for e in f.budget.effects if e.factor == f.factor and e.metric == analysis.objective]
    if not rows:
        return None
    goal = analysis.logs.spec.objectives[0].direction

    def draw() -> Figure:
        figure = Figure(figsize=(WIDTH, 0.9 + 0.32 * len(rows)), layout="constrained")
        ax = figure.subplots()
        for y, e in enumerate(reversed(rows)):
            interval = e.effect
            if not interval.informative:
                ax.plot(interval.estimate, y, "o", mfc="white", mec=NEUTRAL)
                ax.annotate("interval uninformative", (interval.estimate, y), xytext=(6, 0),
                            textcoords="offset points", va="center", fontsize=7, color=NEUTRAL)
                continue
            color = {"better": GOOD, "worse": BAD}.get(e.verdict, NEUTRAL)
            ax.errorbar(interval.estimate, y, xerr=[[interval.estimate - interval.low],
                                                    [interval.high - interval.estimate]],
                        fmt="o", color=color, capsize=3, lw=1.2)
        ax.set_yticks(range(len(rows)), [f"{_short(e.factor)} = {e.level} vs {e.reference}\n"
                                         f"epoch {e.epoch}, {e.trials} + {e.reference_trials} "
                                         "trials" for e in reversed(rows)])
        ax.axvline(0, color="black", lw=0.8)
        ax.set_xlabel(f"change in {axis_label(analysis.objective, goal)}, 95% interval")
        ax.grid(axis="x", alpha=0.3)
        ax.set_title(f"Effects on {analysis.objective}: green better, red worse, grey unclear")
        return figure

    return save(styled(draw), folder, "forest", f"Effect of each level on "
                f"{analysis.objective} against its factor's reference level, at the largest "
                "budget where the factor took two values (95% intervals; hollow: uninformative)")


def factor_figure(budget: Budget, f: Factor, metrics: Sequence[str], folder: Path) -> Drawn:
    """Metrics against one factor at one budget: trials, level means with bands, and the
    levels clearly better (green) or worse (red) than the reference (grey) shaded."""
    data = budget.data

    def draw() -> Figure:
        figure = Figure(figsize=(WIDTH, 2.7), layout="constrained")
        axes = figure.subplots(1, len(metrics), squeeze=False)[0]
        for ax, name in zip(axes, metrics, strict=True):
            info = data.metric(name)
            _shade_regions(ax, budget, f, name)
            for j, level in enumerate(f.levels):
                for i in level.members:
                    trial = data.trials[i]
                    x = float(trial.params[f.name]) if f.numeric else float(j)
                    mean = data.mean(trial, name)
                    marker = "o" if trial.state == "completed" else "^"
                    if mean.informative:
                        ax.errorbar(x, mean.estimate, yerr=[[mean.estimate - mean.low],
                                                            [mean.high - mean.estimate]],
                                    fmt=marker, color="tab:blue", alpha=0.7, capsize=2, ms=4)
                    else:
                        ax.plot(x, mean.estimate, marker, mfc="white", mec="tab:blue", ms=4)
            xs = [level.position if f.numeric else float(j) for j, level in enumerate(f.levels)]
            means = [budget.level_means[(f.name, level.label, name)] for level in f.levels]
            ax.plot(xs, [m.estimate for m in means], color="tab:orange", lw=1.2,
                    label="level mean")
            if all(m.informative for m in means):
                ax.fill_between(xs, [m.low for m in means], [m.high for m in means],
                                color="tab:orange", alpha=0.2, lw=0, label="95% interval")
            if f.numeric and f.log:
                ax.set_xscale("log")
            if not f.numeric:
                ax.set_xticks(xs, [level.label for level in f.levels], rotation=15)
            ax.set_xlabel(axis_label(f.name))
            ax.set_ylabel(axis_label(name, info.goal))
            if math.isfinite(info.lowest) and ax.get_ylim()[0] < info.lowest:
                ax.set_ylim(bottom=info.lowest)
            ax.grid(alpha=0.3)
        axes[0].plot([], [], "o", color="tab:blue", ms=4, label="completed trial")
        if any(t.state == "pruned" for t in data.trials):
            axes[0].plot([], [], "^", color="tab:blue", ms=4, label="pruned trial")
        for color, label in ((REFERENCE, "reference level"), (GOOD, "clearly better"),
                             (BAD, "clearly worse")):
            axes[0].fill_between([], [], color=color, alpha=0.3, label=label)
        figure.legend(*axes[0].get_legend_handles_labels(), loc="outside lower center", ncol=7,
                      frameon=False)
        figure.suptitle(f"{f.name} at epoch {budget.epoch} ({len(data.trials)} trials)")
        return figure

    return save(styled(draw), folder, f"factor_{file_name(f.name)}",
                f"{', '.join(metrics)} against {f.name} at epoch {budget.epoch}: trials with "
                "their 95% intervals (triangles were pruned later), level means with 95% bands; "
                "green and red shade levels clearly better or worse than the reference (grey)")


def grids_figure(budget: Budget, f: Factor, metric: str, folder: Path) -> Drawn | None:
    """The levels side by side, each with the sample grids of its best, median and worst trial
    at the budget (rows)."""
    data = budget.data
    goal = data.metric(metric).goal
    columns = []
    for level in f.levels:
        ranked = sorted((data.trials[i] for i in level.members),
                        key=lambda t: data.mean(t, metric).estimate, reverse=goal == "maximize")
        median = ranked[len(ranked) // 2] if len(ranked) >= 3 else None
        columns.append((level.label, [ranked[0], median,
                                      ranked[-1] if len(ranked) >= 2 else None]))
    if not any(t is not None and t.grid for _, cells in columns for t in cells):
        return None
    roles = [r for r in range(len(ROLES)) if any(cells[r] for _, cells in columns)]

    def draw() -> Figure:
        from matplotlib.image import imread

        side = min(1.25, (WIDTH - 0.4) / len(columns))
        figure = Figure(figsize=(0.4 + side * len(columns), 0.3 + (side + 0.3) * len(roles)),
                        layout="constrained")
        axes = figure.subplots(len(roles), len(columns), squeeze=False)
        for c, (label, cells) in enumerate(columns):
            for row, r in enumerate(roles):
                ax, trial = axes[row][c], cells[r]
                ax.set_xticks([])
                ax.set_yticks([])
                for spine in ax.spines.values():
                    spine.set_visible(trial is not None)
                if row == 0:
                    ax.set_title(label)
                if c == 0:
                    ax.set_ylabel(ROLES[r])
                if trial is None:
                    continue
                value = number(data.mean(trial, metric).estimate)
                ax.set_xlabel(f"trial {trial.number}: {metric} {value}", fontsize=6)
                if trial.grid is None:
                    ax.text(0.5, 0.5, f"no grid at\nepoch {budget.epoch}", ha="center",
                            va="center", transform=ax.transAxes, color=NEUTRAL, fontsize=6)
                else:
                    ax.imshow(imread(trial.grid), cmap="gray", interpolation="nearest")
        figure.suptitle(f"{f.name} at epoch {budget.epoch}")
        return figure

    return save(styled(draw), folder, f"grids_{file_name(f.name)}",
                f"Samples at epoch {budget.epoch} for each level of {f.name} (columns): the "
                f"best, median and worst trial of the level by {metric} (rows), all drawn from "
                "the same fixed noise")


def progress_figure(logs: StudyLogs, metric: str, folder: Path) -> Drawn | None:
    """Each trial's samples at every epoch that saved a grid (rows: trials, columns: epochs):
    how quality forms over training, which a comparison at one budget cannot show. Drawn for
    studies of at most ``MAX_PROGRESS_TRIALS`` trials with grids at two epochs or more."""
    trials = logs.trials
    epochs = sorted({e for t in trials for e in t.epochs if t.grid(e) is not None})
    if len(epochs) < 2 or len(trials) > MAX_PROGRESS_TRIALS:
        return None

    def draw() -> Figure:
        from matplotlib.image import imread

        side = min(1.1, (WIDTH - 1.6) / len(epochs))
        figure = Figure(figsize=(1.6 + side * len(epochs), 0.4 + (side + 0.25) * len(trials)),
                        layout="constrained")
        axes = figure.subplots(len(trials), len(epochs), squeeze=False)
        for row, trial in enumerate(trials):
            values = {r["epoch"]: r[metric] for r in trial.records if metric in r}
            for column, epoch in enumerate(epochs):
                ax, grid = axes[row][column], trial.grid(epoch)
                ax.set_xticks([])
                ax.set_yticks([])
                if row == 0:
                    ax.set_title(f"epoch {epoch}")
                if column == 0:
                    ax.set_ylabel(textwrap.fill(trial_label(trial), 24), fontsize=6)
                if epoch in values:
                    ax.set_xlabel(f"{metric} {number(values[epoch])}", fontsize=6)
                if grid is None:
                    for spine in ax.spines.values():
                        spine.set_visible(False)
                else:
                    ax.imshow(imread(grid), cmap="gray", interpolation="nearest")
        figure.suptitle("Samples against training budget")
        return figure

    return save(styled(draw), folder, "progress",
                f"Each trial's samples (replicate 0, the same fixed noise throughout) at every "
                f"epoch that saved a grid, with the trial's {metric} there (replicate mean)")


def curves_figure(logs: StudyLogs, names: Sequence[str], folder: Path) -> Drawn:
    """Each metric against epoch, one line per trial (dashed: pruned), bands where informative."""

    def draw() -> Figure:
        figure = Figure(figsize=(WIDTH, 2.6), layout="constrained")
        axes = figure.subplots(1, len(names), squeeze=False)[0]
        for ax, name in zip(axes, names, strict=True):
            info = next((m for m in logs.metrics if m.name == name), None)
            for trial in logs.trials:
                rows = [r for r in trial.records if name in r]
                epochs = [r["epoch"] for r in rows]
                style = "-" if trial.state == "completed" else "--"
                line, = ax.plot(epochs, [r[name] for r in rows], style, marker=".", ms=3,
                                lw=1, label=trial_label(trial))
                if rows and trial.state == "pruned":
                    ax.plot(epochs[-1], rows[-1][name], "x", color=line.get_color(), ms=5)
                informative = trial.replicates != 2
                if rows and informative and all(f"{name}_low" in r for r in rows):
                    ax.fill_between(epochs, [r[f"{name}_low"] for r in rows],
                                    [r[f"{name}_high"] for r in rows], color=line.get_color(),
                                    alpha=0.12, lw=0)
            ax.set_xlabel("epoch")
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
            ax.set_ylabel(axis_label(name, info.goal if info else None))
            if info is not None and math.isfinite(info.lowest) and \
                    ax.get_ylim()[0] < info.lowest:
                ax.set_ylim(bottom=info.lowest)
            ax.grid(alpha=0.3)
        if len(logs.trials) <= 12:
            figure.legend(*axes[0].get_legend_handles_labels(), loc="outside right center",
                          fontsize=6, frameon=False)
        return figure

    return save(styled(draw), folder, "curves", f"{' and '.join(names)} per trial against "
                "epoch (dashed, ending in x: pruned trials; bands: 95% intervals of evaluation "
                "and, with replicates, seed noise)")


def disagreement_figure(budget: Budget, check: RankCheck, folder: Path) -> Drawn:
    """Loss against a quality metric at one budget, with the pick of each."""
    data = budget.data
    info = data.metric(check.metric)

    def draw() -> Figure:
        figure = Figure(figsize=(WIDTH / 2, 2.6), layout="constrained")
        ax = figure.subplots()
        for trial in data.trials:
            loss, value = trial.values["loss"].mean(), trial.values[check.metric].mean()
            color = GOOD if trial.number == check.best_by_metric else \
                BAD if trial.number == check.best_by_loss else "tab:blue"
            ax.plot(loss, value, "o", color=color, ms=5)
            ax.annotate(str(trial.number), (loss, value), xytext=(3, 3),
                        textcoords="offset points", fontsize=6)
        ax.plot([], [], "o", color=BAD, label="lowest loss")
        ax.plot([], [], "o", color=GOOD, label=f"best {check.metric}")
        ax.set_xlabel(axis_label("loss", "minimize"))
        ax.set_ylabel(axis_label(check.metric, info.goal))
        ax.set_title(f"epoch {budget.epoch}: Spearman rho {check.spearman:.2f}")
        ax.legend()
        ax.grid(alpha=0.3)
        return figure

    return save(styled(draw), folder, f"loss_vs_{file_name(check.metric)}_epoch{budget.epoch}",
                f"Training loss against {check.metric} at epoch {budget.epoch} "
                f"({len(data.trials)} trials, numbered): the loss would pick trial "
                f"{check.best_by_loss}, {check.metric} picks trial {check.best_by_metric}")


def importance_figure(budget: Budget, metric: str, folder: Path) -> Drawn | None:
    values = budget.importances.get(metric, {})
    if len(values) < 2:
        return None

    def draw() -> Figure:
        figure = Figure(figsize=(WIDTH / 2, 0.8 + 0.3 * len(values)), layout="constrained")
        ax = figure.subplots()
        names = list(values)[::-1]
        ax.barh(range(len(names)), [values[n] for n in names], color="tab:blue")
        ax.set_yticks(range(len(names)), [_short(n) for n in names])
        ax.set_xlabel(f"share of {metric}'s variation (PED-ANOVA)")
        ax.set_xlim(0, 1)
        ax.grid(axis="x", alpha=0.3)
        return figure

    return save(styled(draw), folder, f"importance_{file_name(metric)}",
                f"Parameter importances for {metric} at epoch {budget.epoch} "
                f"({len(budget.data.trials)} trials; Optuna's PED-ANOVA, shares sum to 1)")


def pareto_figure(analysis: Analysis, folder: Path) -> Drawn:
    """Optuna's Pareto-front plot of the completed trials (it draws with pyplot)."""
    import matplotlib.pyplot as plt
    import optuna.visualization.matplotlib as optuna_plots

    from ablate.study import quiet_optuna

    names = [o.metric for o in analysis.spec.objectives]
    with quiet_optuna(), plt.style.context("default"), rc_context(STYLE):
        ax = optuna_plots.plot_pareto_front(analysis.logs.study, target_names=names)
    figure = ax.figure
    figure.set_size_inches(WIDTH * 0.7, 3.2)
    drawn = save(figure, folder, "pareto", "Pareto front of the completed trials")
    plt.close(figure)
    return drawn


def _shade_regions(ax, budget: Budget, f: Factor, metric: str) -> None:
    """Shade each level's stretch of the axis by its effect on ``metric``."""
    verdicts = {e.level: e.verdict for e in budget.effects
                if e.factor == f.name and e.metric == metric and e.effect.informative}
    spans = _spans(f)
    for j, level in enumerate(f.levels):
        if j == f.reference:
            color, alpha = REFERENCE, 0.25
        elif verdicts.get(level.label) in ("better", "worse"):
            color, alpha = (GOOD if verdicts[level.label] == "better" else BAD), 0.15
        else:
            continue
        ax.axvspan(*spans[j], color=color, alpha=alpha, lw=0)


def _spans(f: Factor) -> list[tuple[float, float]]:
    """Where each level sits on the x axis: halfway to its neighbours (in log space for a
    log-searched factor)."""
    if not f.numeric:
        return [(j - 0.45, j + 0.45) for j in range(len(f.levels))]

    def scale(x: float) -> float:
        return math.log(x) if f.log and x > 0 else x

    def unscale(x: float) -> float:
        return math.exp(x) if f.log else x

    lows = [scale(float(level.low)) for level in f.levels]
    highs = [scale(float(level.high)) for level in f.levels]
    cuts = [(highs[j] + lows[j + 1]) / 2 for j in range(len(f.levels) - 1)]
    width = (highs[-1] - lows[0]) or 1.0
    edges = [lows[0] - 0.05 * width, *cuts, highs[-1] + 0.05 * width]
    return [(unscale(edges[j]), unscale(edges[j + 1])) for j in range(len(f.levels))]


def trial_label(trial: TrialLog) -> str:
    """A legend entry: the trial's number and its name where the study gave it one, else its
    point where that is short."""
    point = ", ".join(f"{_short(k)}={v}" for k, v in trial.params.items())
    name = trial.baseline or (point if len(point) <= MAX_POINT_LABEL else "")
    return f"trial {trial.number}: {name}" if name else f"trial {trial.number}"


def _short(name: str) -> str:
    return name.rsplit(".", 1)[-1] if name.count(".") > 1 else name

