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
from typing import Any, Callable, Iterable

import torch
from torch import nn

from dip.device import pick_device
from dip.early_stopping import WindowedVariance
from dip.network import NetConfig, SkipNet
from dip.operators import Operator


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
    precision: str = "fp32"  # "fp32" or "bf16" (autocast, CUDA only)
    channels_last: bool = False
    compile: bool = False

    def validate(self) -> "FitConfig":
        if self.iterations < 1:
            raise ValueError(f"iterations must be >= 1, got {self.iterations}")
        if not self.lr > 0:
            raise ValueError(f"learning rate must be > 0, got {self.lr}")
        if self.reg_noise_std < 0 or self.input_noise_scale <= 0:
            raise ValueError("reg_noise_std must be >= 0 and input_noise_scale > 0")
        if self.exp_weight is not None and not 0 <= self.exp_weight < 1:
            raise ValueError(f"exp_weight must be in [0, 1), got {self.exp_weight}")
        if self.precision not in ("fp32", "bf16"):
            raise ValueError(f"precision must be fp32 or bf16, got {self.precision!r}")
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
    """Fits a fresh :class:`SkipNet` to one observation through ``operator``."""

    def __init__(
        self,
        net_cfg: NetConfig,
        operator: Operator,
        observation: torch.Tensor,
        cfg: FitConfig | None = None,
        device: str | torch.device = "auto",
    ) -> None:
        self.cfg = (cfg or FitConfig()).validate()
        self.net_cfg = net_cfg.validate()
        self.device = pick_device(device) if isinstance(device, str) else device
        if observation.dim() == 3:
            observation = observation[None]
        self.observation = observation.to(self.device, torch.float32)
        self.operator = operator.to(self.device)
        self.image_size = operator.image_size(tuple(observation.shape[-2:]))
        check_size(self.image_size, net_cfg)
        self.channels = observation.shape[1]
        self.callbacks: list[tuple[Callback, int | None, set[int]]] = []
        self.stop_requested = False

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
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.cfg.seed)
            net = SkipNet(self.net_cfg, self.channels)
        h, w = canvas_size(self.image_size, self.net_cfg.multiple)
        z = torch.rand((1, self.net_cfg.input_depth, h, w), generator=gen) * self.cfg.input_noise_scale
        return net.to(self.device), z.to(self.device)

    def _autocast(self) -> contextlib.AbstractContextManager:
        if self.cfg.precision == "bf16" and self.device.type == "cuda":
            return torch.autocast("cuda", dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def run(self) -> FitResult:
        cfg = self.cfg
        start = time.perf_counter()
        net, z = self.build()
        if cfg.channels_last:
            net = net.to(memory_format=torch.channels_last)
            z = z.contiguous(memory_format=torch.channels_last)
        forward = torch.compile(net) if cfg.compile else net
        params = list(net.parameters())
        optimizer = torch.optim.Adam(params, lr=cfg.lr)
        noise_gen = torch.Generator(device=self.device).manual_seed(cfg.seed + 1)
        noise = torch.empty_like(z)
        h, w = self.image_size
        y = self.observation

        def output_of(code: torch.Tensor) -> torch.Tensor:
            with self._autocast():
                out = forward(code)
            return out[..., :h, :w].float()

        averaged: torch.Tensor | None = None
        es = WindowedVariance(cfg.es_window, cfg.es_patience) if cfg.early_stop else None
        good = [p.detach().clone() for p in params] if cfg.backtrack else []
        good_loss = math.inf
        jump = 10 ** (cfg.backtrack_drop_db / 10)
        backtracks = 0
        iteration = 0
        self.stop_requested = False
        for iteration in range(cfg.iterations):
            code = z
            if cfg.reg_noise_std > 0:
                torch.randn(z.shape, generator=noise_gen, device=self.device, out=noise)
                code = z + cfg.reg_noise_std * noise
            out = output_of(code)
            loss = torch.mean((self.operator(out) - y) ** 2)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if cfg.backtrack:
                value = loss.item()
                if value > good_loss * jump or not math.isfinite(value):
                    # Diverged: restore the last good weights and skip this step entirely.
                    torch._foreach_copy_(params, good)
                    backtracks += 1
                    continue
                torch._foreach_copy_(good, [p.detach() for p in params])
                good_loss = value
            out = out.detach()
            if cfg.exp_weight is not None:
                averaged = out.clone() if averaged is None else averaged.mul_(cfg.exp_weight).add_(out, alpha=1 - cfg.exp_weight)
            if es is not None:
                es.update(iteration, out)
            self._notify(iteration, out, averaged, loss.detach())
            optimizer.step()
            if es is not None and (iteration + 1) % cfg.es_window == 0 and es.should_stop(iteration):
                break
            if self.stop_requested:
                break
        iterations_run = iteration + 1
        with torch.no_grad():
            final = output_of(z)
            final_loss = torch.mean((self.operator(final) - y) ** 2)
        self._notify(iterations_run, final, averaged, final_loss, final=True)
        es_out, es_iter = None, None
        if es is not None and es.best_output is not None:
            es.should_stop(iterations_run)
            es_out, es_iter = es.best_output, es.best_iteration
        return FitResult(
            output=final,
            averaged=averaged,
            early_stopped=es_out,
            iterations_run=iterations_run,
            early_stop_iteration=es_iter,
            backtracks=backtracks,
            seconds=time.perf_counter() - start,
        )

    def _notify(self, i: int, out: torch.Tensor, avg: torch.Tensor | None, loss: torch.Tensor, final: bool = False) -> None:
        """Periodic callbacks also get the final iteration, so curves always end at the result."""
        for fn, every, marks in self.callbacks:
            if i in marks or (every is not None and (i % every == 0 or final)):
                fn(Step(i, out, avg, loss, self))


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
