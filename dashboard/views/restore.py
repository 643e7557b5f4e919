"""Restore: your own image with Deep Image Prior — upload it, watch the network fit it, download the result.

This page only writes job files and reads their state (:mod:`dashboard.jobs`); the fit runs in the
background worker (:mod:`dashboard.worker`) as ``dip restore``, one at a time. Reloading the page or
opening it in a second tab loses nothing and starts nothing twice. Finished runs are ordinary
restore folders in ``user-runs/``, which the Gallery and Compare pages list as ``user-runs: <task>``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import altair as alt
import pandas as pd
import streamlit as st
import yaml

from dashboard import jobs, load, ui, uploads, worker
from pipeline import layout
from pipeline.settings import PACKAGE_PARAMS, Profile, user_experiment

TASKS = {"denoise": "Denoise", "inpaint": "Inpaint", "sr": "Super-resolution"}
POLL_SECONDS = 1.0  # while a job waits or runs
IDLE_POLL_SECONDS = 5.0  # otherwise: a fit started in another tab shows up here too
SHOWN_RESULTS = 12


def duration(seconds: float) -> str:
    """``42 s``, ``3 min 20 s``, ``2 h 05 min``."""
    s = max(0, int(round(seconds)))
    if s < 60:
        return f"{max(s, 1)} s" if seconds > 0 else "0 s"
    if s < 3600:
        return f"{s // 60} min {s % 60:02d} s"
    return f"{s // 3600} h {s % 3600 // 60:02d} min"


@st.cache_data(show_spinner=False, max_entries=8)
def _profiles(path: str, mtime: float) -> dict[str, Any]:
    value = yaml.safe_load(Path(path).read_text()) or {}
    profiles = value.get("profiles") if isinstance(value, dict) else None
    if not isinstance(profiles, dict) or not profiles:
        raise ValueError("no profiles")
    return profiles


def presets(root: Path) -> tuple[Path, dict[str, Any]]:
    """The presets' table: the workspace's params.yaml where there is one, else the one installed with dip."""
    path = root / "params.yaml" if (root / "params.yaml").is_file() else PACKAGE_PARAMS
    try:
        return path, _profiles(str(path), load.file_mtime(path))
    except (OSError, ValueError, yaml.YAMLError):
        st.error(f"The presets cannot be read from {ui.md_code(path)} (no `profiles:` in it). Start the dashboard in the repository of dip.")
        st.stop()
        raise


def fit_settings(profiles: dict[str, Any], preset: str, task: str, factor: int) -> dict[str, Any]:
    """The preset's fitting settings for ``task`` (what ``dip restore --preset`` uses)."""
    profile = Profile(preset, profiles[preset])
    try:
        return profile.fit(user_experiment(profile, task, factor))[0]
    except KeyError:
        return {}


def snapshot_marks(iterations: int) -> list[int]:
    """Where the gallery's snapshots are taken: 0, N/16, N/8, N/4, N/2, 3N/4, N."""
    return sorted({0, iterations} | {round(iterations * f) for f in (1 / 16, 1 / 8, 1 / 4, 1 / 2, 3 / 4)})


def picture(upload) -> uploads.Picture | None:
    return uploads.decode(upload.name, upload.getvalue()) if upload is not None else None


def suffix(name: str) -> str:
    ext = Path(name).suffix.lower()
    return ext if ext.lstrip(".") in uploads.SUFFIXES else ".png"


def ask_worker(user_runs: Path) -> None:
    """Jobs wait and no worker serves them (none started yet, or the last one left): start one."""
    try:
        worker.ensure_running(user_runs)
    except OSError as err:
        st.error(f"The background worker cannot start: {ui.md_text(jobs.disk_message(err, user_runs))}")


root = ui.root()
user_runs = load.user_runs_dir(root)
st.title("Restore your image")
if not root.is_dir():
    st.error(f"The results root {ui.md_code(root)} is not a folder: choose one in the sidebar (your runs go to its user-runs/ folder).")
    st.stop()
