"""The one fitting loop for every task.

Given an observation :math:`y` and a forward operator :math:`A`, DIP fits

.. math::

    \\theta^* = \\arg\\min_\\theta \\lVert A(f_\\theta(z + \\sigma_p \\epsilon_t)) - y \\rVert_2^2,
    \\qquad z \\sim \\mathcal U(0, \\tfrac1{10}),\\ \\epsilon_t \\sim \\mathcal N(0, I)

with Adam, and returns :math:`f_{\\theta}(z)`. Options: exponential output averaging
:math:`\\bar x_t = \\beta \\bar x_{t-1} + (1-\\beta) x_t`, divergence backtracking, and ES-WMV
early stopping. Callbacks (minGPT's ``add_callback`` shape) see every iteration they ask for;
the loop itself knows nothing about files.

How it runs — what a reader needs to follow one step:

* :class:`Fitter` is the caller's description of one fit (settings, operator, observation,
  callbacks); the loop never changes it. :func:`run_fits` runs a list of them as one group and
  keeps each fit's run-time state in a :class:`FitState` (network, code, stop flag), which
  callbacks see as ``step.state``.
* One iteration of the group is :class:`dip.iteration.Iteration` — its docstring lists the
  whole step (perturb, forward, loss, backward, backtracking, Adam, averaging, ES-WMV) — with
  no host synchronisation, so that on CUDA it is captured once as a CUDA graph and replayed
  (:mod:`dip.graphs`): one launch per iteration instead of hundreds.
* The host reads the device only where it must: when a callback is due (it gets copies of the
  outputs, its to keep), once per ES window, and every ``check_every`` iterations to stop a fit
  whose loss became NaN/Inf.
* Several same-size images are one group: one model over stacked weights (``many="vmap"`` or
  ``"grouped"``, :mod:`dip.group`) or one lone iteration per image on its own CUDA stream
  (``"streams"``); a lone fit is a group of one.

**Execution options** (:data:`EXECUTION_FIELDS`) change how an iteration runs, never its numbers
(each is tested to leave a float64 CPU fit equal): CUDA graphs, ``torch.compile``, channels-last
memory format, dropping the inert biases (:func:`dip.network.inert_biases`), how a group runs,
how often the host checks for NaN. ``precision`` is not one: bf16 changes the numbers.

The network works on a canvas whose sides are multiples of ``2**levels``; its output is cropped
to the image's size before the operator, so the loss only ever sees real pixels.
"""

from __future__ import annotations

import dataclasses
import math
import time
from dataclasses import dataclass
from typing import Callable, Iterable, Sequence

import torch
from torch import nn

from dip.compiling import compile_model, save_cache
from dip.config import EXECUTION_FIELDS, MANY_MODES, FitConfig  # noqa: F401 - re-exported: the settings live in dip.config (no torch)
from dip.device import pick_device
from dip.graphs import OnStreams, Replayer
from dip.group import Members, group_model
from dip.inputs import make_input
from dip.iteration import Iteration
from dip.models import build_model
from dip.network import NetConfig, drop_inert_biases
from dip.operators import Operator
from dip.priors import tv


@dataclass
class FitState:
    """One fit's run-time state inside :func:`run_fits` (callbacks see it as ``step.state``).

    ``net`` is the network being fitted when the fit has one of its own (a lone fit, or
    ``many="streams"``); in a stacked group its weights are rows of the group's leaves and
    ``net`` is None. ``z`` is its input code on the canvas.
    """

    index: int
    fitter: "Fitter"
    z: torch.Tensor
    net: nn.Module | None = None
    stop_requested: bool = False
    iterations_run: int = 0
    diverged_at: int | None = None

    @property
    def cfg(self) -> FitConfig:
        return self.fitter.cfg

    def request_stop(self) -> None:
        """Ask the loop to stop this fit after the current iteration (for callbacks)."""
        self.stop_requested = True


@dataclass
class Step:
    """What a callback sees: copies of the outputs (detached, on the fitting device, cropped to
    the image; the callback's to keep) and the fit's :class:`FitState`."""

    iteration: int
    output: torch.Tensor
    averaged: torch.Tensor | None
    loss: torch.Tensor
    state: FitState

    @property
    def fitter(self) -> FitState:
        """The fit's state (``net``, ``z``, ``cfg``, ``request_stop()``), under its former name."""
        return self.state


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


