"""End to end in a real headless browser: Debian's chromium driven by Playwright.

Starts ``streamlit run dashboard/app.py`` on a free 127.0.0.1 port over the ``smoke`` profile's
output (the session's ``smoke_outputs``; ``DIP_SCREENSHOT_RESULTS=DIR``: a workspace of yours
instead, e.g. the ``quick`` profile's after ``dvc repro``), opens it, switches page, picks an
experiment and an image and saves screenshots. Set ``DIP_SCREENSHOTS=docs`` to (re)write the
README's ``docs/dashboard-overview.png`` and ``docs/dashboard-gallery.png``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from streamlit_server import BROWSER, CHROMIUM, ROOT, shrink, streamlit

pytestmark = BROWSER


@pytest.fixture
def results(smoke_outputs: Path) -> Path:
    """The results root shown: the smoke profile's output, or ``$DIP_SCREENSHOT_RESULTS``."""
    given = os.environ.get("DIP_SCREENSHOT_RESULTS")
    return Path(given).resolve() if given else smoke_outputs


@pytest.fixture
def server(results: Path):
    with streamlit(results) as url:  # read only: the app writes nothing
        yield url


def test_browser_overview_then_gallery(server: str, results: Path, tmp_path: Path) -> None:
    exp = "inpaint_p50"
    (image,) = json.loads((results / "results" / exp / "experiment.json").read_text())["images"][:1]
    from playwright import sync_api  # the dev extra: missing is a failure, not a skip
    out = ROOT / "docs" if os.environ.get("DIP_SCREENSHOTS") == "docs" else tmp_path
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=["--no-sandbox", "--disable-dev-shm-usage"])
        try:
            page = browser.new_page(viewport={"width": 1200, "height": 860})
            page.goto(server, wait_until="domcontentloaded")
            page.get_by_role("heading", name="Overview").wait_for(timeout=60_000)
            page.get_by_text("NOT the paper's setting").first.wait_for(timeout=30_000)
            page.locator("[data-testid='stDataFrame']").first.wait_for(timeout=30_000)
            page.wait_for_timeout(1500)
            page.screenshot(path=str(out / "dashboard-overview.png"))

            page.get_by_role("link", name="Gallery").click()
            page.get_by_role("heading", name="Gallery").wait_for(timeout=30_000)
            page.locator("[data-testid='stSelectbox']").filter(has_text="Experiment").click()
            page.get_by_role("option", name=exp).click()
            page.get_by_text("inpaint · ").first.wait_for(timeout=30_000)
            page.locator("[data-testid='stSelectbox']").filter(has_text="Image").click()
            page.get_by_role("option", name=image).click()
            page.get_by_text(f"{image} (embedded)").wait_for(timeout=30_000)
            page.get_by_text("iteration 0").first.wait_for(timeout=30_000)
            page.wait_for_function("() => [...document.images].filter(i => i.src.includes('/media/')).every(i => i.complete && i.naturalWidth > 0)", timeout=30_000)
            assert page.locator("img[src*='/media/']").count() >= 5  # input, truth, DIP and snapshots
            page.wait_for_timeout(800)
            page.screenshot(path=str(out / "dashboard-gallery.png"))
        finally:
            browser.close()
    for name in ("dashboard-overview.png", "dashboard-gallery.png"):
        assert (out / name).stat().st_size > 10_000
        shrink(out / name)
