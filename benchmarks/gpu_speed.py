"""GPU speed of the fitting loop: every execution option against the library's default, in one run.

``python benchmarks/gpu_speed.py all --choice choice.json`` — the prepared speed run, at most
``--budget`` seconds (230 by default) of one process, the paper's network (5 levels, 128/128/4),
inpainting operator, output averaging, in this order of priority (whatever would not fit in the
time left is skipped, with a line saying so):

1. ``default`` — the library's default configuration (CUDA graph) at ``gray256`` (256², 1 channel)
   and ``rgb512`` (512², 3 channels), then every combination of the two layout options:
   ``nchw_bias`` (the network as the authors' code runs it), ``nchw_nobias`` (``drop_inert_bias``),
   ``cl_bias`` (``channels_last``: layout-keeping reflection pad, cuDNN's NHWC batch norm),
   ``cl_nobias``;
2. many fits of 256² gray at once, with the best single-fit options: ``vmap<N>``, ``grouped<N>``
   (one network with ``groups=N`` convolutions), ``streams<N>`` (N CUDA graphs on N streams);
   ``image_its_per_s`` = images × iterations per second;
3. a kernel breakdown (``torch.profiler`` over eager iterations of ``default`` and the fastest
   variant at 512² RGB): GPU time per iteration, layout copies (``aten::copy_`` calls and
   cuDNN's NCHW↔NHWC transposes), the top kernels;
4. ``torch.compile`` on top of the fastest options (``compile_*``, 256² first): ``compile_s`` (time
   to steady state minus the uncompiled variant's), ms saved per iteration and ``break_even_its``
   (the iterations after which compiling has paid for itself); its caches go to
   ``--compile-cache``; between the two sizes, ``processes<K>`` (K processes, one lone fit each,
   timed over the same window);
5. bf16 on top of the fastest options (speed only: its quality is the ``quality`` run's question)
   and PyTorch's own batch-norm kernels on NCHW (``native_bn``, a probe, not a library option).

Each result is one JSON line appended to ``--out`` (``benchmarks/results/gpu-<gpu>-speed2.jsonl``
by default) as soon as it is measured: ``case``, ``variant``, ``options``, ``ms_per_it`` (mean of
two timed windows of ``--timed`` iterations after ``--warmup``, both in ``ms_windows``), and for
many fits ``images`` and ``image_its_per_s``. A variant that fails is a line with ``"error"``, and
the run goes on; it always exits 0. ``--choice PATH`` writes the configuration the publishing run
should use: the fastest whose numbers equal the default's (execution options only, so never bf16):
``{"fit": {<FitConfig execution field>: value}, "group": "1" | "N", "many": {"mode", "n"},
"measured": {...}}``.

``python benchmarks/gpu_speed.py quality --images DIR`` — bf16 against fp32 at Table 1's settings
(``--n-images`` images of DIR × ``--seeds``, 50 % pixels missing, lr 0.001, σ_p 0.03,
``--iterations``), both precisions in the same run: PSNR of each fit, then the mean Δ (bf16 − fp32)
and its spread. bf16 is *shown equal* when |mean Δ| ≤ 0.1 dB and mean Δ ± 2 standard errors lies
within ±0.25 dB. Minutes of GPU time: not part of the 4-minute run.

``python benchmarks/gpu_speed.py agree --image PATH`` — graph vs eager and bf16 vs fp32 on one image.

``--tiny`` shrinks everything so that the script runs end to end on a CPU in seconds (no compile,
no processes): a check of the script, not a measurement.
"""

from __future__ import annotations

import argparse
import dataclasses
import gc
import json
import math
import signal
import statistics
import subprocess
import sys
import time
import traceback
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from dip import FitConfig, Fitter, Inpainting, NetConfig  # noqa: E402
from dip.fit import EXECUTION_FIELDS, run_fits  # noqa: E402
from pipeline.files import load_image  # noqa: E402
from dip.io import to_numpy, to_tensor
from dip.metrics import psnr  # noqa: E402

