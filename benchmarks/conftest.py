"""Collects the speed benchmarks' figures and writes ``benchmarks/results/<machine>.json``."""

from __future__ import annotations

import os
import platform
import statistics
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import machine_name, save  # noqa: E402

FIGURES: dict[str, dict[str, dict]] = {}
LOAD_AT_START = os.getloadavg()


def pytest_sessionfinish(session, exitstatus) -> None:
    if not FIGURES:
        return
    cases = {}
    for case, variants in FIGURES.items():
        row = dict(variants)
        ips = {k: v["iterations_per_s"] for k, v in variants.items()}
        if "dip" in ips and "plain" in ips:
            row["speedup_vs_plain"] = round(ips["dip"] / ips["plain"], 3)
            fastest = {k: variants[k]["seconds_per_iteration_min_max"][0] for k in ("dip", "plain")}
            row["speedup_vs_plain_min"] = round(fastest["plain"] / fastest["dip"], 3)
        if "dip" in ips and "bare" in ips:
            row["loop_overhead_pct"] = round(100 * (ips["bare"] / ips["dip"] - 1), 2)
            fastest = {k: variants[k]["seconds_per_iteration_min_max"][0] for k in ("dip", "bare")}
            row["loop_overhead_pct_min"] = round(100 * (fastest["dip"] / fastest["bare"] - 1), 2)
        cases[case] = row
    device = "cuda" if torch.cuda.is_available() else "cpu"
    path = save(
        {
            "machine": machine_name(),
            "device": torch.cuda.get_device_name() if device == "cuda" else f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, no GPU",
            "torch": torch.__version__,
            "threads": torch.get_num_threads(),
            "load_average_at_start": LOAD_AT_START,
            "load_average_at_end": os.getloadavg(),
            "command": "flock /tmp/dip-heavy.lock pytest benchmarks -m benchmark --benchmark-enable -n 0 -p no:cacheprovider",
            "timing": "dip, plain and bare interleaved iteration by iteration in one fit (the Fitter's "
            "per-iteration callback runs one iteration of each other loop, each timed on its own); "
            "warm-up iterations discarded; iterations_per_s = 1 / median per-iteration time "
            "(construction and final output excluded); peak memory from a separate 2-iteration fit "
            "per variant (CPU: RSS increase, sampled every 2 ms, after malloc_trim; CUDA: "
            "max_memory_allocated)",
            "cases": cases,
        }
    )
    print(f"\nbenchmark summary written to {path}")


def record(case: str, variant: str, warmup: int, durations: list[float], peak_mib: float) -> dict:
    """Figures of one variant: per-iteration times of the timed window after ``warmup``."""
    median = statistics.median(durations)
    mean = statistics.fmean(durations)
    entry = {
        "warmup_iterations": warmup,
        "timed_iterations": len(durations),
        "seconds_per_iteration_median": round(median, 4),
        "seconds_per_iteration_mean": round(mean, 4),
        "seconds_per_iteration_min_max": [round(min(durations), 4), round(max(durations), 4)],
        "iterations_per_s": round(1 / median, 4),
        "peak_memory_mib": round(peak_mib, 1),
        "seconds_per_iteration_all": [round(d, 4) for d in durations],
    }
    FIGURES.setdefault(case, {})[variant] = entry
    return entry
