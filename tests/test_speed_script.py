"""The prepared GPU speed run (benchmarks/gpu_speed.py): its choice of configuration, and a CPU run."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import pytest

from dip.fit import EXECUTION_FIELDS, FitConfig

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))


def _run_with(rows: list[dict], compile_cache: str | None = None):
    import gpu_speed

    args = argparse.Namespace(tiny=True, budget=60.0, warmup=1, timed=2, compile_cache=compile_cache)
    run = gpu_speed.Run(args, lambda row: None)
    run.rows = rows
    return gpu_speed, run


def _row(case: str, variant: str, ms: float, **extra) -> dict:
    return {"case": case, "variant": variant, "ms_per_it": ms, **extra}


def test_the_choice_is_the_fastest_equal_configuration(tmp_path) -> None:
    rows = [_row(c, v, ms) for c, base in (("gray32", 4.0), ("rgb48", 12.0))
            for v, ms in (("default", base), ("nchw_bias", base * 1.1), ("nchw_nobias", base), ("cl_bias", base * 0.8), ("cl_nobias", base * 0.7))]
    rows += [_row("gray32", "bf16_cl_nobias", 1.0)]  # faster, but not an execution option: never chosen
    rows += [_row("gray32", "streams8", 10.0, images=8, image_its_per_s=800.0, options={"many": "streams"}),
             _row("gray32", "grouped8", 20.0, images=8, image_its_per_s=400.0, options={"many": "grouped"})]
    gpu_speed, run = _run_with(rows)
    best = gpu_speed.fastest(rows, list(gpu_speed.SINGLE), ["gray32", "rgb48"])
    assert best == "cl_nobias"
    gpu_speed.write_choice(tmp_path / "choice.json", run, best, lambda row: None)
    choice = json.loads((tmp_path / "choice.json").read_text())
    assert choice["fit"]["channels_last"] is True and choice["fit"]["drop_inert_bias"] is True
    assert choice["fit"]["compile"] is False and "precision" not in choice["fit"]
    assert choice["fit"]["many"] == "streams" and choice["group"] == "8" and choice["many"] == {"mode": "streams", "n": 8}
    assert set(choice["fit"]) <= set(EXECUTION_FIELDS)
    FitConfig.from_dict(choice["fit"])  # applies on top of any fit settings


def test_compile_is_chosen_only_where_it_pays_within_a_short_fit(tmp_path) -> None:
    def choice_for(break_even: int) -> dict:
        rows = [_row(c, v, 2.0) for c in ("gray32", "rgb48") for v in ("default", "nchw_bias", "nchw_nobias", "cl_bias", "cl_nobias")]
        rows += [_row(c, "compile_default", 1.0) for c in ("gray32", "rgb48")]
        rows += [{"case": c, "variant": "compile_default", "compile_s": 60.0, "saved_ms_per_it": 1.0, "break_even_its": break_even}
                 for c in ("gray32", "rgb48")]
        gpu_speed, run = _run_with(rows, compile_cache="cache.bin")
        gpu_speed.write_choice(tmp_path / "c.json", run, "default", lambda row: None)
        return json.loads((tmp_path / "c.json").read_text())

    assert choice_for(1500)["fit"]["compile"] is True and choice_for(1500)["fit"]["compile_cache"] == "cache.bin"
    assert choice_for(60000)["fit"]["compile"] is False
    single = choice_for(60000)
    assert single["group"] == "1" and single["many"]["mode"] == "single"  # no many-fit rows: one fit at a time


@pytest.mark.integration
def test_the_speed_run_runs_on_a_cpu_and_writes_lines_and_a_choice(tmp_path) -> None:
    out, choice = tmp_path / "speed.jsonl", tmp_path / "choice.json"
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "gpu_speed.py"), "all", "--tiny", "--out", str(out),
                           "--choice", str(choice)], capture_output=True, text=True, timeout=600, cwd=ROOT,
                          env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"})
    assert proc.returncode == 0, proc.stderr[-2000:]
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    timed = [r for r in rows if "ms_per_it" in r and "probe" not in r]
    assert {r["case"] for r in timed if r["variant"] == "default"} == {"gray32", "rgb48"}
    assert all(r["ms_per_it"] > 0 for r in timed) and not [r for r in rows if "error" in r]
    assert any("image_its_per_s" in r for r in rows) and any(r.get("probe") == "kernels" for r in rows)
    picked = json.loads(choice.read_text())
    assert set(picked) >= {"fit", "group", "many", "measured"}
    FitConfig.from_dict(picked["fit"])
