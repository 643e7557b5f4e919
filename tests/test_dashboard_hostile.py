"""The dashboard on damaged result trees: a short message naming the file, never a traceback,
and the rest of the page still works (issue 11, item 5). A small tree written here, no pipeline run."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Callable

import numpy as np
import pytest

import streamlit  # noqa: F401 - a dependency: missing is a failure, not a skip
from PIL import Image  # noqa: E402
from streamlit.testing.v1 import AppTest  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
APP = str(REPO / "dashboard" / "app.py")
EXP, IMAGE = "denoise_s25", "astronaut"
RUN = Path("results") / EXP / IMAGE / "seed_0"
PAGES = ("overview", "curves", "gallery", "compare")


def png(path: Path, seed: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.random.default_rng(seed).integers(0, 256, (16, 16), dtype=np.uint8)).save(path)


def tree(root: Path) -> Path:
    """One finished denoising run with its corrupted inputs (the layout of docs/LAYOUT.md)."""
    case = root / "data" / "corrupted" / EXP / IMAGE
    png(case / "ground_truth.png", 0)
    png(case / "observation.png", 1)
    (case / "meta.json").write_text(json.dumps({"experiment": EXP, "task": "denoise", "image": IMAGE, "sigma": 25 / 255}))
    run = root / RUN
    png(run / "restored.png", 2)
    png(run / "snapshots" / "iter_00000.png", 3)
    (run / "curve.csv").write_text("iteration,loss,psnr_obs,psnr_gt\n0,0.5,3.0,4.0\n5,0.1,10.0,20.0\n")
    (run / "run.json").write_text(json.dumps({
        "task": "denoise", "seed": 0, "device": "cpu", "wall_seconds": 1.5, "iterations_run": 5, "early_stop_iteration": None,
        "estimate": "final", "profile": "smoke", "metrics": {"input": {"psnr": 20.0, "ssim": 0.5}, "restored": {"psnr": 25.0, "ssim": 0.8}}}))
    return root


def edit_run(change: Callable[[dict], object]) -> Callable[[Path], None]:
    def apply(root: Path) -> None:
        path = root / RUN / "run.json"
        record = json.loads(path.read_text())
        path.write_text(json.dumps(change(record)))
    return apply


DAMAGE = {
    "garbage restored.png": (lambda root: (root / RUN / "restored.png").write_bytes(b"\x89PNG not really"), "restored.png"),
    "run.json is a list": (edit_run(lambda r: [r]), "run.json"),
    "metrics is a string": (edit_run(lambda r: {**r, "metrics": "oops"}), "run.json"),
    "wall_seconds is null": (edit_run(lambda r: {**r, "wall_seconds": None}), None),
    "run.json is not JSON": (lambda root: (root / RUN / "run.json").write_text("{oops"), "run.json"),
    "psnr is text": (edit_run(lambda r: {**r, "metrics": {"restored": {"psnr": "high", "ssim": 0.8}}}), None),
}


def messages(at: AppTest) -> str:
    return "\n".join(str(e.value) for kind in ("warning", "error", "info") for e in getattr(at, kind))


def check(at: AppTest, page: str) -> None:
    assert not at.exception, (page, [e.message for e in at.exception])
    assert not [e.value for e in at.error if "could not be shown" in str(e.value)], page  # handled by the readers, not the last resort


@pytest.mark.parametrize("damage", list(DAMAGE))
def test_damaged_file_gives_a_message_not_a_traceback(damage: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = tree(tmp_path)
    make, named = DAMAGE[damage]
    make(root)
    monkeypatch.setenv("DIP_RESULTS", str(root))
    at = AppTest.from_file(APP, default_timeout=60).run()
    check(at, "overview")
    seen = messages(at)
    for page in PAGES[1:]:
        at.switch_page(f"views/{page}.py").run()
        check(at, page)
        seen += messages(at)
        if page == "gallery":  # the rest of the page still works
            captions = [img.proto.imgs[0].caption for img in at.image]
            assert {"corrupted input", "ground truth", "iteration 0 · 4.00 dB"} <= set(captions), captions
    if named:
        assert f"{RUN.as_posix()}/{named}" in seen, seen


def test_a_sidebar_root_with_an_unknown_user(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DIP_RESULTS", str(tree(tmp_path)))
    at = AppTest.from_file(APP, default_timeout=60).run()
    at.text_input(key="results_root").set_value("~nosuchuser-dip-test/x").run()
    for page in PAGES:
        at.switch_page(f"views/{page}.py").run()
        check(at, page)
        assert "`~nosuchuser-dip-test/x` does not exist" in messages(at)


def test_readers_check_their_input(tmp_path: Path) -> None:
    from dashboard import imaging, load

    root = tree(tmp_path)
    (root / RUN / "run.json").write_text(json.dumps({"metrics": {"restored": "x", "input": {"psnr": True}}, "wall_seconds": "1", "device": 3}))
    record, problems = load.run_record(root / RUN)
    assert record["metrics"] == {"input": {"psnr": None, "ssim": None}} and record["wall_seconds"] is None and record["device"] is None
    assert len(problems) == 3 and "wall_seconds is '1', not a number" in problems
    assert imaging.load_image(root / RUN / "nope.png") == "missing"
    assert load.expand_root("~nosuchuser-dip-test") == Path("~nosuchuser-dip-test")
    assert load.resolve_root(["--results", "~nosuchuser-dip-test"]) == Path("~nosuchuser-dip-test").resolve()
    assert load.number(float("nan")) is None and load.number(2) == 2.0


# --- a results folder from a stranger: names are text, links stay inside -----------------------

HOSTILE = '<img src=x onerror="parent.document.title=1">'


class Tags:
    """Every start tag of an HTML text with its attributes (values unescaped), and its text."""

    def __init__(self, text: str) -> None:
        from html.parser import HTMLParser

        self.tags: list[tuple[str, dict[str, str]]] = []
        self.data: list[str] = []
        self.scripts: list[str] = []
        outer = self

        class Parser(HTMLParser):
            in_script = False

            def handle_starttag(self, tag: str, attrs: list) -> None:
                outer.tags.append((tag, {k: v or "" for k, v in attrs}))
                self.in_script = tag == "script"

            def handle_endtag(self, tag: str) -> None:
                self.in_script = False

            def handle_data(self, data: str) -> None:
                (outer.scripts if self.in_script else outer.data).append(data)

        Parser().feed(text)

    def named(self, tag: str) -> list[dict[str, str]]:
        return [attrs for t, attrs in self.tags if t == tag]


def check_slider(page: str, labels: tuple[str, str]) -> None:
    """The slider's page: the labels are text; nothing in it runs but its own script, inside a frame
    sandboxed to scripts alone (no access to the dashboard's page)."""
    import base64
    import hashlib

    outer = Tags(page)
    assert [t for t, _ in outer.tags] == ["html", "body", "iframe"] and not outer.scripts
    (frame,) = outer.named("iframe")
    assert frame["sandbox"] == "allow-scripts"  # not allow-same-origin: the frame cannot reach its parent
    inner = Tags(frame["srcdoc"])
    assert sorted(t for t, _ in inner.tags) == sorted(["html", "head", "meta", "meta", "body", "div", "img", "img", "div", "span", "span", "input", "script"])
    assert not [k for _, attrs in inner.tags for k in attrs if k.startswith("on")]
    assert set(labels) <= {d.strip() for d in inner.data}
    (script,) = inner.scripts
    csp = [m["content"] for m in inner.named("meta") if m.get("http-equiv") == "Content-Security-Policy"][0]
    assert f"script-src 'sha256-{base64.b64encode(hashlib.sha256(script.encode()).digest()).decode()}'" in csp and "unsafe-inline' ;" not in csp
    assert "default-src 'none'" in csp and "script-src 'unsafe" not in csp


def test_slider_labels_are_text_not_markup() -> None:
    from dashboard.imaging import encode_png, slider_html

    raw = encode_png(np.zeros((4, 4), np.uint8))
    check_slider(slider_html(raw, raw, HOSTILE, "</script><script>alert(1)</script>", 4, 4, 1), (HOSTILE, "</script><script>alert(1)</script>"))


def test_compare_page_with_a_hostile_file_name(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = tree(tmp_path)
    png(root / "baselines" / EXP / IMAGE / f"{HOSTILE}.png", 5)
    monkeypatch.setenv("DIP_RESULTS", str(root))
    at = AppTest.from_file(APP, default_timeout=60).run()
    at.switch_page("views/compare.py").run()
    at.selectbox(key="compare_b").set_value(HOSTILE).run()
    check(at, "compare")
    (frame,) = [e for e in at.main if type(e).__name__ == "UnknownElement" and e.type == "iframe"]
    check_slider(frame.proto.srcdoc, ("corrupted input", HOSTILE))


def test_links_to_files_outside_the_results_folder_are_not_shown(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from dashboard import load

    root = tree(tmp_path / "results-root")
    secret = tmp_path / "secret.png"  # any file of the machine: here an image, so that showing it would work
    png(secret, 9)
    (root / RUN / "restored.png").unlink()
    (root / RUN / "restored.png").symlink_to(secret)
    (root / RUN / "snapshots" / "iter_00000.png").unlink()
    (root / RUN / "snapshots").rmdir()
    (root / RUN / "snapshots").symlink_to(tmp_path)  # a linked folder: its files lie outside too
    (tmp_path / "iter_00000.png").symlink_to(secret)
    inside = root / "data" / "corrupted" / EXP / IMAGE / "observation.png"
    assert load.contained(root, inside) and not load.contained(root, root / RUN / "restored.png")
    assert not load.contained(root, root / RUN / "snapshots" / "iter_00000.png")
    from dashboard import imaging

    read: list[Path] = []
    original = imaging.load_image
    monkeypatch.setattr(imaging, "load_image", lambda path: (read.append(Path(path).resolve()), original(path))[1])
    monkeypatch.setenv("DIP_RESULTS", str(root))
    at = AppTest.from_file(APP, default_timeout=60).run()
    for page in ("gallery", "compare"):
        at.switch_page(f"views/{page}.py").run()
        check(at, page)
        assert at.image and "outside the results folder" in messages(at), (page, messages(at))
    assert read and secret.resolve() not in read  # never even read
    assert "DIP" not in at.selectbox(key="compare_b").options
