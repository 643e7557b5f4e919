"""Gallery: the snapshots of one run at the saved iterations, beside the corrupted input and the truth."""

from __future__ import annotations

import streamlit as st

from dashboard import load, ui
from pipeline import layout

root = ui.root()
st.title("Gallery")
if ui.require_outputs(root, "results", "data/corrupted", user_runs=True):
    exps = load.experiments(root)
    shots = load.with_snapshots(root)  # opens on a run with snapshots (in a bundle: peppers or man of Table 1)
    first = next(((e, i) for e, i in shots if e in exps), (None, None))
    c1, c2, c3, c4 = st.columns([2, 2, 1, 1])
    exp = c1.selectbox("Experiment", exps, index=exps.index(first[0]) if first[0] else 0, key="gallery_experiment")
    imgs = load.images(root, exp) if exp else []
    kept = [i for e, i in shots if e == exp and i in imgs]
    image = c2.selectbox("Image", imgs, index=imgs.index(kept[0]) if kept else 0, key="gallery_image")
    if not image:
        st.info(f"No image for {ui.md_text(exp)} yet. Run `dvc repro`.")
        st.stop()
    seeds = load.seeds(root, exp, image)
    seed = c3.selectbox("Seed", seeds, key="gallery_seed", help=f"{len(seeds)} seeds of this image") if len(seeds) > 1 else (seeds[0] if seeds else None)
    ncols = int(c4.number_input("Columns", 2, 8, 4, key="gallery_cols"))
    src = load.sources(root, exp, image, seed)
    rd = load.run_dir(root, exp, image, seed)
    m = load.meta(root, exp, image)
    if m:
        level = ", ".join(f"{k} {m[k]:.4g}" if isinstance(m[k], float) else f"{k} {m[k]}" for k in ("sigma", "drop", "factor") if k in m)
        st.caption(f"{ui.md_text(load.experiment_task(exp, root))} · {ui.md_text(image)} ({ui.md_text(m.get('set', '?'))}) · {ui.md_text(level)}")
    truth = load.has_ground_truth(root, exp)
    if not truth:
        st.info(load.NO_TRUTH)
    # the endpoints: what the network sees and what it should find
    labels = ("network input", "corrupted input", "mask", "ground truth", "DIP")
    ends = [(label if label != "corrupted input" or truth else "observation (target)", src[label]) for label in labels if label in src]
    if ends:
        cols = st.columns(len(ends))
        for col, (label, path) in zip(cols, ends):
            ui.image(col, root, path, label, width="stretch")
    if rd and len(seeds) > 1 and not any(label.startswith("DIP") for label in src):
        st.info(f"This published bundle keeps the restored image of the first seed ({int(seeds[0])}) only; seed {int(seed)}'s numbers are below.")
    record, problems = load.run_record(rd) if rd else ({}, [])
    if problems:
        st.warning(f"{ui.md_code(load.rel(root, layout.RunDir(rd).run_json))}: " + ui.md_text("; ".join(problems)))
    snaps = load.snapshots(rd) if rd else []
    st.subheader(f"Snapshots ({len(snaps)})")
    if not snaps and load.bundle_manifest(root) is not None:
        st.info("This published bundle keeps no snapshot of this run; it keeps those of: "
                + (ui.md_text(", ".join(f"{e}/{i}" for e, i in shots)) or "no run") + ".")
    elif not snaps:
        st.info(f"This run saved no snapshot (or has not finished): the fit stage (`dip run`) writes `{layout.SNAPSHOTS}/iter_NNNNN.png`.")
    curve = load.curve(rd) if rd else None
    psnr_at = {}
    if curve is not None and "psnr_gt" in curve.columns:
        psnr_at = dict(zip(curve["iteration"].astype(int), curve["psnr_gt"]))
    for start in range(0, len(snaps), ncols):
        cols = st.columns(ncols)
        for col, (it, path) in zip(cols, snaps[start : start + ncols]):
            cap = f"iteration {it}" + (f" · {psnr_at[it]:.2f} dB" if it in psnr_at else "")
            ui.image(col, root, path, cap, width="stretch")
    if curve is not None and not truth and "loss" in curve.columns:
        st.subheader("Loss")
        st.line_chart(curve.set_index("iteration")[["loss"]])
    if record:
        restored = (record.get("metrics") or {}).get("restored") or {}
        es = record.get("early_stop_iteration")
        its, seconds = record.get("iterations_run"), record.get("wall_seconds")
        st.caption(
            (f"seed {int(seed)} of {len(seeds)} · " if len(seeds) > 1 else "1 seed · ")
            + f"{f'{its:.0f}' if its is not None else '?'} iterations in {f'{seconds:.1f}' if seconds is not None else '?'} s on {ui.md_text(record.get('device') or '?')}"
            + (f" · early stop at {es:.0f}" if es is not None else "")
            + (f" · restored ({ui.md_text(record.get('estimate'))}): {restored['psnr']:.2f} dB, SSIM {restored['ssim']:.3f}"
               if restored.get("psnr") is not None and restored.get("ssim") is not None else "")
        )
