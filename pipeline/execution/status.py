"""``dip restore --status FILE``: the state of a running fit in a small JSON file, for whatever polls
it (the dashboard's Restore page).

:class:`StatusWriter` is a fit callback. Every log interval (at most once a second, and always at
the first and the last call) it replaces, atomically (a temporary file, then a rename):

* ``FILE`` — JSON ``{"iteration", "iterations", "loss", "psnr_obs"[, "psnr_gt"], "seconds",
  "ms_per_iteration", "eta_seconds", "snapshot", "curve", "input", "updated"}``;
* ``FILE`` with the suffix ``.png`` — the network's latest output :math:`f_\\theta(z + \\sigma_p\\epsilon_t)`.

The speed is measured from the end of iteration 0 (which carries the set-up, and on CUDA the
graph capture), :math:`\\text{ms/it} = 1000\\,(t_i - t_0)/i`, and the time left is
:math:`\\text{ms/it}\\cdot(N - i)`. Readers see either the previous file or the new one, never
half of one; the file lives wherever the caller says, outside the atomic output folder.
"""

from __future__ import annotations

import math
import os
import time
from pathlib import Path
from typing import Any

from dip.fit import Step
from pipeline.files import read_json, save_image, save_json


from dip.io import to_numpy

STATUS_KEYS = frozenset({"iteration", "iterations", "loss", "snapshot", "updated"})
"""Keys that every status file written by :class:`StatusWriter` holds (how dip knows its own)."""


def _is_own_status(path: Path) -> bool:
    """Whether ``path`` is a regular file that :class:`StatusWriter` wrote (a small JSON object with its keys)."""
    if path.is_symlink() or not path.is_file() or path.stat().st_size > 10_000_000:
        return False
    try:
        value = read_json(path)
    except ValueError:
        return False
    return isinstance(value, dict) and STATUS_KEYS <= set(value)


def check_status_path(path: Path, inputs: list[Path]) -> None:
    """Refuse (``ValueError``, one line) a ``--status`` file that would replace anything but dip's own
    status output: it must end in ``.json``; it and its image (same name, ``.png``) may not be one
    of ``inputs`` (images, masks, ground truth) nor any existing file that is not an earlier status
    written by dip (its JSON, and the image that JSON names)."""
    path = Path(path)
    image = path.with_suffix(".png")
    if path.suffix.lower() != ".json":
        raise ValueError(f"--status {path} must end in .json (its image goes beside it as {image.name}); give a new file name like progress.json")
    given = {Path(os.path.abspath(p)) for p in inputs} | {p.resolve() for p in inputs if p.exists()}
    for target in (path, image):
        if Path(os.path.abspath(target)) in given or (target.exists() and target.resolve() in given):
            raise ValueError(f"--status {path} would overwrite the input {target}; give a status file name of its own")
    own = _is_own_status(path)
    for target in (path, image):
        if (target.exists() or target.is_symlink()) and not own:
            raise ValueError(f"--status {path}: {target} exists and is not a status file of dip; dip never replaces it, "
                             "give a new file name")
    if image.exists() or image.is_symlink():
        if image.is_symlink() or not image.is_file() or read_json(path).get("snapshot") != image.name:
            raise ValueError(f"--status {path}: {image} exists and is not the status image of dip; dip never replaces it, "
                             "give a new file name")


class StatusWriter:
    """Fit callback that keeps ``path`` (JSON) and ``path.with_suffix(".png")`` up to date.

    ``iterations`` is the fit's length N; ``curve`` the rows of the fit's
    :class:`dip.callbacks.CurveRecorder` (read, never changed: its ``psnr_gt`` is the PSNR to the
    ground truth at the same iteration); ``source`` the input's name, recorded as is."""

    def __init__(self, path: str | Path, iterations: int, curve: list[dict[str, float]] | None = None,
                 source: str = "", every_seconds: float = 1.0) -> None:
        self.path, self.image = Path(path), Path(path).with_suffix(".png")
        self.iterations, self.curve, self.source, self.every = iterations, curve if curve is not None else [], source, every_seconds
        self.started = time.perf_counter()
        self.t0: float | None = None
        self.i0 = 0
        self.rate: float | None = None  # seconds per iteration
        self.written = -math.inf

    def __call__(self, step: Step) -> None:
        now, i = time.perf_counter(), int(step.iteration)
        if self.t0 is None:
            self.t0, self.i0 = now, i
        elif self.i0 < i < self.iterations:  # the call after the last iteration also times the final forward pass
            self.rate = (now - self.t0) / (i - self.i0)
        if not (self.written == -math.inf or i >= self.iterations or now - self.written >= self.every):
            return
        self.written = now
        save_image(self.image, to_numpy(step.output))
        loss = float(step.loss)
        status: dict[str, Any] = {
            "iteration": i, "iterations": self.iterations, "loss": loss,
            "psnr_obs": -10 * math.log10(loss) if loss > 0 else None,
            "seconds": round(now - self.started, 3),
            "ms_per_iteration": round(1000 * self.rate, 3) if self.rate is not None else None,
            "eta_seconds": round(self.rate * max(self.iterations - i, 0), 1) if self.rate is not None else None,
            "snapshot": self.image.name, "input": self.source,
            "curve": [{k: v for k, v in row.items() if k in ("iteration", "loss", "psnr_obs", "psnr_gt")} for row in self.curve],
            "updated": time.time(),
        }
        last = self.curve[-1] if self.curve else {}
        if last.get("iteration") == i and "psnr_gt" in last:
            status["psnr_gt"] = last["psnr_gt"]
        save_json(self.path, status)
