"""Threads and OpenMP's wait policy on a CPU that is idle or shared with one busy process.

Each option runs in a fresh process (``OMP_WAIT_POLICY`` only counts when set before torch
loads): one DIP fit (the paper's network, 128² gray, ``--iterations``), timed inside the
process (imports excluded). Options and scenarios are interleaved, ``--repeats`` rounds. Beside
the fit: nothing (idle), a pure-Python busy loop (``python3 -c 'while True: pass'``), or another
torch process with torch's defaults (2 threads, OpenMP spinning: a second fit, a test run), each
killed afterwards.

Run: ``flock /tmp/dip-heavy.lock python3 benchmarks/threads.py [--iterations 6] [--repeats 2]``
Writes ``benchmarks/results/threads-<machine>.json`` and prints a markdown table.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
# name: (threads: "default" | "free" | N, wait policy: "" (unset) | "before" | "after" torch loads)
OPTIONS = {
    "torch default threads": ("default", ""),
    "1 thread": ("1", ""),
    "torch default threads, PASSIVE": ("default", "before"),
    "free cores (load average), PASSIVE": ("free", "before"),
    "torch default threads, PASSIVE set after import torch": ("default", "after"),
}
TORCH_LOOP = "import torch\nx, w = torch.randn(1, 64, 128, 128), torch.randn(64, 64, 3, 3)\nwhile True: torch.conv2d(x, w, padding=1)"
COMPETITORS = {"idle": None, "busy Python loop": "while True: pass", "busy torch process": TORCH_LOOP}


def free_cores() -> int:
    """Usable cores (CPU affinity) minus the 1-minute load average, rounded, at least 1."""
    cores = len(os.sched_getaffinity(0))
    return max(1, min(cores, round(cores - os.getloadavg()[0])))


def child(threads: str, wait: str, iterations: int) -> None:
    """One fit in this process; prints ``{"seconds", "threads"}`` as JSON."""
    sys.path.insert(0, str(ROOT))
    from pipeline.execution.threads import prepare_openmp, set_torch_threads

    os.environ.pop("OMP_WAIT_POLICY", None)
    if wait == "before":
        prepare_openmp()
    import torch

    from dip import Denoising, FitConfig, NetConfig, fit

    if wait == "after":
        prepare_openmp()
    n = set_torch_threads(0 if threads == "default" else free_cores() if threads == "free" else int(threads))
    y = torch.rand((1, 1, 128, 128), generator=torch.Generator().manual_seed(0))
    t0 = time.perf_counter()
    fit(Denoising(), y, NetConfig.from_dict(dict(levels=5, width=128, skip=4)), FitConfig(iterations=iterations), device="cpu")
    print(json.dumps({"seconds": time.perf_counter() - t0, "threads": n}))


def clean_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "OMP_NUM_THREADS")}


def run_option(name: str, iterations: int) -> dict:
    threads, wait = OPTIONS[name]
    out = subprocess.run([sys.executable, __file__, "--child", threads, wait or "-", str(iterations)],
                         env=clean_env(), capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--iterations", type=int, default=6)
    ap.add_argument("--repeats", type=int, default=2)
    a = ap.parse_args()
    import torch

    times: dict[str, dict[str, list[float]]] = {s: {o: [] for o in OPTIONS} for s in COMPETITORS}
    used: dict[str, dict[str, list[int]]] = {s: {o: [] for o in OPTIONS} for s in COMPETITORS}
    load: dict[str, list[float]] = {s: [] for s in COMPETITORS}
    for _ in range(a.repeats):
        for scenario, code in COMPETITORS.items():
            hog = subprocess.Popen([sys.executable, "-c", code], env=clean_env()) if code else None
            try:
                for name in OPTIONS:
                    load[scenario].append(os.getloadavg()[0])
                    r = run_option(name, a.iterations)
                    times[scenario][name].append(r["seconds"])
                    used[scenario][name].append(r["threads"])
                    print(f"{scenario}: {name}: {r['seconds']:.1f} s ({r['threads']} threads)", file=sys.stderr, flush=True)
            finally:
                if hog is not None:
                    hog.kill()
                    hog.wait()
    machine = f"cpu-{platform.machine()}-{os.cpu_count()}core"
    res = {
        "command": " ".join(["python3", "benchmarks/threads.py"] + sys.argv[1:]),
        "machine": machine, "torch": torch.__version__, "cores": os.cpu_count(),
        "fit": f"paper network (5 levels, 128 channels), 128x128 gray, {a.iterations} iterations",
        "load_average_1min": {s: [round(x, 2) for x in v] for s, v in load.items()},
        "seconds": {s: {o: [round(x, 2) for x in v] for o, v in d.items()} for s, d in times.items()},
        "threads_used": used,
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"threads-{machine}.json").write_text(json.dumps(res, indent=1) + "\n")
    print(f"{res['fit']}: seconds per fit, median (range) of {a.repeats}, torch threads used\n")
    print("| option | " + " | ".join(f"beside it: {c}" if times[c] and COMPETITORS[c] else c for c in COMPETITORS) + " |")
    print("|---" * (len(COMPETITORS) + 1) + "|")
    for name in OPTIONS:
        cells = []
        for s in COMPETITORS:
            t, n = times[s][name], "/".join(map(str, sorted(set(used[s][name]))))
            cells.append(f"{statistics.median(t):.1f} s ({min(t):.1f}–{max(t):.1f}), {n} thr.")
        print(f"| {name} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    if len(sys.argv) == 5 and sys.argv[1] == "--child":
        child(sys.argv[2], sys.argv[3].strip("-"), int(sys.argv[4]))
    else:
        main()
