"""Rich progress bars for training: steps, loss, images/s and ETA."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)


class RichReporter:
    """A progress bar that shows the loss each time the engine reads it back."""

    def __init__(self, console: Console) -> None:
        self.progress = Progress(
            TextColumn("[bold]train"), BarColumn(), MofNCompleteColumn(),
            TextColumn("loss {task.fields[loss]}"), TextColumn("{task.fields[speed]}"),
            TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn(),
            console=console, transient=False)
        self.task = None

    def start(self, total_steps: int, done_steps: int) -> None:
        self.progress.start()
        self.task = self.progress.add_task("train", total=total_steps, completed=done_steps,
                                           loss="-", speed="")

    def advance(self, step: int, loss: float | None) -> None:
        if loss is None:
            self.progress.update(self.task, completed=step)
        else:
            self.progress.update(self.task, completed=step, loss=f"{loss:.4f}")

    def epoch(self, metrics: dict[str, Any]) -> None:
        self.progress.update(self.task, speed=f"{metrics['images_per_s']:.0f} img/s")
        self.progress.console.print(
            f"epoch {metrics['epoch']}: loss {metrics['loss']:.4f}, "
            f"{metrics['images_per_s']:.0f} images/s")

    def stop(self) -> None:
        self.progress.stop()
