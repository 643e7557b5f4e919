"""The graph-ready iteration, run eagerly, is the loop we had before (and the authors' rules).

``reference_fit`` is the previous eager loop for one image, kept here verbatim in spirit: Adam
from ``torch.optim`` (multi-tensor), a host read of the loss at every iteration for
backtracking, averaging with ``mul_/add_``. The new loop keeps all of that on the device
(:mod:`dip.iteration`), so on the CPU both must agree to rounding (float64).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from dip.fit import FitConfig, FitDiverged, Fitter, canvas_size, fit
from dip.io import to_tensor
from dip.network import NetConfig, SkipNet
from dip.operators import Denoising, Inpainting

TINY = NetConfig.from_dict(dict(levels=3, width=8, skip=2))


def reference_fit(y: torch.Tensor, op, cfg: FitConfig, blow_up_at: int | None = None):
    """The previous eager loop (one image): returns (final output, averaged, backtracks, losses)."""
    gen = torch.Generator().manual_seed(cfg.seed)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.seed)
        net = SkipNet(TINY, y.shape[1]).double()
    h, w = y.shape[-2:]
    z = (torch.rand((1, TINY.input_depth, *canvas_size((h, w), TINY.multiple)), generator=gen) * cfg.input_noise_scale).double()
    y = y.double()
    params = list(net.parameters())
    opt = torch.optim.Adam(params, lr=cfg.lr, foreach=True)
    noise_gen = torch.Generator().manual_seed(cfg.seed + 1)
    noise = torch.empty_like(z)
    good = [p.detach().clone() for p in params]
    good_loss, jump, backtracks, avg, losses = math.inf, 10 ** (cfg.backtrack_drop_db / 10), 0, None, []
    for i in range(cfg.iterations):
        torch.randn(noise.shape, generator=noise_gen, out=noise, dtype=noise.dtype)
        out = net(z + cfg.reg_noise_std * noise)[..., :h, :w]
        loss = torch.mean((op(out) - y) ** 2)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        out = out.detach()
        value = loss.item()
        if cfg.backtrack:
            if value > good_loss * jump or not math.isfinite(value):
                with torch.no_grad():
                    torch._foreach_copy_(params, good)
                backtracks += 1
                continue
            with torch.no_grad():
                torch._foreach_copy_(good, params)
            good_loss = value
        losses.append(value)
        if cfg.exp_weight is not None:
            avg = out.clone() if avg is None else avg.mul_(cfg.exp_weight).add_(out, alpha=1 - cfg.exp_weight)
        opt.step()
        if i == blow_up_at:
            with torch.no_grad():
                for p in params:
                    p.add_(torch.randn(p.shape, generator=torch.Generator().manual_seed(9), dtype=p.dtype) * 3.0)
    with torch.no_grad():
        final = net(z)[..., :h, :w]
    return final, avg, backtracks, losses


@pytest.mark.parametrize("blow_up_at", [None, 12])
def test_eager_iteration_equals_the_previous_loop(camera64: np.ndarray, blow_up_at) -> None:
    y = to_tensor(camera64[:32, :32])
    mask = Inpainting.random_mask((32, 32), 0.3, torch.Generator().manual_seed(1))
    op = Inpainting(mask)
    y = Inpainting.corrupt(y, mask)
    cfg = FitConfig(iterations=30, lr=0.01, reg_noise_std=0.03, exp_weight=0.9, backtrack=True, precision="fp64", seed=5)
    want_out, want_avg, want_bt, want_losses = reference_fit(y, op, cfg, blow_up_at)

    fitter = Fitter(TINY, op, y, cfg, device="cpu")
    losses: list[float] = []
    fitter.add_callback(lambda s: losses.append(float(s.loss)) if s.iteration < cfg.iterations else None)
    if blow_up_at is not None:
        def blow(step) -> None:
            with torch.no_grad():
                for p in step.fitter.net.parameters():
                    p.add_(torch.randn(p.shape, generator=torch.Generator().manual_seed(9), dtype=p.dtype) * 3.0)
        fitter.add_callback(blow, at=[blow_up_at])
    got = fitter.run()
    assert got.backtracks == want_bt and (blow_up_at is None or want_bt >= 1)
    assert losses == pytest.approx(want_losses, rel=1e-9)
    torch.testing.assert_close(got.output, want_out, atol=1e-9, rtol=0)
    torch.testing.assert_close(got.averaged, want_avg, atol=1e-9, rtol=0)
    assert got.mode == "eager"


def test_a_nan_loss_stops_the_fit_and_names_the_iteration(camera64: np.ndarray) -> None:
    y = to_tensor(camera64[:32, :32])
    cfg = FitConfig(iterations=50, lr=1.0, check_every=10)  # the largest learning rate allowed (dip.config.FIT_RANGES)

    def poison(step) -> None:
        with torch.no_grad():
            next(step.fitter.net.parameters()).fill_(float("nan"))

    with pytest.raises(FitDiverged, match=r"NaN/Inf at iteration 8\b"):
        fit(Denoising(), y, TINY, cfg, device="cpu", callbacks=[(poison, None, [7])])


def test_backtracking_catches_nan_instead_of_failing(camera64: np.ndarray) -> None:
    y = to_tensor(camera64[:32, :32])
    cfg = FitConfig(iterations=20, lr=0.01, backtrack=True)

    def poison(step) -> None:
        with torch.no_grad():
            next(step.fitter.net.parameters()).fill_(float("nan"))

    result = fit(Denoising(), y, TINY, cfg, device="cpu", callbacks=[(poison, None, [7])])
    assert result.backtracks >= 1 and torch.isfinite(result.output).all()


SYNC_OPS = {"aten._local_scalar_dense.default", "aten.nonzero.default", "aten.is_nonzero.default",
            "aten.item.default", "aten.masked_select.default", "aten.equal.default", "aten.lift_fresh.default"}


@pytest.mark.parametrize("n, options", [(1, dict(backtrack=True, exp_weight=0.99, early_stop=True, es_window=2)),
                                        (3, dict(backtrack=True, exp_weight=0.99, early_stop=True, es_window=2)),
                                        (2, dict(tv_weight=1e-3)),
                                        (2, dict(backtrack=True, exp_weight=0.99, many="grouped", channels_last=True))])
def test_an_iteration_never_reads_the_device_from_the_host(n, options) -> None:
    """What a CUDA graph cannot capture is a host read (``.item()``, ``bool(t)``, ``nonzero``) or a
    tensor made from Python data: none of those ops may appear in one iteration (checked on the CPU
    with a dispatch mode that logs every aten op the iteration issues)."""
    import dataclasses

    import dip.graphs as graphs
    from dip.fit import run_fits
    from torch.utils._python_dispatch import TorchDispatchMode

    class Log(TorchDispatchMode):
        ops: list[str] = []

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            self.ops.append(str(func))
            return func(*args, **(kwargs or {}))

    seen: list[list[str]] = []

    def logged(self) -> None:
        self.calls += 1
        if self.calls == 4:
            with Log() as log:
                self.fn()
            seen.append(list(log.ops))
        else:
            self.fn()

    y = torch.rand(1, 1, 32, 32, generator=torch.Generator().manual_seed(0))
    op = Inpainting(Inpainting.random_mask((32, 32), 0.5, torch.Generator().manual_seed(1)))
    cfg = FitConfig(iterations=6, **options)
    fitters = [Fitter(TINY, op, y, dataclasses.replace(cfg, seed=s), device="cpu") for s in range(n)]
    original = graphs.Replayer.__call__
    graphs.Replayer.__call__ = logged
    try:
        run_fits(fitters)
    finally:
        graphs.Replayer.__call__ = original
    (ops,) = seen
    assert "aten.convolution_backward.default" in ops  # the log saw the whole iteration
    assert not SYNC_OPS & set(ops)
