"""The dashboard's tables in the report's layout, built by the report's own code.

``metrics/report.csv`` (:func:`dashboard.load.report`) is what the evaluate stage wrote; before
it exists, :func:`report_from_runs` builds the same table from the runs' ``run.json`` with
:mod:`pipeline.report`'s aggregation (mean and spread over seeds, ``mean`` / ``mean:<set>`` rows),
so the dashboard computes no mean of its own. An experiment in progress (k of n images fitted)
and one pending (no fit yet) read as the report reads them: :func:`progress` gives k, n and
complete from the report's own columns, :func:`mean_labels` the report's labels of its means.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from dashboard.load import report, run_rows, runs
from pipeline import layout
from pipeline import report as pipeline_report

REPORT_COLUMNS = layout.REPORT_FIELDS
FROM_RUNS = ("input", "dip")  # the methods of the table built from the runs alone


def per_image_from_runs(root: Path) -> pd.DataFrame:
    """Rows of ``per_image.csv`` (methods ``input`` and ``dip``) of the runs, as ``dip evaluate``
    makes them (:func:`dashboard.load.run_rows`)."""
    rows = run_rows(root)
    rows = rows[rows["method"].isin(FROM_RUNS)].sort_values("method", key=lambda m: m.map(FROM_RUNS.index), kind="stable")
    rows["set"] = rows["set"].fillna("").astype(str)
    return rows.reset_index(drop=True).reindex(columns=list(layout.PER_IMAGE_FIELDS[:7]) + ["set"])


def report_from_runs(root: Path) -> pd.DataFrame:
    """The report's table built from the runs' ``run.json`` alone (``input`` and ``dip``, mean
    and spread over seeds, ``mean`` rows, k of n images from ``experiment.json``, a ``pending``
    row per experiment with no fit; no paper columns): what a partly finished pipeline, one
    without ``metrics/report.csv``, can show."""
    table = runs(root)
    if not len(table):
        return pd.DataFrame(columns=list(REPORT_COLUMNS))
    done: dict[str, set[str]] = {}
    for exp, image in zip(table["experiment"], table["image"]):
        done.setdefault(str(exp), set()).add(str(image))
    tree = layout.Tree(root)
    planned = sorted(p.name for p in tree.corrupted.iterdir() if layout.ExperimentDir(p).record.is_file()) if tree.corrupted.is_dir() else []
    progress = pipeline_report.read_progress(tree.corrupted, tree.results, list(dict.fromkeys(planned + sorted(done))), done)
    return pipeline_report.results_table(per_image_from_runs(root), {}, "", 0.0, progress)


def progress(rows: pd.DataFrame) -> tuple[int, int, bool] | None:
    """``(k, n, complete)`` of one experiment's report rows; ``None`` for a report written before
    the columns existed (or with them damaged)."""
    if not len(rows) or not {"images_done", "images_total"} <= set(rows.columns):
        return None
    k, n = pd.to_numeric(rows["images_done"], errors="coerce").iloc[0], pd.to_numeric(rows["images_total"], errors="coerce").iloc[0]
    if pd.isna(k) or pd.isna(n):
        return None
    return int(k), int(n), bool(n > 0 and k == n)


def mean_labels(rows: pd.DataFrame) -> dict[str, str]:
    """``{"mean": "mean over k of n images", "mean:<set>": "mean:<set> over its fitted images"}``
    for an experiment in progress (as report.md labels them); ``{}`` when it is complete."""
    state = progress(rows)
    if state is None or state[2]:
        return {}
    k, n, _ = state
    labels = [str(i) for i in dict.fromkeys(rows["image"]) if str(i).startswith("mean")]
    return {m: f"mean over {k} of {n} images" if m == "mean" else f"{m} over its fitted images" for m in labels}


def paper_means_all(rows: pd.DataFrame) -> pd.DataFrame:
    """The paper's means over all the experiment's (or a set's) images: ``image`` (``mean`` or
    ``mean:<set>``), ``method`` (the paper's label), ``psnr`` (``paper_psnr_all`` of the report)."""
    if "paper_psnr_all" not in rows.columns:
        return pd.DataFrame(columns=["image", "method", "psnr"])
    theirs = rows[(rows["source"] == "paper") & pd.to_numeric(rows["paper_psnr_all"], errors="coerce").notna()]
    return theirs[["image", "method", "paper_psnr_all"]].rename(columns={"paper_psnr_all": "psnr"}).reset_index(drop=True)


def paper_dip_reference(root: Path) -> pd.DataFrame:
    """The paper's DIP PSNR per experiment and image (``mean`` included): the ``paper_psnr`` of
    our ``dip`` rows in ``metrics/report.csv`` (empty where the run is not comparable)."""
    df = report(root)
    if df is None or "paper_psnr" not in df.columns:
        return pd.DataFrame(columns=["experiment", "image", "paper_psnr"])
    rows = df[(df["source"] == "ours") & (df["method"] == "dip")].dropna(subset=["paper_psnr"])
    return rows[["experiment", "image", "paper_psnr"]].reset_index(drop=True)
