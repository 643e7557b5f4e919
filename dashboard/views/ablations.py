"""Ablations: the DVC experiments of this workspace, their changed params and their metrics."""

from __future__ import annotations

import streamlit as st

from dashboard import dvc_exp, ui

root = ui.root()
st.title("Ablations")
st.caption(
    "DVC experiments of the workspace (`dvc exp show --json`). Run one with, e.g., "
    "`dvc exp run -S net.downsample=max` and compare it with `dvc exp diff`."
)
table, message = dvc_exp.dvc_experiments(root)
if table is None or not len(table):
    st.info(ui.md_text(message or "No DVC experiments yet."))
    st.markdown(
        "To create one:\n\n```bash\ndvc exp run -S net.downsample=max -n maxpool\ndvc exp run -S net.downsample=stride -n stride\n"
        "# Fig. 8's architecture comparison: skip_depth6 | skip_depth4 | skip_depth2 | unet | resnet\n"
        "dvc exp run -S profiles.paper.variants.fig8_library=unet -n fig8-unet\n```"
    )
    st.stop()
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