st.caption(
    "Deep Image Prior fits an untrained network to your one image; the network's structure is the only prior. "
    f"Runs go to {ui.md_code(load.rel(root, user_runs) + '/')} and appear on the Gallery and Compare pages as *user-runs: task*. "
    "One fit runs at a time; others wait in the queue. Closing or reloading this page does not stop a fit."
)
params_path, profiles = presets(root)
workspace = str(load.profile(root).get("profile") or "")
names = list(profiles)
default = names.index(workspace) if workspace in names else names.index("quick") if "quick" in names else 0

# ---------------------------------------------------------------------------------- what to restore
left, right = st.columns([3, 2])
image_up = left.file_uploader("Image to restore", type=list(uploads.SUFFIXES), key="restore_image",
                              help="PNG, JPEG or TIFF (8 or 16 bits, gray or colour): the noisy image, the image with holes, or the low-resolution image.")
task = right.radio("Task", list(TASKS), format_func=TASKS.get, key="restore_task", horizontal=True)
factor, holes, mask_up, colour, tolerance = 4, "mask", None, "#ff00ff", 0
if task == "sr":
    factor = int(right.radio("Factor", [2, 4, 8], index=1, key="restore_factor", horizontal=True, format_func=lambda f: f"×{f}"))
if task == "inpaint":
    holes = right.radio("The holes are", ["mask", "colour"], key="restore_holes", horizontal=True,
                        format_func={"mask": "black in an uploaded mask", "colour": "the pixels of one colour"}.get)
    if holes == "mask":
        mask_up = right.file_uploader("Mask (white = known pixel, black = hole), the image's size", type=list(uploads.SUFFIXES), key="restore_mask")
    else:
        c1, c2 = right.columns(2)
        colour = c1.color_picker("Colour of the holes", "#ff00ff", key="restore_colour")
        tolerance = int(c2.number_input("Tolerance (0–255)", 0, 255, 0, key="restore_tolerance", help="How far (per channel) a pixel may be from the colour and still be a hole; a JPEG needs some."))
gt_up = left.file_uploader("Ground truth (optional: PSNR while it fits)", type=list(uploads.SUFFIXES), key="restore_gt")
preset = right.selectbox("Preset", names, index=default, key="restore_preset",
                         format_func=lambda p: f"{p} (this workspace's profile)" if p == workspace else p,
                         help=f"A profile of `{params_path}`: its network and fitting settings for the task (`dip restore --preset`).")
settings = fit_settings(profiles, preset, task, factor)
preset_iterations = int(settings.get("iterations", 1000))
iterations = int(right.number_input("Iterations", 1, 100_000, preset_iterations, key=f"restore_iterations_{preset}_{task}_{factor}",
                                    help=f"The preset's number is {preset_iterations}."))

# ------------------------------------------------------------------------------------ check the upload
problem: str | None = None
image = mask_png = None
files: dict[str, bytes] = {}
mask_from = ""
try:
    image = picture(image_up)
    if image is not None:
        uploads.check_pixels(image, task, factor)
        files[jobs.upload("input", suffix(image.name))] = image.data
        if task == "inpaint" and holes == "mask" and mask_up is not None:
            mask = picture(mask_up)
            uploads.check_same_size("mask", mask, image.size)
            files[jobs.upload("mask", suffix(mask.name))], mask_png, mask_from = mask.data, mask.pixels, f"uploaded {mask.name}"
        elif task == "inpaint" and holes == "colour":
            rgb = uploads.hex_colour(colour)
            mask_png = uploads.colour_mask(image, rgb, tolerance)
            files[jobs.upload("mask", ".png")], mask_from = uploads.encode_png(mask_png), f"the pixels of colour {colour} (tolerance {tolerance})"
        gt = picture(gt_up)
        if gt is not None:
            scale = factor if task == "sr" else 1
            uploads.check_same_size("ground truth", gt, (image.size[0] * scale, image.size[1] * scale))
            files[jobs.upload("gt", suffix(gt.name))] = gt.data
