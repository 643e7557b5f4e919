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
from streamlit_server import BROWSER, ROOT, browser_page, shrink, streamlit

pytestmark = BROWSER


def open_overview(page, url: str) -> None:  # noqa: ANN001
    """Open the dashboard at ``url`` and wait for its first page."""
    page.goto(url, wait_until="domcontentloaded")
    page.get_by_role("heading", name="Overview").wait_for(timeout=60_000)


def go_to(page, name: str) -> None:  # noqa: ANN001
    """Follow the navigation link ``name`` and wait for that page's heading."""
    page.get_by_role("link", name=name).click()
    page.get_by_role("heading", name=name).wait_for(timeout=30_000)


def choose(page, box: str, option: str) -> None:  # noqa: ANN001
    """Pick ``option`` in the select box labelled ``box``."""
    page.locator("[data-testid='stSelectbox']").filter(has_text=box).click()
    page.get_by_role("option", name=option).click()


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
    out = ROOT / "docs" if os.environ.get("DIP_SCREENSHOTS") == "docs" else tmp_path
    with browser_page(viewport={"width": 1200, "height": 860}) as page:
        open_overview(page, server)
        page.get_by_text("NOT the paper's setting").first.wait_for(timeout=30_000)
        page.locator("[data-testid='stDataFrame']").first.wait_for(timeout=30_000)
        page.wait_for_timeout(1500)
        page.screenshot(path=str(out / "dashboard-overview.png"))

        go_to(page, "Gallery")
        choose(page, "Experiment", exp)
        page.get_by_text("inpaint · ").first.wait_for(timeout=30_000)
        choose(page, "Image", image)
        page.get_by_text(f"{image} (embedded)").wait_for(timeout=30_000)
        page.get_by_text("iteration 0").first.wait_for(timeout=30_000)
        page.wait_for_function("() => [...document.images].filter(i => i.src.includes('/media/')).every(i => i.complete && i.naturalWidth > 0)", timeout=30_000)
        assert page.locator("img[src*='/media/']").count() >= 5  # input, truth, DIP and snapshots
        page.wait_for_timeout(800)
        page.screenshot(path=str(out / "dashboard-gallery.png"))
    for name in ("dashboard-overview.png", "dashboard-gallery.png"):
        assert (out / name).stat().st_size > 10_000
        shrink(out / name)


def test_a_fresh_clone_opens_the_published_quick_bundle(tmp_path: Path) -> None:
    """No `dvc repro` first: the dashboard opens results-published/quick-cpu, says so, and shows
    the spread over seeds on Overview, the band on Curves and the seed choice in the Gallery.
    ``DIP_SCREENSHOTS=docs`` rewrites docs/dashboard-quick-*.png."""
    from dashboard.load import has_outputs

    if any(has_outputs(ROOT).values()):
        pytest.skip("this checkout has results of its own, which the dashboard opens first (a fresh clone has none)")

    out = ROOT / "docs" if os.environ.get("DIP_SCREENSHOTS") == "docs" else tmp_path
    with streamlit(None) as url, browser_page(viewport={"width": 1200, "height": 900}) as page:
        open_overview(page, url)
        page.get_by_text("Showing the published bundle").first.wait_for(timeout=30_000)
        assert page.get_by_text("quick-cpu").count() >= 1
        page.get_by_text("3 seeds").first.wait_for(timeout=30_000)
        page.locator("[data-testid='stDataFrame']").first.wait_for(timeout=30_000)
        page.wait_for_timeout(1500)
        page.screenshot(path=str(out / "dashboard-quick-overview.png"))

        go_to(page, "Curves")
        page.get_by_text("band over seeds").first.wait_for(timeout=30_000)
        page.locator("[data-testid='stVegaLiteChart']").first.wait_for(timeout=30_000)
        page.wait_for_timeout(1500)
        page.screenshot(path=str(out / "dashboard-quick-curves.png"))

        go_to(page, "Gallery")
        seed = page.locator("[data-testid='stSelectbox']").filter(has_text="Seed")
        seed.wait_for(timeout=30_000)
        seed.click()
        page.get_by_role("option", name="2").click()
        page.get_by_text("seed 2 of 3").first.wait_for(timeout=30_000)
    for name in ("dashboard-quick-overview.png", "dashboard-quick-curves.png"):
        assert (out / name).stat().st_size > 10_000
        shrink(out / name)


HOSTILE = "![x](http://evil.example/p.png) [link](http://evil.example/) <img src=http://evil.example/i.png> www.evil.example"


def test_hostile_strings_make_the_browser_fetch_nothing_from_another_host(smoke_outputs: Path, tmp_path: Path) -> None:
    """Markdown and HTML in files the dashboard shows (metrics/report.md, a run.json's device and
    preset, a case's meta.json source) are shown as text: the browser requests nothing from a host
    other than the dashboard's own, on the Overview (its report expander opened) and the Gallery."""
    import shutil
    from urllib.parse import urlsplit

    root = tmp_path / "root"
    shutil.copytree(smoke_outputs, root, symlinks=True)
    report = root / "metrics" / "report.md"
    report.write_text(report.read_text() + f"\n\n{HOSTILE}\n")
    exp = "inpaint_p50"
    (image,) = json.loads((root / "results" / exp / "experiment.json").read_text())["images"][:1]
    run = root / "results" / exp / image / "seed_0" / "run.json"
    run.write_text(json.dumps({**json.loads(run.read_text()), "device": HOSTILE, "preset": HOSTILE}))
    meta = root / "data" / "corrupted" / exp / image / "meta.json"
    meta.write_text(json.dumps({**json.loads(meta.read_text()), "source": HOSTILE}))
    requested: list[str] = []
    with streamlit(root) as url, browser_page(viewport={"width": 1200, "height": 900}) as page:
        page.on("request", lambda r: requested.append(r.url))
        open_overview(page, url)
        page.locator("[data-testid='stDataFrame']").first.wait_for(timeout=30_000)
        for expander in page.locator("[data-testid='stExpander'] summary").all():
            expander.click()
        page.get_by_text("evil.example").first.wait_for(timeout=30_000)  # the hostile text is there, as text
        page.wait_for_timeout(1500)
        go_to(page, "Gallery")
        choose(page, "Experiment", exp)
        page.get_by_text("iteration 0").first.wait_for(timeout=30_000)
        page.wait_for_timeout(1500)
    own = urlsplit(url).netloc
    elsewhere = {u for u in requested if urlsplit(u).scheme in ("http", "https", "ws", "wss") and urlsplit(u).netloc != own}
    # nothing leaves the dashboard's own host: not the hostile links, not a favicon (an emoji is a data: URL)
    assert requested and not elsewhere, sorted(elsewhere)
    assert not [u for u in requested if "evil.example" in u]
