"""Overview: per experiment, images × methods (DIP, baselines, the paper) with PSNR/SSIM and Δ.

The numbers are those of ``metrics/report.csv`` and the ``paper`` section of
``metrics/summary.json`` (both written by the evaluate stage through :mod:`pipeline.report`):
the dashboard computes no comparison with the paper itself. Before evaluate has run, the tables
come from the runs' ``run.json`` (DIP and the corrupted input only). A partial run shows as the
report shows it: an experiment in progress with an "in progress: k of n images" badge and its
means labelled "mean over k of n images" (over the fitted images only; the paper's values beside
them over the same images, its mean over all n in the caption), one with no fit as pending.
"""

from __future__ import annotations

import pandas as pd
import streamlit as st

from dashboard import load, tables, ui
from pipeline import layout
from pipeline import report as report_text

REPORT_CSV, REPORT_MD = f"{layout.METRICS}/{layout.REPORT_CSV}", f"{layout.METRICS}/{layout.REPORT_MD}"

SPREAD_COLUMNS = (("± std", "std"), ("min", "min"), ("max", "max"))  # over seeds: report.csv's <metric>_std, _min, _max
GOOD = "background-color: #c8e6c9; color: #1b5e20"
BAD = "background-color: #ffcdd2; color: #b71c1c"


def method_columns(methods: list[str]) -> list[str]:
    """input, dip, dip_* (final, averaged, early-stopped), then the baselines."""
    return sorted(methods, key=lambda m: (0 if m == "input" else 1 if m == "dip" else 2 if m.startswith("dip") else 3, m))


def row_order(images: list[str]) -> list[str]:
    """Images first (in the report's order), then ``mean`` and the ``mean:<set>`` rows."""
    images = list(dict.fromkeys(images))
    return [i for i in images if not i.startswith("mean")] + [i for i in images if i == "mean"] + [i for i in images if i.startswith("mean:")]


def experiment_table(rows: pd.DataFrame, metric: str, with_paper: bool) -> tuple[pd.DataFrame, pd.DataFrame]:
    """One experiment's report rows as a wide table, and the *reproduced* flags of its Δ columns.

    Rows: images, ``mean``, ``mean:<set>``; columns: our methods, ``<method> ± std``, ``<method> min``
    and ``<method> max`` (over seeds, :func:`spread_caption`) where several seeds ran, and with
    ``with_paper`` the paper's methods (their labels) and ``Δ <method>``."""
    ours = rows[rows["source"] != "paper"]
    index = row_order(list(rows["image"]))
    table = ours.pivot_table(index="image", columns="method", values=metric, aggfunc="first", dropna=False)
    table = table.reindex(index=index, columns=method_columns([str(c) for c in table.columns]))
    if pd.to_numeric(ours["seeds"], errors="coerce").max() > 1:
        for method in [m for m in table.columns if m == "dip"]:
            mine = ours[ours["method"] == method].set_index("image")
            for i, (suffix, column) in enumerate(SPREAD_COLUMNS):
                if f"{metric}_{column}" in mine.columns:
                    table.insert(table.columns.get_loc(method) + 1 + i, f"{method} {suffix}", mine[f"{metric}_{column}"].reindex(index))
    flags = pd.DataFrame(index=index)
    if with_paper:
        theirs = rows[rows["source"] == "paper"]
        if len(theirs) and metric in theirs.columns:
            wide = theirs.pivot_table(index="image", columns="method", values=metric, aggfunc="first").reindex(index)
            for col in wide.columns:
                table[str(col)] = wide[col]
        if metric == "psnr" and "delta" in ours.columns:
            compared = ours.dropna(subset=["delta"])
            for method in method_columns(list(dict.fromkeys(compared["method"]))):
                sub = compared[compared["method"] == method].set_index("image")
                table[f"Δ {method}"] = sub["delta"].reindex(index)
                flags[f"Δ {method}"] = sub["reproduced"].reindex(index)
    ours_cols = [c for c in table.columns if not c.startswith("Δ ") and c in set(ours["method"]) | {f"{m} {x}" for m in ours["method"] for x, _ in SPREAD_COLUMNS}]
    order = [x for c in ours_cols for x in (c, f"Δ {c}") if x in table.columns]
    table = table[order + [c for c in table.columns if c not in order]].dropna(axis=1, how="all")
    table.index.name = "image"
    return table, flags


def spread_caption(rows: pd.DataFrame) -> str:
    """What the table's numbers are over: the seeds and the spread's meaning (the report's legend), or "1 seed"."""
    note = report_text.seeds_note(rows[rows["source"] != "paper"])
    if not note or "1 seed" in note:
        return note
    return f"{note} {report_text.spread_legend('min and max')}"


