"""GPU speed and agreement of the fitting loop: every variant in one run, results as they come.

``python benchmarks/gpu_speed.py speed``  — steady-state time per iteration (paper network, 5
levels 128/128/4, inpainting operator as issue 10 measured) of

* ``plain``  the authors'-style reference loop (eager, default Adam, host PSNR every iteration);
* ``bare``   forward / loss / backward / foreach Adam / averaging, eager;
* ``eager``  the library's loop without CUDA graphs (``FitConfig(graph=False)``);
* ``graph``  the library's loop replayed as one CUDA graph per iteration (the default on CUDA);
* ``graph_bf16``, ``graph_channels_last`` — the options to decide on;
* ``tweaks`` (``python benchmarks/gpu_speed.py tweaks``): candidate fixes from the kernel profile
  (``gpu_probe.py kernels``), each timed against the default in the same run — PyTorch's own
  batch-norm kernels instead of cuDNN's NCHW ones, channels-last with a layout-keeping reflection
  pad, and bf16 on top; not in the library until measured;
* ``compile`` (``python benchmarks/gpu_speed.py compile``, on its own as it may take minutes):
  torch.compile inside the graph at 256², compile time in ``seconds_to_steady``;
* ``group_N`` (N = 1, 4, 8, 16 images of 256² gray, graph) and ``group8_eager``: image-iterations
  per second, with peak memory (``group8_eager_nobench``: cuDNN autotuning off, to see where
  the memory of a grouped eager fit goes).

Each fit is timed between two synchronised stamps ``warmup`` and ``warmup + timed`` iterations
in, so the GPU can run ahead of the host as it does in real fits. One JSON line per variant is
appended to ``--out`` as soon as it is measured (a timeout loses little).

``python benchmarks/gpu_speed.py agree --image PATH`` — a Table 1 image at the paper's
inpainting settings for ``--iterations``: PSNR of eager vs graph (must agree within 0.05 dB) and
bf16 vs fp32 (bf16 is worth having only within 0.1 dB).

``--tiny`` shrinks everything (CPU smoke test of this script).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
import traceback
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _common import LR, bare_stepper, plain_stepper  # noqa: E402

from dip import FitConfig, Fitter, Inpainting, NetConfig  # noqa: E402
from dip.io import load_image, to_numpy, to_tensor  # noqa: E402
from dip.metrics import psnr  # noqa: E402

PAPER_NET = dict(levels=5, width=128, skip=4)
TINY_NET = dict(levels=3, width=8, skip=2)


def sync() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def peak_reset() -> None:
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()


def peak_mib() -> float | None:
    return torch.cuda.max_memory_allocated() / 2**20 if torch.cuda.is_available() else None


def case(size: int, channels: int, n: int = 1, seed: int = 0) -> tuple[list[torch.Tensor], list[Inpainting]]:
    """``n`` random images with 50 % of pixels missing (the inpainting operator)."""
    gen = torch.Generator().manual_seed(seed)
    ys, ops = [], []
    for _ in range(n):
        clean = torch.rand((1, channels, size, size), generator=gen)
        mask = Inpainting.random_mask((size, size), 0.5, gen)
        ys.append(Inpainting.corrupt(clean, mask))
        ops.append(Inpainting(mask))
    return ys, ops


def time_fitters(fitters: list[Fitter], warmup: int, timed: int) -> tuple[float, float, str]:
    """Seconds per iteration between the stamps, seconds until the first stamp, and the loop's
    mode (``graph`` or ``eager``: a failed capture falls back to eager)."""
    stamps: list[float] = []
    start = time.perf_counter()

    def stamp(step) -> None:
        if step.iteration >= warmup + timed + 1:
            return
        sync()
        stamps.append(time.perf_counter())
        if len(stamps) == 2:
            for f in fitters:
                f.request_stop()

    fitters[0].add_callback(stamp, at=[warmup, warmup + timed])
    from dip.fit import run_fits

    mode = run_fits(fitters)[0].mode
    return (stamps[1] - stamps[0]) / timed, stamps[0] - start, mode


def time_stepper(step, warmup: int, timed: int) -> float:
    for _ in range(warmup):
        step()
    sync()
    t0 = time.perf_counter()
    for _ in range(timed):
        step()
    sync()
    return (time.perf_counter() - t0) / timed


class CatReflectionPad(torch.nn.Module):
    """``ReflectionPad2d(p)`` from slices, flips and ``cat``: the same numbers, but it keeps the input's
    memory format (CUDA's reflection_pad2d returns NCHW — the suspected source of channels-last's copies)."""

    def __init__(self, p: int) -> None:
        super().__init__()
        self.p = p

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        p = self.p
        x = torch.cat([x[:, :, 1 : p + 1].flip(2), x, x[:, :, -p - 1 : -1].flip(2)], 2)
        return torch.cat([x[..., 1 : p + 1].flip(3), x, x[..., -p - 1 : -1].flip(3)], 3)


class NativeBatchNorm(torch.nn.Module):
    """A batch norm run by PyTorch's own CUDA kernels instead of cuDNN's (same arithmetic)."""

    def __init__(self, bn: torch.nn.Module) -> None:
        super().__init__()
        self.bn = bn

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with torch.backends.cudnn.flags(enabled=False):
            return self.bn(x)


def swap(net: torch.nn.Module, kind: type, make) -> int:
    """Replace every ``kind`` module of ``net`` by ``make(module)``; returns how many."""
    count = 0
    for parent in list(net.modules()):
        for name, child in list(parent.named_children()):
            if isinstance(child, kind):
                setattr(parent, name, make(child))
                count += 1
    return count


class Tweaked(Fitter):
    """A Fitter whose network gets the benchmark's tweaks (``catpad``, ``native_bn``) after it is built."""

    def __init__(self, *args, tweaks: tuple[str, ...] = (), **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.tweaks = tweaks

    def build(self):
        net, z = super().build()
        self.swapped = {}
        if "catpad" in self.tweaks:
            self.swapped["catpad"] = swap(net, torch.nn.ReflectionPad2d, lambda m: CatReflectionPad(int(m.padding[0])))
        if "native_bn" in self.tweaks:
            self.swapped["native_bn"] = swap(net, torch.nn.BatchNorm2d, NativeBatchNorm)
        return net, z


def speed(args: argparse.Namespace, emit) -> None:
    net = NetConfig.from_dict(TINY_NET if args.tiny else PAPER_NET)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    warmup, timed = (3, 4) if args.tiny else (args.warmup, args.timed)
    sizes = [(64, 1, "gray64"), (64, 3, "rgb64")] if args.tiny else [(256, 1, "gray256"), (512, 3, "rgb512")]
    base = FitConfig(iterations=warmup + timed + 2, lr=LR, reg_noise_std=1 / 30, exp_weight=0.99)

    def variant(name: str, label: str, fn) -> None:
        peak_reset()
        try:
            row = {"case": label, "variant": name, **fn()}
        except Exception as err:  # noqa: BLE001 - record and go on with the next variant
            traceback.print_exc()
            row = {"case": label, "variant": name, "error": f"{err.__class__.__name__}: {str(err)[:300]}"}
        row["peak_mib"] = peak_mib()
        emit(row)

    def single(y: torch.Tensor, op: Inpainting, opts: dict) -> dict:
        f = Fitter(net, op, y, dataclasses.replace(base, **opts), device=device)
        per_it, first, mode = time_fitters([f], warmup, timed)
        return {"ms_per_it": 1e3 * per_it, "seconds_to_steady": round(first, 2), "options": opts, "mode": mode}

    if args.what == "tweaks":  # candidate fixes from the kernel profile, each against the default in the same run
        tweaks = {"graph": ((), {}), "graph_native_bn": (("native_bn",), {}),
                  "graph_cl_catpad": (("catpad",), dict(channels_last=True)),
                  "graph_cl_catpad_native_bn": (("catpad", "native_bn"), dict(channels_last=True)),
                  "graph_bf16_cl_catpad": (("catpad",), dict(channels_last=True, precision="bf16"))}
        for size, channels, label in sizes:
            (y,), (op,) = case(size, channels)
            for name, (names, opts) in tweaks.items():
                def tweaked(names=names, opts=opts, y=y, op=op) -> dict:
                    f = Tweaked(net, op, y, dataclasses.replace(base, graph=True, **opts), device=device, tweaks=names)
                    per_it, first, mode = time_fitters([f], warmup, timed)
                    return {"ms_per_it": 1e3 * per_it, "seconds_to_steady": round(first, 2), "tweaks": f.swapped, "options": opts, "mode": mode}
                variant(name, label, tweaked)
        return
    if args.what == "compile":  # on its own: compiling may take minutes (seconds_to_steady says how long)
        for size, channels, label in sizes[:1]:
            (y,), (op,) = case(size, channels)
            variant("compile", label, lambda y=y, op=op: single(y, op, dict(graph=True, compile=True)))
        return
    for size, channels, label in sizes:
        (y,), (op,) = case(size, channels)
        clean = torch.rand_like(y)
        for name, maker in (("plain", lambda: plain_stepper(y, clean, device)), ("bare", lambda: bare_stepper(y, device))):
            variant(name, label, lambda maker=maker: {"ms_per_it": 1e3 * time_stepper(maker(), warmup, timed)})
        options = {
            "eager": dict(graph=False),
            "graph": dict(graph=True),
            "graph_bf16": dict(graph=True, precision="bf16"),
            "graph_channels_last": dict(graph=True, channels_last=True),
        }
        for name, opts in options.items():
            variant(name, label, lambda opts=opts, y=y, op=op: single(y, op, opts))

    size, channels = (32, 1) if args.tiny else (256, 1)
    for n, opts in [(1, {}), (4, {}), (8, {}), (16, {}), (8, dict(graph=False)), (8, dict(graph=False, bench=False))]:
        name = f"group{n}" + ("_eager" if opts.get("graph") is False else "") + ("_nobench" if opts.get("bench") is False else "")

        def grouped(n=n, opts=opts) -> dict:
            ys, ops = case(size, channels, n, seed=1)
            cfg = dataclasses.replace(base, **{k: v for k, v in opts.items() if k != "bench"})
            fitters = [Fitter(net, o, yy, dataclasses.replace(cfg, seed=s), device=device) for s, (o, yy) in enumerate(zip(ops, ys))]
            old = torch.backends.cudnn.benchmark
            if opts.get("bench") is False:
                torch.backends.cudnn.benchmark = False
                torch.backends.cudnn.enabled = True
            try:
                per_it, first, mode = time_fitters(fitters, warmup, timed)
            finally:
                torch.backends.cudnn.benchmark = old
            return {"ms_per_it": 1e3 * per_it, "images": n, "image_its_per_s": n / per_it, "seconds_to_steady": round(first, 2), "mode": mode}
        variant(name, f"gray{size}", grouped)



def table1_case(args: argparse.Namespace):
    """Device, ground truth, 50 % mask (seed 0), observation and network for ``args.image``."""
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    clean = load_image(args.image, mode="keep")
    if args.tiny:
        clean = clean[:64, :64]
    mask = Inpainting.random_mask(clean.shape[:2], 0.5, torch.Generator().manual_seed(0))
    y = Inpainting.corrupt(to_tensor(clean), mask)
    return device, clean, mask, y, NetConfig.from_dict(TINY_NET if args.tiny else PAPER_NET)


def agree(args: argparse.Namespace, emit) -> None:
    """Graph vs eager and bf16 vs fp32 on one Table 1 image at the paper's inpainting settings."""
    device, clean, mask, y, net = table1_case(args)
    iterations = 20 if args.tiny else args.iterations
    cfg = FitConfig(iterations=iterations, lr=args.lr, reg_noise_std=0.03)
    scores = {}
    for name, opts in [("eager", dict(graph=False)), ("graph", dict(graph=True)), ("graph_bf16", dict(graph=True, precision="bf16"))]:
        t0 = time.perf_counter()
        result = Fitter(net, Inpainting(mask), y, dataclasses.replace(cfg, **opts), device=device).run()
        scores[name] = psnr(clean, to_numpy(result.output))
        emit({"check": "agree", "variant": name, "image": str(args.image), "iterations": iterations, "psnr": round(scores[name], 3),
              "seconds": round(time.perf_counter() - t0, 1), "mode": result.mode})
    emit({"check": "agree", "graph_vs_eager_db": round(scores["graph"] - scores["eager"], 3),
          "graph_ok": abs(scores["graph"] - scores["eager"]) <= 0.05,
          "bf16_vs_fp32_db": round(scores["graph_bf16"] - scores["graph"], 3),
          "bf16_ok": abs(scores["graph_bf16"] - scores["graph"]) <= 0.1})


def json_lines(out: Path):
    """``emit(row)``: print ``row`` (with torch, CUDA and device names) and append it to ``out`` at once."""
    out.parent.mkdir(parents=True, exist_ok=True)
    meta = {"torch": torch.__version__, "cuda": torch.version.cuda,
            "device": torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu"}

    def emit(row: dict) -> None:
        line = json.dumps({**row, **meta})
        print(line, flush=True)
        with open(out, "a") as fh:
            fh.write(line + "\n")

    return emit


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("what", choices=["speed", "compile", "tweaks", "agree"])
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results/gpu.jsonl"))
    ap.add_argument("--tiny", action="store_true")
    ap.add_argument("--warmup", type=int, default=20)
    ap.add_argument("--timed", type=int, default=100)
    ap.add_argument("--image", type=Path)
    ap.add_argument("--iterations", type=int, default=2000)
    ap.add_argument("--lr", type=float, default=0.01)
    args = ap.parse_args()
    (agree if args.what == "agree" else speed)(args, json_lines(args.out))


if __name__ == "__main__":
    main()
