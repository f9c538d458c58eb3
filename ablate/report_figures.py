"""The report's PNG figures: each metric against each factor with interval bands, Optuna's
importance, history and Pareto plots, loss and metric curves per trial, best and worst samples."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.image as mpimg  # noqa: E402 - the backend must be chosen first
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import optuna  # noqa: E402
import optuna.visualization.matplotlib as optuna_plots  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from ablate.analysis import Analysis, Factor, TrialData  # noqa: E402
from ablate.study import quiet_optuna  # noqa: E402

DPI = 90


def file_name(text: str) -> str:
    """A name safe in a file name and a URL."""
    return re.sub(r"[^A-Za-z0-9_.-]", "_", text)


def save(figure: Figure, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.tight_layout()
    figure.savefig(path, format="png", dpi=DPI)
    plt.close(figure)
    return path


def factor_figure(analysis: Analysis, f: Factor, path: Path) -> Path:
    """Every metric against one factor: trials with their intervals, level means with bands."""
    metrics = analysis.data.metrics
    figure, axes = plt.subplots(1, len(metrics), figsize=(4.2 * len(metrics), 3.4), squeeze=False)
    numeric = all(level.position is not None for level in f.levels)
    for ax, m in zip(axes[0], metrics, strict=True):
        for j, level in enumerate(f.levels):
            for i in level.members:
                trial = analysis.data.trials[i]
                x = float(trial.params[f.name]) if numeric else float(j)
                mean = trial.mean(m.name)
                ax.errorbar(x, mean.estimate, yerr=[[mean.estimate - mean.low],
                                                    [mean.high - mean.estimate]],
                            fmt="o", color="tab:blue", alpha=0.6, capsize=3)
        xs = [level.position if numeric else float(j) for j, level in enumerate(f.levels)]
        means = [analysis.level_means[(f.name, level.label, m.name)] for level in f.levels]
        ax.plot(xs, [v.estimate for v in means], color="tab:orange", label="level mean")
        ax.fill_between(xs, [v.low for v in means], [v.high for v in means], color="tab:orange",
                        alpha=0.2, label="95% interval")
        if numeric and f.log:
            ax.set_xscale("log")
        if not numeric:
            ax.set_xticks(xs, [level.label for level in f.levels], rotation=20)
        ax.set_xlabel(f.name)
        ax.set_ylabel(f"{m.name} ({m.goal[:3]})")
        ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=8)
    return save(figure, path)


def optuna_figure(draw: Callable[[], object], path: Path) -> Path:
    """A figure drawn by optuna.visualization.matplotlib, saved as PNG."""
    with quiet_optuna(), plt.style.context("default"):  # Optuna switches to ggplot globally
        result = draw()
    axes = result[0] if isinstance(result, np.ndarray) else result
    figure = axes.figure if hasattr(axes, "figure") else axes
    figure.set_size_inches(6.4, 4.0)
    return save(figure, path)


def importance_figure(study: optuna.Study, metric: str, means: dict[int, float],
                      path: Path) -> Path:
    return optuna_figure(lambda: optuna_plots.plot_param_importances(
        study, target=lambda t: means[t.number], target_name=metric,
        evaluator=optuna.importance.PedAnovaImportanceEvaluator()), path)


def curves_figure(analysis: Analysis, path: Path) -> Path:
    """Loss and each objective against epoch, one line per trial, with 95% interval bands."""
    names = list(dict.fromkeys(["loss", *(o.metric for o in analysis.data.spec.objectives
                                          if o.metric != "train_seconds")]))
    figure, axes = plt.subplots(1, len(names), figsize=(5 * len(names), 3.6), squeeze=False)
    for ax, name in zip(axes[0], names, strict=True):
        for trial in analysis.data.trials:
            rows = [r for r in trial.records if name in r]
            epochs = [r["epoch"] for r in rows]
            line, = ax.plot(epochs, [r[name] for r in rows], marker=".",
                            label=f"trial {trial.number}")
            if rows and all(f"{name}_low" in r for r in rows):
                ax.fill_between(epochs, [r[f"{name}_low"] for r in rows],
                                [r[f"{name}_high"] for r in rows], color=line.get_color(),
                                alpha=0.15)
        ax.set_xlabel("epoch")
        ax.set_ylabel(name)
        ax.grid(alpha=0.3)
    if len(analysis.data.trials) <= 12:
        axes[0][0].legend(fontsize=7)
    return save(figure, path)


def samples_figure(best: TrialData, worst: TrialData, metric: str, path: Path) -> Path | None:
    """The last sample grids of the best and the worst trial, side by side (same noise)."""
    grids = [_last_grid(best), _last_grid(worst)]
    if any(g is None for g in grids):
        return None
    figure, axes = plt.subplots(1, 2, figsize=(9, 4.8))
    for ax, trial, grid, title in zip(axes, (best, worst), grids, ("best", "worst"),
                                      strict=True):
        ax.imshow(mpimg.imread(grid), cmap="gray")
        value = trial.mean(metric)
        ax.set_title(f"{title}: trial {trial.number}, {metric} {value.estimate:.4g}")
        ax.axis("off")
    return save(figure, path)


def _last_grid(trial: TrialData) -> Path | None:
    grids = [Path(r["grid"]) for r in trial.records if "grid" in r]
    return grids[-1] if grids and grids[-1].is_file() else None
