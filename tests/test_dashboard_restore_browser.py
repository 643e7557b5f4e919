"""The Restore page end to end in a real headless browser (Debian's chromium driven by Playwright):
upload a small noisy image and its ground truth, choose the ``smoke`` preset, wait for the
estimate, start the fit, see its progress change, and download the restored PNG.

The server, its background worker and the fit are real processes (``streamlit run``, ``python -m
dashboard.worker``, ``python -m pipeline.cli restore``). Set ``DIP_SCREENSHOTS=docs`` to (re)write
``docs/dashboard-restore.png``, the page while the fit runs.
"""

from __future__ import annotations

import io
import os
import re
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from streamlit_server import BROWSER, CHROMIUM, ROOT, shrink, streamlit

FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update", "--disable-sync"]
ITERATIONS = 600

pytestmark = BROWSER


@pytest.fixture
def server(tmp_path: Path):
    """The app over an empty results root; the worker it starts is stopped with it."""
    root = tmp_path / "root"
    root.mkdir()
    env = dict(os.environ)
    env.pop("DIP_USER_RUNS", None)  # the default: <results root>/user-runs
    with streamlit(root, "--server.maxUploadSize", "50", env=env) as url:
        yield url, root


def images(folder: Path) -> tuple[Path, Path]:
    """scikit-image's astronaut at 64×64 and a noisy copy (σ = 25/255, seeded)."""
    from skimage import data, transform

    clean = transform.resize(data.astronaut()[:300, 100:400], (64, 64), anti_aliasing=True)
    dirty = np.clip(clean + np.random.default_rng(0).normal(0, 25 / 255, clean.shape), 0, 1)
    paths = folder / "astronaut.png", folder / "astronaut_noisy.png"
    for path, pixels in zip(paths, (clean, dirty)):
        Image.fromarray((pixels * 255).round().astype(np.uint8)).save(path)
    return paths


def test_browser_restore_upload_watch_download(server, tmp_path: Path) -> None:
    url, root = server
    clean, dirty = images(tmp_path)
    shots = ROOT / "docs" if os.environ.get("DIP_SCREENSHOTS") == "docs" else tmp_path
    from playwright import sync_api  # the dev extra: missing is a failure, not a skip
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=FLAGS)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 1900}, accept_downloads=True)
            page.goto(url, wait_until="domcontentloaded")
            page.get_by_role("link", name="Restore").click()
            page.get_by_role("heading", name="Restore your image").wait_for(timeout=60_000)
            page.get_by_text("No fit is running").wait_for(timeout=30_000)

            page.locator("[data-testid='stSelectbox']").filter(has_text="Preset").click()
            page.get_by_role("option", name="smoke").click()
            one_field = "(v) => { const e = [...document.querySelectorAll(\"input[aria-label='Iterations']\")]; return e.length === 1 && e[0].value === v; }"
            page.wait_for_function(one_field, arg="20", timeout=30_000)  # the smoke preset's, once the page has rerun (no stale field left)
            iterations = page.get_by_label("Iterations", exact=True).and_(page.locator("input"))
            uploader = page.locator("[data-testid='stFileUploader']")
            uploader.filter(has_text="Image to restore").locator("input[type='file']").set_input_files(str(dirty))
            page.get_by_text("your image · 64×64").wait_for(timeout=60_000)
            uploader.filter(has_text="Ground truth").locator("input[type='file']").set_input_files(str(clean))
            page.get_by_text("astronaut.png", exact=True).wait_for(timeout=60_000)
            iterations.fill(str(ITERATIONS))
            iterations.press("Enter")
            page.get_by_text(re.compile(rf"Estimated time on this machine: .* × {ITERATIONS} iterations")).wait_for(timeout=180_000)

            page.get_by_role("button", name="Start").click()
            page.get_by_role("heading", name="Running: astronaut_noisy.png").wait_for(timeout=120_000)
            running = page.get_by_role("heading", name="Running: astronaut_noisy.png")
            seen: list[int] = []
            deadline = time.monotonic() + 180
            while time.monotonic() < deadline:  # the progress changes while we watch (the screenshot: half-way)
                for text in page.get_by_text(re.compile(rf"^iteration [\d,]+ of {ITERATIONS}$")).all_inner_texts():
                    seen.append(int(text.split()[1].replace(",", "")))
                if len(set(seen)) >= 2 and (max(seen) >= ITERATIONS // 2 or not running.is_visible()):
                    break
                page.wait_for_timeout(250)
            assert len(set(seen)) >= 2 and sorted(seen) == seen, seen
            page.get_by_text("PSNR vs ground truth").first.wait_for(timeout=30_000)
            page.wait_for_function("() => [...document.images].filter(i => i.src.includes('/media/')).every(i => i.complete && i.naturalWidth > 0)", timeout=30_000)
            page.screenshot(path=str(shots / "dashboard-restore.png"))

            page.get_by_role("heading", name="Your restorations (1)").wait_for(timeout=300_000)
            with page.expect_download(timeout=60_000) as download:
                page.get_by_role("button", name="Download restored.png").click()
            data, name = Path(download.value.path()).read_bytes(), download.value.suggested_filename
        finally:
            browser.close()
    assert name.endswith("-restored.png") and data.startswith(b"\x89PNG")
    with Image.open(io.BytesIO(data)) as im:
        assert im.size == (64, 64)
    (result,) = [p for p in (root / "user-runs").iterdir() if not p.name.startswith(".")]
    assert (result / "restored.png").read_bytes() == data and (result / "run.json").is_file()
    assert (shots / "dashboard-restore.png").stat().st_size > 10_000
    shrink(shots / "dashboard-restore.png")
