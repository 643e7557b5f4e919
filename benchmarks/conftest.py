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


def pytest_sessionfinish(session, exitstatus) -> None:
    if not FIGURES:
        return
    cases = {}
    for case, variants in FIGURES.items():
        row = dict(variants)
        ips = {k: v["iterations_per_s"] for k, v in variants.items()}
        if "dip" in ips and "plain" in ips:
            row["speedup_vs_plain"] = round(ips["dip"] / ips["plain"], 3)
        if "dip" in ips and "bare" in ips:
            row["loop_overhead_pct"] = round(100 * (ips["bare"] / ips["dip"] - 1), 2)
        cases[case] = row
    device = "cuda" if torch.cuda.is_available() else "cpu"
    path = save(
        {
            "machine": machine_name(),
            "device": torch.cuda.get_device_name() if device == "cuda" else f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, no GPU",
            "torch": torch.__version__,
            "threads": torch.get_num_threads(),
            "load_average_at_end": os.getloadavg(),
            "command": "pytest benchmarks -m benchmark --benchmark-enable -p no:cacheprovider",
            "cases": cases,
        }
    )
    print(f"\nbenchmark summary written to {path}")


def record(case: str, variant: str, iterations: int, times: list[float], peak_mib: float) -> dict:
    per_it = statistics.median(times) / iterations
    entry = {
        "iterations_per_round": iterations,
        "rounds": len(times),
        "seconds_per_iteration": round(per_it, 4),
        "iterations_per_s": round(1 / per_it, 4),
        "peak_memory_mib": round(peak_mib, 1),
    }
    FIGURES.setdefault(case, {})[variant] = entry
    return entry
