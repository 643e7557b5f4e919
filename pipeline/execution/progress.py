"""Rich progress bars with ETA, driven by fitting callbacks."""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING, Iterator

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from pipeline.layout import psnr_from_loss

if TYPE_CHECKING:  # a type only: the fetch and baselines stages' bars need no fitting loop
    from dip.fit import Step

console = Console(stderr=True)


def make_progress() -> Progress:
    """A bar with count, elapsed time, ETA and a free-text status (loss / PSNR)."""
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("ETA"),
        TimeRemainingColumn(),
        TextColumn("{task.fields[status]}"),
        console=console,
    )


@contextlib.contextmanager
def hidden_on_error(progress: Progress, task_id: TaskID) -> Iterator[None]:
    """Hide ``task_id``'s bar if the block fails, so that the ``error:`` line stands alone."""
    try:
        yield
    except BaseException:
        progress.update(task_id, visible=False)
        raise


class FitProgress:
    """Callback that advances ``task_id`` of ``progress`` and shows loss and PSNR."""

    def __init__(self, progress: Progress, task_id: int, start: int = 0) -> None:
        self.progress, self.task_id, self.start = progress, task_id, start

    def __call__(self, step: Step) -> None:
        loss = float(step.loss)
        status = f"loss {loss:.2e}  PSNR(obs) {psnr_from_loss(loss):.2f} dB"
        self.progress.update(self.task_id, completed=self.start + step.iteration, status=status)
