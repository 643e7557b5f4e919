"""The one fitting loop for every task.

Given an observation :math:`y` and a forward operator :math:`A`, DIP fits

.. math::

    \\theta^* = \\arg\\min_\\theta \\lVert A(f_\\theta(z + \\sigma_p \\epsilon_t)) - y \\rVert_2^2,
    \\qquad z \\sim \\mathcal U(0, \\tfrac1{10}),\\ \\epsilon_t \\sim \\mathcal N(0, I)

with Adam, and returns :math:`f_{\\theta}(z)`. Options: exponential output averaging
:math:`\\bar x_t = \\beta \\bar x_{t-1} + (1-\\beta) x_t`, divergence backtracking, and ES-WMV
early stopping. Callbacks (minGPT's ``add_callback`` shape) see every iteration they ask for;
the loop itself knows nothing about files.

The network works on a canvas whose sides are multiples of ``2**levels``; its output is cropped
to the image's size before the operator, so the loss only ever sees real pixels.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import time
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Sequence

import torch
from torch import nn

from dip.device import pick_device
from dip.early_stopping import WindowedVariance
from dip.inputs import INPUT_KINDS, make_input
from dip.models import build_model
from dip.network import NetConfig
from dip.operators import Operator
from dip.priors import tv


@dataclass
class FitConfig:
    """Optimisation settings. Defaults are the paper's denoising settings."""

    iterations: int = 3000
    lr: float = 0.01
    reg_noise_std: float = 1.0 / 30  # σ_p, the input perturbation
    input_noise_scale: float = 0.1  # z ~ U(0, input_noise_scale)
    exp_weight: float | None = None  # output averaging β; None = off
    backtrack: bool = False
    backtrack_drop_db: float = 5.0  # a loss jump of this many dB counts as divergence
    early_stop: bool = False
    es_window: int = 100
    es_patience: int = 1000
    seed: int = 0
    # "fp32"; "bf16" = autocast on CUDA (ignored on the CPU); "fp64" = float64 weights and data,
    # slow, for exactness checks (rounding no longer steers Adam's trajectory)
    precision: str = "fp32"
    channels_last: bool | None = None  # None = on for CUDA, off elsewhere (slower on this CPU)
    compile: bool = False  # torch.compile the forward pass (measured slower on the test CPU)
    input: str = "noise"  # the code z: noise | meshgrid | image (dip.inputs.make_input)
    tv_weight: float = 0.0  # λ of the added λ·TV(x) term (dip.priors.tv); 0 = none

    def validate(self) -> "FitConfig":
        if self.iterations < 1:
            raise ValueError(f"iterations must be >= 1, got {self.iterations}")
        if not self.lr > 0:
            raise ValueError(f"learning rate must be > 0, got {self.lr}")
        if self.reg_noise_std < 0 or self.input_noise_scale <= 0:
            raise ValueError("reg_noise_std must be >= 0 and input_noise_scale > 0")
        if self.exp_weight is not None and not 0 <= self.exp_weight < 1:
            raise ValueError(f"exp_weight must be in [0, 1), got {self.exp_weight}")
        if self.precision not in ("fp32", "bf16", "fp64"):
            raise ValueError(f"precision must be fp32, bf16 or fp64, got {self.precision!r}")
        if self.input not in INPUT_KINDS:
            raise ValueError(f"input must be one of {', '.join(INPUT_KINDS)}, got {self.input!r}")
        if not self.tv_weight >= 0:
            raise ValueError(f"tv_weight must be >= 0, got {self.tv_weight}")
        return self

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> "FitConfig":
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(values) - known
        if unknown:
            raise ValueError(f"unknown fitting setting(s): {', '.join(sorted(unknown))}")
        return cls(**values).validate()


@dataclass
class Step:
    """What a callback sees: outputs are detached, on the fitting device, cropped to the image."""

    iteration: int
    output: torch.Tensor
    averaged: torch.Tensor | None
    loss: torch.Tensor
    fitter: "Fitter"


