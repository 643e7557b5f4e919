"""Shared pieces of the benchmarks: the cases, a plain reference loop, a bare loop, peak memory."""

from __future__ import annotations

import ctypes
import gc
import json
import os
import platform
import threading
import time
from pathlib import Path

import numpy as np
import torch
from skimage.metrics import peak_signal_noise_ratio
from torch import nn

from dip import Denoising, FitConfig, Fitter, NetConfig, SkipNet
from dip.callbacks import CurveRecorder

RESULTS = Path(__file__).resolve().parent / "results"
PAPER_NET = dict(levels=5, width=128, skip=4)  # 5 levels, n_d = n_u = 128, n_s = 4
LR, SIGMA_P, EXP_WEIGHT = 0.01, 1 / 30, 0.99  # the paper's denoising settings


def machine_name() -> str:
    """``$DIP_MACHINE`` or e.g. ``cpu-x86_64-2core`` / ``cuda-NVIDIA-H100``."""
    if os.environ.get("DIP_MACHINE"):
        return os.environ["DIP_MACHINE"]
    if torch.cuda.is_available():
        return "cuda-" + torch.cuda.get_device_name().replace(" ", "-")
    return f"cpu-{platform.machine()}-{os.cpu_count()}core"


def images(size: int, channels: int) -> tuple[torch.Tensor, torch.Tensor]:
    """A clean image and its noisy observation (σ = 25/255), (1, C, size, size)."""
    gen = torch.Generator().manual_seed(0)
    clean = torch.rand((1, channels, size, size), generator=gen)
    return clean, Denoising.corrupt(clean, 25 / 255, gen)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


class Stamps:
    """Wall-clock timestamps taken at one fixed point of every iteration (after a device sync).

    The per-iteration times are the differences between consecutive stamps after ``warmup``
    stamps, ``timed`` of them: each covers exactly one full steady-state iteration (forward, loss,
    backward, Adam, callbacks), whatever point of the iteration the stamp is taken at, and none
    covers network construction or the final no-grad forward pass.
    """

    def __init__(self, device: torch.device, warmup: int, timed: int) -> None:
        self.device, self.warmup, self.timed = device, warmup, timed
        self.t: list[float] = []

    @property
    def needed(self) -> int:
        """Iterations a loop must run to take every stamp."""
        return self.warmup + self.timed + 1

    def __call__(self, *_: object) -> bool:
        """Take a stamp; True once the last stamp needed has been taken."""
        sync(self.device)
        self.t.append(time.perf_counter())
        return len(self.t) >= self.needed

    def durations(self) -> list[float]:
        t = self.t[self.warmup : self.warmup + self.timed + 1]
        if len(t) != self.timed + 1:
            raise RuntimeError(f"took {len(self.t)} stamps, needed {self.needed}")
        return [b - a for a, b in zip(t, t[1:])]


def run_dip(y: torch.Tensor, clean: torch.Tensor, stamps: Stamps, device: torch.device, log_every: int = 100) -> None:
    """The library's Fitter with the CLI's curve recorder (PSNR vs. ground truth) at its interval,
    plus the stamping callback at every iteration, which asks the loop to stop after the last
    stamp (the final output is computed after that, outside the timed window)."""
    cfg = FitConfig(iterations=stamps.needed, lr=LR, reg_noise_std=SIGMA_P, exp_weight=EXP_WEIGHT)
    fitter = Fitter(NetConfig.from_dict(PAPER_NET), Denoising(), y, cfg, device=device)
    gt = clean[0].permute(1, 2, 0).squeeze(-1).numpy()
    fitter.add_callback(CurveRecorder(gt), every=log_every)

    def stamp(step) -> None:
        if step.iteration >= stamps.needed:  # the final notification, after the loop
            return
        if stamps():
            step.state.request_stop()

    fitter.add_callback(stamp, every=1)
    fitter.run()
    sync(device)


def bare_stepper(y: torch.Tensor, device: torch.device):
    """One iteration per call of the least a fit must do: forward / loss / backward / Adam
    (multi-tensor, as the Fitter's) and the output average; no callbacks, no final output."""
    torch.manual_seed(0)
    net = SkipNet(NetConfig.from_dict(PAPER_NET), y.shape[1]).to(device)
    z = (torch.rand((1, 32, *y.shape[-2:])) * 0.1).to(device)
    y = y.to(device)
    opt = torch.optim.Adam(net.parameters(), lr=LR, foreach=True)
    state: dict = {"avg": None}

    def step() -> None:
        out = net(z + SIGMA_P * torch.randn_like(z))
        loss = torch.mean((out - y) ** 2)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        out = out.detach()
        avg = state["avg"]
        state["avg"] = out.clone() if avg is None else avg.mul_(EXP_WEIGHT).add_(out, alpha=1 - EXP_WEIGHT)
        opt.step()

    return step


