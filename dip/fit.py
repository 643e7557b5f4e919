"""The one fitting loop for every task.

Given an observation :math:`y` and a forward operator :math:`A`, DIP fits

.. math::

    \\theta^* = \\arg\\min_\\theta \\lVert A(f_\\theta(z + \\sigma_p \\epsilon_t)) - y \\rVert_2^2,
    \\qquad z \\sim \\mathcal U(0, \\tfrac1{10}),\\ \\epsilon_t \\sim \\mathcal N(0, I)

with Adam, and returns :math:`f_{\\theta}(z)`. Options: exponential output averaging
:math:`\\bar x_t = \\beta \\bar x_{t-1} + (1-\\beta) x_t`, divergence backtracking, and ES-WMV
early stopping. Callbacks (minGPT's ``add_callback`` shape) see every iteration they ask for;
the loop itself knows nothing about files.

How it runs: one iteration is :class:`dip.iteration.Iteration` — tensor work only, no host
synchronisation — which on CUDA is captured once as a CUDA graph and replayed
(:mod:`dip.graphs`), so the loop costs one launch per iteration instead of hundreds. The host
reads the device only where it must: when a callback is due, once per ES window, and every
``check_every`` iterations to stop a fit whose loss became NaN/Inf. Several same-size images
can be fitted as one group (:mod:`dip.group`); a lone fit is a group of one.

The network works on a canvas whose sides are multiples of ``2**levels``; its output is cropped
to the image's size before the operator, so the loss only ever sees real pixels.
"""

from __future__ import annotations

import dataclasses
import math
import time
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Sequence

import torch
from torch import nn

from dip.config import FitConfig  # noqa: F401 - re-exported: the settings live in dip.config (no torch)
from dip.device import pick_device
from dip.graphs import Replayer
from dip.group import Lone, Stacked
from dip.inputs import make_input
from dip.iteration import Iteration
from dip.models import build_model
from dip.network import NetConfig
from dip.operators import Operator
from dip.priors import tv


@dataclass
class Step:
    """What a callback sees: outputs are detached, on the fitting device, cropped to the image."""

    iteration: int
    output: torch.Tensor
    averaged: torch.Tensor | None
    loss: torch.Tensor
    fitter: "Fitter"


class FitDiverged(ValueError):
    """The loss became NaN or infinite (without backtracking to catch it). A ``ValueError``: the
    settings (learning rate, no backtracking) do not suit this input, which the CLI reports in one line."""

    def __init__(self, iteration: int) -> None:
        super().__init__(
            f"the fit diverged: the loss became NaN/Inf at iteration {iteration}; "
            "lower the learning rate or turn on backtracking"
        )
        self.iteration = iteration


@dataclass
class FitResult:
    output: torch.Tensor  # f_θ(z) after the last iteration run
    averaged: torch.Tensor | None  # exponential average of the outputs, if enabled
    early_stopped: torch.Tensor | None  # output at the ES-WMV minimum, if enabled
    iterations_run: int
    early_stop_iteration: int | None
    backtracks: int
    seconds: float
    diverged_at: int | None = None  # first iteration with a NaN/Inf loss (the fit stopped there)
    mode: str = "eager"  # how the iterations ran: "eager" or "graph" (CUDA graph replay)

    @property
    def best(self) -> torch.Tensor:
        """The estimate a user wants: early-stopped, else averaged, else the last output."""
        for candidate in (self.early_stopped, self.averaged, self.output):
            if candidate is not None:
                return candidate
        raise RuntimeError("empty result")


Callback = Callable[[Step], None]


def canvas_size(size: tuple[int, int], multiple: int) -> tuple[int, int]:
    """Smallest multiple of ``multiple`` (and at least ``2·multiple``) covering each side."""
    return tuple(max(math.ceil(s / multiple), 2) * multiple for s in size)  # type: ignore[return-value]


def check_size(size: tuple[int, int], cfg: NetConfig) -> None:
    """Raise ``ValueError`` if an image of ``size`` is too small for the network."""
    if min(size) < cfg.multiple:
        raise ValueError(
            f"image {size[1]}x{size[0]} is too small for a {cfg.levels}-level network: each side "
            f"needs at least {cfg.multiple} px; use a larger image or fewer levels"
        )


