"""The dashboard's tables in the report's layout, built by the report's own code.

``metrics/report.csv`` (:func:`dashboard.load.report`) is what the evaluate stage wrote; before
it exists, :func:`report_from_runs` builds the same table from the runs' ``run.json`` with
:mod:`pipeline.outputs.report`'s aggregation (mean and spread over seeds, ``mean`` / ``mean:<set>`` rows),
so the dashboard computes no mean of its own.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from dashboard.load import report, runs
from pipeline import layout
from pipeline.outputs import report as pipeline_report

REPORT_COLUMNS = layout.REPORT_FIELDS


def per_image_from_runs(table: pd.DataFrame) -> pd.DataFrame:
    """Rows of ``per_image.csv`` (methods ``input`` and ``dip``) from :func:`dashboard.load.runs`."""
    common = ["experiment", "image", "set", "seed"]
    scored = [
        table[common + ["psnr_input", "ssim_input"]].rename(columns={"psnr_input": "psnr", "ssim_input": "ssim"}).assign(method="input", seconds=0.0),
        table[common + ["psnr", "ssim", "wall_seconds"]].rename(columns={"wall_seconds": "seconds"}).assign(method="dip"),
    ]
    rows = pd.concat(scored, ignore_index=True)
    rows[["psnr", "ssim", "seconds"]] = rows[["psnr", "ssim", "seconds"]].astype(float)
    rows["set"] = rows["set"].fillna("").astype(str)
    return rows.reindex(columns=list(layout.PER_IMAGE_FIELDS[:7]) + ["set"])


def report_from_runs(root: Path) -> pd.DataFrame:
    """The report's table built from the runs' ``run.json`` alone (``input`` and ``dip``, mean
    and spread over seeds, ``mean`` rows; no paper columns): what a partly finished pipeline,
    one without ``metrics/report.csv``, can show."""
    table = runs(root)
    if not len(table):
        return pd.DataFrame(columns=list(REPORT_COLUMNS))
    aggregated = pipeline_report.with_means(pipeline_report.aggregate(per_image_from_runs(table)))
    return pipeline_report.compare(aggregated, {}, "", 0.0).reindex(columns=list(REPORT_COLUMNS))


def paper_dip_reference(root: Path) -> pd.DataFrame:
    """The paper's DIP PSNR per experiment and image (``mean`` included): the ``paper_psnr`` of
    our ``dip`` rows in ``metrics/report.csv`` (empty where the run is not comparable)."""
    df = report(root)
    if df is None or "paper_psnr" not in df.columns:
        return pd.DataFrame(columns=["experiment", "image", "paper_psnr"])
    rows = df[(df["source"] == "ours") & (df["method"] == "dip")].dropna(subset=["paper_psnr"])
    return rows[["experiment", "image", "paper_psnr"]].reset_index(drop=True)
