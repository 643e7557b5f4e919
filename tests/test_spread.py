"""The spread over seeds wherever a number is shown: summary.json and report.csv, the dashboard's
Overview (± std, min, max), Curves (the band over seeds, the x axis in seconds), Gallery (the
seed), the bundle the dashboard opens by default and what made it, and README's quick block.

``seeded`` is the smoke profile fitted with three seeds by the stages' own functions (a few
seconds); ``seeded_bundle`` is it published into ``results-published/quick-cpu``.
"""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import pandas as pd
import pytest

from conftest import build_outputs, copy_settings, open_app

pytest.importorskip("streamlit")
from streamlit.testing.v1 import AppTest  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
SEEDS = [0, 1, 2]
CPU = "Test CPU @ 2.0GHz, 2 cores"


@pytest.fixture(scope="session")
def seeded(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The smoke profile's outputs with seeds 0, 1, 2 (tests must not modify it)."""
    return build_outputs(tmp_path_factory.mktemp("seeded"), seeds=SEEDS)


@pytest.fixture(scope="session")
def seeded_bundle(seeded: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``seeded`` published into ``<repo>/results-published/quick-cpu``, its part's machine naming
    its CPU as ``dip publish-run`` records it."""
    from bundles import keyed_copy, merge

    repo = tmp_path_factory.mktemp("repo")
    out = repo / "results-published" / "quick-cpu"
    merge([keyed_copy(seeded, repo / "workspace")], out)
    manifest = json.loads((out / "manifest.json").read_text())
    manifest["parts"][0]["machine"]["cpu"] = CPU
    (out / "manifest.json").write_text(json.dumps(manifest))
    return out


def per_seed_means(root: Path, exp: str) -> pd.Series:
    """DIP's mean PSNR over the images, per seed, straight from per_image.csv."""
    rows = pd.read_csv(root / "metrics" / "per_image.csv")
    return rows[(rows["experiment"] == exp) & (rows["method"] == "dip")].groupby("seed")["psnr"].mean()


def chart(at: AppTest) -> dict:
    (spec,) = [json.loads(c.proto.spec) for c in at.get("vega_lite_chart")]
    return spec


def marks(spec: dict) -> list[str]:
    return [layer["mark"]["type"] if isinstance(layer["mark"], dict) else layer["mark"] for layer in spec["layer"]]


# ---------------------------------------------------------------------------------- the metrics
def test_summary_and_report_give_the_spread_over_seeds(seeded: Path) -> None:
    summary = json.loads((seeded / "metrics" / "summary.json").read_text())
    report = pd.read_csv(seeded / "metrics" / "report.csv")
    for exp in ("denoise_s25", "inpaint_p50", "sr_x4"):
        means = per_seed_means(seeded, exp)
        assert len(means) == 3
        dip = summary["experiments"][exp]["dip"]
        assert dip["seeds"] == 3 and dip["psnr"] == pytest.approx(means.mean(), abs=1e-3)
        assert dip["psnr_std"] == pytest.approx(means.std(ddof=1), abs=1e-3)
        assert (dip["psnr_min"], dip["psnr_max"]) == pytest.approx((means.min(), means.max()), abs=1e-3)
        row = report[(report["experiment"] == exp) & (report["method"] == "dip") & (report["image"] == "mean")].iloc[0]
        assert row["psnr_std"] == pytest.approx(means.std(ddof=1)) and row["seeds"] == 3
        assert row["psnr_min"] == pytest.approx(means.min()) and row["psnr_max"] == pytest.approx(means.max())
        bm = summary["experiments"][exp]
        assert all(v["seeds"] == 1 and v["psnr_std"] is None for m, v in bm.items() if m not in ("dip", "input") and not m.startswith("dip"))
        assert bm["input"]["psnr_std"] is None  # the same observation for every seed
    md = (seeded / "metrics" / "report.md").read_text()
    assert "DIP: 3 seeds." in md and "sample standard deviation (ddof = 1)" in md and " ± " in md


def test_one_seed_has_no_spread_and_says_so(smoke_outputs: Path) -> None:
    summary = json.loads((smoke_outputs / "metrics" / "summary.json").read_text())
    dip = summary["experiments"]["denoise_s25"]["dip"]
    assert dip["seeds"] == 1 and dip["psnr_std"] is None and dip["psnr_min"] == dip["psnr_max"]
    assert "DIP: 1 seed (no spread over seeds)." in (smoke_outputs / "metrics" / "report.md").read_text()


# ------------------------------------------------------------------------------------ overview
def test_overview_shows_the_spread(seeded_bundle: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    at = open_app(seeded_bundle, monkeypatch)
    tables = {s.value.split(" ·")[0]: d.value for s, d in zip(at.subheader, at.dataframe)}
    report = pd.read_csv(seeded_bundle / "metrics" / "report.csv")
    table = tables["inpaint_p50"]
    assert list(table.columns[:5]) == ["input", "dip", "dip ± std", "dip min", "dip max"]
    dip = report[(report["experiment"] == "inpaint_p50") & (report["method"] == "dip")].set_index("image")
    for image in dip.index:
        assert table.loc[image, ["dip", "dip ± std", "dip min", "dip max"]].tolist() == pytest.approx(
            dip.loc[image, ["psnr", "psnr_std", "psnr_min", "psnr_max"]].tolist())
    assert table.loc["mean", "dip ± std"] == pytest.approx(per_seed_means(seeded_bundle, "inpaint_p50").std(ddof=1))
    captions = [c.value for c in at.caption]
    assert any(c.startswith("DIP: 3 seeds. ± is the sample standard deviation (ddof = 1) over seeds") for c in captions)
    at.radio(key="overview_metric").set_value("SSIM").run()
    assert "dip ± std" in at.dataframe[0].value.columns and not at.exception


def test_overview_of_one_seed_says_1_seed(smoke_outputs: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    at = open_app(smoke_outputs, monkeypatch)
    assert "DIP: 1 seed (no spread over seeds)." in [c.value for c in at.caption]
    assert not any("±" in str(c) for d in at.dataframe for c in d.value.columns)


# -------------------------------------------------------------------------------------- curves
def test_curves_band_over_seeds_and_seconds(seeded_bundle: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    at = open_app(seeded_bundle, monkeypatch, "curves")
    at.multiselect(key="curves_experiments").set_value(["inpaint_p50"]).run()
    spec = chart(at)
    assert marks(spec)[:2] == ["area", "line"]
    area = spec["layer"][0]["encoding"]
    assert area["y"]["field"] == "psnr_gt_min" and area["y2"]["field"] == "psnr_gt_max" and area["x"]["field"] == "iteration"
    (data,) = [d for d in at.get("vega_lite_chart")[0].proto.datasets]
    from streamlit import dataframe_util

    band = dataframe_util.convert_arrow_bytes_to_pandas_df(data.data.data)
    curves = pd.concat([pd.read_csv(p).assign(seed=int(p.parent.name.split("_")[1]))
                        for p in (seeded_bundle / "results" / "inpaint_p50").glob("*/seed_*/curve.csv")])
    last = curves[curves["iteration"] == curves["iteration"].max()]["psnr_gt"]
    row = band[band["iteration"] == band["iteration"].max()].iloc[0]
    assert (row["psnr_gt"], row["psnr_gt_min"], row["psnr_gt_max"], row["seeds"]) == pytest.approx((last.mean(), last.min(), last.max(), 3))
    assert any("min–max over 3 seeds" in c.value for c in at.caption)
    at.radio(key="curves_x").set_value("seconds").run()
    spec = chart(at)
    assert spec["layer"][1]["encoding"]["x"]["field"] == "seconds" and "estimated" in spec["layer"][1]["encoding"]["x"]["title"]
    at.radio(key="curves_per").set_value("experiment").run()
    assert marks(chart(at))[:2] == ["area", "line"] and not at.exception
    at.radio(key="curves_seeds").set_value("one line per seed").run()
    assert "area" not in marks(chart(at)) and not at.exception


def test_bands_on_known_numbers() -> None:
    from dashboard.bands import seed_band, with_seconds

    curves = pd.DataFrame({"experiment": "e", "image": ["a", "a", "b", "b", "a", "a", "b", "b"], "seed": [0, 0, 0, 0, 1, 1, 1, 1],
                           "iteration": [0, 10] * 4, "psnr_gt": [10.0, 20.0, 12.0, 24.0, 11.0, 23.0, 12.0, 30.0]})
    runs = pd.DataFrame({"experiment": "e", "image": ["a", "b", "a", "b"], "seed": [0, 0, 1, 1],
                         "wall_seconds": [5.0, 5.0, 10.0, None], "iterations_run": [10, 10, 10, 10]})
    timed = with_seconds(curves, runs)
    assert timed["seconds"].tolist()[:6] == [0.0, 5.0, 0.0, 5.0, 0.0, 10.0] and math.isnan(timed["seconds"].iloc[7])
    per_image = seed_band(timed, "psnr_gt", "image").set_index(["image", "iteration"])
    assert per_image.loc[("a", 10), ["psnr_gt", "psnr_gt_min", "psnr_gt_max", "seeds", "seconds"]].tolist() == [21.5, 20.0, 23.0, 2, 7.5]
    # per experiment: each seed's curve is the mean over images (seed 0: 22, seed 1: 26.5 at iteration 10)
    per_exp = seed_band(timed, "psnr_gt", "experiment").set_index("iteration")
    assert per_exp.loc[10, ["psnr_gt", "psnr_gt_min", "psnr_gt_max"]].tolist() == [24.25, 22.0, 26.5]


# ------------------------------------------------------------------------------------- gallery
def test_gallery_chooses_the_seed(seeded_bundle: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    at = open_app(seeded_bundle, monkeypatch, "gallery")
    assert at.selectbox(key="gallery_experiment").value == "inpaint_p50"
    seed = at.selectbox(key="gallery_seed")
    assert seed.options == ["0", "1", "2"] and seed.value == 0
    assert any(c.value.startswith("seed 0 of 3 · ") for c in at.caption)
    seed.set_value(2).run()
    assert not at.exception and any(c.value.startswith("seed 2 of 3 · ") for c in at.caption)
    run = json.loads((seeded_bundle / "results" / "inpaint_p50" / "camera" / "seed_2" / "run.json").read_text())
    assert any(f"{run['metrics']['restored']['psnr']:.2f} dB" in c.value for c in at.caption)
    assert any("keeps the restored image of the first seed (0) only" in i.value for i in at.info)


def test_compare_says_the_dip_image_is_one_seed(seeded_bundle: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    at = open_app(seeded_bundle, monkeypatch, "compare")
    at.selectbox(key="compare_experiment").set_value("inpaint_p50").run()
    assert at.selectbox(key="compare_b").value == "DIP" and not at.exception
    assert "seed 0: 1 of 3 seeds (the Overview gives the mean ± std over seeds)" in [c.value for c in at.caption]


# ------------------------------------------------------------------------ the bundle by default
def test_the_sidebar_says_which_bundle_and_what_made_it(seeded_bundle: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    at = open_app(seeded_bundle, monkeypatch)
    manifest = json.loads((seeded_bundle / "manifest.json").read_text())
    (caption,) = [c.value for c in at.sidebar.caption if c.value.startswith("Showing the published bundle")]
    commit = next(iter(manifest["fits"].values()))["commit"]
    assert caption.startswith("Showing the published bundle results-published/quick-cpu (")
    shown = caption.replace("\\", "")  # untrusted text is rendered with Markdown escapes (\\@): the reader sees it without them
    assert f"CPU {CPU}" in shown and manifest["updated"][:10] in shown
    assert (commit is None) or commit[:10] in caption


# -------------------------------------------------------------------------------------- README
def test_readmes_quick_block_from_a_multi_seed_bundle(seeded_bundle: Path, tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from pipeline.cli import app
    from pipeline.outputs import readme

    repo = tmp_path / "repo"
    copy_settings(repo)
    page = repo / "README.md"
    page.write_text(f"# T\n\n{readme.QUICK_BEGIN}\nhandwritten\n{readme.QUICK_END}\n\n{readme.BEGIN}\n{readme.END}\n")
    runner = CliRunner()
    assert runner.invoke(app, ["readme", "--readme", str(page)]).exit_code == 0
    assert "handwritten" in page.read_text(), "no quick-cpu bundle yet: the quick block stays as it is"
    shutil.copytree(seeded_bundle, repo / "results-published" / "quick-cpu")
    done = runner.invoke(app, ["readme", "--readme", str(page)])
    assert done.exit_code == 0, done.output
    text = page.read_text()
    block = readme.quick_block(repo)
    assert readme.current(text, markers=(readme.QUICK_BEGIN, readme.QUICK_END)) == block and "handwritten" not in text
    assert "no result is published yet" in readme.current(text), "a quick bundle is not the paper profile's"
    assert runner.invoke(app, ["readme", "--readme", str(page), "--check"]).exit_code == 0
    report = pd.read_csv(seeded_bundle / "metrics" / "report.csv")
    dip = report[(report["experiment"] == "inpaint_p50") & (report["method"] == "dip")].set_index("image")
    mean = dip.loc["mean"]
    assert (f"| **mean** | {report[(report['experiment'] == 'inpaint_p50') & (report['method'] == 'input') & (report['image'] == 'mean')]['psnr'].iloc[0]:.2f}"
            in block)
    assert f"| {mean['psnr']:.2f} ± {mean['psnr_std']:.2f} ({mean['ssim']:.3f}) | {mean['psnr_min']:.2f}–{mean['psnr_max']:.2f} |" in block
    prose = " ".join(block.split())  # the prose is wrapped as README's
    assert "mean ± std over 3 seeds" in block and "deviation (ddof = 1)" in prose and f"CPU {CPU}" in prose


def test_readmes_quick_block_is_what_the_committed_bundle_gives() -> None:
    """Fails when results-published/quick-cpu changed without `dip readme` (or the block was edited by hand)."""
    from pipeline.outputs import readme

    if not (REPO / "results-published" / "quick-cpu").is_dir():
        pytest.skip("results-published/quick-cpu is not committed yet: README keeps its handwritten quick table")
    text = (REPO / "README.md").read_text()
    assert readme.current(text, markers=(readme.QUICK_BEGIN, readme.QUICK_END)) == readme.quick_block(REPO), \
        "README's quick block is out of date: run `dip readme`"


def test_readmes_paper_tables_show_the_spread_or_1_seed(seeded: Path, smoke_outputs: Path) -> None:
    from pipeline.outputs import readme

    for root, head, cell in ((seeded, "DIP (ours), mean ± std over 3 seeds", " ± "), (smoke_outputs, "DIP (ours), 1 seed", None)):
        report = pd.read_csv(root / "metrics" / "report.csv")
        lines = readme.table1_rows(report, {"images_done": 1, "images_total": 1, "complete": True}, ["camera"])
        mean = report[(report["experiment"] == "inpaint_p50") & (report["method"] == "dip") & (report["image"] == "mean")].iloc[0]
        assert lines[0].startswith(f"| image | {head} |")
        expected = f"{mean['psnr']:.2f} ± {mean['psnr_std']:.2f}" if cell else f"{mean['psnr']:.2f}"
        assert f"| **mean** | {expected} |" in "\n".join(lines)
