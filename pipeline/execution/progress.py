"""Progress of long work (fits, downloads) that a person can read: a bar on a terminal, plain lines elsewhere.

On a terminal :func:`make_progress` gives a rich bar laid out to fit 80 columns (the counts, the
elapsed time and the ETA keep their width; the label and the loss text are cut first). Where the
output is a file or a pipe (a job scheduler's log, ``dip … | tee``), it gives :class:`LineProgress`
instead: one plain line now and then (every ``interval`` seconds: label, iterations, elapsed, ETA,
the status text with the loss), nothing at all for work shorter than that.

:class:`FitsBar` (opened by :func:`fits_bar`) is the one progress reporter of fits: a bar over the
iterations of one or many fits (finished + running) that ``dip run``, ``dip restore`` and
``dip demo`` drive.
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Hashable, Iterator

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Column

from pipeline.layout import psnr_from_loss

if TYPE_CHECKING:  # a type only: the fetch and baselines stages' bars need no fitting loop
    from dip.fit import Step

console = Console(stderr=True)
LINE_INTERVAL = 30.0  # seconds between two plain progress lines where the output is not a terminal


def make_progress(out: Console | None = None, interval: float | None = None) -> "Progress | LineProgress":
    """A bar with label, count, elapsed time, ETA and a free-text status (loss / PSNR) on a
    terminal (within 80 columns); :class:`LineProgress` (a line every ``interval`` seconds,
    default :data:`LINE_INTERVAL`) where ``out`` (default: standard error) is not a terminal."""
    out = out or console
    if not out.is_terminal:
        return LineProgress(out, LINE_INTERVAL if interval is None else interval)
    return Progress(
        TextColumn("[bold]{task.description}", table_column=Column(ratio=1, min_width=6, no_wrap=True, overflow="ellipsis")),
        BarColumn(bar_width=12),
        MofNCompleteColumn(table_column=Column(no_wrap=True)),
        TimeElapsedColumn(table_column=Column(no_wrap=True)),
        TextColumn("ETA", table_column=Column(no_wrap=True)),
        TimeRemainingColumn(table_column=Column(no_wrap=True)),
        TextColumn("{task.fields[status]}", table_column=Column(ratio=2, min_width=6, no_wrap=True, overflow="ellipsis")),
        console=out,
        expand=True,
    )


def _clock(seconds: float | None) -> str:
    if seconds is None:
        return "-:--:--"
    s = int(max(0.0, seconds))
    return f"{s // 3600}:{s // 60 % 60:02d}:{s % 60:02d}"


@dataclass
class _Line:
    description: str
    total: float
    completed: float
    status: str
    visible: bool
    start: float
    start_completed: float
    printed: bool = False


class LineProgress:
    """The part of rich's ``Progress`` that this project uses (``add_task``, ``update``, a context
    manager), printing one plain line per task at most every ``interval`` seconds, and a last one
    at the end for a task that printed any; a hidden task (``visible=False``: it failed) prints no more."""

    def __init__(self, out: Console, interval: float = LINE_INTERVAL) -> None:
        self.out, self.interval = out, interval
        self.tasks: dict[int, _Line] = {}
        self.last = time.monotonic()

    def __enter__(self) -> "LineProgress":
        self.last = time.monotonic()
        return self

    def __exit__(self, *exc: object) -> None:
        for task in self.tasks.values():
            if task.printed and task.visible:
                self._print(task)

    def add_task(self, description: str, total: float | None = 100.0, completed: float = 0, visible: bool = True, **fields: Any) -> TaskID:
        key = len(self.tasks)
        self.tasks[key] = _Line(description, float(total or 0), float(completed), str(fields.get("status", "")), visible,
                                time.monotonic(), float(completed))
        return TaskID(key)

    def update(self, task_id: TaskID, *, completed: float | None = None, advance: float | None = None, total: float | None = None,
               description: str | None = None, visible: bool | None = None, **fields: Any) -> None:
        task = self.tasks[int(task_id)]
        if completed is not None:
            task.completed = float(completed)
        if advance is not None:
            task.completed += float(advance)
        if total is not None:
            task.total = float(total)
        if description is not None:
            task.description = description
        if visible is not None:
            task.visible = visible
        if "status" in fields:
            task.status = str(fields["status"])
        now = time.monotonic()
        if task.visible and now - self.last >= self.interval:
            self.last = now
            self._print(task)

    def line(self, task: _Line) -> str:
        """``label: 125/1800 (7%)  elapsed 0:00:12  ETA 0:02:41  loss …``."""
        elapsed = time.monotonic() - task.start
        done = task.completed - task.start_completed
        left = max(0.0, task.total - task.completed)
        eta = left * elapsed / done if done > 0 else None
        pct = f" ({100 * task.completed / task.total:.0f}%)" if task.total else ""
        text = f"{task.description}: {task.completed:.0f}/{task.total:.0f}{pct}  elapsed {_clock(elapsed)}  ETA {_clock(eta)}"
        return text + (f"  {task.status}" if task.status else "")

    def _print(self, task: _Line) -> None:
        task.printed = True
        self.out.print(self.line(task), markup=False, highlight=False, soft_wrap=True)


def status_of(loss: float) -> str:
    """The status text of a fit: its loss and the PSNR of the fit to the observation."""
    return f"loss {loss:.2e}  PSNR(obs) {psnr_from_loss(loss):.2f} dB"


class FitsBar:
    """One bar over the iterations of many fits: those of finished fits plus those of the fits
    running now (several at once when fits run together). ``tick`` reports a running fit,
    ``finish`` a fit that ended (written, failed or skipped)."""

    def __init__(self, progress: "Progress | LineProgress", label: str, total: int, done: int = 0, status: str = "") -> None:
        self.progress, self.done = progress, done
        self.running: dict[Hashable, int] = {}
        self.task = progress.add_task(label, total=max(total, 1), completed=done, status=status)

    def tick(self, key: Hashable, iteration: int, loss: float, name: str = "") -> None:
        self.running[key] = iteration
        where = f"{len(self.running)} running  " if len(self.running) > 1 else f"{name}  " if name else ""
        self.progress.update(self.task, completed=self.done + sum(self.running.values()), status=where + status_of(loss))

    def step(self, fit: Any, step: Step) -> None:
        """The driver's ``on_step`` (:func:`pipeline.execution.fits.drive`): ticks ``fit.out_dir``."""
        self.tick(fit.out_dir, int(step.iteration), float(step.loss))

    def finish(self, key: Hashable, iterations: int) -> None:
        self.running.pop(key, None)
        self.done += iterations
        self.progress.update(self.task, completed=self.done + sum(self.running.values()))

    @contextlib.contextmanager
    def hidden_on_error(self) -> Iterator[None]:
        """Hide the bar if the block fails, so that the ``error:`` line stands alone."""
        try:
            yield
        except BaseException:
            self.progress.update(self.task, visible=False)
            raise


@contextlib.contextmanager
def fits_bar(label: str, total: int, done: int = 0, status: str = "") -> Iterator[FitsBar]:
    """The bar of a command that runs fits (``dip run``, ``dip restore``, ``dip demo``): a
    :class:`FitsBar` on :func:`make_progress`, hidden if the block fails so that the ``error:``
    line stands alone."""
    with make_progress() as progress:
        bar = FitsBar(progress, label, total, done, status)
        with bar.hidden_on_error():
            yield bar
