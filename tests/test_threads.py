"""OpenMP's wait policy is set by `dip` before torch loads (issue 11, item 9; numbers: benchmarks/threads.py)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

PROBE = """
import os, sys
from pipeline import cli
assert "torch" not in sys.modules, "importing the CLI must not load torch"
cli.app = lambda: print(os.environ.get("OMP_WAIT_POLICY"), "torch" in sys.modules)
cli.main()
"""


@pytest.mark.parametrize(("given", "expected"), [(None, "PASSIVE False"), ("ACTIVE", "ACTIVE False")])
def test_the_entry_point_sets_the_wait_policy_before_torch_loads(given: str | None, expected: str) -> None:
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    if given:
        env["OMP_WAIT_POLICY"] = given  # the user's choice is kept
    out = subprocess.run([sys.executable, "-c", PROBE], cwd=REPO, env={**env, "PYTHONPATH": str(REPO)},
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == expected


def test_engine_threads() -> None:
    import torch

    from pipeline.execution.engines import LocalEngine
    from pipeline.execution.threads import set_torch_threads

    before = torch.get_num_threads()
    try:
        LocalEngine(0)  # 0: torch's default stays
        assert torch.get_num_threads() == before
        LocalEngine(1)
        assert torch.get_num_threads() == 1
        with pytest.raises(ValueError, match="engine.threads"):
            set_torch_threads(-1)
    finally:
        torch.set_num_threads(before)
