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
import time
from pathlib import Path
from typing import Any

from dip.fit import Step
from pipeline.files import save_image, save_json


from dip.io import to_numpy
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
