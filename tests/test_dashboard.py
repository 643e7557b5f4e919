"""The dashboard's pages through ``streamlit.testing.v1.AppTest`` on the ``smoke`` profile's output.

``smoke_outputs`` (tests/conftest.py) is the smoke profile's output tree, made by the pipeline's
stage functions in-process (no git, no DVC), shared by the session and read-only; the trees that
need something else (a partly finished run, a run in the paper's setting) are copies of it.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pandas as pd
import pytest

import streamlit  # noqa: F401 - a dependency: missing is a failure, not a skip
from streamlit.testing.v1 import AppTest  # noqa: E402

from conftest import open_app  # noqa: E402
from dashboard.load import NO_TRUTH  # noqa: E402


REPO = Path(__file__).resolve().parents[1]
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


OUTPUTS = ("data", "results", "baselines", "metrics")


def copy_outputs(project: Path, dest: Path, dirs: tuple[str, ...] = OUTPUTS) -> Path:
    """The pipeline's outputs of ``project`` (not its git/DVC state) copied to ``dest``."""
    for d in dirs:
        if (project / d).is_dir():
            shutil.copytree(project / d, dest / d)
    return dest


def active(project: Path) -> dict[str, list[str]]:
    """The experiments the profile ran and their images (``results/<exp>/experiment.json``)."""
    out = {}
    for path in sorted((project / "results").glob("*/experiment.json")):
        info = json.loads(path.read_text())
        if info.get("active"):
            out[info["experiment"]] = list(info["images"])
    return out


@pytest.fixture(scope="session")
def smoke(smoke_outputs: Path) -> Path:
    return smoke_outputs


@pytest.fixture(scope="session")
def experiments(smoke_outputs: Path) -> dict[str, list[str]]:
    found = active(smoke_outputs)
    assert {"denoise_s25", "inpaint_p50", "sr_x4"} <= set(found), found
    return found


