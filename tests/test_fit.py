"""The fitting loop: every task improves on its input, determinism, backtracking, ES-WMV."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from dip.fit import FitConfig, Fitter, fit
from dip.io import to_numpy, to_tensor
from dip.metrics import psnr, to_uint8
from dip.network import NetConfig
from dip.operators import Denoising, Inpainting, SuperResolution

SMALL = NetConfig.from_dict(dict(levels=4, width=16, skip=4))


def test_denoising_improves_psnr(camera64: np.ndarray) -> None:
    noisy = Denoising.corrupt(to_tensor(camera64), 25 / 255, torch.Generator().manual_seed(0))
    result = fit(Denoising(), noisy, SMALL, FitConfig(iterations=100, lr=0.01, exp_weight=0.9), device="cpu")
    assert psnr(camera64, to_numpy(result.averaged)) > psnr(camera64, to_numpy(noisy)) + 1.0


def test_inpainting_improves_psnr(camera64: np.ndarray) -> None:
    mask = Inpainting.random_mask(camera64.shape, 0.5, torch.Generator().manual_seed(0))
    y = Inpainting.corrupt(to_tensor(camera64), mask)
    result = fit(Inpainting(mask), y, SMALL, FitConfig(iterations=60, lr=0.01, reg_noise_std=0.03), device="cpu")
    assert psnr(camera64, to_numpy(result.output)) > psnr(camera64, to_numpy(y)) + 10.0


def test_super_resolution_improves_on_the_upsampled_input(astronaut64: np.ndarray) -> None:
    lr = SuperResolution.corrupt(to_uint8(astronaut64), 4).astype(np.float32) / 255
    op = SuperResolution(4)
    y = to_tensor(lr)
    result = fit(op, y, SMALL, FitConfig(iterations=100, lr=0.01, reg_noise_std=0.03), device="cpu")
    naive = to_numpy(op.naive_estimate(y))
    assert psnr(astronaut64, to_numpy(result.output), "sr", 4) > psnr(astronaut64, naive, "sr", 4) + 0.5


def test_same_seed_same_result_other_seed_differs(camera64: np.ndarray) -> None:
    y = to_tensor(camera64)
    runs = [fit(Denoising(), y, SMALL, FitConfig(iterations=5, seed=s), device="cpu").output for s in (7, 7, 8)]
    assert torch.equal(runs[0], runs[1])
    assert not torch.equal(runs[0], runs[2])


def test_callbacks_every_and_at_and_final(camera64: np.ndarray) -> None:
    fitter = Fitter(SMALL, Denoising(), to_tensor(camera64), FitConfig(iterations=10), device="cpu")
    seen_every: list[int] = []
    seen_at: list[int] = []
    fitter.add_callback(lambda s: seen_every.append(s.iteration), every=4)
    fitter.add_callback(lambda s: seen_at.append(s.iteration), at=[0, 3, 10, 99])
    fitter.run()
    assert seen_every == [0, 4, 8, 10]  # periodic callbacks also see the final output
    assert seen_at == [0, 3, 10]


def test_backtracking_recovers_from_an_injected_divergence(camera64: np.ndarray) -> None:
    y = to_tensor(camera64)

    results = {}
    for backtrack in (False, True):
        fitter = Fitter(SMALL, Denoising(), y, FitConfig(iterations=60, lr=0.01, backtrack=backtrack), device="cpu")
        losses: list[float] = []
        fitter.add_callback(lambda s: losses.append(float(s.loss)))
        fitter.add_callback(lambda s: _blow_up(s.fitter), at=[40])
        results[backtrack] = (fitter.run(), losses)
    healthy = results[True][1][39]
    assert results[True][0].backtracks >= 1
    assert results[True][1][-1] < 1.5 * healthy  # back on track
    assert results[False][1][41] > 3 * healthy  # without it, the jump is there


def _blow_up(fitter: Fitter) -> None:
    with torch.no_grad():
        for p in fitter.net.parameters():
            p.add_(torch.randn_like(p) * 3.0)


def test_early_stopping_stops_and_returns_the_minimum_variance_output(camera64: np.ndarray) -> None:
    cfg = FitConfig(iterations=400, lr=0.01, early_stop=True, es_window=10, es_patience=20)
    result = fit(Denoising(), to_tensor(camera64), SMALL, cfg, device="cpu")
    assert result.early_stopped is not None and result.early_stop_iteration is not None
    assert result.iterations_run < 400
    assert result.iterations_run - 1 - result.early_stop_iteration >= 20
    assert result.best is result.early_stopped


@pytest.mark.parametrize(
    "values, message",
    [
        (dict(iterations=0), "iterations must be >= 1"),
        (dict(lr=-1.0), "learning rate"),
        (dict(exp_weight=1.5), "exp_weight"),
        (dict(precision="fp8"), "precision"),
        (dict(learning_rate=0.1), "unknown fitting setting"),
    ],
)
def test_nonsense_fit_settings_are_rejected(values: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        FitConfig.from_dict(values)
