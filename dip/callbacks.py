"""Ready-made callbacks: a PSNR/SSIM curve recorder and a snapshot taker.

They copy outputs to the host only at the iterations they are registered for, so the hot loop
stays free of synchronisation between logging points.
"""

from __future__ import annotations

import math
from typing import Callable

import numpy as np

from dip.fit import Step
from dip.io import to_numpy
from dip.metrics import Protocol, psnr, ssim


class CurveRecorder:
    """Rows of ``iteration, loss, psnr_obs[, psnr_gt, ssim_gt][, psnr_gt_avg]``.

    ``psnr_obs`` is :math:`-10\\log_{10}\\lVert A(x_t) - y\\rVert^2/n`, the fit to the observation;
    the ground-truth columns use the 8-bit metrics of :mod:`dip.metrics`.
    """

    def __init__(self, ground_truth: np.ndarray | None = None, protocol: Protocol = "rgb", shave: int = 0) -> None:
        self.gt, self.protocol, self.shave = ground_truth, protocol, shave
        self.rows: list[dict[str, float]] = []

    def __call__(self, step: Step) -> None:
        loss = float(step.loss)
        row: dict[str, float] = {
            "iteration": step.iteration,
            "loss": loss,
            "psnr_obs": -10 * math.log10(loss) if loss > 0 else math.inf,
        }
        if self.gt is not None:
            out = to_numpy(step.output)
            row["psnr_gt"] = psnr(self.gt, out, self.protocol, self.shave)
            row["ssim_gt"] = ssim(self.gt, out, self.protocol, self.shave)
            if step.averaged is not None:
                row["psnr_gt_avg"] = psnr(self.gt, to_numpy(step.averaged), self.protocol, self.shave)
        self.rows.append(row)


class SnapshotTaker:
    """Hands the output of chosen iterations to ``save(iteration, image)`` as a float array."""

    def __init__(self, save: Callable[[int, np.ndarray], None]) -> None:
        self.save = save

    def __call__(self, step: Step) -> None:
        self.save(step.iteration, to_numpy(step.output))
