"""Run a long-lived server (the Streamlit dashboard) as a child that dies with its parent.

``subprocess.call`` left the server running when ``dip dashboard`` got SIGTERM (from a process
manager, ``kill``, ``timeout``): Python's default SIGTERM action ends only the parent. Here the
server runs in its own process group; SIGTERM and SIGINT are forwarded to that group and the
parent waits for it, killing the group if it has not stopped within ``grace`` seconds.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from typing import Mapping, Sequence

FORWARDED = (signal.SIGTERM, signal.SIGINT)


def _signal_group(pid: int, sig: int) -> None:
    try:
        os.killpg(pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def run_server(cmd: Sequence[str], env: Mapping[str, str] | None = None, grace: float = 10.0) -> int:
    """Run ``cmd`` until it exits or this process gets SIGTERM/SIGINT (forwarded to the child's
    process group). Returns the child's exit code, or 0 when it stopped because it was asked to."""
    proc = subprocess.Popen(list(cmd), env=dict(env) if env is not None else None, start_new_session=True)
    asked: list[float] = []

    def forward(signum: int, _frame: object) -> None:
        asked.append(time.monotonic())
        _signal_group(proc.pid, signum)

    previous = {sig: signal.signal(sig, forward) for sig in FORWARDED}
    try:
        while proc.poll() is None:
            if asked and time.monotonic() - asked[0] > grace:
                _signal_group(proc.pid, signal.SIGKILL)
            try:
                proc.wait(timeout=0.2)
            except subprocess.TimeoutExpired:
                pass
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        if proc.poll() is None:  # this process is failing: never leave the server behind
            _signal_group(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                _signal_group(proc.pid, signal.SIGKILL)
                proc.wait()
    return 0 if asked and proc.returncode in (0, *(-s for s in FORWARDED)) else proc.returncode
