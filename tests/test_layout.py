"""docs/LAYOUT.md is the contract between pipeline, report and dashboard: the columns and paths it
documents are those of :mod:`pipeline.layout`, which every stage and the dashboard use (the files
themselves: tests/test_pipeline_repro.py and tests/test_dashboard.py on the smoke run)."""

from __future__ import annotations

from pathlib import Path

from conftest import layout_doc


def test_the_documented_columns_are_the_layout_modules() -> None:
    from pipeline import layout

    doc = layout_doc()
    assert doc["columns"]["per_image.csv"] == list(layout.PER_IMAGE_FIELDS)
    assert doc["columns"]["curves.csv"] == list(layout.CURVE_FIELDS)
    assert doc["columns"]["report.csv"] == list(layout.REPORT_FIELDS)


def _header(path: Path) -> list[str]:
    return path.read_text().splitlines()[0].split(",")


def test_the_files_written_have_the_layout_modules_columns(smoke_outputs: Path) -> None:
    """What the evaluate stage and the fits wrote (the smoke profile) has the columns that
    pipeline/layout.py and docs/LAYOUT.md name, in that order, and the dashboard's report table too."""
    from dashboard.load import report
    from pipeline import layout
    from pipeline.execution.fits import RUN_CURVE_FIELDS

    metrics = smoke_outputs / layout.METRICS
    assert _header(metrics / layout.PER_IMAGE_CSV) == list(layout.PER_IMAGE_FIELDS)
    assert _header(metrics / layout.CURVES_CSV) == list(layout.CURVE_FIELDS)
    assert _header(metrics / layout.REPORT_CSV) == list(layout.REPORT_FIELDS)
    assert list(report(smoke_outputs).columns)[: len(layout.REPORT_FIELDS)] == list(layout.REPORT_FIELDS)
    curves = {tuple(_header(p)) for p in (smoke_outputs / layout.RESULTS).glob("*/*/seed_*/curve.csv")}
    assert curves and all(list(c) == [f for f in RUN_CURVE_FIELDS if f in c] for c in curves)  # a subset, in order
    assert max(curves, key=len) == tuple(layout_doc()["curve"]) == RUN_CURVE_FIELDS  # with a ground truth and averaging


def test_the_documented_paths_are_the_layout_modules() -> None:
    from pipeline import layout

    paths = layout_doc()["paths"]
    for name in (layout.PER_IMAGE_CSV, layout.CURVES_CSV, layout.REPORT_CSV, layout.REPORT_MD, layout.SUMMARY_JSON):
        assert f"{layout.METRICS}/{name}" in paths, name
    assert f"{layout.RESULTS}/<exp>/<image>/{layout.SEED_PREFIX}<s>/" in paths
    assert f"{layout.BASELINES}/<exp>/<image>/<method>.png" in paths
    assert f"{layout.CORRUPTED}/<exp>/<image>/" in paths
    assert layout.seed_dir(Path(layout.RESULTS) / "e", "i", 3).as_posix() == "results/e/i/seed_3"
    assert layout.seed_of(Path("results/e/i/seed_3")) == 3 and layout.seed_of(Path("x/seed_a")) is None


def test_protocol_and_psnr_from_loss() -> None:
    from pipeline.layout import protocol, psnr_from_loss

    assert protocol("sr", 4) == ("sr", 4) and protocol("sr", 8.0) == ("sr", 8)
    assert protocol("denoise", 4) == ("rgb", 0) and protocol("inpaint") == ("rgb", 0)
    assert psnr_from_loss(0.01) == 20.0 and psnr_from_loss(0.0) == 120.0


def test_the_layout_block_is_parsed() -> None:
    paths = layout_doc()["paths"]
    assert {"data/corrupted/<exp>/<image>/mask.png", "results/<exp>/<image>/seed_<s>/final.png?",
            "results/<exp>/<image>/seed_<s>/snapshots/iter_NNNNN.png", "metrics/report.csv"} <= paths.keys()
    assert layout_doc()["run_json"][:3] == ["task", "net", "fit"]
