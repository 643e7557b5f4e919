"""Curves: PSNR / SSIM / loss over iterations (altair), the paper's number and the early stop marked."""

from __future__ import annotations

import altair as alt
import pandas as pd
import streamlit as st

from dashboard import load, tables, ui
from pipeline import layout

Y_LABELS = {
    "psnr_gt": "PSNR vs ground truth (dB)",
    "psnr_gt_avg": "PSNR of the averaged output (dB)",
    "ssim_gt": "SSIM vs ground truth",
    "psnr_obs": "PSNR vs observation (dB)",
    "loss": "loss (MSE to the observation)",
}


def curve_chart(df: pd.DataFrame, y: str, colour: str, rules: pd.DataFrame, stops: pd.DataFrame, log_y: bool) -> alt.LayerChart:
    scale = alt.Scale(type="log") if log_y else alt.Scale(zero=False)
    tooltip = [alt.Tooltip(c) for c in ("experiment", "image", "seed", "iteration") if c in df.columns] + [alt.Tooltip(y, format=".4g")]
    lines = (
        alt.Chart(df)
        .mark_line(point=alt.OverlayMarkDef(size=18, opacity=0.5))
        .encode(x=alt.X("iteration:Q", title="iteration"), y=alt.Y(f"{y}:Q", title=Y_LABELS.get(y, y), scale=scale), color=alt.Color(f"{colour}:N", title=colour), tooltip=tooltip)
    )
    layers: list[alt.Chart] = [lines]
    if len(rules):
        layers.append(
            alt.Chart(rules).mark_rule(strokeDash=[6, 4], color="#d62728").encode(y=f"{y}:Q", tooltip=[alt.Tooltip("label:N", title="paper"), alt.Tooltip(f"{y}:Q", format=".2f")])
        )
        layers.append(alt.Chart(rules).mark_text(align="left", dx=4, dy=-6, color="#d62728").encode(x=alt.value(0), y=f"{y}:Q", text="label:N"))
    if len(stops):
        layers.append(
            alt.Chart(stops)
            .mark_point(shape="diamond", size=140, filled=True, color="black")
            .encode(x="iteration:Q", y=f"{y}:Q", tooltip=[alt.Tooltip(c) for c in ("experiment", "image", "seed")] + [alt.Tooltip("iteration:Q", title="early stop at")])
        )
    return alt.layer(*layers).properties(height=380).interactive()


root = ui.root()
st.title("Curves")
if ui.require_outputs(root, "results", "metrics"):
    all_curves = load.curves(root)
    if not len(all_curves):
        st.info(f"No curve yet: the fit stage (`dip run`) writes `{layout.RESULTS}/<exp>/<image>/{layout.SEED_PREFIX}<s>/{layout.CURVE}`. Run `dvc repro`.")
        st.stop()
    exps = sorted(all_curves["experiment"].astype(str).unique())
    c1, c2, c3 = st.columns([2, 1, 1])
    chosen = c1.multiselect("Experiments", exps, default=exps[:1], key="curves_experiments")
    metrics = [m for m in Y_LABELS if m in all_curves.columns and all_curves[m].notna().any()]
    y = c2.selectbox("Quantity", metrics, format_func=lambda m: Y_LABELS[m], key="curves_y")
    per = c3.radio("One line per", ["image", "experiment"], key="curves_per", help="Per experiment: the mean over its images (and seeds).")
    if not chosen:
        st.info("Pick at least one experiment.")
        st.stop()
    blind = [e for e in chosen if not load.has_ground_truth(root, e)]
    if blind and y not in ("loss", "psnr_obs"):
        st.info(f"{ui.md_text(', '.join(blind))}: {load.NO_TRUTH} Choose the loss or the PSNR vs observation.")
    df = all_curves[all_curves["experiment"].astype(str).isin(chosen)].dropna(subset=[y]).copy()
    runs = load.runs(root)
    runs = runs[runs["experiment"].astype(str).isin(chosen)]
    if per == "image":
        imgs = sorted(df["image"].astype(str).unique())
        pick = st.multiselect("Images", imgs, default=imgs, key="curves_images")
        df = df[df["image"].astype(str).isin(pick)]
        df["line"] = df["experiment"].astype(str) + " / " + df["image"].astype(str) + (" / seed " + df["seed"].astype(str) if df["seed"].nunique() > 1 else "")
        stops = runs.dropna(subset=["early_stop_iteration"])
        stops = stops[stops["image"].astype(str).isin(pick)]
        if len(stops):
            keyed = df.set_index(["experiment", "image", "seed", "iteration"])[y]
            stops = stops.assign(iteration=stops["early_stop_iteration"].astype(int))
            # the curve's value at the logged iteration nearest to the early stop
            vals = []
            for _, s in stops.iterrows():
                sub = df[(df["experiment"] == s["experiment"]) & (df["image"] == s["image"]) & (df["seed"] == s["seed"])]
                vals.append(sub.iloc[(sub["iteration"] - s["iteration"]).abs().argsort().iloc[0]][y] if len(sub) else float("nan"))
            stops = stops.assign(**{y: vals}).dropna(subset=[y])
    else:
        df = df.groupby(["experiment", "iteration"], as_index=False)[y].mean()
        df["line"] = df["experiment"].astype(str)
        stops = pd.DataFrame()
    # the paper's DIP number: paper_psnr of our `dip` rows in metrics/report.csv (comparable runs only)
    ref = tables.paper_dip_reference(root)
    rules = pd.DataFrame()
    if y in ("psnr_gt", "psnr_gt_avg") and len(ref) and ui.is_paper(root):
        ref = ref[ref["experiment"].isin(chosen)]
        images_shown = set(df["image"].astype(str)) if "image" in df.columns else set()
        ref = ref[(ref["image"] == "mean") | ref["image"].isin(images_shown)]
        rules = pd.DataFrame({y: ref["paper_psnr"].astype(float), "label": "paper DIP · " + ref["experiment"] + " " + ref["image"]})
    if not len(df):
        st.info("Nothing to plot for this selection.")
        st.stop()
    chart = curve_chart(df, y, "line", rules, stops if y in df.columns else pd.DataFrame(), log_y=(y == "loss"))
    st.altair_chart(chart, width="stretch")
    notes_rendered: list[str] = []  # every note is literal or rendered
    if len(rules):
        notes_rendered.append("dashed red: the paper's reported DIP PSNR")
    if len(stops):
        notes_rendered.append("◆ the early-stopping (ES-WMV) point of each run")
    elif per == "image":
        notes_rendered.append("no run of this selection used early stopping")
    if not ui.is_paper(root):
        notes_rendered.append(f"profile {ui.md_text(load.profile(root).get('profile', '?'))}: fewer iterations and a narrower network than the paper")
    st.caption(" · ".join(notes_rendered))
