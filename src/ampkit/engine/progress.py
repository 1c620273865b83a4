"""A training progress bar (rich) that costs nothing when switched off."""

from __future__ import annotations

from types import TracebackType

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn


class StepProgress:
    """``with StepProgress(total, "digits bf16-mixed") as bar: bar.advance(loss=...)``."""

    def __init__(self, total: int, description: str, *, enabled: bool = True, completed: int = 0):
        self._progress: Progress | None = None
        if enabled:
            self._progress = Progress(
                TextColumn("[bold]{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("loss {task.fields[loss]}"),
                TimeRemainingColumn(),
                transient=False,
            )
            self._task = self._progress.add_task(description, total=total, completed=completed, loss="-")

    def __enter__(self) -> StepProgress:
        if self._progress is not None:
            self._progress.start()
        return self

    def advance(self, loss: float) -> None:
        """One more step done."""
        if self._progress is not None:
            self._progress.update(self._task, advance=1, loss=f"{loss:.4f}")

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._progress is not None:
            self._progress.stop()
