"""`dip dashboard` stops its Streamlit server when it is stopped (issue 11, item 6): a real
server on 127.0.0.1, bounded in time."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from streamlit_server import free_port, healthy

import streamlit  # noqa: F401 - a dependency: missing is a failure, not a skip

REPO = Path(__file__).resolve().parents[1]


def children(pid: int) -> list[int]:
    out = []
    for task in Path(f"/proc/{pid}/task").glob("*/children"):
        out += [int(c) for c in task.read_text().split()]
    return out


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


@pytest.mark.integration  # a real server process
@pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="needs Linux /proc")
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_to_dip_dashboard_stops_the_server(sig: int, tmp_path: Path) -> None:
    port = free_port()
    env = dict(os.environ, PYTHONPATH=str(REPO))
    dip = subprocess.Popen([sys.executable, "-m", "pipeline.cli", "dashboard", "--results", str(tmp_path), "--port", str(port)],
                           cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    server: list[int] = []
    try:
        deadline = time.monotonic() + 90
        while not healthy(f"http://127.0.0.1:{port}"):
            assert dip.poll() is None and time.monotonic() < deadline, "the dashboard did not start"
            time.sleep(0.5)
        server = children(dip.pid)
        assert server, "no server process under dip dashboard"
        dip.send_signal(sig)
        code = dip.wait(timeout=30)
        deadline = time.monotonic() + 10
        while any(alive(p) for p in server) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not any(alive(p) for p in server), "the Streamlit server outlived dip dashboard"
        assert not healthy(f"http://127.0.0.1:{port}") and code == 0
    finally:
        if dip.poll() is None:
            dip.kill()
            dip.wait()
        for pid in server:
            if alive(pid):
                os.kill(pid, signal.SIGKILL)


def test_dashboard_passes_its_settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The settings hold wherever it is started (.streamlit/config.toml is read only from the
    working directory): passed as flags and as environment variables."""
    from typer.testing import CliRunner

    from pipeline import cli
    from pipeline.execution import server

    calls: list[tuple[list[str], dict]] = []
    monkeypatch.setattr(server, "run_server", lambda cmd, env: calls.append((cmd, env)) or 0)
    result = CliRunner().invoke(cli.app, ["dashboard", "--results", str(tmp_path), "--port", "8765"])
    assert result.exit_code == 0, result.output
    cmd, env = calls[0]
    flag = lambda name: cmd[cmd.index(f"--{name}") + 1]  # noqa: E731
    assert flag("server.address") == "127.0.0.1" and flag("server.port") == "8765" and flag("server.headless") == "true"
    assert flag("browser.gatherUsageStats") == "false" and env["STREAMLIT_BROWSER_GATHER_USAGE_STATS"] == "false"
    assert flag("client.showErrorDetails") == "none" and env["STREAMLIT_CLIENT_SHOW_ERROR_DETAILS"] == "none"
    assert env["STREAMLIT_SERVER_ADDRESS"] == "127.0.0.1"
    assert cmd[-2:] == ["--results", str(tmp_path.resolve())] and cmd[cmd.index("run") + 1].endswith("dashboard/app.py")
