"""Markdown table of a results JSON: ``python benchmarks/report.py benchmarks/results/<machine>.json``."""

from __future__ import annotations

import json
import sys


def main(path: str) -> None:
    res = json.loads(open(path).read())
    print(f"{res['device']} · torch {res['torch']} · {res['threads']} threads · `{res['command']}`\n")
    if "timing" in res:
        print(f"Timing: {res['timing']}.\n")
    print("| case | dip it/s | plain it/s | dip ÷ plain | dip ÷ plain (fastest iterations) | bare it/s | loop overhead (median / fastest iterations) | peak MiB dip / plain / bare |")
    print("|---|---|---|---|---|---|---|---|")
    for case, row in res["cases"].items():
        d, p, b = (row.get(k, {}) for k in ("dip", "plain", "bare"))
        print(
            f"| {case} | {d.get('iterations_per_s', '–')} | {p.get('iterations_per_s', '–')} | "
            f"{row.get('speedup_vs_plain', '–')}× | {row.get('speedup_vs_plain_min', '–')}× | {b.get('iterations_per_s', '–')} | {row.get('loop_overhead_pct', '–')} % / {row.get('loop_overhead_pct_min', '–')} % | "
            f"{d.get('peak_memory_mib', '–')} / {p.get('peak_memory_mib', '–')} / {b.get('peak_memory_mib', '–')} |"
        )


if __name__ == "__main__":
    main(sys.argv[1])