def plain_stepper(y: torch.Tensor, clean: torch.Tensor, device: torch.device):
    """One iteration per call of a deliberately plain reference in the authors' style (their
    denoising notebook's loop): eager fp32, batch one, the paper's network with out-of-place
    LeakyReLUs, default Adam, and PSNR against the observation and the ground truth (plus the
    averaged output's) computed with scikit-image on host copies at EVERY iteration."""
    torch.manual_seed(0)
    net = SkipNet(NetConfig.from_dict(PAPER_NET), y.shape[1])
    for m in net.modules():
        if isinstance(m, nn.LeakyReLU):
            m.inplace = False
    net = net.to(device)
    net_input = (torch.rand((1, 32, *y.shape[-2:])) * 0.1).to(device)
    noise = net_input.detach().clone()
    y_torch = y.to(device)
    y_np, gt_np = y[0].numpy(), clean[0].numpy()
    opt = torch.optim.Adam(net.parameters(), lr=LR)
    mse = nn.MSELoss()
    state: dict = {"avg": None}

    def step() -> None:
        opt.zero_grad()
        inp = net_input + noise.normal_() * SIGMA_P
        out = net(inp)
        avg = state["avg"]
        out_avg = state["avg"] = out.detach() if avg is None else avg * EXP_WEIGHT + out.detach() * (1 - EXP_WEIGHT)
        loss = mse(out, y_torch)
        loss.backward()
        out_np = out.detach().cpu().numpy()[0]
        psnr_noisy = peak_signal_noise_ratio(y_np, out_np, data_range=1.0)
        psnr_gt = peak_signal_noise_ratio(gt_np, out_np, data_range=1.0)
        psnr_gt_sm = peak_signal_noise_ratio(gt_np, out_avg.cpu().numpy()[0], data_range=1.0)
        _ = (loss.item(), psnr_noisy, psnr_gt, psnr_gt_sm)
        opt.step()

    return step


def run_bare(y: torch.Tensor, stamps: Stamps, device: torch.device) -> None:
    step = bare_stepper(y, device)
    for _ in range(stamps.needed):
        step()
        stamps()


def run_plain(y: torch.Tensor, clean: torch.Tensor, stamps: Stamps, device: torch.device) -> None:
    step = plain_stepper(y, clean, device)
    for _ in range(stamps.needed):
        step()
        stamps()


def interleaved(y: torch.Tensor, clean: torch.Tensor, warmup: int, timed: int, device: torch.device, log_every: int = 100) -> dict[str, list[float]]:
    """Per-iteration seconds of ``dip``, ``plain`` and ``bare``, measured interleaved so that
    slow drifts of the machine (a shared 2-core VM) hit every variant alike.

    The Fitter runs with the CLI's curve recorder at ``log_every`` and one more callback at every
    iteration; that callback runs one ``plain`` and one ``bare`` iteration (alternating their
    order), each timed on its own, and then returns. ``dip``'s iteration time is the time from
    the callback's return to its next entry (Adam step, next forward, loss, backward, averaging,
    the other callbacks). The first ``warmup`` iterations of each are discarded; construction of
    the networks and the Fitter's final output are outside every timed span.
    """
    steppers = {"plain": plain_stepper(y, clean, device), "bare": bare_stepper(y, device)}
    durations: dict[str, list[float]] = {"dip": [], "plain": [], "bare": []}
    needed = warmup + timed + 1
    state: dict = {"n": 0, "left": None}
    cfg = FitConfig(iterations=needed, lr=LR, reg_noise_std=SIGMA_P, exp_weight=EXP_WEIGHT)
    fitter = Fitter(NetConfig.from_dict(PAPER_NET), Denoising(), y, cfg, device=device)
    gt = clean[0].permute(1, 2, 0).squeeze(-1).numpy()
    fitter.add_callback(CurveRecorder(gt), every=log_every)

    def others(step) -> None:
        if step.iteration >= needed:  # the final notification, after the loop: not an iteration
            return
        sync(device)
        entered = time.perf_counter()
        n = state["n"]
        keep = n > warmup
        if keep:
            durations["dip"].append(entered - state["left"])
        order = list(steppers) if n % 2 == 0 else list(reversed(steppers))
        for name in order:
            t0 = time.perf_counter()
            steppers[name]()
            sync(device)
            if keep:
                durations[name].append(time.perf_counter() - t0)
        state["n"] = n + 1
        if state["n"] >= needed:
            step.state.request_stop()
        state["left"] = time.perf_counter()

    fitter.add_callback(others, every=1)
    fitter.run()
    sync(device)
    return durations


def release_freed_heap() -> None:
    """Return freed heap pages to the OS (glibc ``malloc_trim``) so that an RSS-based peak of
    one fit is not hidden by memory an earlier fit freed but the allocator kept."""
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


class PeakMemory:
    """Peak memory while the block runs: ``torch.cuda.max_memory_allocated`` on CUDA; on the CPU
    the process's resident set size sampled every 2 ms from ``/proc/self/statm`` (tracemalloc
    does not see torch's allocations), minus the RSS when the block started."""

    def __init__(self, device: torch.device) -> None:
        self.device, self.peak_mib = device, float("nan")

    @staticmethod
    def _rss() -> int:
        with open("/proc/self/statm") as fh:
            return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")

    def __enter__(self) -> "PeakMemory":
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats()
            self._base = torch.cuda.memory_allocated()
        else:
            self._base = self._peak = self._rss()
            self._stop = threading.Event()
            self._thread = threading.Thread(target=self._watch, daemon=True)
            self._thread.start()
        return self

    def _watch(self) -> None:
        while not self._stop.wait(0.002):
            self._peak = max(self._peak, self._rss())

    def __exit__(self, *exc) -> None:
        if self.device.type == "cuda":
            self.peak_mib = (torch.cuda.max_memory_allocated() - self._base) / 2**20
        else:
            self._stop.set()
            self._thread.join()
            self.peak_mib = (max(self._peak, self._rss()) - self._base) / 2**20


def measure(fn, stamps: Stamps, device: torch.device) -> tuple[list[float], float]:
    """Per-iteration wall seconds of the timed window of one fit ``fn()``, and its peak memory
    (MiB; the whole fit, construction and final output included)."""
    gc.collect()
    release_freed_heap()
    with PeakMemory(device) as mem:
        fn()
    return stamps.durations(), mem.peak_mib


def save(results: dict, name: str | None = None) -> Path:
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / f"{name or machine_name()}.json"
    path.write_text(json.dumps(results, indent=2) + "\n")
    return path
