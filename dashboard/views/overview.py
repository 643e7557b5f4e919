"""Overview: per experiment, images × methods (DIP, baselines, the paper) with PSNR/SSIM and Δ."""

from __future__ import annotations

import numpy as np
import pandas as pd
import streamlit as st

from dashboard import data, ui

def method_columns(methods: list[str]) -> list[str]:
    """input, dip, dip_* (final, averaged, early-stopped), then the baselines."""
    return sorted(methods, key=lambda m: (0 if m == "input" else 1 if m == "dip" else 2 if m.startswith("dip") else 3, m))


def experiment_table(scores: pd.DataFrame, paper: pd.DataFrame, metric: str, with_delta: bool) -> pd.DataFrame:
    """Rows: images then ``mean``; columns: our methods, ``paper: <method>`` and ``Δ <method>``."""
    grouped = scores.groupby(["image", "method"])[metric]
    table = grouped.mean().unstack("method")
    table = table[method_columns(list(table.columns))]
    counts = grouped.count().unstack("method")
    if len(counts) and counts.max().max() > 1:  # several seeds: mean ± std in a separate column
        table["DIP ± std" if "dip" in table.columns else "± std"] = grouped.std().unstack("method").get("dip")
    table.loc["mean"] = table.mean(numeric_only=True)
    if metric in paper.columns and len(paper):
        ref = paper.dropna(subset=[metric]).pivot_table(index="image", columns="method", values=metric, aggfunc="mean")
        ours_of = paper.dropna(subset=["ours"]).drop_duplicates("method").set_index("method")["ours"].to_dict() if "ours" in paper.columns else {}
        extra_rows = [i for i in ref.index if i not in table.index]  # e.g. "mean (set5)": the paper's per-set means
        for row in extra_rows:
            table.loc[row] = np.nan
        for method in ref.columns:
            col = ref[method]
            values = col.reindex(table.index)
            if pd.isna(values.get("mean")):
                per_image = col.drop(index=["mean", *extra_rows], errors="ignore")
                images = [i for i in table.index if i != "mean" and i not in extra_rows]
                if len(per_image) and set(per_image.index) >= set(images):
                    values["mean"] = per_image.reindex(images).mean()
            table[f"paper: {method}"] = values
            ours = ours_of.get(method)
            if with_delta and ours in table.columns:
                table[f"Δ {ours} − paper {method}" if ours != method else f"Δ {ours}"] = table[ours] - values
    table.index.name = "image"
    return table


def _colour(eps: float):
    def style(v: float) -> str:
        if v is None or (isinstance(v, float) and np.isnan(v)):
            return ""
        return "background-color: #c8e6c9; color: #1b5e20" if v >= -eps else "background-color: #ffcdd2; color: #b71c1c"

    return style


root = ui.root()
st.title("Overview")
if ui.require_outputs(root, "metrics", "results"):
    info = ui.profile_badge(root)
    paper_setting = ui.is_paper(root)
    scores, source = data.scores(root)
    paper = data.paper(root)
    c1, c2, c3 = st.columns([1, 1, 2])
    metric_label = c1.radio("Metric", ["PSNR (dB)", "SSIM"], horizontal=True, key="overview_metric")
    metric = "psnr" if metric_label.startswith("PSNR") else "ssim"
    eps = c2.number_input("Reproduced if |Δ| ≤ ε", min_value=0.0, value=0.5 if metric == "psnr" else 0.01, step=0.1 if metric == "psnr" else 0.005, key=f"eps_{metric}")
    show_delta = paper_setting
    if not paper_setting:
        prof = info.get("profile", "unknown")
        c3.warning(
            f"These numbers come from the **{prof}** profile (smaller images, a narrower network, fewer "
            "iterations): they are **not** the paper's setting, so Δ to the paper is not computed. "
            "The paper's values are shown for reference only."
        )
        show_delta = c3.toggle("Show Δ to the paper anyway (not a like-for-like comparison)", key="force_delta")
    if source != "metrics/per_image.csv":
        st.info(
            "`metrics/per_image.csv` is not written yet (the evaluate stage has not run): showing DIP and the "
            f"corrupted input from `{source}` only. Run `dvc repro` to add the baselines and the paper's numbers."
        )
    if not len(scores):
        st.info("No finished DIP run and no metrics yet. Run `dvc repro`.")
    for exp in sorted(scores["experiment"].astype(str).unique()):
        sub = scores[scores["experiment"].astype(str) == exp]
        ref = paper[paper["experiment"].astype(str) == exp] if len(paper) else paper
        st.subheader(f"{exp} · {data.experiment_task(exp)}")
        table = experiment_table(sub, ref, metric, show_delta)
        fmt = "{:.2f}" if metric == "psnr" else "{:.3f}"
        styler = table.style.format(fmt, na_rep="–")
        delta_cols = [c for c in table.columns if c.startswith("Δ ")]
        if delta_cols:
            styler = styler.map(_colour(eps), subset=delta_cols)
            if not paper_setting:
                st.caption(f"Δ shown on request: profile {info.get('profile')} is not the paper's setting.")
        styler = styler.set_properties(subset=pd.IndexSlice[["mean"], :], **{"font-weight": "bold"})
        st.dataframe(styler, width="stretch")
        if len(ref) and "source" in ref.columns:
            st.caption("Paper: " + "; ".join(sorted(set(ref["source"].dropna().astype(str)))))
    report = root / "metrics" / "report.md"
    if report.is_file():
        with st.expander("metrics/report.md"):
            st.markdown(report.read_text())
    runs = data.runs(root)
    if len(runs):
        with st.expander(f"DIP runs ({len(runs)})"):
            st.dataframe(runs.drop(columns=["path"]), width="stretch", hide_index=True)