@dataclass
class FitResult:
    output: torch.Tensor  # f_θ(z) after the last iteration run
    averaged: torch.Tensor | None  # exponential average of the outputs, if enabled
    early_stopped: torch.Tensor | None  # output at the ES-WMV minimum, if enabled
    iterations_run: int
    early_stop_iteration: int | None
    backtracks: int
    seconds: float

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
    """Fits a fresh generator (:func:`dip.models.build_model`) to one observation through ``operator``."""

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
        self.net: nn.Module | None = None  # the network being fitted, set by run()
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

    def _autocast(self) -> contextlib.AbstractContextManager:
        if self.cfg.precision == "bf16" and self.device.type == "cuda":
            return torch.autocast("cuda", dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def run(self) -> FitResult:
        """Fit and return the result (the one loop, :func:`_run_group` with a group of one)."""
        return _run_group([self])[0]

    def _notify(self, i: int, out: torch.Tensor, avg: torch.Tensor | None, loss: torch.Tensor, final: bool = False) -> None:
        """Periodic callbacks also get the final iteration, so curves always end at the result."""
        for fn, every, marks in self.callbacks:
            if i in marks or (every is not None and (i % every == 0 or final)):
                fn(Step(i, out, avg, loss, self))


def _prepare_device(device: torch.device) -> None:
    """cuDNN autotuning on CUDA (fixed shapes for thousands of iterations); nothing on the CPU."""
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True


def _group_forward(nets: list[nn.Module]) -> Callable[[torch.Tensor], torch.Tensor]:
    """``codes (N, D, H, W) → outputs (N, C, H, W)``, image ``i`` through ``nets[i]``.

    One network is called directly. Several same-shaped networks run as one batched call:
    ``torch.func.vmap`` of ``functional_call`` over their stacked parameters, so each image
    keeps its own weights and its own batch-norm statistics (the networks only ever use batch
    statistics) — mathematically N independent fits, computed in one pass.
    """
    if len(nets) == 1:
        return nets[0]
    from torch.func import functional_call, vmap

    base = nets[0]
    names = [name for name, _ in base.named_parameters()]
    per_net = [dict(net.named_parameters()) for net in nets]
    buffers = dict(base.named_buffers())

    def one(params: dict[str, torch.Tensor], code: torch.Tensor) -> torch.Tensor:
        return functional_call(base, (params, buffers), (code[None],))[0]

    batched = vmap(one)

    def forward(codes: torch.Tensor) -> torch.Tensor:
        stacked = {name: torch.stack([p[name] for p in per_net]) for name in names}
        return batched(stacked, codes)

    return forward


def _run_group(fitters: list[Fitter]) -> list[FitResult]:
    """THE fitting loop, for one image or several same-size images fitted at once.

    Each image has its own network, input code, noise generator, Adam state, backtracking
    snapshot, output average, ES-WMV tracker and callbacks, all drawn from its own seed exactly
    as a lone fit would; only the forward/backward pass is shared. An image that stops early
    (ES-WMV or ``request_stop``) is frozen — no more steps or callbacks — while the others go on.
    The loop does not synchronise with the device except where asked to: ``loss.item()`` for
    backtracking, a host read once per ES window, and whatever callbacks do at their iterations.
    """
    lead = fitters[0]
    cfg, device = lead.cfg, lead.device
    n = len(fitters)
    start = time.perf_counter()
    _prepare_device(device)
    nets, codes = zip(*(f.build() for f in fitters))
    nets = list(nets)
    z = torch.cat(codes)
    channels_last = cfg.channels_last if cfg.channels_last is not None else device.type == "cuda"
    if channels_last:
        nets = [net.to(memory_format=torch.channels_last) for net in nets]
        z = z.contiguous(memory_format=torch.channels_last)
    for i, f in enumerate(fitters):
        f.net, f.z = nets[i], z[i : i + 1]  # for callbacks that inspect or perturb the network
    forward = _group_forward(nets)
    if cfg.compile:
        forward = torch.compile(forward)
    params = [list(net.parameters()) for net in nets]
    # Adam is elementwise: the multi-tensor (foreach) / fused kernels compute the same update as
    # the per-tensor loop with far fewer kernel launches.
    adam_kwargs: dict[str, Any] = {"fused": True} if device.type == "cuda" else {"foreach": True}
    optimizers = [torch.optim.Adam(p, lr=cfg.lr, **adam_kwargs) for p in params]
    noise_gens = [torch.Generator(device=device).manual_seed(f.cfg.seed + 1) for f in fitters]
    noise = torch.empty_like(z)
    noise_views = [noise[i : i + 1] for i in range(n)]
    h, w = lead.image_size
    autocast = lead._autocast

    def output_of(code: torch.Tensor) -> torch.Tensor:
        with autocast():
            out = forward(code)
        return out[..., :h, :w].to(lead.dtype)

    def loss_of(f: Fitter, out_f: torch.Tensor) -> torch.Tensor:
        data_term = torch.mean((f.operator(out_f) - f.observation) ** 2)
        return data_term + cfg.tv_weight * tv(out_f) if cfg.tv_weight else data_term

    def losses_of(out: torch.Tensor) -> torch.Tensor:
        if n == 1:
            return loss_of(lead, out)[None]
        return torch.stack([loss_of(f, out[i : i + 1]) for i, f in enumerate(fitters)])

    averaged: list[torch.Tensor | None] = [None] * n
    trackers = [WindowedVariance(cfg.es_window, cfg.es_patience) if cfg.early_stop else None for _ in fitters]
    good = [[p.detach().clone() for p in ps] for ps in params] if cfg.backtrack else []
    good_loss = [math.inf] * n
    jump = 10 ** (cfg.backtrack_drop_db / 10)
    backtracks = [0] * n
    iterations_run = [cfg.iterations] * n
    active = list(range(n))
    for f in fitters:
        f.stop_requested = False
    for iteration in range(cfg.iterations):
        code = z
        if cfg.reg_noise_std > 0:
            for i in range(n):
                torch.randn(noise_views[i].shape, generator=noise_gens[i], device=device, out=noise_views[i])
            code = z + cfg.reg_noise_std * noise
        out = output_of(code)
        losses = losses_of(out)
        for i in active:
            optimizers[i].zero_grad(set_to_none=True)
        losses.sum().backward()  # image i's parameters only receive the gradient of loss i
        out = out.detach()
        values = losses.tolist() if cfg.backtrack else []
        stepping = []
        for i in active:
            if cfg.backtrack:
                value = values[i]
                if value > good_loss[i] * jump or not math.isfinite(value):
                    # Diverged: restore the last good weights and skip this step entirely.
                    with torch.no_grad():  # parameters are leaves that require grad
                        torch._foreach_copy_(params[i], good[i])
                    backtracks[i] += 1
                    continue
                with torch.no_grad():
                    torch._foreach_copy_(good[i], params[i])
                good_loss[i] = value
            out_i = out if n == 1 else out[i : i + 1]
            if cfg.exp_weight is not None:
                avg = averaged[i]
                averaged[i] = out_i.clone() if avg is None else avg.mul_(cfg.exp_weight).add_(out_i, alpha=1 - cfg.exp_weight)
            tracker = trackers[i]
            if tracker is not None:
                tracker.update(iteration, out_i)
            fitters[i]._notify(iteration, out_i, averaged[i], losses[i].detach())
            optimizers[i].step()
            stepping.append(i)
        for i in stepping:
            tracker = trackers[i]
            stop = tracker is not None and (iteration + 1) % cfg.es_window == 0 and tracker.should_stop(iteration)
            if stop or fitters[i].stop_requested:
                iterations_run[i] = iteration + 1
                active.remove(i)
        if not active:
            break
    with torch.no_grad():
        final = output_of(z)
        final_losses = losses_of(final)
    seconds = time.perf_counter() - start
    results = []
    for i, f in enumerate(fitters):
        final_i = final if n == 1 else final[i : i + 1]
        f._notify(iterations_run[i], final_i, averaged[i], final_losses[i], final=True)
        es_out, es_iter = None, None
        tracker = trackers[i]
        if tracker is not None and tracker.best_output is not None:
            tracker.should_stop(iterations_run[i])
            es_out, es_iter = tracker.best_output, tracker.best_iteration
        results.append(
            FitResult(
                output=final_i,
                averaged=averaged[i],
                early_stopped=es_out,
                iterations_run=iterations_run[i],
                early_stop_iteration=es_iter,
                backtracks=backtracks[i],
                seconds=seconds,
            )
        )
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
    group's wall time.
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
    return _run_group(fitters)


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
