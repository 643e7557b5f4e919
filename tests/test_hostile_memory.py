"""Small hostile files that claim something huge stay under 500 MB and a few seconds: the
benchmark (benchmarks/hostile_memory.py) run as a test, each case in its own child process."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.integration
def test_hostile_inputs_stay_under_500_mb(tmp_path: Path) -> None:
    out = tmp_path / "rows.json"
    res = subprocess.run([sys.executable, str(REPO / "benchmarks" / "hostile_memory.py"), "--out", str(out), "--limit-mb", "500"],
                         capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stdout + res.stderr
    rows = json.loads(out.read_text())["rows"]
    assert len(rows) == 7 and all(r["ok"] and r["peak_mb"] < 500 and r["seconds"] < 60 for r in rows), rows
