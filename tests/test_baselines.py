"""Every classical baseline improves on the corrupted input it is given."""

from __future__ import annotations

import time

import numpy as np
import pytest
import torch

from dip.io import to_numpy, to_tensor
from dip.metrics import psnr, to_uint8
from dip.operators import Denoising, Inpainting, SuperResolution
from pipeline.settings import BASELINE_DEFAULTS, BASELINES
from pipeline.stages.baselines import METHODS, method_params, run_baseline


@pytest.mark.parametrize("method", list(METHODS["denoise"]))
@pytest.mark.parametrize("colour", [False, True])
def test_denoisers_improve_psnr(method: str, colour: bool, camera64: np.ndarray, astronaut64: np.ndarray) -> None:
    clean = astronaut64 if colour else camera64
    noisy = to_numpy(Denoising.corrupt(to_tensor(clean), 25 / 255, torch.Generator().manual_seed(0)))
    start = time.perf_counter()
    estimate, seconds = run_baseline("denoise", method, noisy, {"sigma": 25 / 255}, BASELINE_DEFAULTS[method])
    assert estimate.shape == clean.shape and 0 < seconds <= time.perf_counter() - start  # the method's own time
    assert psnr(clean, estimate) > psnr(clean, noisy) + 1.5


def test_biharmonic_fills_holes(astronaut64: np.ndarray) -> None:
    mask = Inpainting.random_mask(astronaut64.shape[:2], 0.5, torch.Generator().manual_seed(0)).numpy()
    obs = astronaut64 * mask[..., None]
    estimate, _ = run_baseline("inpaint", "biharmonic", obs, {"mask": mask}, {})
    assert psnr(astronaut64, estimate) > psnr(astronaut64, obs) + 10


@pytest.mark.parametrize("method", list(METHODS["sr"]))
def test_interpolation_beats_nearest_upsampling(method: str, astronaut64: np.ndarray) -> None:
    lr = SuperResolution.corrupt(to_uint8(astronaut64), 4).astype(np.float32) / 255
    nearest = to_numpy(SuperResolution(4).naive_estimate(to_tensor(lr)))
    estimate, _ = run_baseline("sr", method, lr, {"factor": 4}, {})
    assert estimate.shape == astronaut64.shape
    assert psnr(astronaut64, estimate, "sr", 4) > psnr(astronaut64, nearest, "sr", 4) + 1.0


def test_bad_settings_are_rejected() -> None:
    with pytest.raises(ValueError, match="unknown nlm setting"):
        method_params("nlm", {"nlm": {"strength": 3}})
    with pytest.raises(ValueError, match="no baseline 'bm3d' for task 'sr'"):
        run_baseline("sr", "bm3d", np.zeros((4, 4)), {}, {})


def test_the_settings_name_exactly_the_methods_there_are() -> None:
    """params.yaml's baselines are checked against pipeline.settings.BASELINES (no torch, no
    scikit-image): it must name the methods the stage runs, task by task."""
    assert {t: list(ms) for t, ms in BASELINES.items()} == {t: list(ms) for t, ms in METHODS.items()}
