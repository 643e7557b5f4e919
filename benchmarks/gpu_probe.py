"""Where the GPU time of one iteration goes, and how far two fits of the same settings part.

``python benchmarks/gpu_probe.py kernels`` — ``torch.profiler`` over a few eager iterations of the
library's loop (the kernels are the ones a CUDA graph replays) at 256² gray and 512² RGB, NCHW and
channels-last: the top kernels by GPU time, one JSON line per case.

``python benchmarks/gpu_probe.py spread --image PATH`` — the run-to-run spread that a graph-vs-eager
comparison must be judged against: PSNR after ``--iterations`` at Table 1's settings (lr 0.001,
σ_p 0.03) for eager and graph fits, each twice with seed 0 (nondeterminism) and graph with seed 1.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from gpu_speed import PAPER_NET, TINY_NET, case, json_lines, table1_case  # noqa: E402

from dip import FitConfig, Fitter, Inpainting, NetConfig  # noqa: E402
from dip.io import to_numpy  # noqa: E402
from dip.metrics import psnr  # noqa: E402


def kernels(args, emit) -> None:
    from torch.profiler import ProfilerActivity, profile

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    net = NetConfig.from_dict(TINY_NET if args.tiny else PAPER_NET)
    sizes = [(32, 1, "gray32")] if args.tiny else [(256, 1, "gray256"), (512, 3, "rgb512")]
    acts = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    for size, channels, label in sizes:
        for cl in (False, True):
            (y,), (op,) = case(size, channels)
            cfg = FitConfig(iterations=30, lr=0.01, reg_noise_std=0.03, exp_weight=0.99, graph=False, channels_last=cl)
            f = Fitter(net, op, y, cfg, device=device)
            prof_box = {}

            def start(step, prof_box=prof_box):
                if device.type == "cuda":
                    torch.cuda.synchronize()
                prof_box["p"] = profile(activities=acts)
                prof_box["p"].__enter__()
                prof_box["t"] = time.perf_counter()

            def stop(step, prof_box=prof_box):
                if device.type == "cuda":
                    torch.cuda.synchronize()
                prof_box["wall"] = time.perf_counter() - prof_box["t"]
                prof_box["p"].__exit__(None, None, None)

            f.add_callback(start, at=[19])
            f.add_callback(stop, at=[29])
            f.run()
            events = prof_box["p"].key_averages()
            key = "device_time_total" if device.type == "cuda" else "cpu_time_total"
            total = sum(getattr(e, "self_device_time_total" if device.type == "cuda" else "self_cpu_time_total", 0) for e in events)
            rows = sorted(events, key=lambda e: getattr(e, "self_device_time_total" if device.type == "cuda" else "self_cpu_time_total", 0), reverse=True)[:25]
            emit({"probe": "kernels", "case": label, "channels_last": cl, "iterations": 10, "wall_ms_per_it": round(1e3 * prof_box["wall"] / 10, 3),
                  "self_gpu_ms_per_it": round(total / 1e3 / 10, 3), "sorted_by": key,
                  "top": [[e.key[:90], round(getattr(e, "self_device_time_total" if device.type == "cuda" else "self_cpu_time_total", 0) / 1e3 / 10, 4), e.count // 10]
                          for e in rows]})


def spread(args, emit) -> None:
    device, clean, mask, y, net = table1_case(args)
    cfg = FitConfig(iterations=20 if args.tiny else args.iterations, lr=0.001, reg_noise_std=0.03)
    for name, opts in [("graph", dict(graph=True)), ("graph", dict(graph=True)), ("graph", dict(graph=True, seed=1)),
                       ("eager", dict(graph=False)), ("eager", dict(graph=False))]:
        t0 = time.perf_counter()
        result = Fitter(net, Inpainting(mask), y, dataclasses.replace(cfg, **opts), device=device).run()
        emit({"probe": "spread", "variant": name, "seed": opts.get("seed", 0), "image": Path(args.image).name, "iterations": cfg.iterations,
              "lr": cfg.lr, "psnr": round(psnr(clean, to_numpy(result.output)), 3), "seconds": round(time.perf_counter() - t0, 1), "mode": result.mode})


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("what", choices=["kernels", "spread"])
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results/gpu-probe.jsonl"))
    ap.add_argument("--tiny", action="store_true")
    ap.add_argument("--image", type=Path)
    ap.add_argument("--iterations", type=int, default=2000)
    args = ap.parse_args()
    (kernels if args.what == "kernels" else spread)(args, json_lines(args.out))


if __name__ == "__main__":
    main()