class Fitter:
    """Fits a fresh generator (:func:`dip.models.build_model`) to one observation through ``operator``.

    Callbacks get a :class:`Step` whose tensors are the loop's buffers: read them during the
    call (``to_numpy``, ``float``), ``clone()`` what you keep.
    """

    def __init__(
        self,
        net_cfg: NetConfig,
        operator: Operator,
        observation: torch.Tensor,
        cfg: FitConfig | None = None,
        device: str | torch.device = "auto",
        input_image: torch.Tensor | None = None,
    ) -> None:
        """``input_image`` (C, H, W) is the code z when ``cfg.input == "image"`` (flash/no-flash)."""
        self.cfg = (cfg or FitConfig()).validate()
        if self.cfg.input == "image" and input_image is None:
            raise ValueError("FitConfig(input='image') needs Fitter(..., input_image=...)")
        self.input_image = input_image
        self.net_cfg = net_cfg.validate()
        self.device = pick_device(device) if isinstance(device, str) else device
        if observation.dim() == 3:
            observation = observation[None]
        self.dtype = torch.float64 if self.cfg.precision == "fp64" else torch.float32
        self.observation = observation.to(self.device, self.dtype)
        self.operator = operator.to(self.device)
        self.image_size = operator.image_size(tuple(observation.shape[-2:]))
        check_size(self.image_size, net_cfg)
        self.channels = observation.shape[1]
        self.callbacks: list[tuple[Callback, int | None, set[int]]] = []
        self.stop_requested = False
        self.net: nn.Module | None = None  # the network being fitted (lone fits), set by run()
        self.z: torch.Tensor | None = None  # its input code

    def add_callback(self, fn: Callback, every: int | None = None, at: Iterable[int] | None = None) -> None:
        """Call ``fn(step)`` every ``every`` iterations and/or at the iterations in ``at``."""
        marks = set(at or ())
        if every is None and not marks:
            every = 1
        if every is not None and every < 1:
            raise ValueError(f"callback interval must be >= 1, got {every}")
        self.callbacks.append((fn, every, marks))

    def request_stop(self) -> None:
        """Ask the loop to stop after the current iteration (for callbacks)."""
        self.stop_requested = True

    def build(self) -> tuple[nn.Module, torch.Tensor]:
        """Network and input code z, both drawn from ``cfg.seed`` on the CPU (device independent)."""
        gen = torch.Generator().manual_seed(self.cfg.seed)
        canvas = canvas_size(self.image_size, self.net_cfg.multiple)
        z = make_input(self.cfg.input, self.net_cfg.input_depth, self.image_size, canvas, gen, self.cfg.input_noise_scale, self.input_image)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.cfg.seed)
            net = build_model(self.net_cfg, self.channels, in_channels=z.shape[1], canvas=canvas)
        return net.to(self.device, self.dtype), z.to(self.device, self.dtype)

    def run(self) -> FitResult:
        """Fit and return the result; raises :class:`FitDiverged` if the loss became NaN/Inf."""
        result = run_fits([self])[0]
        if result.diverged_at is not None:
            raise FitDiverged(result.diverged_at)
        return result

    def due(self, i: int, final: bool = False) -> list[Callback]:
        """The callbacks to call at iteration ``i`` (periodic ones also at the final one)."""
        return [fn for fn, every, marks in self.callbacks if i in marks or (every is not None and (i % every == 0 or final))]


def run_fits(fitters: list[Fitter]) -> list[FitResult]:
    """THE fitting loop, for one image or a group of same-size images fitted at once.

    Each image has its own network, input code, noise generator, Adam state, backtracking
    snapshot, output average, ES-WMV tracker and callbacks, drawn from its own seed exactly as a
    lone fit would; only the kernels are shared. An image that stops (ES-WMV, ``request_stop``,
    a NaN/Inf loss) is frozen — no more steps or callbacks — while the others go on.
    """
    lead = fitters[0]
    cfg, device, n = lead.cfg, lead.device, len(fitters)
    start = time.perf_counter()
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # fixed shapes for thousands of iterations
    nets, codes = zip(*(f.build() for f in fitters))
    z = torch.cat(codes)
    if cfg.channels_last:
        nets = tuple(net.to(memory_format=torch.channels_last) for net in nets)
        z = z.contiguous(memory_format=torch.channels_last)
    model = Lone(nets[0]) if n == 1 else Stacked(nets)
    for i, f in enumerate(fitters):
        f.net, f.z, f.stop_requested = (nets[0] if n == 1 else None), z[i : i + 1], False
    forward = torch.compile(model) if cfg.compile else model
    step = Iteration(model, forward, z, [f.operator for f in fitters], [f.observation for f in fitters],
                     [f.cfg.seed for f in fitters], cfg, lead.image_size, lead.dtype,
                     tv=(lambda x: cfg.tv_weight * tv(x)) if cfg.tv_weight else None)
    use_graph = cfg.graph if cfg.graph is not None else device.type == "cuda"
    replay = Replayer(step, device, use_graph, step.generators)
    iterations_run = [cfg.iterations] * n
    diverged: list[int | None] = [None] * n
    active = list(range(n))

    def finish(i: int, ran: int) -> None:
        iterations_run[i] = ran
        active.remove(i)
        step.freeze(i)

    for iteration in range(cfg.iterations):
        replay()
        for i in active:
            fns = fitters[i].due(iteration)
            if fns and not bool(step.skipped[i]):  # a backtracked iteration has nothing to show
                averaged = step.averaged[i : i + 1] if step.averaged is not None else None
                shown = Step(iteration, step.out[i : i + 1], averaged, step.loss[i], fitters[i])
                for fn in fns:
                    fn(shown)
        checking = (iteration + 1) % cfg.check_every == 0 or iteration + 1 == cfg.iterations
        broken = step.nonfinite_at.tolist() if checking else [-1] * n
        for i in list(active):
            tracker = step.trackers[i] if step.trackers else None
            es = tracker is not None and (iteration + 1) % cfg.es_window == 0 and tracker.should_stop(iteration)
            if broken[i] >= 0:
                diverged[i] = broken[i]
                finish(i, broken[i] + 1)
            elif es or fitters[i].stop_requested:
                finish(i, iteration + 1)
        if not active:
            break
    step.thaw()
    with torch.no_grad():
        final = step.forward(z)
        final_losses = step.losses(final)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    seconds = time.perf_counter() - start
    backtracks = step.backtracks.tolist()
    results = []
    for i, f in enumerate(fitters):
        out = final[i : i + 1]
        averaged = step.averaged[i : i + 1].clone() if step.averaged is not None else None
        if diverged[i] is None:
            shown = Step(iterations_run[i], out, averaged, final_losses[i].detach(), f)
            for fn in f.due(iterations_run[i], final=True):
                fn(shown)
        es_out, es_iter = None, None
        if step.trackers:
            tracker = step.trackers[i]
            tracker.should_stop(iterations_run[i])
            if tracker.found:
                es_out, es_iter = tracker.best_output.clone().to(lead.dtype), tracker.best_iteration
        results.append(FitResult(output=out, averaged=averaged, early_stopped=es_out, iterations_run=iterations_run[i],
                                 early_stop_iteration=es_iter, backtracks=int(backtracks[i]), seconds=seconds,
                                 diverged_at=diverged[i], mode=replay.mode))
    return results