PAPER_NET = dict(levels=5, width=128, skip=4)
TINY_NET = dict(levels=3, width=8, skip=2)
WORKLOAD = dict(lr=0.01, reg_noise_std=1 / 30, exp_weight=0.99)  # the paper's denoising settings, as measured before
#: single-fit variants: FitConfig options on top of the library's defaults (execution options only)
SINGLE = {
    "default": {},  # the library's defaults (on CUDA the same as nchw_nobias: two measurements of one configuration)
    "nchw_bias": dict(channels_last=False, drop_inert_bias=False),  # the network as the authors' code runs it
    "nchw_nobias": dict(channels_last=False, drop_inert_bias=True),
    "cl_bias": dict(channels_last=True, drop_inert_bias=False),
    "cl_nobias": dict(channels_last=True, drop_inert_bias=True),
}
#: the paper profile's shortest fits with the paper's network (sr_x4, inpaint supmat): compile must pay within them
SHORTEST_FIT = 2000


class OutOfTime(Exception):
    """The run's time budget is spent."""


def sync() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def gpu_name() -> str:
    """``h200`` for "NVIDIA H200", ``cpu`` without CUDA (file names)."""
    if not torch.cuda.is_available():
        return "cpu"
    return torch.cuda.get_device_name().split()[-1].lower()


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


def json_lines(out: Path) -> Callable[[dict], None]:
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


class Run:
    """The settings of one speed run, its clock and its results so far."""

    def __init__(self, args: argparse.Namespace, emit: Callable[[dict], None]) -> None:
        self.args, self.emit, self.tiny = args, emit, args.tiny
        self.device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
        self.device_name = torch.cuda.get_device_name() if self.device.type == "cuda" else "cpu"
        self.net = NetConfig.from_dict(TINY_NET if args.tiny else PAPER_NET)
        self.warmup, self.timed = (1, 2) if args.tiny else (args.warmup, args.timed)
        self.cases = {"gray32": (32, 1), "rgb48": (48, 3)} if args.tiny else {"gray256": (256, 1), "rgb512": (512, 3)}
        self.many_case = next(iter(self.cases))
        self.start, self.budget = time.monotonic(), args.budget
        self.rows: list[dict] = []

    def left(self) -> float:
        return self.budget - (time.monotonic() - self.start)

    def cfg(self, opts: dict) -> FitConfig:
        return FitConfig(iterations=self.warmup + 2 * self.timed + 1, **WORKLOAD, **opts)

    def measure(self, label: str, variant: str, estimate: float, fn: Callable[[], dict], **extra: Any) -> dict | None:
        """Run ``fn`` if ``estimate`` seconds are left (else a ``skipped`` line); emit its row."""
        row: dict[str, Any] = {"case": label, "variant": variant, **extra}
        if self.left() < estimate:
            row["skipped"] = f"budget: {self.left():.0f} s left, about {estimate:.0f} s needed"
            self.emit(row)
            return None
        gc.collect()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats()
        t0 = time.monotonic()
        try:
            with deadline(self.left()):
                row.update(fn())
        except Exception as err:  # noqa: BLE001 - record and go on with the next variant
            traceback.print_exc()
            row["error"] = f"{err.__class__.__name__}: {str(err)[:300]}"
        row["seconds"] = round(time.monotonic() - t0, 2)
        if torch.cuda.is_available():
            row["peak_mib"] = round(torch.cuda.max_memory_allocated() / 2**20, 1)
        self.emit(row)
        self.rows.append(row)
        return None if "error" in row else row


@contextmanager
def deadline(seconds: float) -> Iterator[None]:
    """Raise :class:`OutOfTime` in the main thread after ``seconds`` (SIGALRM; no-op where absent)."""
    if not hasattr(signal, "SIGALRM") or seconds <= 0:
        yield
        return

    def ring(*_: object) -> None:
        raise OutOfTime(f"the run's time budget ran out after {seconds:.0f} s in this step")

    old = signal.signal(signal.SIGALRM, ring)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