@pytest.fixture(scope="session")
def partial_root(smoke_outputs: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A pipeline stopped before baselines and evaluate: data/ and results/ only."""
    return copy_outputs(smoke_outputs, tmp_path_factory.mktemp("partial"), ("data", "results"))


@pytest.fixture(scope="session")
def paper_root(smoke_outputs: Path, experiments: dict[str, list[str]], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The smoke outputs relabelled as the ``paper`` profile and re-evaluated by the pipeline's own
    evaluate/report code (so report.csv holds the paper's numbers, Δ and *reproduced*), with an
    early stop recorded in the denoising run (the smoke profile's runs do not stop early)."""
    from pipeline.stages.evaluate import evaluate
    from pipeline.report import load_paper

    root = copy_outputs(smoke_outputs, tmp_path_factory.mktemp("paper"))
    resolution = {"requested": "paper", "profile": "paper", "device": "cuda", "device_name": "test GPU"}
    (root / "data" / "profile.json").write_text(json.dumps(resolution))
    image = experiments["denoise_s25"][0]
    run_json = root / "results" / "denoise_s25" / image / "seed_0" / "run.json"
    record = json.loads(run_json.read_text())
    record["early_stop_iteration"] = 10
    run_json.write_text(json.dumps(record))
    shutil.rmtree(root / "metrics")
    evaluate(root / "results", list(experiments), resolution, root / "metrics", baselines=root / "baselines",
             corrupted=root / "data" / "corrupted", paper=load_paper(REPO / "data" / "paper.yaml"), epsilon=0.5)
    return root


def charts(at: AppTest) -> list[dict]:
    return [json.loads(c.proto.spec) for c in at.get("vega_lite_chart")]


def shown(table) -> pd.DataFrame:
    """The cells of an ``st.dataframe`` as displayed (the Styler's formatted strings)."""
    return table.value if not table.proto.arrow_data.styler.display_values else _arrow(table.proto.arrow_data.styler.display_values)


def _arrow(raw: bytes) -> pd.DataFrame:
    from streamlit import dataframe_util

    return dataframe_util.convert_arrow_bytes_to_pandas_df(raw)


def texts(at: AppTest) -> str:
    parts = [e.value for kind in ("markdown", "caption", "info", "warning", "title", "subheader") for e in getattr(at, kind)]
    return "\n".join(str(p) for p in parts)


# ------------------------------------------------------------------------------------ overview
def test_overview_tables_from_the_report_with_the_badge(smoke: Path, experiments: dict, monkeypatch: pytest.MonkeyPatch) -> None:
    report = pd.read_csv(smoke / "metrics" / "report.csv")
    at = open_app(smoke, monkeypatch)
    reported = list(dict.fromkeys(report["experiment"]))
    heads = [s.value.split(" ·")[0] for s in at.subheader]
    assert heads[: len(reported)] == reported
    assert set(heads[len(reported):]) == {"real_snail", "flash_cave"}  # no ground truth: listed after, with a note
    assert sorted(experiments) == sorted(heads)  # inactive ones left out
    tables = {s.value.split(" ·")[0]: d.value for s, d in zip(at.subheader, at.dataframe)}
    assert [i.value for i in at.info].count(f"{NO_TRUTH} See the Gallery (result, snapshots, loss) and Curves pages.") == 2
    for exp, table in ((e, t) for e, t in tables.items() if e in reported):
        ours = report[(report["experiment"] == exp) & (report["source"] == "ours")]
        assert list(table.index) == list(dict.fromkeys(ours["image"]))  # images, then the mean
        assert list(table.index)[-1] == "mean" and set(experiments[exp]) <= set(table.index)
        assert set(table.columns) == set(ours["method"])  # input, dip and the baselines; nothing else
        assert not [c for c in table.columns if c.startswith("Δ") or "paper" in c]  # smoke is not the paper's setting
        for _, r in ours.iterrows():
            assert table.loc[r["image"], r["method"]] == pytest.approx(r["psnr"])
    assert {"bm3d", "nlm", "tv"} <= set(tables["denoise_s25"].columns) and "biharmonic" in tables["inpaint_p50"].columns
    all_text = texts(at)
    assert "NOT the paper's setting" in all_text and "profile: smoke" in all_text and "device cpu" in all_text
    assert any("not** the paper's setting" in w.value for w in at.warning)
    reason = json.loads((smoke / "metrics" / "summary.json").read_text())["paper"]["denoise_s25"]["reason"]
    assert f"Not compared with the paper: {reason}." in [c.value for c in at.caption]


def test_overview_metric_switch_and_no_none_cells(smoke: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    at = open_app(smoke, monkeypatch)
    psnr = at.dataframe[0].value
    at.radio(key="overview_metric").set_value("SSIM").run()
    ssim = at.dataframe[0].value
    assert (psnr["dip"] > 1).all() and (ssim["dip"] <= 1).all() and not (psnr["dip"] == ssim["dip"]).any()
    runs_table = shown(at.dataframe[-1])  # the DIP runs expander: empty cells show as "–"
    assert "early_stop_iteration" in runs_table.columns and (runs_table["early_stop_iteration"] == "–").all()
    assert not runs_table.isin(["None", "nan", "<NA>"]).any().any()
    # the browser draws empty cells itself ("None" by default): told to draw "–" in every table
    if "placeholder" in type(at.dataframe[0].proto).DESCRIPTOR.fields_by_name:
        assert {d.proto.placeholder for d in at.dataframe} == {"–"}


def test_overview_of_a_paper_run_shows_the_reports_delta(paper_root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    report = pd.read_csv(paper_root / "metrics" / "report.csv")
    dip_mean = report[(report["experiment"] == "denoise_s25") & (report["method"] == "dip") & (report["image"] == "mean")].iloc[0]
    assert dip_mean["paper_psnr"] == pytest.approx(30.43)  # data/paper.yaml: one run with averaging
    at = open_app(paper_root, monkeypatch)
    assert "profile: paper" in texts(at) and not at.warning
    subheads = [s.value.split(" ·")[0] for s in at.subheader]
    element = at.dataframe[subheads.index("denoise_s25")]
    denoise = element.value
    assert denoise.loc["mean", "Δ dip"] == pytest.approx(dip_mean["delta"])  # the report's Δ, not recomputed
    assert denoise.loc["mean", "DIP, 1 run, averaging (paper)"] == pytest.approx(30.43)
    assert {"CBM3D (paper)", "Δ bm3d", "Δ nlm"} <= set(denoise.columns)
    cells = shown(element)
    assert cells.loc["mean", "Δ dip"] == f"{dip_mean['delta']:+.2f}"
    assert (cells.loc[[i for i in cells.index if i != "mean"], "DIP, 1 run, averaging (paper)"] == "–").all()
    assert ("#ffcdd2" if not dip_mean["reproduced"] else "#c8e6c9") in element.proto.arrow_data.styler.styles  # coloured by the report's flag
    status = json.loads((paper_root / "metrics" / "summary.json").read_text())["paper"]["denoise_s25"]
    assert any(c.value.startswith("Paper comparison") and f"{status['mean_delta_dip']:+.2f} dB" in c.value for c in at.caption)
    at.radio(key="overview_metric").set_value("SSIM").run()
    assert not [c for c in at.dataframe[subheads.index("denoise_s25")].value.columns if c.startswith("Δ") or "(paper)" in c]


def test_partial_run_shows_what_exists(partial_root: Path, experiments: dict, monkeypatch: pytest.MonkeyPatch) -> None:
    at = open_app(partial_root, monkeypatch)
    assert any("report.csv` is not written yet" in i.value for i in at.info)
    assert len(at.dataframe) >= len(experiments)
    table = at.dataframe[0].value
    assert set(table.columns) == {"input", "dip"} and list(table.index)[-1] == "mean"
    exp = at.subheader[0].value.split(" ·")[0]
    run = json.loads((partial_root / "results" / exp / experiments[exp][0] / "seed_0" / "run.json").read_text())
    # run.json's number as per_image.csv will give it (4 decimals): the rows dip evaluate makes of the runs
    assert table.loc[experiments[exp][0], "dip"] == pytest.approx(run["metrics"]["restored"]["psnr"], abs=5e-5)
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
def layers(spec: dict) -> list[str]:
    return [layer["mark"]["type"] if isinstance(layer["mark"], dict) else layer["mark"] for layer in spec["layer"]]


def test_curves_chart_and_widgets(smoke: Path, experiments: dict, monkeypatch: pytest.MonkeyPatch) -> None:
    at = open_app(smoke, monkeypatch, "curves")
    first = sorted(experiments)[0]
    assert at.multiselect(key="curves_experiments").value == [first]
    (spec,) = charts(at)
    assert layers(spec) == ["line"]  # smoke: no paper rule (not comparable), no early stop
    assert any("tooltip" in layer.get("encoding", {}) for layer in spec["layer"])
    assert at.get("vega_lite_chart")[0].proto.datasets  # the data travel with the chart
    assert "not the paper" in texts(at) or "profile smoke" in texts(at)
    at.multiselect(key="curves_experiments").set_value(sorted(experiments)).run()
    at.radio(key="curves_per").set_value("experiment").run()
    assert not at.exception
    (spec2,) = charts(at)
    assert spec2 != spec
    at.selectbox(key="curves_y").set_value("loss").run()
    (spec3,) = charts(at)
    assert spec3["layer"][0]["encoding"]["y"]["scale"]["type"] == "log"


def test_curves_paper_rule_and_early_stop(paper_root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    at = open_app(paper_root, monkeypatch, "curves")
    at.multiselect(key="curves_experiments").set_value(["denoise_s25"]).run()
    (spec,) = charts(at)
    marks = layers(spec)
    assert marks[0] == "line" and "rule" in marks and "point" in marks  # the paper's DIP number, the early stop
    datasets = {d.name: _arrow(d.data.data) for d in at.get("vega_lite_chart")[0].proto.datasets}
    rules = [df for df in datasets.values() if "label" in df.columns]
    assert rules and any(abs(v - 30.43) < 1e-6 for df in rules for v in df["psnr_gt"])
    assert "dashed red" in texts(at) and "early-stopping" in texts(at)


# ------------------------------------------------------------------------------------- gallery
def test_gallery_grid_and_image_choice(smoke: Path, experiments: dict, monkeypatch: pytest.MonkeyPatch) -> None:
    at = open_app(smoke, monkeypatch, "gallery")
    captions = [img.proto.imgs[0].caption for img in at.image]
    assert captions[:3] == ["corrupted input", "ground truth", "DIP"]
    snaps = [c for c in captions if c.startswith("iteration")]
    assert snaps and snaps[0].startswith("iteration 0") and " dB" in snaps[0]
    assert all(img.proto.imgs[0].url.endswith(".png") for img in at.image)  # served as PNG, not JPEG
    first = at.main.caption[0].value
    at.selectbox(key="gallery_experiment").set_value("sr_x4").run()
    image = experiments["sr_x4"][0]
    at.selectbox(key="gallery_image").set_value(image).run()
    assert not at.exception and at.main.caption[0].value != first and "factor 4" in at.main.caption[0].value
    expected = sorted(int(p.stem.removeprefix("iter_")) for p in (smoke / "results" / "sr_x4" / image / "seed_0" / "snapshots").glob("iter_*.png"))
    got = [int(c.split()[1]) for c in (img.proto.imgs[0].caption for img in at.image) if c.startswith("iteration")]
    assert got == expected and len(got) >= 2
    at.number_input(key="gallery_cols").set_value(2).run()
    assert not at.exception


def test_gallery_of_figures(smoke: Path, experiments: dict, monkeypatch: pytest.MonkeyPatch) -> None:
    """Issue 14: a figure's input, mask and result side by side; no PSNR without a ground truth."""
    at = open_app(smoke, monkeypatch, "gallery")
    at.selectbox(key="gallery_experiment").set_value("fig7_text").run()
    captions = [img.proto.imgs[0].caption for img in at.image]
    assert captions[:4] == ["corrupted input", "mask", "ground truth", "DIP"] and not at.exception
    at.selectbox(key="gallery_experiment").set_value("flash_cave").run()
    captions = [img.proto.imgs[0].caption for img in at.image]
    assert captions[:3] == ["network input", "observation (target)", "DIP"] and "ground truth" not in captions
    assert NO_TRUTH in [i.value for i in at.info] and "Loss" in [s.value for s in at.subheader]
    assert not [c for c in captions if " dB" in c] and not at.exception


def test_compare_the_three_sr_priors(smoke: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    at = open_app(smoke, monkeypatch, "compare")
    at.selectbox(key="compare_experiment").set_value("sr_prior_dip").run()
    options = set(at.selectbox(key="compare_b").options)
    assert {"DIP", "sr_prior_none: DIP", "sr_prior_tv: DIP", "ground truth", "bicubic"} <= options
    at.selectbox(key="compare_a").set_value("sr_prior_none: DIP").run()
    assert not at.exception and len(at.metric) == 2  # both scored against the ground truth


# ------------------------------------------------------------------------------------- compare
def test_compare_side_by_side_slider_and_crop(smoke: Path, experiments: dict, monkeypatch: pytest.MonkeyPatch) -> None:
    at = open_app(smoke, monkeypatch, "compare")
    at.selectbox(key="compare_experiment").set_value("denoise_s25").run()
    at.selectbox(key="compare_image").set_value(experiments["denoise_s25"][0]).run()
    assert at.selectbox(key="compare_a").value == "corrupted input"
    assert at.selectbox(key="compare_b").value == "DIP"
    assert {"ground truth", "DIP (last iterate)", "bm3d", "nlm", "tv"} <= set(at.selectbox(key="compare_b").options)
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


def test_crop_and_slider_are_pixel_exact(smoke: Path, experiments: dict) -> None:
    import base64

    import numpy as np

    from dashboard import imaging
    from dashboard.imaging import crop, slider_html

    path = smoke / "results" / "inpaint_p50" / experiments["inpaint_p50"][0] / "seed_0" / "restored.png"
    raw = imaging.png_bytes(path)
    assert raw == path.read_bytes()
    img = imaging.decode(raw)
    z = crop(img, 10, 10, 8, 4)
    assert z.shape[:2] == (32, 32) and (z[::4, ::4] == img[6:14, 6:14]).all()
    assert (imaging.decode(imaging.encode_png(z)) == z).all()  # PNG round trip: lossless
    html = slider_html(raw, raw, "A", "B", img.shape[1], img.shape[0], 2)
    assert base64.b64encode(raw).decode() in html and "image-rendering:pixelated" in html and "jpeg" not in html.lower()


# ------------------------------------------------------------------------------------ ablations
def test_ablations_without_dvc(partial_root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    at = open_app(partial_root, monkeypatch, "ablations")
    assert any("not a DVC repository" in i.value for i in at.info)


def test_parse_exp_show_finds_the_changed_param() -> None:
    from dashboard.dvc_exp import changed_columns, parse_exp_show

    table = parse_exp_show(EXP_SHOW)
    assert list(table["experiment"]) == ["workspace", "main", "maxpool"]
    assert list(table["kind"]) == ["workspace", "baseline", "experiment"]
    assert changed_columns(table) == ["param:net.downsample", "metric:inpaint_p50.dip.psnr"]
    assert parse_exp_show({"unexpected": 1}).empty


@pytest.mark.integration  # git and dvc processes (dvc init, dvc exp show)
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
def test_cli_dashboard_command_rejects_bad_options(tmp_path: Path) -> None:
    """Its settings and signal handling: tests/test_dashboard_server.py."""
    from typer.testing import CliRunner

    from pipeline import cli

    bad = CliRunner().invoke(cli.app, ["dashboard", "--results", str(tmp_path / "nope")])
    assert bad.exit_code == 2 and "error:" in bad.output and "Traceback" not in bad.output
    assert CliRunner().invoke(cli.app, ["dashboard", "--port", "0"]).exit_code == 2


def test_resolve_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from dashboard.load import REPO_ROOT, resolve_root

    monkeypatch.delenv("DIP_RESULTS", raising=False)
    assert resolve_root(["--results", str(tmp_path)]) == tmp_path.resolve()
    assert resolve_root([f"--results={tmp_path}"]) == tmp_path.resolve()
    monkeypatch.setenv("DIP_RESULTS", str(tmp_path))
    assert resolve_root([]) == tmp_path.resolve()
    monkeypatch.delenv("DIP_RESULTS")
    monkeypatch.chdir(tmp_path)
    assert resolve_root([]) == REPO_ROOT or (REPO_ROOT / "results-published") in resolve_root([]).parents
    (tmp_path / "results").mkdir()
    assert resolve_root([]) == tmp_path.resolve()


@pytest.fixture
def published(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """``repo/results-published`` of a checkout whose folder the dashboard finds its bundles in
    (the working directory elsewhere, no ``DIP_RESULTS``); nothing in it yet."""
    from dashboard import load

    repo, here = tmp_path / "repo", tmp_path / "here"
    here.mkdir()
    monkeypatch.delenv("DIP_RESULTS", raising=False)
    monkeypatch.setattr(load, "REPO_ROOT", repo)
    monkeypatch.chdir(here)
    return repo / "results-published"


def a_bundle(path: Path, created: str | None, profile: str | None = None) -> None:
    """A folder with a bundle manifest (or, ``created`` None, a folder without one: not a bundle)."""
    path.mkdir(parents=True)
    if created:
        info = {"format": "dip-results-bundle/1", "created": created, **({"profile": profile} if profile else {})}
        (path / "manifest.json").write_text(json.dumps(info))


def test_resolve_root_defaults_to_the_newest_published_bundle(published: Path) -> None:
    from dashboard import load

    for name, created in (("old", "2026-01-01T00:00:00Z"), ("new", "2026-06-01T00:00:00Z"), ("notes", None)):
        a_bundle(published / name, created)
    assert load.resolve_root([]) == (published / "new").resolve()
    repo = published.parent
    (repo / "metrics").mkdir()
    (repo / "metrics" / "summary.json").write_text("{}")  # the repository has results of its own: they win
    assert load.resolve_root([]) == repo


def test_the_dashboard_opens_the_paper_bundle_else_the_quick_cpu_one(published: Path) -> None:
    from dashboard import load

    a_bundle(published / "quick-cpu", "2026-01-01T00:00:00Z", "quick")
    a_bundle(published / "smoke-later", "2026-06-01T00:00:00Z", "smoke")
    assert load.resolve_root([]) == (published / "quick-cpu").resolve()  # not the newest: the quick profile's CPU bundle
    a_bundle(published / "paper-h100", "2026-02-01T00:00:00Z", "paper")
    a_bundle(published / "paper-h200", "2026-03-01T00:00:00Z", "paper")
    assert load.resolve_root([]) == (published / "paper-h200").resolve()
    for name in ("quick-cpu", "paper-h100", "paper-h200"):
        shutil.rmtree(published / name)
    assert load.resolve_root([]) == (published / "smoke-later").resolve()


@pytest.fixture(scope="session")
def published_root(smoke_outputs: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The smoke outputs published by ``dip publish`` (Table 1's experiment as PNG, JPEG previews elsewhere)."""
    from bundles import keyed_copy, merge
    from pipeline.outputs.policy import Policy

    out = tmp_path_factory.mktemp("pub") / "results-published" / "smoke-cpu"
    merge([keyed_copy(smoke_outputs, out.parent.parent / "workspace")], out, policy=Policy(spot_check=False, galleries=()))
    return out


def test_the_readers_read_a_published_bundle_unchanged(smoke: Path, published_root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from dashboard import load

    pd.testing.assert_frame_equal(load.per_image(published_root), load.per_image(smoke))
    pd.testing.assert_frame_equal(load.report(published_root), load.report(smoke))
    assert load.summary(published_root) == load.summary(smoke) and load.profile(published_root) == load.profile(smoke)
    assert load.experiments(published_root) == load.experiments(smoke)
    cols = [c for c in load.runs(smoke).columns if c != "path"]
    pd.testing.assert_frame_equal(load.runs(published_root)[cols], load.runs(smoke)[cols])
    pd.testing.assert_frame_equal(load.curves(published_root), load.curves(smoke))
    image = load.images(published_root, "denoise_s25")[0]
    assert "DIP (JPEG preview)" in load.sources(published_root, "denoise_s25", image)
    assert "DIP" in load.sources(published_root, "inpaint_p50", load.images(published_root, "inpaint_p50")[0])
    at = open_app(published_root, monkeypatch)
    assert any(c.value.startswith("Showing the published bundle results-published/smoke-cpu (") for c in at.sidebar.caption)
    open_app(published_root, monkeypatch, "gallery")


def test_metrics_are_the_layout_contract(smoke: Path) -> None:
    """The columns the dashboard reads are those docs/LAYOUT.md promises (parsed from it)."""
    from conftest import layout_doc
    from dashboard.tables import REPORT_COLUMNS

    columns = layout_doc()["columns"]
    for name in ("per_image.csv", "curves.csv", "report.csv"):
        assert list(pd.read_csv(smoke / "metrics" / name).columns) == columns[name], name
    assert tuple(columns["report.csv"]) == REPORT_COLUMNS
    summary = json.loads((smoke / "metrics" / "summary.json").read_text())
    assert {"profile", "device", "experiments", "paper"} <= set(summary)
