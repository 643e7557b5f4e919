"""Compare: two images of one scene side by side, as a before/after slider, and as a zoomed crop.

Pixel-exact: the PNG files are served as they are (never re-encoded as JPEG), crops are enlarged
by pixel repetition, and the browser is told not to smooth (``image-rendering: pixelated``).
File names are shown as text (the slider escapes them, :func:`dashboard.imaging.slider_html`);
links to files outside the results folder are left out and named.
"""

from __future__ import annotations

import numpy as np
import streamlit as st

from dashboard import imaging, load, ui
from dashboard.imaging import crop, slider_html
from pipeline import layout


def show_iframe(html: str, height: int) -> None:
    if hasattr(st, "iframe"):
        st.iframe(html, height=height)
    else:  # Streamlit before st.iframe
        import streamlit.components.v1 as components

        components.html(html, height=height)


root = ui.root()
st.title("Compare")
if ui.require_outputs(root, "results", "data/corrupted", "baselines", user_runs=True):
    exps = load.experiments(root)
    c1, c2 = st.columns(2)
    exp = c1.selectbox("Experiment", exps, key="compare_experiment")
    imgs = load.images(root, exp) if exp else []
    image = c2.selectbox("Image (scene)", imgs, key="compare_image")
    if not image:
        st.info("No image for this experiment yet. Run `dvc repro`.")
        st.stop()
    # every image of this scene: this experiment first, then the same image in other experiments
    options: dict[str, tuple[bytes, np.ndarray]] = {}
    unreadable_rendered: list[str] = []
    for e in [exp] + [x for x in exps if x != exp]:
        for label, path in load.sources(root, e, image).items():
            loaded = ui.safe_image(root, path)
            if isinstance(loaded, str):
                unreadable_rendered.append(f"{ui.md_code(load.rel(root, path))} ({ui.md_text(loaded)})")
            elif label != "mask":
                options[f"{label}" if e == exp else f"{e}: {label}"] = loaded
    if unreadable_rendered:
        st.warning("Left out: " + ", ".join(unreadable_rendered))
    labels = list(options)
    if len(labels) < 2:
        st.info("Only one image of this scene exists so far; a comparison needs two.")
        st.stop()
    default_a = labels.index("corrupted input") if "corrupted input" in labels else 0
    default_b = labels.index("DIP") if "DIP" in labels else 1
    c1, c2 = st.columns(2)
    la = c1.selectbox("A (left / before)", labels, index=default_a, key="compare_a")
    lb = c2.selectbox("B (right / after)", labels, index=default_b, key="compare_b")
    (ba, ia), (bb, ib) = options[la], options[lb]
    gt = options["ground truth"][1] if "ground truth" in options else None
    task = load.experiment_task(exp, root)
    if not load.has_ground_truth(root, exp):
        st.info(load.NO_TRUTH)
    seeds = load.seeds(root, exp, image)  # the DIP image shown is the first seed's
    scoring = layout.protocol(task, load.number(load.meta(root, exp, image).get("factor")))
    cols = st.columns(2)
    for col, label, raw, arr in ((cols[0], la, ba, ia), (cols[1], lb, bb, ib)):
        col.image(raw, caption=f"{label} · {arr.shape[1]}×{arr.shape[0]}", output_format="PNG", width=int(arr.shape[1]))
        if gt is not None and arr.shape == gt.shape:
            from dip.metrics import quality

            q = quality(gt.astype(np.float32) / 255, arr.astype(np.float32) / 255, *scoring)
            col.metric("vs ground truth", f"{q['psnr']:.2f} dB", help=f"SSIM {q['ssim']:.4f}")
            if label.startswith("DIP") and len(seeds) > 1:
                col.caption(f"seed {int(seeds[0])}: 1 of {len(seeds)} seeds (the Overview gives the mean ± std over seeds)")
    if ia.shape != ib.shape:
        st.warning(f"The two images differ in size ({ia.shape[1]:d}×{ia.shape[0]:d} vs {ib.shape[1]:d}×{ib.shape[0]:d}), so there is no slider or crop: choose two of the same size.")
        st.stop()
    h, w = ia.shape[:2]
    st.subheader("Before / after")
    max_scale = max(1, min(8, 720 // max(w, 1)))
    scale = st.select_slider("Display scale (integer, nearest-neighbour)", options=list(range(1, max_scale + 1)), value=max_scale, key="compare_scale")
    show_iframe(slider_html(ba, bb, la, lb, w, h, scale), height=h * scale + 40)
    st.subheader("Zoomed crop")
    z1, z2, z3, z4 = st.columns(4)
    size = z1.slider("Crop size (px)", 4, max(4, min(h, w)), min(32, h, w), key="compare_crop")
    cy = z2.slider("Centre row", 0, h - 1, h // 2, key="compare_cy")
    cx = z3.slider("Centre column", 0, w - 1, w // 2, key="compare_cx")
    zoom = z4.select_slider("Zoom", options=[2, 4, 8, 16], value=8, key="compare_zoom")
    ca, cb = crop(ia, cy, cx, size, zoom), crop(ib, cy, cx, size, zoom)
    cols = st.columns(2)
    cols[0].image(imaging.encode_png(ca), caption=f"{la} · crop ×{zoom}", output_format="PNG", width=int(ca.shape[1]))
    cols[1].image(imaging.encode_png(cb), caption=f"{lb} · crop ×{zoom}", output_format="PNG", width=int(cb.shape[1]))
    diff = np.abs(ia.astype(np.int16) - ib.astype(np.int16))
    st.caption(f"Pixels that differ between A and B: {np.count_nonzero(diff.reshape(h, w, -1).any(-1)):,} of {h * w:,}; largest difference {int(diff.max())}/255.")
