"""What the dashboard's process tests share: a free port, a real ``streamlit run`` of
``dashboard/app.py`` on 127.0.0.1, Debian's chromium for Playwright, small screenshots."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Iterator

import pytest

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = shutil.which("chromium") or ("/usr/bin/chromium" if Path("/usr/bin/chromium").exists() else None)
BROWSER = [  # the marks of a test driving a real browser
    pytest.mark.integration,
    pytest.mark.browser,
    # skipped on a machine without Debian's chromium, but never in CI, where scripts/test.sh installs it
    pytest.mark.skipif(CHROMIUM is None and not os.environ.get("CI"), reason="Debian's chromium is not installed (apt-get install chromium)"),
]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as r:
            return r.status == 200
    except OSError:
        return False


@contextlib.contextmanager
def streamlit(results: Path | None, *args: str, env: dict[str, str] | None = None) -> Iterator[str]:
    """``streamlit run dashboard/app.py`` over ``results`` (``DIP_RESULTS``; ``None``: what the
    dashboard opens by itself), in its own process group (a worker it starts is stopped with it);
    yields its URL once healthy (60 s at most)."""
    port = free_port()
    env = dict(env if env is not None else os.environ, STREAMLIT_BROWSER_GATHER_USAGE_STATS="false")
    env.pop("DIP_RESULTS", None)
    if results is not None:
        env["DIP_RESULTS"] = str(results)
    cmd = [sys.executable, "-m", "streamlit", "run", str(ROOT / "dashboard" / "app.py"), "--server.address", "127.0.0.1",
           "--server.port", str(port), "--server.headless", "true", "--browser.gatherUsageStats", "false", *args]
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 60
        while not healthy(url):
            if proc.poll() is not None or time.time() > deadline:
                out = proc.stdout.read().decode(errors="replace") if proc.stdout else ""
                pytest.fail(f"streamlit did not start:\n{out}")
            time.sleep(0.3)
        yield url
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


@contextlib.contextmanager
def browser_page(**options) -> Iterator["object"]:
    """A page of Debian's chromium, headless, driven by Playwright (``options``: ``new_page``'s)."""
    from playwright import sync_api  # the dev extra: missing is a failure, not a skip

    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=["--no-sandbox", "--disable-dev-shm-usage"])
        try:
            yield browser.new_page(**options)
        finally:
            browser.close()


def shrink(path: Path) -> None:
    """Keep committed screenshots small: a 256-colour palette PNG."""
    from PIL import Image

    with Image.open(path) as im:
        im.convert("RGB").quantize(colors=256, method=Image.Quantize.MEDIANCUT).save(path, optimize=True)
