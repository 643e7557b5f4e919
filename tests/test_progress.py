"""Progress a person can read: the bar fits an 80-column terminal with its counts and ETA whole,
and output to a file or a pipe gets a plain line now and then (iteration, ETA, loss)."""

from __future__ import annotations

import io
import re

import pytest
from rich.console import Console

import pipeline.execution.progress as progress_module

STATUS = "loss 1.23e-02  PSNR(obs) 19.10 dB"


def terminal(width: int) -> Console:
    return Console(width=width, force_terminal=True, record=True, file=io.StringIO())


@pytest.mark.parametrize("width", [80, 100])
def test_the_bar_fits_the_terminal_with_count_and_eta(width: int, monkeypatch: pytest.MonkeyPatch) -> None:
    out = terminal(width)
    monkeypatch.setattr(progress_module, "console", out)
    now = [0.0]
    bar = progress_module.make_progress()
    bar.get_time = lambda: now[0]  # a clock the test moves: 125 iterations in 10 s
    task = bar.add_task("denoise holiday_photo_from_the_beach.png", total=3000, status="")
    for step in range(0, 126, 25):
        now[0] = step * 0.08
        bar.update(task, completed=step, status=STATUS)
    out.print(bar.make_tasks_table(bar.tasks))
    lines = [line.rstrip() for line in out.export_text().splitlines() if line.strip()]
    assert len(lines) == 1 and len(lines[0]) <= width, lines
    assert "125/3000" in lines[0] and re.search(r"ETA 0:03:5\d", lines[0]), lines[0]  # 2875 left at 12.5/s: 3:50


def test_a_pipe_gets_plain_lines_with_iteration_eta_and_loss(monkeypatch: pytest.MonkeyPatch) -> None:
    out = Console(file=io.StringIO(), force_terminal=False, width=80)
    monkeypatch.setattr(progress_module, "console", out)
    monkeypatch.setattr(progress_module, "LINE_INTERVAL", 0.0, raising=False)
    with progress_module.make_progress() as bar:
        task = bar.add_task("denoise photo.png", total=3000, status="")
        bar.update(task, completed=0, status=STATUS)
        bar.update(task, completed=125, status=STATUS)
    lines = out.file.getvalue().splitlines()
    assert lines and all("\x1b" not in line for line in lines)  # no colours, no cursor movement
    assert re.fullmatch(r"denoise photo\.png: 125/3000 \(4%\)  elapsed \d:\d\d:\d\d  ETA \d:\d\d:\d\d  " + re.escape(STATUS), lines[-1]), lines


def test_short_work_on_a_pipe_prints_nothing_and_a_failure_ends_the_lines() -> None:
    out = Console(file=io.StringIO(), force_terminal=False)
    with progress_module.make_progress(out) as bar:  # the default: a line every 30 s
        task = bar.add_task("fit", total=10, status="")
        bar.update(task, completed=10, status=STATUS)
    assert out.file.getvalue() == ""
    out = Console(file=io.StringIO(), force_terminal=False)
    with pytest.raises(RuntimeError), progress_module.make_progress(out, interval=0) as bar:
        fits = progress_module.FitsBar(bar, "denoise 2 image(s)", total=20)
        fits.tick("a", 5, 0.01, name="a.png")
        with fits.hidden_on_error():
            raise RuntimeError("a fit failed")
    lines = out.file.getvalue().splitlines()
    assert lines == [lines[0]] and lines[0].startswith("denoise 2 image(s): 5/20 (25%)") and "a.png  loss 1.00e-02" in lines[0]