def check_min_size(size: tuple[int, int], cfg: NetConfig) -> None:
    """Raise ``ValueError`` if an image of ``size`` is too small for the network."""
    if min(size) < cfg.multiple:
        raise ValueError(
            f"image {size[1]}x{size[0]} is too small for a {cfg.levels}-level network: each side "
            f"needs at least {cfg.multiple} px; use a larger image or fewer levels"
        )


class Fitter:
    """One fit as the caller describes it: a fresh generator (:func:`dip.models.build_model`)
    fitted to one observation through ``operator``, with callbacks. :meth:`run` (or
    :func:`run_fits` for several) runs it; the loop keeps its state elsewhere (:class:`FitState`)."""

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
        check_min_size(self.image_size, net_cfg)
        self.channels = observation.shape[1]
        self.callbacks: list[tuple[Callback, int | None, set[int]]] = []

    def add_callback(self, fn: Callback, every: int | None = None, at: Iterable[int] | None = None) -> None:
        """Call ``fn(step)`` every ``every`` iterations and/or at the iterations in ``at``."""
        marks = set(at or ())
        if every is None and not marks:
            every = 1
        if every is not None and every < 1:
            raise ValueError(f"callback interval must be >= 1, got {every}")
        self.callbacks.append((fn, every, marks))

    def build(self) -> tuple[nn.Module, torch.Tensor]:
        """Network and input code z as the fit runs them, both drawn from ``cfg.seed`` on the CPU
        (device independent); the execution options ``drop_inert_bias`` and ``channels_last`` applied."""
        gen = torch.Generator().manual_seed(self.cfg.seed)
        canvas = canvas_size(self.image_size, self.net_cfg.multiple)
        z = make_input(self.cfg.input, self.net_cfg.input_depth, self.image_size, canvas, gen, self.cfg.input_noise_scale, self.input_image)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.cfg.seed)
            net = build_model(self.net_cfg, self.channels, in_channels=z.shape[1], canvas=canvas)
        if self.cfg.drop_inert_bias:
            drop_inert_biases(net)
        net, z = net.to(self.device, self.dtype), z.to(self.device, self.dtype)
        if self.channels_last:
            net, z = net.to(memory_format=torch.channels_last), z.contiguous(memory_format=torch.channels_last)
        return net, z

    @property
    def channels_last(self) -> bool:
        """Whether the network runs NHWC: ``cfg.channels_last``, or where unset, on the CPU only."""
        return self.cfg.channels_last if self.cfg.channels_last is not None else self.device.type == "cpu"

    def run(self) -> FitResult:
        """Fit and return the result; raises :class:`FitDiverged` if the loss became NaN/Inf."""
        result = run_fits([self])[0]
        if result.diverged_at is not None:
            raise FitDiverged(result.diverged_at)
        return result

    def due(self, i: int, final: bool = False) -> list[Callback]:
        """The callbacks to call at iteration ``i`` (periodic ones also at the final one)."""
        return [fn for fn, every, marks in self.callbacks if i in marks or (every is not None and (i % every == 0 or final))]


def _shown(it: Iteration, row: int, iteration: int, state: FitState) -> Step:
    """The Step of image ``row`` of ``it``: copies, so that a callback may keep them while the
    loop's buffers move on (a CPU tensor handed on as is would change under the callback)."""
    averaged = it.averaged[row : row + 1].clone() if it.averaged is not None else None
    return Step(iteration, it.out[row : row + 1].clone(), averaged, it.loss[row].clone(), state)


