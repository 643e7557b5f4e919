"""Execution options change how a fit runs, never its numbers.

Each field of :data:`dip.fit.EXECUTION_FIELDS` must leave a float64 CPU fit equal (outputs,
averaged outputs, every loss, backtracks) to the default's: this test is what entitles a field to
be in the tuple, which the publishing run's resume key leaves out. The pixels of a float64 fit
are compared to 1e-9; float32 trajectories of two options part after a few hundred iterations
(Adam's rounding), as graph and eager do.
"""

from __future__ import annotations

import dataclasses

import pytest
import torch

from dip.fit import EXECUTION_FIELDS, FitConfig, Fitter, run_fits
from dip.network import NetConfig
from dip.operators import Inpainting

TINY = NetConfig.from_dict(dict(levels=3, width=8, skip=2))
#: the paper's network as it is, NCHW with every bias; each option below departs from it
BASE = FitConfig(iterations=14, lr=0.01, reg_noise_std=0.03, exp_weight=0.9, backtrack=True, precision="fp64", check_every=7,
                 channels_last=False, drop_inert_bias=False)
#: a non-default value of every execution option (compile: tests/test_execution.py::test_compile…, integration)
OPTIONS = {
    "graph": dict(graph=True),  # CUDA only; the CPU runs eagerly, the same code
    "channels_last": dict(channels_last=True),
    "drop_inert_bias": dict(drop_inert_bias=True),
    "defaults": dict(channels_last=None, drop_inert_bias=FitConfig.drop_inert_bias),  # whatever they are on the CPU
    "check_every": dict(check_every=1),
    "many": dict(many="grouped"),
}
ALL_AT_ONCE = dict(channels_last=True, drop_inert_bias=True, check_every=3)


def _fit(cfg: FitConfig, n: int = 2, channels: int = 3, net: NetConfig = TINY) -> tuple[list, list[list[float]]]:
    """``n`` images fitted as one group with ``cfg``: (results, losses of every iteration per image)."""
    gen = torch.Generator().manual_seed(4)
    fitters, losses = [], []
    for seed in range(n):
        y = torch.rand((1, channels, 32, 32), generator=gen)
        mask = Inpainting.random_mask((32, 32), 0.5, gen)
        f = Fitter(net, Inpainting(mask), Inpainting.corrupt(y, mask), dataclasses.replace(cfg, seed=seed), device="cpu")
        seen: list[float] = []
        f.add_callback(lambda step, seen=seen: seen.append(float(step.loss)) if step.iteration < cfg.iterations else None)
        fitters.append(f)
        losses.append(seen)
    return run_fits(fitters), losses


def _assert_same(got: tuple[list, list], want: tuple[list, list]) -> None:
    (results, losses), (ref_results, ref_losses) = got, want
    for r, ref, seen, ref_seen in zip(results, ref_results, losses, ref_losses):
        assert seen == pytest.approx(ref_seen, rel=1e-9, abs=0)
        assert (r.iterations_run, r.backtracks) == (ref.iterations_run, ref.backtracks)
        torch.testing.assert_close(r.output, ref.output, atol=1e-9, rtol=0)
        torch.testing.assert_close(r.averaged, ref.averaged, atol=1e-9, rtol=0)


def test_every_execution_option_is_a_setting_and_is_tested() -> None:
    fields = {f.name for f in dataclasses.fields(FitConfig)}
    assert set(EXECUTION_FIELDS) <= fields and "precision" not in EXECUTION_FIELDS
    assert set(EXECUTION_FIELDS) == set(OPTIONS) - {"defaults"} | {"compile", "compile_cache"}


@pytest.fixture(scope="module")
def reference() -> tuple[list, list]:
    return _fit(BASE)


@pytest.mark.parametrize("name", list(OPTIONS))
def test_an_execution_option_leaves_a_float64_fit_equal(name: str, reference) -> None:
    _assert_same(_fit(dataclasses.replace(BASE, **OPTIONS[name])), reference)


@pytest.mark.parametrize("many", ["grouped", "streams"])
def test_execution_options_together_leave_a_float64_fit_equal(many: str, reference) -> None:
    _assert_same(_fit(dataclasses.replace(BASE, many=many, **ALL_AT_ONCE)), reference)


@pytest.mark.integration
def test_compile_leaves_a_float64_fit_equal_and_saves_its_cache(tmp_path) -> None:
    """Inductor on the CPU (a C++ compiler; a lone fit of a 2-level network, fewer kernels to
    compile cold): the same numbers, and the cache file."""
    cache, small = tmp_path / "inductor.bin", NetConfig.from_dict(dict(levels=2, width=4, skip=1))
    plain = _fit(dataclasses.replace(BASE, iterations=6), n=1, net=small)
    _assert_same(_fit(dataclasses.replace(BASE, iterations=6, compile=True, compile_cache=str(cache)), n=1, net=small), plain)
    assert cache.stat().st_size > 0


def _order(t: torch.Tensor) -> tuple[int, ...]:
    return tuple(sorted(range(4), key=lambda d: -t.stride(d)))


LAYOUT_NET = NetConfig.from_dict(dict(levels=3, width=12, skip=2, input_depth=5))


def _activation(t: object) -> bool:
    """An activation of ``LAYOUT_NET`` (12 or 12 + 2 channels per image), not its input code (5 per
    image) or output (3 per image), whose conversions from and to the grouped layout are copies."""
    return isinstance(t, torch.Tensor) and t.dim() == 4 and (t.shape[1] % 12 == 0 or t.shape[1] % 14 == 0) and min(t.shape[2:]) > 1


@pytest.mark.parametrize("many", ["vmap", "grouped"])  # vmap: a lone fit (a vmap group runs NCHW)
def test_a_channels_last_iteration_never_changes_an_activations_layout(many: str) -> None:
    """Every convolution, forward and backward, sees NHWC activations, and no copy changes an
    activation's layout (on the CPU, at the level of PyTorch's ops; cuDNN's own transposes are
    counted on the GPU by benchmarks/gpu_speed.py)."""
    import dip.graphs as graphs
    from torch.utils._python_dispatch import TorchDispatchMode

    class Log(TorchDispatchMode):
        def __init__(self) -> None:
            super().__init__()
            self.convolutions, self.changes = 0, []

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            out = func(*args, **(kwargs or {}))
            name = str(func)
            outs = [o for o in (out if isinstance(out, (tuple, list)) else [out]) if _activation(o)]
            if name.startswith("aten.convolution"):
                self.convolutions += 1
                self.changes += [(name, tuple(a.shape)) for a in args[:2] if _activation(a) and _order(a) != (0, 2, 3, 1)]
            if any(k in name for k in ("copy", "clone", "contiguous")):
                self.changes += [(name, tuple(a.shape)) for a in args if _activation(a) for o in outs if a.shape == o.shape and _order(a) != _order(o)]
            return out

    logs: list[Log] = []

    def logged(self) -> None:
        self.calls += 1
        if self.calls == 3:
            with Log() as log:
                self.fn()
            logs.append(log)
        else:
            self.fn()

    cfg = FitConfig(iterations=4, exp_weight=0.9, backtrack=True, channels_last=True, many=many)
    original = graphs.Replayer.__call__
    graphs.Replayer.__call__ = logged
    try:
        _fit(cfg, n=1 if many == "vmap" else 2, net=LAYOUT_NET)
    finally:
        graphs.Replayer.__call__ = original
    (log,) = logs
    assert log.convolutions > 0 and log.changes == []
