"""docs/LAYOUT.md is the contract between pipeline, report and dashboard: the columns and paths it
documents are those the code writes (the files themselves: tests/test_pipeline_repro.py and
tests/test_dashboard.py on the smoke run)."""

from __future__ import annotations

from conftest import layout_doc


def test_the_documented_columns_are_the_codes() -> None:
    from dashboard.data import REPORT_COLUMNS
    from pipeline.evaluate import CURVE_FIELDS, PER_IMAGE_FIELDS
    from pipeline.report import REPORT_FIELDS
    from pipeline.restore import CURVE_FIELDS as RUN_CURVE_FIELDS

    doc = layout_doc()
    assert doc["columns"]["per_image.csv"] == list(PER_IMAGE_FIELDS)
    assert doc["columns"]["curves.csv"] == list(CURVE_FIELDS)
    assert doc["columns"]["report.csv"] == list(REPORT_FIELDS) == list(REPORT_COLUMNS)
    assert doc["curve"] == list(RUN_CURVE_FIELDS)


def test_the_layout_block_is_parsed() -> None:
    paths = layout_doc()["paths"]
    assert {"data/corrupted/<exp>/<image>/mask.png", "results/<exp>/<image>/seed_<s>/final.png?",
            "results/<exp>/<image>/seed_<s>/snapshots/iter_NNNNN.png", "metrics/report.csv"} <= paths.keys()
    assert layout_doc()["run_json"][:3] == ["task", "net", "fit"]
