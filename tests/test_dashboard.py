"""The dashboard's pages through ``streamlit.testing.v1.AppTest`` on a tiny real results tree."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pandas as pd
import pytest

pytest.importorskip("streamlit")
from streamlit.testing.v1 import AppTest  # noqa: E402

from tests.dashboard_fixture import EXPERIMENTS, IMAGES, SNAPSHOTS, build  # noqa: E402

APP = str(Path(__file__).resolve().parents[1] / "dashboard" / "app.py")
PAGES = ("overview", "curves", "gallery", "compare", "ablations")

# Real output of `dvc exp show --json` (DVC 3.x) for a workspace with one experiment.
EXP_SHOW = [
    {"rev": "workspace", "name": None, "error": None, "experiments": None,
     "data": {"rev": "workspace", "timestamp": None, "params": {"params.yaml": {"data": {"net": {"downsample": "max", "width": 8}}}},
              "metrics": {"metrics/summary.json": {"data": {"inpaint_p50": {"dip": {"psnr": 21.0}}}}}, "deps": {}, "outs": {}, "meta": {}}},
    {"rev": "39397284b70e3f3971caceeeb5e399796f3e2103", "name": "main", "error": None,
     "data": {"rev": "39397284b70e3f3971caceeeb5e399796f3e2103", "timestamp": "2026-11-25T20:28:14",
              "params": {"params.yaml": {"data": {"net": {"downsample": "stride", "width": 8}}}},
              "metrics": {"metrics/summary.json": {"data": {"inpaint_p50": {"dip": {"psnr": 20.0}}}}}, "deps": {}, "outs": {}, "meta": {}},
     "experiments": [{"revs": [{"rev": "ed66886a9bd829e24bcc8aaa6a0e54732c37ab25", "name": "maxpool", "error": None, "experiments": None,
                                "data": {"rev": "ed66886a9bd829e24bcc8aaa6a0e54732c37ab25", "timestamp": "2026-11-25T20:28:19",
                                         "params": {"params.yaml": {"data": {"net": {"downsample": "max", "width": 8}}}},
                                         "metrics": {"metrics/summary.json": {"data": {"inpaint_p50": {"dip": {"psnr": 21.0}}}}}, "deps": {}, "outs": {}, "meta": {}}}],
                      "executor": None, "name": "maxpool"}]},
]


@pytest.fixture(scope="session")
def results_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build(tmp_path_factory.mktemp("dashboard") / "root")


@pytest.fixture(scope="session")
def partial_root(results_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A pipeline stopped before evaluate: results/ and data/ but no metrics/ and no baselines/."""
    root = tmp_path_factory.mktemp("partial") / "root"
    shutil.copytree(results_root, root)
    shutil.rmtree(root / "metrics")
    shutil.rmtree(root / "baselines")
    return root


def open_app(root: Path, monkeypatch: pytest.MonkeyPatch, page: str = "overview") -> AppTest:
    monkeypatch.setenv("DIP_RESULTS", str(root))
    at = AppTest.from_file(APP, default_timeout=60).run()
    if page != "overview":
        at.switch_page(f"views/{page}.py").run()
    assert not at.exception, [e.message for e in at.exception]
    return at


def charts(at: AppTest) -> list[dict]:
    return [json.loads(c.proto.spec) for c in at.get("vega_lite_chart")]


def texts(at: AppTest) -> str:
    parts = [e.value for kind in ("markdown", "caption", "info", "warning", "title", "subheader") for e in getattr(at, kind)]
    return "\n".join(str(p) for p in parts)


