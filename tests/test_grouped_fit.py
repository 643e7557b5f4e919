"""Grouped fitting: N images fitted together give each image's lone fit, whichever way the group
runs (``FitConfig.many``): ``vmap`` over stacked weights, ``grouped`` (one widened network with
``groups=N`` convolutions), ``streams`` (one lone iteration per image; on CUDA each on its stream).

The batched convolutions round differently from the lone ones (~1e-6 in float32). Adam turns
that rounding noise into full-size steps on the parameters whose true gradient is zero (biases
cancelled by the batch norm that follows), so two float32 trajectories drift apart after a few
iterations even though the math is the same. The tests therefore fit in float64
(``precision="fp64"``), where the same comparison holds to ~1e-10.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from dip import Denoising, FitConfig, Inpainting, NetConfig, fit, fit_many

TINY = NetConfig.from_dict(dict(levels=3, width=8, skip=2))


def _images(camera64: np.ndarray, astronaut64: np.ndarray) -> list[torch.Tensor]:
    """Three 32×32 gray images."""
    gray = torch.from_numpy(astronaut64.mean(axis=2).astype(np.float32))
    return [torch.from_numpy(np.ascontiguousarray(x[16:48, 16:48]))[None] for x in (camera64, gray.numpy(), camera64.T)]


_LONE: dict[str, object] = {}


def _alone(op, y, cfg, seed):
    """The lone fit (cached across the group modes: the same key gives the same fit)."""
    key = repr((op, y.sum().item(), dataclasses.replace(cfg, seed=seed, many="vmap")))
    if key not in _LONE:
        _LONE[key] = fit(op, y, TINY, dataclasses.replace(cfg, seed=seed), device="cpu")
    return _LONE[key]


MANY = ["vmap", "grouped", "streams"]


@pytest.mark.parametrize("many", MANY)
@pytest.mark.parametrize("options", [dict(), dict(exp_weight=0.9, backtrack=True)])
def test_fitting_together_equals_fitting_alone(camera64, astronaut64, options, many) -> None:
    images = _images(camera64, astronaut64)
    cfg = FitConfig(iterations=16, lr=0.01, precision="fp64", many=many, **options)
    seeds = [3, 7, 11]
    together = fit_many(Denoising(), images, TINY, cfg, seeds=seeds, device="cpu")
    for y, seed, got in zip(images, seeds, together):
        want = _alone(Denoising(), y, cfg, seed)
        assert got.iterations_run == want.iterations_run
        assert got.backtracks == want.backtracks
        torch.testing.assert_close(got.output, want.output, atol=1e-8, rtol=0)
        if want.averaged is not None:
            torch.testing.assert_close(got.averaged, want.averaged, atol=1e-8, rtol=0)


@pytest.mark.parametrize("many", MANY[:2])  # streams: lone iterations, one after another on the CPU
def test_per_image_operators_callbacks_and_early_stop(camera64, astronaut64, many) -> None:
    images = _images(camera64, astronaut64)[:2]
    gen = torch.Generator().manual_seed(0)
    masks = [Inpainting.random_mask((32, 32), 0.5, gen) for _ in images]
    ops = [Inpainting(m) for m in masks]
    observed = [Inpainting.corrupt(y, m) for y, m in zip(images, masks)]
    cfg = FitConfig(iterations=40, lr=0.01, precision="fp64", early_stop=True, es_window=3, es_patience=6, many=many)
    seen: list[list[int]] = [[], []]
    callbacks = [[(lambda s, k=k: seen[k].append(s.iteration), 5, None)] for k in range(2)]
    together = fit_many(ops, observed, TINY, cfg, seeds=[1, 2], device="cpu", callbacks=callbacks)
    for k, (op, y, got) in enumerate(zip(ops, observed, together)):
        want = _alone(op, y, cfg, k + 1)
        assert got.iterations_run == want.iterations_run < 40
        assert got.early_stop_iteration == want.early_stop_iteration
        torch.testing.assert_close(got.output, want.output, atol=1e-8, rtol=0)
        assert seen[k][0] == 0 and seen[k][-1] == got.iterations_run


def test_fit_many_rejects_mixed_sizes(camera64) -> None:
    with pytest.raises(ValueError, match="one size"):
        fit_many(Denoising(), [torch.from_numpy(camera64)[None], torch.zeros(1, 32, 32)], TINY, device="cpu")


def test_float32_group_matches_over_a_few_steps(camera64, astronaut64) -> None:
    images = _images(camera64, astronaut64)[:2]
    cfg = FitConfig(iterations=2, lr=0.01)
    together = fit_many(Denoising(), images, TINY, cfg, seeds=[3, 7], device="cpu")
    for y, seed, got in zip(images, [3, 7], together):
        torch.testing.assert_close(got.output, _alone(Denoising(), y, cfg, seed).output, atol=1e-4, rtol=0)


@pytest.mark.parametrize("many", MANY)
def test_an_image_stopped_early_keeps_its_weights_while_the_others_go_on(camera64, astronaut64, many) -> None:
    """Without backtracking the group's Adam steps every image (no per-iteration masking); an image
    the host stops is frozen and its weights put back before the final output (streams: no longer run)."""
    images = _images(camera64, astronaut64)[:2]
    cfg = FitConfig(iterations=12, lr=0.01, precision="fp64", exp_weight=0.9, many=many)
    stop_at = 4

    def stopper(step) -> None:
        if step.iteration == stop_at:
            step.state.request_stop()

    together = fit_many(Denoising(), images, TINY, cfg, seeds=[1, 2], device="cpu", callbacks=[[(stopper, None, [stop_at])], []])
    assert [r.iterations_run for r in together] == [stop_at + 1, 12]
    short = fit(Denoising(), images[0], TINY, dataclasses.replace(cfg, seed=1, iterations=stop_at + 1), device="cpu")
    torch.testing.assert_close(together[0].output, short.output, atol=1e-8, rtol=0)
    torch.testing.assert_close(together[0].averaged, short.averaged, atol=1e-8, rtol=0)
    torch.testing.assert_close(together[1].output, _alone(Denoising(), images[1], cfg, 2).output, atol=1e-8, rtol=0)