def time_fits(fitters: list[Fitter], warmup: int, timed: int) -> dict:
    """Two timed windows of ``timed`` iterations after ``warmup``, between synchronised stamps
    (the GPU runs ahead of the host in between, as in real fits)."""
    stamps: list[float] = []
    start = time.perf_counter()

    def stamp(step) -> None:
        if step.iteration <= warmup + 2 * timed:
            sync()
            stamps.append(time.perf_counter())

    fitters[0].add_callback(stamp, at=[warmup, warmup + timed, warmup + 2 * timed])
    mode = run_fits(fitters)[0].mode
    windows = [1e3 * (b - a) / timed for a, b in zip(stamps, stamps[1:])]
    return {"ms_per_it": round(statistics.fmean(windows), 4), "ms_windows": [round(w, 4) for w in windows],
            "seconds_to_steady": round(stamps[0] - start, 2), "mode": mode}


def single(run: Run, label: str, opts: dict) -> dict:
    size, channels = run.cases[label]
    (y,), (op,) = case(size, channels)
    return {"options": opts, **time_fits([Fitter(run.net, op, y, run.cfg(opts), device=run.device)], run.warmup, run.timed)}


def many(run: Run, n: int, opts: dict) -> dict:
    size, channels = run.cases[run.many_case]
    ys, ops = case(size, channels, n, seed=1)
    cfg = run.cfg(opts)
    fitters = [Fitter(run.net, o, y, dataclasses.replace(cfg, seed=s), device=run.device) for s, (o, y) in enumerate(zip(ops, ys))]
    row = time_fits(fitters, run.warmup, run.timed)
    return {"options": opts, "images": n, "image_its_per_s": round(1e3 * n / row["ms_per_it"], 1), **row}


# --- probes: the kernel breakdown, PyTorch's own batch norm, several processes ---------------------------------------

LAYOUT_KERNELS = ("nchwToNhwc", "nhwcToNchw", "transpose", "Transpose")


def kernels(run: Run, label: str, opts: dict, iterations: int = 3) -> dict:
    """``torch.profiler`` over ``iterations`` eager iterations (the kernels a graph replays)."""
    from torch.profiler import ProfilerActivity, profile

    size, channels = run.cases[label]
    (y,), (op,) = case(size, channels)
    cfg = dataclasses.replace(run.cfg(opts), iterations=run.warmup + iterations + 1, graph=False)
    f = Fitter(run.net, op, y, cfg, device=run.device)
    acts = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if run.device.type == "cuda" else [])
    box: dict[str, Any] = {}

    def start(step) -> None:
        sync()
        box["prof"] = profile(activities=acts)
        box["prof"].__enter__()

    def stop(step) -> None:
        sync()
        box["prof"].__exit__(None, None, None)

    f.add_callback(start, at=[run.warmup])
    f.add_callback(stop, at=[run.warmup + iterations])
    run_fits([f])
    cuda = run.device.type == "cuda"
    events = box["prof"].key_averages()
    own = (lambda e: e.self_device_time_total) if cuda else (lambda e: e.self_cpu_time_total)
    is_kernel = (lambda e: e.device_type == torch.autograd.DeviceType.CUDA) if cuda else (lambda e: True)
    per_it = lambda us: round(us / 1e3 / iterations, 4)  # noqa: E731
    copies = sum(e.count for e in events if e.key == "aten::copy_") / iterations
    layout = [e for e in events if is_kernel(e) and any(k in e.key for k in LAYOUT_KERNELS)]
    top = sorted((e for e in events if is_kernel(e)), key=own, reverse=True)[:15]
    return {"options": opts, "probe": "kernels", "iterations": iterations,
            "self_gpu_ms_per_it" if cuda else "self_cpu_ms_per_it": per_it(sum(own(e) for e in events if is_kernel(e))),
            "copy_calls_per_it": copies, "layout_kernel_ms_per_it": per_it(sum(own(e) for e in layout)),
            "layout_kernels_per_it": sum(e.count for e in layout) / iterations,
            "top": [[e.key[:100], per_it(own(e)), e.count / iterations] for e in top]}