# ------------------------------------------------------------------------------------ overview
def test_overview_tables_badge_and_no_delta_for_smoke(results_root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    at = open_app(results_root, monkeypatch)
    tables = [d.value for d in at.dataframe]
    exp_tables = tables[: len(EXPERIMENTS)]
    assert [s.value.split(" ·")[0] for s in at.subheader] == sorted(EXPERIMENTS)
    for table in exp_tables:
        assert {"input", "dip"} <= set(table.columns)
        assert "mean" in table.index and set(IMAGES) <= set(table.index)
        assert not [c for c in table.columns if c.startswith("Δ")]  # smoke is not the paper's setting
    denoise = exp_tables[sorted(EXPERIMENTS).index("denoise_s25")]
    assert {"tv", "nlm", "paper: dip_one_run_averaged", "paper: cbm3d"} <= set(denoise.columns)  # data/paper.yaml
    assert denoise.loc["mean", "paper: dip_one_run_averaged"] == pytest.approx(30.43)
    assert denoise.loc["mean", "dip"] == pytest.approx(denoise.loc[list(IMAGES), "dip"].mean())
    assert "NOT the paper's setting" in texts(at) and "smoke" in texts(at)
    assert any("not** the paper's setting" in w.value for w in at.warning)


def test_overview_widgets_change_the_table(results_root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    at = open_app(results_root, monkeypatch)
    psnr = at.dataframe[0].value
    at.radio(key="overview_metric").set_value("SSIM").run()
    ssim = at.dataframe[0].value
    assert (psnr["dip"] > 1).all() and (ssim["dip"] <= 1).all()
    at.radio(key="overview_metric").set_value("PSNR (dB)").run()
    at.toggle(key="force_delta").set_value(True).run()
    inpaint = at.dataframe[sorted(EXPERIMENTS).index("inpaint_p50")].value
    assert inpaint.loc["cameraman", "Δ dip"] == pytest.approx(inpaint.loc["cameraman", "dip"] - 29.8)
    assert "Δ shown on request" in texts(at)


def test_overview_of_a_paper_run_shows_delta(results_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = tmp_path / "paper"
    shutil.copytree(results_root, root)
    (root / "data" / "profile.json").write_text(json.dumps({"profile": "paper", "device": "cuda", "device_name": "GPU"}))
    at = open_app(root, monkeypatch)
    tables = [d.value for d in at.dataframe]
    assert any("Δ dip" in t.columns for t in tables)
    assert any("Δ dip − paper dip_one_run_averaged" in t.columns for t in tables)
    assert "profile: paper" in texts(at) and not at.warning


def test_partial_run_shows_what_exists(partial_root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    at = open_app(partial_root, monkeypatch)
    assert any("per_image.csv` is not written yet" in i.value for i in at.info)
    table = at.dataframe[0].value
    assert {"input", "dip"} == {c for c in table.columns if not c.startswith("paper")}
    for page in PAGES[1:4]:
        at.switch_page(f"views/{page}.py").run()
        assert not at.exception, (page, [e.message for e in at.exception])
    assert at.image  # compare: corrupted input vs DIP still works


@pytest.mark.parametrize("page", PAGES)
def test_empty_root_says_what_to_run(page: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    at = open_app(tmp_path, monkeypatch, page)
    assert "dvc repro" in texts(at) or "dvc exp run" in texts(at)
    assert not at.dataframe and not at.image


# -------------------------------------------------------------------------------------- curves
def test_curves_chart_with_paper_rule_and_early_stop(results_root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    at = open_app(results_root, monkeypatch, "curves")
    assert at.multiselect(key="curves_experiments").value == ["denoise_s25"]
    (spec,) = charts(at)
    marks = [layer["mark"]["type"] if isinstance(layer["mark"], dict) else layer["mark"] for layer in spec["layer"]]
    assert marks[0] == "line" and "rule" in marks and "point" in marks  # line, paper rule, early-stop diamond
    assert any("tooltip" in layer.get("encoding", {}) for layer in spec["layer"])
    datasets = at.get("vega_lite_chart")[0].proto.datasets
    assert datasets  # the data travel with the chart
    at.multiselect(key="curves_experiments").set_value(sorted(EXPERIMENTS)).run()
    at.radio(key="curves_per").set_value("experiment").run()
    assert not at.exception
    (spec2,) = charts(at)
    assert spec2 != spec
    at.selectbox(key="curves_y").set_value("loss").run()
    (spec3,) = charts(at)
    assert spec3["layer"][0]["encoding"]["y"]["scale"]["type"] == "log"


# ------------------------------------------------------------------------------------- gallery
def test_gallery_grid_and_image_choice(results_root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    at = open_app(results_root, monkeypatch, "gallery")
    captions = [img.proto.imgs[0].caption for img in at.image]
    assert captions[:3] == ["corrupted input", "ground truth", "DIP"]
    snaps = [c for c in captions if c.startswith("iteration")]
    assert snaps and snaps[0].startswith("iteration 0")
    assert all(img.proto.imgs[0].url.endswith(".png") for img in at.image)  # served as PNG, not JPEG
    first = at.main.caption[0].value
    at.selectbox(key="gallery_image").set_value(IMAGES[0]).run()
    at.selectbox(key="gallery_experiment").set_value("sr_x4").run()
    assert not at.exception and at.main.caption[0].value != first and "factor 4" in at.main.caption[0].value
    expected = [i for i in SNAPSHOTS]
    got = [int(c.split()[1]) for c in (img.proto.imgs[0].caption for img in at.image) if c.startswith("iteration")]
    assert got == expected


# ------------------------------------------------------------------------------------- compare
def test_compare_side_by_side_slider_and_crop(results_root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    at = open_app(results_root, monkeypatch, "compare")
    at.selectbox(key="compare_experiment").set_value("denoise_s25").run()
    at.selectbox(key="compare_image").set_value("cameraman").run()
    assert at.selectbox(key="compare_a").value == "corrupted input"
    assert at.selectbox(key="compare_b").value == "DIP"
    assert "inpaint_p50: DIP" in at.selectbox(key="compare_b").options  # same scene, another experiment
    assert len(at.image) == 4 and all(img.proto.imgs[0].url.endswith(".png") for img in at.image)
    assert len(at.metric) == 2
    iframe = [e for e in at.main if type(e).__name__ == "UnknownElement" and e.type in ("iframe", "html", "component_instance")]
    assert iframe
    before = at.main.caption[-1].value
    at.selectbox(key="compare_b").set_value("tv").run()
    assert at.main.caption[-1].value != before
    at.slider(key="compare_crop").set_value(8).run()
    at.select_slider(key="compare_zoom").set_value(4).run()
    assert not at.exception
    crop_caption = [img.proto.imgs[0].caption for img in at.image][-1]
    assert crop_caption == "tv · crop ×4"
    # super-resolution: the corrupted input is smaller, so no slider: a clear note instead
    at.selectbox(key="compare_experiment").set_value("sr_x4").run()
    assert not at.exception and any("differ in size" in w.value for w in at.warning)


def test_crop_and_slider_are_pixel_exact(results_root: Path) -> None:
    import base64

    import numpy as np

    from dashboard import data
    from dashboard.imaging import crop, slider_html

    path = results_root / "results" / "inpaint_p50" / "cameraman" / "seed_0" / "restored.png"
    raw = data.png_bytes(path)
    assert raw == path.read_bytes()
    img = data.decode(raw)
    z = crop(img, 10, 10, 8, 4)
    assert z.shape == (32, 32) and (z[::4, ::4] == img[6:14, 6:14]).all()
    assert (data.decode(data.encode_png(z)) == z).all()  # PNG round trip: lossless
    html = slider_html(raw, raw, "A", "B", img.shape[1], img.shape[0], 2)
    assert base64.b64encode(raw).decode() in html and "image-rendering:pixelated" in html and "jpeg" not in html.lower()


# ------------------------------------------------------------------------------------ ablations
def test_ablations_without_dvc(results_root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    at = open_app(results_root, monkeypatch, "ablations")
    assert any("not a DVC repository" in i.value for i in at.info)


def test_parse_exp_show_finds_the_changed_param() -> None:
    from dashboard.data import changed_columns, parse_exp_show

    table = parse_exp_show(EXP_SHOW)
    assert list(table["experiment"]) == ["workspace", "main", "maxpool"]
    assert list(table["kind"]) == ["workspace", "baseline", "experiment"]
    assert changed_columns(table) == ["param:net.downsample", "metric:inpaint_p50.dip.psnr"]
    assert parse_exp_show({"unexpected": 1}).empty


def test_ablations_page_on_a_dvc_repo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    if shutil.which("dvc") is None or shutil.which("git") is None:
        pytest.skip("needs git and dvc")
    run = lambda *a: subprocess.run(a, cwd=tmp_path, check=True, capture_output=True)  # noqa: E731
    run("git", "init", "-q")
    run("dvc", "init", "-q")
    (tmp_path / "params.yaml").write_text("net:\n  downsample: stride\n")
    run("git", "add", "-A")
    run("git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "init")
    at = open_app(tmp_path, monkeypatch, "ablations")
    table = at.dataframe[0].value
    assert "workspace" in list(table["experiment"])
    at.toggle(key="ablations_changed").set_value(False).run()
    assert "net.downsample" in at.dataframe[0].value.columns


# ------------------------------------------------------------------------------------------ CLI
def test_cli_dashboard_command(results_root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from typer.testing import CliRunner

    from pipeline import cli

    calls: list[tuple[list[str], dict]] = []
    monkeypatch.setattr(subprocess, "call", lambda cmd, env=None: calls.append((cmd, env)) or 0)
    result = CliRunner().invoke(cli.app, ["dashboard", "--results", str(results_root), "--port", "8765"])
    assert result.exit_code == 0, result.output
    cmd, env = calls[0]
    assert cmd[cmd.index("--server.address") + 1] == "127.0.0.1" and cmd[cmd.index("--server.port") + 1] == "8765"
    assert cmd[cmd.index("--browser.gatherUsageStats") + 1] == "false" and env["STREAMLIT_BROWSER_GATHER_USAGE_STATS"] == "false"
    assert cmd[-2:] == ["--results", str(results_root.resolve())] and cmd[cmd.index("run") + 1].endswith("dashboard/app.py")
    bad = CliRunner().invoke(cli.app, ["dashboard", "--results", str(results_root / "nope")])
    assert bad.exit_code == 2 and "error:" in bad.output and "Traceback" not in bad.output
    assert CliRunner().invoke(cli.app, ["dashboard", "--port", "0"]).exit_code == 2


def test_resolve_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from dashboard.data import REPO_ROOT, resolve_root

    monkeypatch.delenv("DIP_RESULTS", raising=False)
    assert resolve_root(["--results", str(tmp_path)]) == tmp_path.resolve()
    assert resolve_root([f"--results={tmp_path}"]) == tmp_path.resolve()
    monkeypatch.setenv("DIP_RESULTS", str(tmp_path))
    assert resolve_root([]) == tmp_path.resolve()
    monkeypatch.delenv("DIP_RESULTS")
    monkeypatch.chdir(tmp_path)
    assert resolve_root([]) == REPO_ROOT
    (tmp_path / "results").mkdir()
    assert resolve_root([]) == tmp_path.resolve()


def test_metrics_csv_columns_are_the_layout_contract(results_root: Path) -> None:
    per = pd.read_csv(results_root / "metrics" / "per_image.csv")
    assert list(per.columns) == ["experiment", "image", "method", "seed", "psnr", "ssim", "seconds", "profile", "device"]
    cur = pd.read_csv(results_root / "metrics" / "curves.csv")
    assert list(cur.columns) == ["experiment", "image", "seed", "iteration", "loss", "psnr_obs", "psnr_gt", "ssim_gt"]