def fit_many(
    operators: Operator | Sequence[Operator],
    observations: Sequence[torch.Tensor] | torch.Tensor,
    net_cfg: NetConfig | None = None,
    cfg: FitConfig | None = None,
    seeds: Sequence[int] | None = None,
    device: str | torch.device = "auto",
    callbacks: Sequence[Iterable[tuple[Callback, int | None, Iterable[int] | None]]] | None = None,
) -> list[FitResult]:
    """Fit N same-size observations at once in one batched network pass.

    The result for image ``i`` is the one ``fit(operators[i], observations[i], net_cfg,
    replace(cfg, seed=seeds[i]))`` gives, up to floating-point rounding: each image keeps its own
    weights, batch-norm statistics, input code, noise, Adam state, backtracking and early stopping.
    ``operators`` is one operator for all images or one per image; ``seeds`` defaults to
    ``cfg.seed`` for every image; ``callbacks[i]`` are image ``i``'s ``(fn, every, at)``
    triples, whose :class:`Step` carries that image alone. Every result's ``seconds`` is the
    group's wall time. A diverged image has ``diverged_at`` set (the others are unaffected).
    """
    obs = list(observations)
    if not obs:
        raise ValueError("fit_many needs at least one observation")
    ops = list(operators) if isinstance(operators, Sequence) else [operators] * len(obs)
    cfg = (cfg or FitConfig()).validate()
    seeds = [cfg.seed] * len(obs) if seeds is None else list(seeds)
    if not len(ops) == len(seeds) == len(obs):
        raise ValueError(f"got {len(obs)} observations, {len(ops)} operators and {len(seeds)} seeds")
    net_cfg = net_cfg or NetConfig()
    fitters = [
        Fitter(net_cfg, op, y, dataclasses.replace(cfg, seed=s), device) for op, y, s in zip(ops, obs, seeds)
    ]
    shapes = {(tuple(f.observation.shape[1:]), f.image_size) for f in fitters}
    if len(shapes) > 1:
        raise ValueError("fit_many needs observations of one size and channel count (and operators of one output size)")
    for f, cbs in zip(fitters, callbacks or [()] * len(fitters)):
        for fn, every, at in cbs:
            f.add_callback(fn, every=every, at=at)
    return run_fits(fitters)


def fit(
    operator: Operator,
    observation: torch.Tensor,
    net_cfg: NetConfig | None = None,
    cfg: FitConfig | None = None,
    device: str | torch.device = "auto",
    callbacks: Iterable[tuple[Callback, int | None, Iterable[int] | None]] = (),
) -> FitResult:
    """One-call API: ``fit(Inpainting(mask), y, NetConfig(), FitConfig(iterations=2000))``."""
    fitter = Fitter(net_cfg or NetConfig(), operator, observation, cfg, device)
    for fn, every, at in callbacks:
        fitter.add_callback(fn, every=every, at=at)
    return fitter.run()