class _NativeBatchNorm(torch.nn.Module):
    """A batch norm run by PyTorch's own CUDA kernels instead of cuDNN's (same arithmetic)."""

    def __init__(self, bn: torch.nn.Module) -> None:
        super().__init__()
        self.bn = bn

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with torch.backends.cudnn.flags(enabled=False):
            return self.bn(x)


class _NativeBN(Fitter):
    """A Fitter whose batch norms run PyTorch's kernels (a probe of cuDNN's NCHW batch norm)."""

    def build(self):
        net, z = super().build()
        for parent in list(net.modules()):
            for name, child in list(parent.named_children()):
                if isinstance(child, torch.nn.BatchNorm2d):
                    setattr(parent, name, _NativeBatchNorm(child))
        return net, z


def native_bn(run: Run, label: str, opts: dict) -> dict:
    size, channels = run.cases[label]
    (y,), (op,) = case(size, channels)
    return {"options": opts, "probe": "PyTorch's batch norm kernels instead of cuDNN's",
            **time_fits([_NativeBN(run.net, op, y, run.cfg(opts), device=run.device)], run.warmup, run.timed)}


def processes(run: Run, k: int, opts: dict) -> dict:
    """``k`` processes, one lone fit each, all timed over the same window from a common start time."""
    size, channels = run.cases[run.many_case]
    go = time.time() + (8 if run.tiny else 25)  # imports, cuDNN autotuning and capture before it
    cmd = [sys.executable, __file__, "worker", "--size", str(size), "--channels", str(channels), "--opts", json.dumps(opts),
           "--go", str(go), "--warmup", str(run.warmup), "--timed", str(run.timed)] + (["--tiny"] if run.tiny else [])
    procs = [subprocess.Popen(cmd + ["--seed", str(i)], stdout=subprocess.PIPE, text=True) for i in range(k)]
    outs = []
    try:
        for p in procs:
            out, _ = p.communicate(timeout=max(1.0, run.left()))
            outs.append(json.loads(out.strip().splitlines()[-1]))
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    late = max(o["began"] for o in outs) - go  # > 0: a worker was not ready at the start (counted against the throughput)
    window = max(o["ended"] for o in outs) - min(o["began"] for o in outs)
    total = sum(o["iterations"] for o in outs)
    return {"options": opts, "images": k, "image_its_per_s": round(total / window, 1),
            "ms_per_it": round(statistics.fmean(o["ms_per_it"] for o in outs), 4), "latest_start_s": round(late, 3), "mode": "processes"}


def worker(args: argparse.Namespace) -> None:
    """One process of :func:`processes`: a lone fit whose timed window starts at ``--go``."""
    net = NetConfig.from_dict(TINY_NET if args.tiny else PAPER_NET)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    (y,), (op,) = case(args.size, args.channels, seed=args.seed)
    cfg = FitConfig(iterations=args.warmup + args.timed + 1, seed=args.seed, **WORKLOAD, **json.loads(args.opts))
    f = Fitter(net, op, y, cfg, device=device)
    times: list[float] = []

    def wait(step) -> None:
        sync()
        time.sleep(max(0.0, args.go - time.time()))
        times.append(time.time())

    def done(step) -> None:
        sync()
        times.append(time.time())

    f.add_callback(wait, at=[args.warmup])
    f.add_callback(done, at=[args.warmup + args.timed])
    run_fits([f])
    print(json.dumps({"began": times[0], "ended": times[1], "iterations": args.timed,
                      "ms_per_it": 1e3 * (times[1] - times[0]) / args.timed}), flush=True)


# --- the run and its choice ----------------------------------------------------------------------------------------------