except uploads.UploadError as err:
    problem = str(err)
if image is not None and task == "inpaint" and mask_png is None and problem is None:
    problem = "Inpainting needs the holes: upload a mask, or choose the colour that marks them."
if problem:
    st.error(ui.md_text(problem))

if image is not None:
    shown = [("your image", image.pixels)] + ([("mask (black = to fill)", mask_png)] if mask_png is not None else [])
    for col, (label, pixels) in zip(st.columns(4), shown):
        col.image(pixels, caption=f"{label} · {pixels.shape[1]}×{pixels.shape[0]}", width="stretch")

# ------------------------------------------------------------------------------ estimate, then start
request: dict[str, Any] = {}
if image is not None and problem is None:
    key = jobs.speed_key(preset, str(params_path), task, factor, image.size, image.channels)
    mask_name = next((n for n in files if n.startswith("mask")), None)
    request = {"kind": "restore", "name": jobs.safe_name(image.name), "source": image.name, "task": task, "factor": factor,
               "preset": preset, "params": str(params_path), "input": next(n for n in files if n.startswith("input")),
               "mask": mask_name, "mask_from": mask_from, "gt": next((n for n in files if n.startswith("gt")), None),
               "iterations": iterations, "log_every": max(1, min(25, iterations // 100)),
               "snapshots": snapshot_marks(iterations), "speed_key": key, "size": list(image.size)}
    speed = jobs.speeds(user_runs).get(key)
    ms = load.number(speed.get("ms_per_iteration")) if isinstance(speed, dict) else None
    measures = [j for j in jobs.jobs(user_runs) if j.kind == "measure" and j.request.get("speed_key") == key]
    if ms is not None:
        st.markdown(f"**Estimated time on this machine: {duration(ms * iterations / 1000)}** "
                    f"({ms:,.0f} ms per iteration × {iterations:,} iterations, measured on {ui.md_text(speed.get('device', '?'))}).")
    elif measures and measures[-1].phase in ("failed", "cancelled"):
        last = measures[-1]
        if last.phase == "failed":
            problem = str(last.state.get("message") or "dip restore refused these settings")
            st.error(f"These settings cannot run: {ui.md_text(problem)}")
        else:
            st.caption("Estimated time: not measured (the measurement was cancelled).")
        if st.button("Measure again", key="restore_measure_again"):
            jobs.forget(user_runs, last)
            st.rerun()
    else:
        if not measures:  # measured once per machine and settings
            try:
                jobs.submit(user_runs, {**{k: request[k] for k in ("name", "source", "task", "factor", "preset", "params", "input", "mask", "speed_key", "size")},
                                        "kind": "measure"}, {n: d for n, d in files.items() if not n.startswith("gt")})
                ask_worker(user_runs)
            except jobs.QueueFull as err:
                problem = str(err)
                st.error(ui.md_text(problem))
            except OSError as err:
                problem = jobs.disk_message(err, user_runs)
                st.error(ui.md_text(problem))
        st.caption("Estimated time: measuring a few iterations of this preset at this size on this machine…")

if st.button("Start", type="primary", key="restore_start", disabled=image is None or problem is not None):
    try:
        job = jobs.submit(user_runs, request, files)
        ask_worker(user_runs)
        st.session_state["restore_submitted"] = job.id
    except jobs.QueueFull as err:
        st.error(ui.md_text(err))
    except OSError as err:
        st.error(ui.md_text(jobs.disk_message(err, user_runs)))


# ------------------------------------------------------------------------------- now: running, queued
def describe_rendered(job: jobs.Job) -> str:
    """One line about ``job`` for the page, its fields (from job.json) rendered as text."""
    r = job.request
    what_rendered = ui.md_text(f"{TASKS.get(r.get('task'), r.get('task'))}" + (f" ×{r.get('factor')}" if r.get("task") == "sr" else ""))
    if job.kind == "measure":
        return f"speed measurement: {ui.md_text(r.get('source'))} · {what_rendered} · preset {ui.md_text(r.get('preset'))}"
    return (f"{ui.md_text(r.get('source'))} · {what_rendered} · preset {ui.md_text(r.get('preset'))} · "
            f"{ui.md_text(r.get('iterations', '?'))} iterations")


def psnr_chart(points: list[tuple[int, float]], title: str) -> alt.Chart:
    """The PSNR curve so far (the axis starts near the values, not at 0)."""
    df = pd.DataFrame(points, columns=["iteration", "psnr"])
    return (alt.Chart(df).mark_line(point=alt.OverlayMarkDef(size=12))
            .encode(x=alt.X("iteration:Q", title="iteration"), y=alt.Y("psnr:Q", title=title, scale=alt.Scale(zero=False)),
                    tooltip=["iteration", alt.Tooltip("psnr:Q", format=".2f")])
            .properties(height=320))


def show_running(job: jobs.Job) -> None:
    st.subheader(f"Running: {ui.md_text(job.request.get('source'))}" if job.kind == "restore" else "Measuring the speed")
    st.caption(describe_rendered(job))
    status = job.status()
    i, n = load.number(status.get("iteration")), load.number(status.get("iterations"))
    if not status:
        st.info("Starting: loading the network and the image…")
    elif i is None or n is None or n < 1:
        st.warning(f"The progress file {ui.md_code(job.path / jobs.STATUS)} cannot be read; the fit goes on.")
    else:
        i, n = int(i), int(n)
        st.progress(min(i / n, 1.0), text=f"iteration {i:,} of {n:,}")
        c = st.columns(4)
        c[0].metric("Iteration", f"{i:,} / {n:,}")
        loss, psnr_gt, psnr_obs, eta = (load.number(status.get(k)) for k in ("loss", "psnr_gt", "psnr_obs", "eta_seconds"))
        c[1].metric("Loss", f"{loss:.3e}" if loss is not None else "–")
        if psnr_gt is not None:
            c[2].metric("PSNR vs ground truth", f"{psnr_gt:.2f} dB")
        elif psnr_obs is not None:
            c[2].metric("PSNR vs your image", f"{psnr_obs:.2f} dB", help="How closely the output fits the corrupted image (not a quality measure).")
        c[3].metric("Time left", duration(eta) if eta is not None else "…",
                    help=f"Measured {status.get('ms_per_iteration') or '?'} ms per iteration × the iterations left.")
        if job.kind == "restore":
            a, b = st.columns(2)
            ui.image(a, root, job.path / str(status.get("snapshot", "status.png")), f"the network's output at iteration {i:,}", width="stretch")
            curve = [row for row in status.get("curve") or [] if isinstance(row, dict) and load.number(row.get("iteration")) is not None]
            y = "psnr_gt" if any("psnr_gt" in row for row in curve) else "psnr_obs"
            points = [(int(row["iteration"]), float(row[y])) for row in curve if load.number(row.get(y)) is not None]
            if points:
                title = "PSNR vs ground truth (dB)" if y == "psnr_gt" else "PSNR vs your image (dB): the fit to the observation"
                b.altair_chart(psnr_chart(points, title), width="stretch")
    if job.cancel_requested:
        st.warning("Cancelling: the fit stops and leaves nothing behind…")
    elif st.button("Cancel", key=f"restore_cancel_{job.id}"):
        jobs.cancel(job)
        st.rerun()


def now_panel() -> None:
    waiting = jobs.pending(user_runs)
    seen = set(st.session_state.get("restore_pending", []))
    st.session_state["restore_pending"] = [j.id for j in waiting]
    if seen - {j.id for j in waiting}:  # a job has finished: refresh the whole page (results, estimates)
        st.rerun(scope="app")
    if waiting and not worker.is_running(user_runs):
        ask_worker(user_runs)
    running = [j for j in waiting if j.phase == "running"]
    queued = [j for j in waiting if j.phase == "queued"]
    if not waiting:
        st.info("No fit is running. Upload an image and press Start.")
        return
    for job in running:
        show_running(job)
    if queued:
        st.subheader(f"Queued ({len(queued)})")
        for k, job in enumerate(queued, 1):
            c1, c2 = st.columns([6, 1])
            c1.markdown(f"{ui.md_text(k)}. {describe_rendered(job)}" + (" — cancelling" if job.cancel_requested else ""))
            if not job.cancel_requested and c2.button("Remove", key=f"restore_remove_{job.id}"):
                jobs.cancel(job)
                st.rerun()


st.divider()
polling = bool(jobs.pending(user_runs))
st.fragment(run_every=POLL_SECONDS if polling else IDLE_POLL_SECONDS)(now_panel)()

# -------------------------------------------------------------------------------- finished: results
finished = [j for j in reversed(jobs.jobs(user_runs)) if j.kind == "restore" and j.phase in jobs.FINAL][:10]
problems = [j for j in finished if j.phase != "done"]
for job in problems[:5]:
    text_rendered = f"**{ui.md_text(job.request.get('source'))}** ({describe_rendered(job)}): {ui.md_text(job.state.get('message') or job.phase)}"
    (st.warning if job.phase == "cancelled" else st.error)(text_rendered)
if finished and st.button("Clear the list of finished jobs", key="restore_forget", help="Their results stay in user-runs/."):
    jobs.forget(user_runs)
    st.rerun()

done = load.user_runs(root)
st.subheader(f"Your restorations ({len(done)})")
if not done:
    st.caption(f"None yet. Each finished fit is a folder in {ui.md_code(load.rel(root, user_runs) + '/')}: restored.png, run.json, curve.csv, snapshots/.")
for name, run_task in list(done.items())[:SHOWN_RESULTS]:
    path = user_runs / name
    record, _ = load.run_record(path)
    meta = load.read_json_object(layout.CaseDir(path).meta)
    restored = (record.get("metrics") or {}).get("restored") or {}
    c1, c2, c3 = st.columns([1, 3, 1])
    ui.image(c1, root, layout.RunDir(path).restored, "restored", width="stretch")
    seconds, its = record.get("wall_seconds"), record.get("iterations_run")
    c2.markdown(f"**{ui.md_text(name)}** · {ui.md_text(TASKS.get(run_task, run_task))}" + (f" ×{ui.md_text(meta['factor'])}" if meta.get("factor") else "")
                + f" · preset {ui.md_text(record.get('preset') or '?')}")
    c2.caption(f"{ui.md_text(meta.get('source') or '?')} · {f'{its:.0f}' if its is not None else '?'} iterations in "
               f"{duration(seconds) if seconds is not None else '?'} on {ui.md_text(record.get('device') or '?')}"
               + (f" · PSNR {restored['psnr']:.2f} dB (input {record['metrics']['input']['psnr']:.2f} dB)"
                  if restored.get("psnr") is not None and (record["metrics"].get("input") or {}).get("psnr") is not None else "")
               + f" · Gallery / Compare: *{load.USER_GROUP}{ui.md_text(run_task)}*")
    loaded = ui.safe_image(root, layout.RunDir(path).restored)  # the bytes shown are the bytes served
    if not isinstance(loaded, str):
        c3.download_button("Download restored.png", loaded[0], file_name=f"{name}-restored.png", mime="image/png", key=f"restore_download_{name}", on_click="ignore")
if len(done) > SHOWN_RESULTS:
    st.caption(f"… and {len(done) - SHOWN_RESULTS} older ones in {ui.md_code(load.rel(root, user_runs) + '/')}.")
