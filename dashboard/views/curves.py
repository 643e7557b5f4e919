"""Curves: PSNR / SSIM / loss over iterations or (estimated) seconds (altair), the paper's number and
the early stop marked; with several seeds, the band over seeds (min–max) around their mean
(:mod:`dashboard.bands`)."""

from __future__ import annotations

import altair as alt
import pandas as pd
import streamlit as st

from dashboard import bands, load, tables, ui
from pipeline import layout

Y_LABELS = {
    "psnr_gt": "PSNR vs ground truth (dB)",
    "psnr_gt_avg": "PSNR of the averaged output (dB)",
    "ssim_gt": "SSIM vs ground truth",
    "psnr_obs": "PSNR vs observation (dB)",
    "loss": "loss (MSE to the observation)",
}


def curve_chart(df: pd.DataFrame, y: str, colour: str, rules: pd.DataFrame, stops: pd.DataFrame, log_y: bool,
                x: str = "iteration", band: bool = False) -> alt.LayerChart:
    """The curves (x: ``iteration`` or ``seconds``); with ``band``, the area between ``<y>_min`` and
    ``<y>_max`` (over seeds) behind each line."""
    scale = alt.Scale(type="log") if log_y else alt.Scale(zero=False)
    x_axis = alt.X(f"{x}:Q", title=bands.SECONDS_NOTE if x == bands.SECONDS else "iteration")
    tooltip = [alt.Tooltip(c) for c in ("experiment", "image", "seed", "seeds", "iteration") if c in df.columns] + [alt.Tooltip(y, format=".4g")]
    lines = (
        alt.Chart(df)
        .mark_line(point=alt.OverlayMarkDef(size=18, opacity=0.5))
        .encode(x=x_axis, y=alt.Y(f"{y}:Q", title=Y_LABELS.get(y, y), scale=scale), color=alt.Color(f"{colour}:N", title=colour), tooltip=tooltip)
    )
    layers: list[alt.Chart] = [lines]
    if band:
        layers.insert(0, alt.Chart(df).mark_area(opacity=0.25).encode(
            x=x_axis, y=alt.Y(f"{y}_min:Q", scale=scale), y2=f"{y}_max:Q", color=alt.Color(f"{colour}:N", title=colour),
            tooltip=[alt.Tooltip(f"{y}_min:Q", format=".4g", title="min over seeds"), alt.Tooltip(f"{y}_max:Q", format=".4g", title="max over seeds")]))
    if len(rules):
        layers.append(
            alt.Chart(rules).mark_rule(strokeDash=[6, 4], color="#d62728").encode(y=f"{y}:Q", tooltip=[alt.Tooltip("label:N", title="paper"), alt.Tooltip(f"{y}:Q", format=".2f")])
        )
        layers.append(alt.Chart(rules).mark_text(align="left", dx=4, dy=-6, color="#d62728").encode(x=alt.value(0), y=f"{y}:Q", text="label:N"))
    if len(stops):
        layers.append(
            alt.Chart(stops)
            .mark_point(shape="diamond", size=140, filled=True, color="black")
            .encode(x=f"{x}:Q", y=f"{y}:Q", tooltip=[alt.Tooltip(c) for c in ("experiment", "image", "seed")] + [alt.Tooltip("iteration:Q", title="early stop at")])
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
    c4, c5 = st.columns([1, 2])
    x = c4.radio("x axis", ["iteration", bands.SECONDS], horizontal=True, key="curves_x",
                 help="Seconds: estimated from each run's wall time, linearly in the iteration (curve.csv logs no time).")
    several = all_curves.groupby(["experiment", "image"])["seed"].nunique().max() > 1
    band = several and c5.radio("Seeds", ["band over seeds", "one line per seed"], horizontal=True, key="curves_seeds",
                                help="The band: min–max over seeds around their mean.") == "band over seeds"
    if not chosen:
        st.info("Pick at least one experiment.")
        st.stop()
    blind = [e for e in chosen if not load.has_ground_truth(root, e)]
    if blind and y not in ("loss", "psnr_obs"):
        st.info(f"{ui.md_text(', '.join(blind))}: {load.NO_TRUTH} Choose the loss or the PSNR vs observation.")
    df = all_curves[all_curves["experiment"].astype(str).isin(chosen)].dropna(subset=[y]).copy()
    runs = load.runs(root)
    runs = runs[runs["experiment"].astype(str).isin(chosen)]
    df = bands.with_seconds(df, runs)
    runs = runs.assign(rate=pd.to_numeric(runs["wall_seconds"], errors="coerce") / pd.to_numeric(runs["iterations_run"], errors="coerce"))
    if per == "image":
        imgs = sorted(df["image"].astype(str).unique())
        pick = st.multiselect("Images", imgs, default=imgs, key="curves_images:" + "|".join(chosen))  # all images of a new choice of experiments
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
            stops = stops.assign(**{y: vals, bands.SECONDS: stops["iteration"] * stops["rate"]}).dropna(subset=[y])
        if band:
            df = bands.seed_band(df, y, "image")
            df["line"] = df["experiment"].astype(str) + " / " + df["image"].astype(str)
    else:
        df = bands.seed_band(df, y, "experiment") if band else df.groupby(["experiment", "iteration"], as_index=False)[[y, bands.SECONDS]].mean()
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
    if x == bands.SECONDS and df[bands.SECONDS].isna().all():
        st.info("No run of this selection records its wall time: the x axis stays in iterations.")
        x = "iteration"
    chart = curve_chart(df, y, "line", rules, stops if y in df.columns else pd.DataFrame(), log_y=(y == "loss"), x=x, band=band)
    st.altair_chart(chart, width="stretch")
    notes_rendered: list[str] = []  # every note is literal or rendered
    if band:
        notes_rendered.append(f"shaded: the min–max over {int(df['seeds'].max())} seeds around their mean (line)"
                     + ("; per experiment, each seed's curve is the mean over its images" if per == "experiment" else ""))
    elif not several:
        notes_rendered.append("1 seed: no spread over seeds")
    if x == bands.SECONDS:
        notes_rendered.append("x: " + bands.SECONDS_NOTE)
    if len(rules):
        notes_rendered.append("dashed red: the paper's reported DIP PSNR")
    if len(stops):
        notes_rendered.append("◆ the early-stopping (ES-WMV) point of each run")
    elif per == "image":
        notes_rendered.append("no run of this selection used early stopping")
    if not ui.is_paper(root):
        notes_rendered.append(f"profile {ui.md_text(load.profile(root).get('profile', '?'))}: fewer iterations and a narrower network than the paper")
    st.caption(" · ".join(notes_rendered))