def _delta_style(flags: pd.DataFrame):
    def style(col: pd.Series) -> list[str]:
        out = []
        for image, value in col.items():
            flag = flags.at[image, col.name] if col.name in flags.columns and image in flags.index else None
            out.append("" if pd.isna(value) or flag is None or pd.isna(flag) else GOOD if bool(flag) else BAD)
        return out

    return style


def progress_badge(exp: str, rows: pd.DataFrame, with_paper: bool) -> None:
    """The experiment's state: complete, or in progress (k of n, what its means cover, the
    paper's means over all n images, the images not fitted yet)."""
    state = tables.progress(rows)
    if state is None:
        return
    k, n, complete = state
    if complete:
        st.markdown(f":green-badge[complete: {ui.md_text(n)} of {ui.md_text(n)} images]")
        return
    st.markdown(f":orange-badge[in progress: {ui.md_text(k)} of {ui.md_text(n)} images]")
    text = f"Only {k} of the {n} images are fitted yet: every mean below is over {'this one' if k == 1 else f'these {k}'} only"
    if with_paper:
        same = rows[(rows["source"] != "paper") & rows["image"].str.startswith("mean")]["paper_psnr"].notna().any()
        text += "; the paper's values beside them are over the same images, so Δ compares like with like" if same else \
            "; the paper gives only means over whole sets of images, so Δ waits until they are fitted"
        full = tables.paper_means_all(rows)
        if len(full):
            parts = [f"{m} {v:.2f}" + ("" if i == "mean" else f" ({i.split(':', 1)[1]})") for i, m, v in full.itertuples(index=False)]
            text += f". The paper's means over all the images: {', '.join(parts)} dB"
    missing = [i for i in load.experiment_images(root, exp) if i not in set(rows["image"])]
    st.caption(ui.md_text(text) + (f". Not fitted yet: {ui.md_text(', '.join(missing))}." if missing else "."))


def partial_note_rendered(report: pd.DataFrame) -> str:
    """One line over the page when the run is partial: what is complete, in progress, pending."""
    states = {exp: tables.progress(report[report["experiment"] == exp]) for exp in dict.fromkeys(report["experiment"])}
    if all(s is None or s[2] for s in states.values()):
        return ""
    going_rendered = [ui.md_text(f"{e} ({s[0]} of {s[1]} images)") for e, s in states.items() if s and not s[2] and s[0]]
    pending_rendered = [ui.md_text(e) for e, s in states.items() if s and s[0] == 0]
    complete_rendered = [ui.md_text(e) for e, s in states.items() if s is None or s[2]]
    return ("**Partial results.** " + (f"Complete: {', '.join(complete_rendered)}. " if complete_rendered else "No experiment is complete yet. ")
            + (f"In progress: {', '.join(going_rendered)}. " if going_rendered else "") + (f"Pending (no image fitted yet): {', '.join(pending_rendered)}. " if pending_rendered else "")
            + "The means of an experiment in progress are over its fitted images only.")


def paper_caption_rendered(status: dict, epsilon: float | None) -> str:
    if not status:
        return ""
    if not status.get("comparable"):
        return f"Not compared with the paper: {ui.md_text(status.get('reason', 'no reason given'))}."
    parts_rendered = [f"Paper comparison ({REPORT_CSV})"]
    if load.number(status.get("mean_delta_dip")) is not None:
        parts_rendered.append(f"mean Δ DIP {status['mean_delta_dip']:+.2f} dB")
    if status.get("compared") == 0 and load.number(status.get("paper_mean_all")) is not None:
        parts_rendered.append("no Δ yet: the paper gives only its mean over all the images, compared once they are all fitted")
    elif status.get("compared") == 0:
        parts_rendered.append("the paper reports no number for these images or their mean")
    elif status.get("compared") is not None:
        parts_rendered.append(f"reproduced {ui.md_text(status.get('reproduced', 0))} of {ui.md_text(status['compared'])}" + (f" (|Δ| ≤ {epsilon:g} dB)" if epsilon is not None else ""))
    return " · ".join(parts_rendered)