def fastest(rows: list[dict], names: list[str], cases: list[str]) -> str:
    """The variant of ``names`` with the least total time over ``cases`` (measured at all of them)."""
    times = {v: [r["ms_per_it"] for r in rows if r["variant"] == v and r.get("case") in cases and "ms_per_it" in r] for v in names}
    complete = {v: sum(t) for v, t in times.items() if len(t) == len(cases)}
    return min(complete, key=complete.get) if complete else "default"


def speed(args: argparse.Namespace, emit: Callable[[dict], None]) -> None:
    """The prepared run: the sections of the module docstring, most informative first, within the budget."""
    run = Run(args, emit)
    labels = list(run.cases)
    est = (lambda s: 2.0) if run.tiny else (lambda s: s)  # noqa: E731 - seconds a step may take
    sections = set(args.only or ["single", "many", "kernels", "compile", "extra"])

    # single fits: the default and every execution option, at both sizes
    if "single" in sections:
        for name, opts in SINGLE.items():
            for label in labels:
                run.measure(label, name, est(25), lambda label=label, opts=opts: single(run, label, opts))
    best = fastest(run.rows, list(SINGLE), labels)
    best_opts = SINGLE[best]

    # many fits at once, with the best options (a vmap group runs NCHW whatever channels_last says)
    n = 2 if run.tiny else args.group
    if "many" in sections:
        for mode in ("streams", "grouped", "vmap"):
            opts = {**best_opts, "many": mode}
            run.measure(run.many_case, f"{mode}{n}", est(40), lambda opts=opts: many(run, n, opts))

    # where the time goes: the default and the fastest, at the larger size
    if "kernels" in sections:
        for name in dict.fromkeys(["default", best]):
            run.measure(labels[-1], name, est(15), lambda name=name: kernels(run, labels[-1], SINGLE[name]))

    def compiled(label: str) -> None:
        """torch.compile on the fastest options: what it costs and when it pays."""
        opts = {**best_opts, "compile": True, **({"compile_cache": str(args.compile_cache)} if args.compile_cache else {})}
        row = run.measure(label, f"compile_{best}", 120, lambda: single(run, label, opts))
        base = next((r for r in run.rows if r["variant"] == best and r.get("case") == label and "ms_per_it" in r), None)
        if row and base:
            compile_s = row["seconds_to_steady"] - base["seconds_to_steady"]
            saved = base["ms_per_it"] - row["ms_per_it"]
            pays = {"case": label, "variant": f"compile_{best}", "compile_s": round(compile_s, 1), "saved_ms_per_it": round(saved, 4),
                    "break_even_its": round(1e3 * compile_s / saved) if saved > 0 else None}
            emit(pays)
            run.rows.append(pays)

    compiling = "compile" in sections and not run.tiny  # Inductor on a CPU takes minutes: not in a check of the script
    if compiling:
        compiled(labels[0])
    if "extra" in sections and not run.tiny:  # K processes, one lone fit each
        run.measure(run.many_case, f"processes{args.group}", 60, lambda: processes(run, args.group, best_opts))
    if compiling:
        for label in labels[1:]:
            compiled(label)
    if "extra" in sections:  # bf16 speed (its quality: the quality run), PyTorch's batch norm on NCHW
        for label in labels:
            run.measure(label, f"bf16_{best}", est(25), lambda label=label: single(run, label, {**best_opts, "precision": "bf16"}))
        run.measure(labels[-1], "native_bn", est(25), lambda: native_bn(run, labels[-1], {}))
    if args.choice:
        write_choice(args.choice, run, best, emit)


