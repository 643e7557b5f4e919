"""Ablations: a baseline DVC experiment against variants (changed params, metrics and their
differences per experiment and method), then every DVC experiment of the workspace."""

from __future__ import annotations

import streamlit as st

from dashboard import dvc_exp, ui

# The documented way (docs/pipeline.md, "Ablations"): both sides queued, run on this machine
# with the same code. tests/test_suggested_params.py checks each `-S` of it against params.yaml.
HOW_TO = """\
# both sides as queued experiments, run here with the same code (commit your changes first)
dvc exp run --queue -n stride -S profile=quick -S profiles.quick.net.downsample=stride
dvc exp run --queue -n max -S profile=quick -S profiles.quick.net.downsample=max
dvc exp run --run-all            # runs the queue, one experiment after another
dvc exp show --only-changed      # or reload this page
dvc exp diff stride max
# the spread over seeds: add -S 'seeds=[0,1,2]' to both
# Fig. 8's architecture comparison: skip_depth6 | skip_depth4 | skip_depth2 | unet | resnet
dvc exp run --queue -n fig8-unet -S profile=paper -S profiles.paper.variants.fig8_library=unet
"""

root = ui.root()
st.title("Ablations")
st.caption(
    "DVC experiments of the workspace (`dvc exp show --json`): choose a baseline and the variants to "
    "compare with it. Both sides should be experiments run on this machine with the same code "
    "(docs/pipeline.md, Ablations)."
)
data, message = dvc_exp.exp_show(root)
table = dvc_exp.parse_exp_show(data) if data is not None else None
if table is None or not len(table):
    st.info(ui.md_text(message or "No DVC experiments yet."))
    st.markdown("To create a baseline and a variant, queue both (`dvc exp run --queue`) and run the queue "
                "(`dvc exp run --run-all`):")
    st.code(HOW_TO, language="bash")
    st.stop()

# ---------------------------------------------------------------- a baseline against variants
scored = [r for r in dvc_exp.runs(data) if r.summary]
by_label = {r.label: r for r in scored}
if len(scored) < 2:
    st.info("Fewer than two DVC experiments have metrics (their summary.json) to compare. "
            "Queue a baseline and a variant and run them:")
    st.code(HOW_TO, language="bash")
else:
    st.subheader("Baseline against variants")
    labels = list(by_label)
    experiments = [r.label for r in scored if r.kind == "experiment"]
    default = "stride" if "stride" in by_label else (experiments or labels)[0]
    base_label = st.selectbox("Baseline", labels, index=labels.index(default), key="ablations_baseline")
    others = [label for label in labels if label != base_label]
    if st.session_state.get("ablations_baseline_was") != base_label:  # a new baseline: the variants' default again
        st.session_state.pop("ablations_variants", None)
        st.session_state["ablations_baseline_was"] = base_label
    variant_labels = st.multiselect("Variants", others, default=[e for e in experiments if e != base_label] or others[:1],
                                    key="ablations_variants")
    baseline, variants = by_label[base_label], [by_label[v] for v in variant_labels]
    if not variants:
        st.info("Choose one or more variants to compare with the baseline.")
    else:
        st.markdown("**Changed parameters**")
        params = dvc_exp.changed_params([baseline, *variants])
        if len(params):
            ui.table(params, hide_index=True, width="stretch")
        else:
            st.caption("No parameter differs: the same settings (another run of the same code, or another commit).")
        names = dvc_exp.metrics_of([baseline, *variants])
        metric = st.selectbox("Metric", names, key="ablations_metric") if names else "psnr"
        st.markdown("**The metric per experiment and method** (Δ = variant − baseline)")
        ui.table(dvc_exp.comparison(baseline, variants, metric), hide_index=True, width="stretch")
        st.caption("The seeds columns: ± is the standard deviation over seeds and [min–max] their range, where "
                   "the metrics' summary.json records them; \"1 seed\" is a single run (no spread). A difference "
                   "smaller than the spread is not a finding.")

# ---------------------------------------------------------------- every DVC experiment
st.subheader("All DVC experiments")
changed = dvc_exp.changed_columns(table)
params = [c for c in changed if c.startswith("param:")]
metrics = [c for c in table.columns if c.startswith("metric:")]
only_changed = st.toggle("Only parameters that differ between experiments", value=True, key="ablations_changed")
shown_params = params if only_changed else [c for c in table.columns if c.startswith("param:")]
metric_filter = st.text_input("Filter metrics (substring)", value="psnr", key="ablations_metric_filter")
shown_metrics = [c for c in metrics if metric_filter.lower() in c.lower()] or metrics
cols = ["experiment", "kind", "baseline", "rev", "created"] + shown_params + shown_metrics
view = table[[c for c in cols if c in table.columns]].rename(columns=lambda c: c.split(":", 1)[1] if c.startswith(("param:", "metric:")) else c)
ui.table(view, width="stretch", hide_index=True)
st.caption(f"{len(table)} rows · {len(params)} changed parameter(s): {ui.md_text(', '.join(p.removeprefix('param:') for p in params) or 'none')}")