root = ui.root()
st.title("Overview")
if ui.require_outputs(root, "metrics", "results"):
    info = ui.profile_badge(root)
    paper_setting = ui.is_paper(root)
    report = load.report(root)
    status = load.paper_status(root)
    epsilon = load.number(load.summary(root).get("epsilon"))
    c1, c2 = st.columns([1, 3])
    metric_label = c1.radio("Metric", ["PSNR (dB)", "SSIM"], horizontal=True, key="overview_metric")
    metric = "psnr" if metric_label.startswith("PSNR") else "ssim"
    if not paper_setting:
        c2.warning(
            f"These numbers come from the **{ui.md_text(info.get('profile', 'unknown'))}** profile (smaller images, a narrower "
            "network, fewer iterations): they are **not** the paper's setting, so they are not compared with the "
            "paper's numbers. Run the `paper` profile for that."
        )
    elif metric == "ssim":
        c2.caption("The paper reports PSNR only: Δ to the paper is in the PSNR view.")
    if report is None:
        report = tables.report_from_runs(root)
        if len(report):
            st.info(
                f"`{REPORT_CSV}` is not written yet (the evaluate stage has not run): showing DIP and the "
                "corrupted input from the runs' `run.json` only. Run `dvc repro` to add the baselines and the paper's numbers."
            )
    if not len(report):
        st.info("No finished DIP run and no metrics yet. Run `dvc repro`.")
    fmt = "{:.2f}" if metric == "psnr" else "{:.3f}"
    note_rendered = partial_note_rendered(report) if len(report) else ""
    if note_rendered:
        st.info(note_rendered)
    scored = report.dropna(subset=["psnr"]) if len(report) else report  # runs without ground truth have no PSNR
    for exp in list(dict.fromkeys(scored["experiment"])):
        rows = report[report["experiment"] == exp]
        exp_status = status.get(exp) or {}
        # a non-paper profile never shows as the paper's setting, whatever the files say
        with_paper = paper_setting and exp_status.get("comparable", True)
        st.subheader(f"{ui.md_text(exp)} · {ui.md_text(load.experiment_task(exp, root))}")
        progress_badge(exp, rows, with_paper and metric == "psnr")
        table, flags = experiment_table(rows, metric, with_paper)
        labels = tables.mean_labels(rows)
        table, flags = table.rename(index=labels), flags.rename(index=labels)
        styler = table.style.format(fmt, na_rep=ui.EMPTY)
        delta_cols = [c for c in table.columns if c.startswith("Δ ")]
        if delta_cols:
            styler = styler.format("{:+.2f}", na_rep=ui.EMPTY, subset=delta_cols).apply(_delta_style(flags), subset=delta_cols)
        means = [i for i in table.index if str(i).startswith("mean")]
        if means:
            styler = styler.set_properties(subset=pd.IndexSlice[means, :], **{"font-weight": "bold"})
        ui.table(styler, width="stretch")
        if spread_caption(rows):
            st.caption(ui.md_text(spread_caption(rows)))
        caption_rendered = paper_caption_rendered(exp_status, epsilon) if paper_setting or not exp_status.get("comparable") else ""
        if caption_rendered:
            st.caption(caption_rendered)
    pending = report[report["source"] == "pending"] if len(report) else report
    for exp in dict.fromkeys(pending["experiment"]):
        rows = report[report["experiment"] == exp]
        state = tables.progress(rows)
        st.subheader(f"{ui.md_text(exp)} · {ui.md_text(load.experiment_task(exp, root))}")
        st.markdown(f":gray-badge[pending: 0 of {ui.md_text(state[1] if state else '?')} images]")
        full = pd.to_numeric(rows["paper_psnr_all"], errors="coerce").dropna() if paper_setting and "paper_psnr_all" in rows else []
        st.caption("No image of this experiment is fitted yet." + (f" The paper's DIP mean over all its images: {full.iloc[0]:.2f} dB." if len(full) else ""))
    runs = load.runs(root)
    shown = set(scored["experiment"]) | set(pending["experiment"])
    for exp in dict.fromkeys(r for r in runs["experiment"] if r not in shown):
        st.subheader(f"{ui.md_text(exp)} · {ui.md_text(load.experiment_task(exp, root))}")
        st.info(load.NO_TRUTH + " See the Gallery (result, snapshots, loss) and Curves pages.")
        blind = runs[runs["experiment"] == exp][["image", "seed", "iterations_run", "wall_seconds"]]
        ui.table(blind, width="stretch", hide_index=True)
    report_md = layout.Tree(root).metric(layout.REPORT_MD)
    if report_md.is_file():
        with st.expander(REPORT_MD):
            st.markdown(ui.md_document(report_md.read_text(errors="replace")))
    ui.run_warnings(root)
    if len(runs):
        with st.expander(f"DIP runs ({len(runs)})"):
            ui.table(runs.drop(columns=["path"]).style.format(precision=4, na_rep=ui.EMPTY), width="stretch", hide_index=True)
