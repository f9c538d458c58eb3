"""Rich progress bars: training (steps, loss, images/s, what it is doing, ETA) and sampling
(network evaluations done of those expected, rate, ETA)."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    Task,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.text import Text


class RichReporter:
    """A progress bar that shows the loss each time the engine reads it back."""

    def __init__(self, console: Console) -> None:
        self.progress = Progress(
            TextColumn("[bold]train"), BarColumn(), MofNCompleteColumn(),
            TextColumn("loss {task.fields[loss]}"), TextColumn("{task.fields[speed]}"),
            TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn(),
            TextColumn("{task.fields[phase]}"), console=console, transient=False)
        self.task = None

    def start(self, total_steps: int, done_steps: int) -> None:
        self.progress.start()
        self.task = self.progress.add_task("train", total=total_steps, completed=done_steps,
                                           loss="-", speed="", phase="")

    def advance(self, step: int, loss: float | None) -> None:
        if loss is None:
            self.progress.update(self.task, completed=step)
        else:
            self.progress.update(self.task, completed=step, loss=f"{loss:.4f}")

    def phase(self, doing: str) -> None:
        """Shown in the bar; after the last step, when the bar stands still, also printed."""
        self.progress.update(self.task, phase=escape(doing))
        task = self.progress.tasks[0]
        if task.total is not None and task.completed >= task.total:
            self.progress.console.print(f"training done; {doing}", highlight=False)

    def epoch(self, metrics: dict[str, Any]) -> None:
        self.progress.update(self.task, speed=f"{metrics['images_per_s']:.0f} img/s",
                             phase="")
        self.progress.console.print(
            f"epoch {metrics['epoch']}: loss {metrics['loss']:.4f}, "
            f"{metrics['images_per_s']:.0f} images/s")

    def stop(self) -> None:
        self.progress.stop()


class RateColumn(ProgressColumn):
    """Units per second, from rich's running estimate."""

    def __init__(self, unit: str) -> None:
        super().__init__()
        self.unit = unit

    def render(self, task: Task) -> Text:
        speed = task.finished_speed or task.speed
        return Text("" if speed is None else f"{speed:.3g} {self.unit}/s")


class SamplingProgress:
    """A bar of a sampler's network evaluations (done of those expected), rate and ETA; call
    it as ``ablate.evaluation.Progress``. Used as a context manager."""

    def __init__(self, console: Console, description: str, *, shown: bool = True) -> None:
        """``shown`` False draws nothing (nothing will be sampled)."""
        self.shown = shown
        self.progress = Progress(
            TextColumn(f"[bold]{escape(description)}"), BarColumn(), MofNCompleteColumn(),
            TextColumn("network evaluations"), RateColumn("evaluations"), TimeElapsedColumn(),
            TextColumn("ETA"), TimeRemainingColumn(), console=console, transient=False)
        self.task: TaskID | None = None

    def __enter__(self) -> SamplingProgress:
        if self.shown:
            self.progress.start()
        self.task = self.progress.add_task("sample", total=None)
        return self

    def __call__(self, done: int, total: int) -> None:
        self.progress.update(self.task, completed=done, total=total)

    def close(self) -> None:
        """Stop drawing the bar (again at the end of the ``with`` block is harmless)."""
        self.progress.stop()

    def __exit__(self, *exc: object) -> None:
        self.close()