def write_choice(path: Path, run: Run, best: str, emit: Callable[[dict], None]) -> None:
    """The configuration the publishing run should use (see the module docstring)."""
    rows = [r for r in run.rows if "ms_per_it" in r and "probe" not in r]
    labels = list(run.cases)
    defaults = FitConfig()
    fit: dict[str, Any] = {k: getattr(defaults, k) for k in EXECUTION_FIELDS if k not in ("check_every", "compile_cache")}
    fit.update(SINGLE[best])
    measured: dict[str, Any] = {label: {r["variant"]: r["ms_per_it"] for r in rows if r["case"] == label and "images" not in r} for label in labels}
    compiled = [r for r in rows if r["variant"] == f"compile_{best}"]
    pays = [r for r in run.rows if r.get("variant") == f"compile_{best}" and "break_even_its" in r]
    if len(compiled) == len(labels) and len(pays) == len(labels) and all(
            p["break_even_its"] is not None and p["break_even_its"] <= SHORTEST_FIT for p in pays):
        fit["compile"] = True
        if run.args.compile_cache:
            fit["compile_cache"] = str(run.args.compile_cache)
    measured["compile"] = {p["case"]: {k: p[k] for k in ("compile_s", "saved_ms_per_it", "break_even_its")} for p in pays}
    lone = min((r["ms_per_it"] for r in rows if r["case"] == run.many_case and r["variant"] == best), default=None)
    groups = [r for r in rows if "images" in r]
    measured["many"] = {r["variant"]: r["image_its_per_s"] for r in groups}
    winner = max(groups, key=lambda r: r["image_its_per_s"], default=None)
    many_choice: dict[str, Any] = {"mode": "single", "n": 1}
    group = "1"
    if lone and winner and winner["image_its_per_s"] > 1.1 * 1e3 / lone:  # at least 10 % more than one fit at a time
        mode = winner["options"].get("many", "processes") if winner.get("mode") != "processes" else "processes"
        many_choice = {"mode": mode, "n": winner["images"]}
        if mode != "processes":
            fit["many"], group = mode, str(winner["images"])
    if lone:
        measured["many"]["single"] = round(1e3 / lone, 1)
    choice = {"fit": fit, "group": group, "many": many_choice, "measured": measured,
              "note": "execution options only (equal numbers); bf16 needs `gpu_speed.py quality` first",
              "device": run.device_name, "torch": torch.__version__}
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(choice, indent=2) + "\n")
    emit({"choice": str(path), "fit": fit, "group": group, "many": many_choice})


# --- bf16 against fp32 at Table 1's settings --------------------------------------------------------------------------------


def quality(args: argparse.Namespace, emit: Callable[[dict], None]) -> None:
    """bf16 vs fp32 over ``--n-images`` × ``--seeds`` Table 1 fits (see the module docstring)."""
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    folder = Path(args.images or "")
    paths = sorted(p for p in folder.iterdir() if p.suffix.lower() in (".png", ".jpg", ".bmp", ".tif"))[: args.n_images] if folder.is_dir() else []
    if not paths:
        raise SystemExit(f"error: no images in {args.images}; give --images a folder of PNGs (e.g. the mirror's inpainting11)")
    net = NetConfig.from_dict(TINY_NET if args.tiny else PAPER_NET)
    iterations = 20 if args.tiny else args.iterations
    chosen = json.loads(Path(args.choice_in).read_text()) if args.choice_in else {}
    opts, together = chosen.get("fit", {}), int(chosen.get("group", "1")) > 1  # the seeds of an image as one group
    deltas = []
    for path in paths:
        clean = load_image(path, mode="keep")
        if args.tiny:
            clean = clean[:48, :48]
        mask = Inpainting.random_mask(clean.shape[:2], 0.5, torch.Generator().manual_seed(0))
        y = Inpainting.corrupt(to_tensor(clean), mask)
        scores: dict[str, list[float]] = {}
        for precision in ("fp32", "bf16"):
            cfg = FitConfig(iterations=iterations, lr=0.001, reg_noise_std=0.03, precision=precision, **opts)
            fitters = [Fitter(net, Inpainting(mask), y, dataclasses.replace(cfg, seed=seed), device=device) for seed in args.seeds]
            t0 = time.perf_counter()
            results = run_fits(fitters) if together else [run_fits([f])[0] for f in fitters]
            seconds = time.perf_counter() - t0
            scores[precision] = [psnr(clean, to_numpy(r.output)) for r in results]
            for seed, score in zip(args.seeds, scores[precision]):
                emit({"check": "quality", "image": path.name, "seed": seed, "precision": precision, "iterations": iterations,
                      "psnr": round(score, 3), "seconds_all_seeds": round(seconds, 1), "together": together, "options": opts})
        deltas += [b - a for a, b in zip(scores["fp32"], scores["bf16"])]
    mean = statistics.fmean(deltas)
    sd = statistics.stdev(deltas) if len(deltas) > 1 else None
    se = sd / math.sqrt(len(deltas)) if sd is not None else None
    shown = None if device.type != "cuda" else bool(se is not None and abs(mean) <= 0.1 and abs(mean) + 2 * se <= 0.25)
    emit({"check": "quality", "summary": True, "fits": len(deltas), "mean_delta_db": round(mean, 3),
          "sd_delta_db": None if sd is None else round(sd, 3), "se_delta_db": None if se is None else round(se, 3),
          "min_delta_db": round(min(deltas), 3), "max_delta_db": round(max(deltas), 3),
          "shown_equal": shown, **({} if shown is not None else {"note": "bf16 autocast applies on CUDA only: nothing to show here"})})