def run_fits(fitters: list[Fitter]) -> list[FitResult]:
    """THE fitting loop, for one image or a group of same-size images fitted at once.

    Each image has its own network, input code, noise generator, Adam state, backtracking
    snapshot, output average, ES-WMV tracker and callbacks, drawn from its own seed exactly as a
    lone fit would; only the kernels are shared. An image that stops (ES-WMV, ``request_stop``,
    a NaN/Inf loss) is frozen — no more steps or callbacks — while the others go on. The group
    runs as one :class:`~dip.iteration.Iteration` (``many`` = ``vmap`` / ``grouped``) or as one
    per image, each on its own CUDA stream (``streams``); the lead fitter's settings apply. What
    a group adds (where each fit runs, stopping one) is :class:`~dip.group.Members`.
    """
    cfg, device = fitters[0].cfg, fitters[0].device
    start = time.perf_counter()
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # fixed shapes for thousands of iterations
    group = Members(len(fitters), streams=cfg.many == "streams")
    states = _build_iterations(fitters, group)
    use_graph = cfg.graph if cfg.graph is not None else device.type == "cuda"
    launch = OnStreams([Replayer(it, device, use_graph, it.generators) for it in group.iterations], device)

    for iteration in range(cfg.iterations):
        launch()
        due = {i: fns for i in group.active if (fns := fitters[i].due(iteration))}
        checking = (iteration + 1) % cfg.check_every == 0 or iteration + 1 == cfg.iterations
        es_window = cfg.early_stop and (iteration + 1) % cfg.es_window == 0
        if not (due or checking or es_window):
            continue
        launch.join()  # the host reads and may write: order it after every fit's last iteration
        for i, fns in due.items():
            it, row = group.where(i)
            if not bool(it.skipped[row]):  # a backtracked iteration has nothing to show
                shown = _shown(it, row, iteration, states[i])
                for fn in fns:
                    fn(shown)
        broken = group.nonfinite() if checking else [-1] * len(fitters)
        for i in list(group.active):
            it, row = group.where(i)
            es = es_window and it.trackers[row].should_stop(iteration)
            if broken[i] >= 0:
                states[i].diverged_at, states[i].iterations_run = broken[i], broken[i] + 1
                group.finish(i, launch)
            elif es or states[i].stop_requested:
                states[i].iterations_run = iteration + 1
                group.finish(i, launch)
        if not group.active:
            break

    launch.join()
    finals = [it.final() for it in group.iterations]
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    seconds = time.perf_counter() - start
    if cfg.compile and cfg.compile_cache:
        save_cache(cfg.compile_cache)
    return [_result(states[i], *group.where(i), finals[group.slot[i][0]], fitters[0].dtype, seconds, launch.mode)
            for i in range(len(fitters))]


def _build_iterations(fitters: list[Fitter], group: Members) -> list[FitState]:
    """Build every fit's network and code, and the iterations of ``group`` that run them;
    returns each fit's :class:`FitState`."""
    cfg, lead = fitters[0].cfg, fitters[0]
    built = [f.build() for f in fitters]
    loss_tv = (lambda x: cfg.tv_weight * tv(x)) if cfg.tv_weight else None
    states: list[FitState] = []
    for idx in group.rows:
        model = group_model([built[i][0] for i in idx], cfg.many)
        z = torch.cat([built[i][1] for i in idx])
        forward = compile_model(model, cfg.compile_cache) if cfg.compile else model
        group.iterations.append(Iteration(model, forward, z, [fitters[i].operator for i in idx], [fitters[i].observation for i in idx],
                                     [fitters[i].cfg.seed for i in idx], cfg, lead.image_size, lead.dtype, tv=loss_tv))
        states += [FitState(i, fitters[i], z[row : row + 1], built[i][0] if len(idx) == 1 else None, iterations_run=cfg.iterations)
                   for row, i in enumerate(idx)]
    return states


def _result(state: FitState, it: Iteration, row: int, final: tuple[torch.Tensor, torch.Tensor], dtype: torch.dtype, seconds: float,
            mode: str) -> FitResult:
    """One fit's result from its iteration's final output ``final``; its periodic callbacks see that
    output too (unless it diverged)."""
    outputs, losses = final
    out = outputs[row : row + 1]
    averaged = it.averaged[row : row + 1].clone() if it.averaged is not None else None
    if state.diverged_at is None:  # the final output, to the periodic callbacks too
        copy = None if averaged is None else averaged.clone()
        shown = Step(state.iterations_run, out.clone(), copy, losses[row].clone(), state)
        for fn in state.fitter.due(state.iterations_run, final=True):
            fn(shown)
    es_out, es_iter = None, None
    if it.trackers:
        tracker = it.trackers[row]
        tracker.should_stop(state.iterations_run)
        if tracker.found:
            es_out, es_iter = tracker.best_output.clone().to(dtype), tracker.best_iteration
    return FitResult(output=out, averaged=averaged, early_stopped=es_out, iterations_run=state.iterations_run,
                     early_stop_iteration=es_iter, backtracks=int(it.backtracks[row]), seconds=seconds,
                     diverged_at=state.diverged_at, mode=mode)


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
