"""Two independent images on a 2-core CPU: one process with 2 threads (one image after the
other), two worker processes with 1 thread each (in parallel), or one grouped fit (``fit_many``).

Run: ``flock /tmp/dip-heavy.lock python benchmarks/processes.py [--size 128] [--iterations 30]``
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import time

import torch

from dip import Denoising, FitConfig, NetConfig, fit, fit_many

NET = dict(levels=5, width=32, skip=4)  # the quick preset's network


def one(args: tuple[int, int, int, int]) -> float:
    seed, size, iterations, threads = args
    torch.set_num_threads(threads)
    y = torch.rand((1, 1, size, size), generator=torch.Generator().manual_seed(seed))
    t0 = time.perf_counter()
    fit(Denoising(), y, NetConfig.from_dict(NET), FitConfig(iterations=iterations, seed=seed), device="cpu")
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--iterations", type=int, default=30)
    a = ap.parse_args()
    jobs = [(s, a.size, a.iterations, 1) for s in (1, 2)]
    ctx = mp.get_context("spawn")
    with ctx.Pool(2) as pool:  # start-up excluded: warm the workers first
        pool.map(one, [(s, 32, 1, 1) for s in (1, 2)])
        t0 = time.perf_counter()
        pool.map(one, jobs)
        two_procs = time.perf_counter() - t0
    torch.set_num_threads(2)
    one((0, 32, 1, 2))
    t0 = time.perf_counter()
    for s in (1, 2):
        one((s, a.size, a.iterations, 2))
    one_proc = time.perf_counter() - t0
    ys = [torch.rand((1, a.size, a.size), generator=torch.Generator().manual_seed(s)) for s in (1, 2)]
    t0 = time.perf_counter()
    fit_many(Denoising(), ys, NetConfig.from_dict(NET), FitConfig(iterations=a.iterations), seeds=[1, 2], device="cpu")
    grouped = time.perf_counter() - t0
    n = 2 * a.iterations
    print(f"2 images × {a.iterations} iterations, {a.size}², 32-channel net")
    print("| mode | wall s | image-iterations/s |\n|---|---|---|")
    for name, t in [("1 process × 2 threads, sequential", one_proc), ("2 processes × 1 thread, parallel", two_procs), ("1 process × 2 threads, fit_many (grouped)", grouped)]:
        print(f"| {name} | {t:.1f} | {n / t:.2f} |")


if __name__ == "__main__":
    main()