def agree(args: argparse.Namespace, emit: Callable[[dict], None]) -> None:
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


def table1_case(args: argparse.Namespace):
    """Device, ground truth, 50 % mask (seed 0), observation and network for ``args.image`` (gpu_probe.py)."""
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    clean = load_image(args.image, mode="keep")
    if args.tiny:
        clean = clean[:64, :64]
    mask = Inpainting.random_mask(clean.shape[:2], 0.5, torch.Generator().manual_seed(0))
    y = Inpainting.corrupt(to_tensor(clean), mask)
    return device, clean, mask, y, NetConfig.from_dict(TINY_NET if args.tiny else PAPER_NET)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("what", choices=["all", "speed", "quality", "agree", "worker"], help="speed = all")
    ap.add_argument("--out", type=Path, help="JSON lines (default benchmarks/results/gpu-<gpu>-speed2.jsonl)")
    ap.add_argument("--choice", type=Path, help="all: write the chosen configuration here")
    ap.add_argument("--budget", type=float, default=230.0, help="all: seconds for the whole run")
    ap.add_argument("--only", nargs="+", choices=["single", "many", "kernels", "compile", "extra"], help="all: these sections only")
    ap.add_argument("--group", type=int, default=8, help="all: fits at once for the many-fit variants")
    ap.add_argument("--compile-cache", type=Path, help="all: write torch.compile's caches here (FitConfig.compile_cache)")
    ap.add_argument("--tiny", action="store_true")
    ap.add_argument("--warmup", type=int, default=20)
    ap.add_argument("--timed", type=int, default=100)
    ap.add_argument("--image", type=Path, help="agree: one image")
    ap.add_argument("--images", type=Path, help="quality: a folder of images")
    ap.add_argument("--n-images", type=int, default=3)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--choice-in", type=Path, help="quality: execution options from a choice file")
    ap.add_argument("--iterations", type=int, default=2000)
    ap.add_argument("--lr", type=float, default=0.01)
    ap.add_argument("--size", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--channels", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--opts", default="{}", help=argparse.SUPPRESS)
    ap.add_argument("--go", type=float, help=argparse.SUPPRESS)
    ap.add_argument("--seed", type=int, default=0, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.tiny:
        torch.set_num_threads(1)  # tiny tensors gain nothing from more; a busy CPU loses a lot
    if args.what == "worker":
        worker(args)
        return
    out = args.out or Path(__file__).resolve().parent / "results" / f"gpu-{gpu_name()}-speed2.jsonl"
    emit = json_lines(out)
    {"all": speed, "speed": speed, "quality": quality, "agree": agree}[args.what](args, emit)


if __name__ == "__main__":
    main()
