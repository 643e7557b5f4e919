"""Shared pieces of the benchmarks: the cases, a plain reference loop, a bare loop, peak memory."""

from __future__ import annotations

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


def run_dip(y: torch.Tensor, clean: torch.Tensor, iterations: int, device: torch.device, log_every: int = 100) -> None:
    """The library's Fitter with the CLI's curve recorder (PSNR vs. ground truth) at its interval."""
    cfg = FitConfig(iterations=iterations, lr=LR, reg_noise_std=SIGMA_P, exp_weight=EXP_WEIGHT)
    fitter = Fitter(NetConfig.from_dict(PAPER_NET), Denoising(), y, cfg, device=device)
    gt = clean[0].permute(1, 2, 0).squeeze(-1).numpy()
    fitter.add_callback(CurveRecorder(gt), every=log_every)
    fitter.run()
    sync(device)


def run_bare(y: torch.Tensor, iterations: int, device: torch.device) -> None:
    """The least a fit must do: build, then forward / loss / backward / Adam, then the final output."""
    torch.manual_seed(0)
    net = SkipNet(NetConfig.from_dict(PAPER_NET), y.shape[1]).to(device)
    z = (torch.rand((1, 32, *y.shape[-2:])) * 0.1).to(device)
    y = y.to(device)
    opt = torch.optim.Adam(net.parameters(), lr=LR, foreach=True)
    avg = None
    for _ in range(iterations):
        out = net(z + SIGMA_P * torch.randn_like(z))
        loss = torch.mean((out - y) ** 2)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        out = out.detach()
        avg = out.clone() if avg is None else avg.mul_(EXP_WEIGHT).add_(out, alpha=1 - EXP_WEIGHT)
        opt.step()
    with torch.no_grad():
        net(z)
    sync(device)


def run_plain(y: torch.Tensor, clean: torch.Tensor, iterations: int, device: torch.device) -> None:
    """A deliberately plain reference in the authors' style (their denoising notebook's loop):
    eager fp32, batch one, the paper's network with out-of-place LeakyReLUs, default Adam, and
    PSNR against the observation and the ground truth (plus the averaged output's) computed with
    scikit-image on host copies at EVERY iteration."""
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
    out_avg = None
    for _ in range(iterations):
        opt.zero_grad()
        inp = net_input + noise.normal_() * SIGMA_P
        out = net(inp)
        out_avg = out.detach() if out_avg is None else out_avg * EXP_WEIGHT + out.detach() * (1 - EXP_WEIGHT)
        loss = mse(out, y_torch)
        loss.backward()
        out_np = out.detach().cpu().numpy()[0]
        psnr_noisy = peak_signal_noise_ratio(y_np, out_np, data_range=1.0)
        psnr_gt = peak_signal_noise_ratio(gt_np, out_np, data_range=1.0)
        psnr_gt_sm = peak_signal_noise_ratio(gt_np, out_avg.cpu().numpy()[0], data_range=1.0)
        _ = (loss.item(), psnr_noisy, psnr_gt, psnr_gt_sm)
        opt.step()
    sync(device)


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


def timed(fn, rounds: int) -> tuple[list[float], float]:
    """Wall seconds of each of ``rounds`` calls, and the largest peak memory (MiB) among them."""
    times, peak = [], 0.0
    for _ in range(rounds):
        with PeakMemory(torch.device("cuda" if torch.cuda.is_available() else "cpu")) as mem:
            t0 = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t0)
        peak = max(peak, mem.peak_mib)
    return times, peak


def save(results: dict, name: str | None = None) -> Path:
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / f"{name or machine_name()}.json"
    path.write_text(json.dumps(results, indent=2) + "\n")
    return path
