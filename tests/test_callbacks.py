"""Callbacks get values they can keep: each snapshot is the output of its own iteration."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from dip.callbacks import CurveRecorder, SnapshotTaker
from dip.fit import FitConfig, Fitter
from dip.io import to_tensor
from dip.metrics import psnr
from dip.network import NetConfig
from dip.operators import Denoising

TINY = NetConfig.from_dict(dict(levels=3, width=8, skip=2))


@pytest.mark.parametrize("exp_weight", [None, 0.9])
def test_each_snapshot_scores_what_the_curve_says_at_its_iteration(camera64: np.ndarray, exp_weight) -> None:
    """On the CPU a float32 output handed to a callback used to be a view of the loop's buffer:
    every kept snapshot then showed the last iteration's output. Each snapshot's PSNR must equal
    the curve's ``psnr_gt`` at that iteration (the curve is computed during the callback)."""
    gt = camera64[:32, :32]
    noisy = Denoising.corrupt(to_tensor(gt), 25 / 255, torch.Generator().manual_seed(0))
    marks = [0, 10, 20, 30]
    fitter = Fitter(TINY, Denoising(), noisy, FitConfig(iterations=30, lr=0.01, exp_weight=exp_weight), device="cpu")
    curve = CurveRecorder(gt)
    snapshots: dict[int, np.ndarray] = {}
    fitter.add_callback(curve, every=10)
    fitter.add_callback(SnapshotTaker(snapshots.__setitem__), at=marks)
    averaged: list[torch.Tensor] = []
    if exp_weight is not None:
        fitter.add_callback(lambda step: averaged.append(step.averaged), at=marks)
    fitter.run()
    scores = {row["iteration"]: row["psnr_gt"] for row in curve.rows}
    assert sorted(snapshots) == marks
    for i in marks:
        assert psnr(gt, snapshots[i]) == pytest.approx(scores[i], abs=1e-9), f"snapshot {i}"
    assert len({round(scores[i], 6) for i in marks}) == len(marks)  # the fit moved between snapshots
    if averaged:  # a kept averaged output is its own iteration's too
        assert all(not torch.equal(a, b) for a, b in zip(averaged, averaged[1:]))
