"""The Restore page (upload, queue, progress, results) through ``streamlit.testing.v1.AppTest``, its
queue files and worker, and ``dip restore --status``.

The page's states are driven through the queue's real files: a job is submitted with
:func:`dashboard.jobs.submit`, its state written as the worker writes it, its progress by the real
:class:`pipeline.execution.status.StatusWriter`, a finished folder by the real restore code and the
worker's :func:`dashboard.worker.finish`. The test holds the worker lock itself, which is exactly
how the page learns that a worker runs: so the page starts none. The tests that start the real
worker and ``dip restore`` processes are marked ``integration``.
"""

from __future__ import annotations

import errno
import fcntl
import io
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import streamlit  # noqa: F401 - a dependency: missing is a failure, not a skip
from streamlit.testing.v1 import AppTest  # noqa: E402

from dashboard import jobs, load, uploads, worker  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
APP = str(REPO / "dashboard" / "app.py")


def png_bytes(pixels: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format="PNG")  # uint16 pixels: a 16-bit PNG
    return buf.getvalue()


def noisy(size: tuple[int, int] = (32, 32), seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A smooth colour image and its noisy version (σ = 25/255), uint8."""
    h, w = size
    y, x = np.mgrid[0:h, 0:w] / max(h, w)
    clean = np.stack([x, y, 1 - x * y], axis=2)
    rng = np.random.default_rng(seed)
    dirty = np.clip(clean + rng.normal(0, 25 / 255, clean.shape), 0, 1)
    return (clean * 255).round().astype(np.uint8), (dirty * 255).round().astype(np.uint8)


@pytest.fixture
def site(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """A results root with its user-runs folder, the worker lock held by this test (no worker starts)."""
    root = tmp_path / "root"
    root.mkdir()
    monkeypatch.setenv("DIP_RESULTS", str(root))
    monkeypatch.delenv("DIP_USER_RUNS", raising=False)
    user_runs = root / "user-runs"
    queue = jobs.queue_dir(user_runs)
    queue.mkdir(parents=True)
    fd = os.open(queue / jobs.LOCK, os.O_RDWR | os.O_CREAT)
    fcntl.flock(fd, fcntl.LOCK_EX)
    try:
        yield root, user_runs
    finally:
        os.close(fd)


def open_page(page: str = "restore") -> AppTest:
    at = AppTest.from_file(APP, default_timeout=60).run()
    at.switch_page(f"views/{page}.py").run()
    assert not at.exception, [e.message for e in at.exception]
    return at


def upload(at: AppTest, key: str, name: str, data: bytes) -> AppTest:
    at.file_uploader(key=key).set_value((name, data, "image/png"))
    at.run()
    assert not at.exception, [e.message for e in at.exception]
    return at


def smoke_upload(name: str, dirty: np.ndarray, clean: np.ndarray | None = None) -> AppTest:
    """The page with the ``smoke`` preset, ``dirty`` uploaded as ``name`` (and ``clean`` as its ground truth)."""
    at = open_page()
    at.selectbox(key="restore_preset").set_value("smoke").run()
    upload(at, "restore_image", name, png_bytes(dirty))
    return at if clean is None else upload(at, "restore_gt", "clean.png", png_bytes(clean))


def text(at: AppTest) -> str:
    kinds = ("markdown", "caption", "info", "warning", "error", "success", "subheader", "title")
    return "\n".join(str(e.value) for kind in kinds for e in getattr(at, kind))


def request(task: str = "denoise", iterations: int = 20, **extra) -> dict:
    return {"kind": "restore", "name": "photo", "source": "photo.png", "task": task, "factor": 4, "preset": "smoke", "params": None,
            "input": "input.png", "mask": None, "gt": None, "iterations": iterations, "log_every": 1, "snapshots": [0, iterations],
            "speed_key": "k", **extra}


# ----------------------------------------------------------------------------------------- states
def test_idle_page_asks_for_an_image(site) -> None:
    at = open_page()
    assert "No fit is running" in text(at)
    assert at.button(key="restore_start").disabled
    assert "Your restorations (0)" in [s.value for s in at.subheader]
    assert not at.error


@pytest.mark.parametrize("case", ["not an image", "too many pixels", "mask of another size", "colour that marks no pixel", "ground truth of another size"])
def test_a_bad_upload_is_one_message_and_nothing_is_queued(site, case: str) -> None:
    root, user_runs = site
    _, dirty = noisy((40, 48))
    at = open_page()
    if case == "not an image":
        upload(at, "restore_image", "photo.png", b"this is a text file, not a picture")
        needle = "photo.png is not an image that can be read"
    elif case == "too many pixels":
        at.radio(key="restore_task").set_value("sr").run()
        at.radio(key="restore_factor").set_value(8).run()
        upload(at, "restore_image", "big.png", png_bytes(np.zeros((260, 260), np.uint8)))
        needle = "2080x2080 = 4,326,400 pixels, more than the limit of 4,194,304"
    elif case == "mask of another size":
        at.radio(key="restore_task").set_value("inpaint").run()
        upload(at, "restore_image", "photo.png", png_bytes(dirty))
        upload(at, "restore_mask", "mask.png", png_bytes(np.full((40, 40), 255, np.uint8)))
        needle = "the mask mask.png is 40x40 but it must be 48x40"
    elif case == "colour that marks no pixel":
        at.radio(key="restore_task").set_value("inpaint").run()
        at.radio(key="restore_holes").set_value("colour").run()
        at.color_picker(key="restore_colour").set_value("#00ff01").run()
        upload(at, "restore_image", "photo.png", png_bytes(np.zeros((40, 48, 3), np.uint8)))
        needle = "no pixel of photo.png has the colour #00ff01"
    else:
        at.radio(key="restore_task").set_value("sr").run()
        upload(at, "restore_image", "photo.png", png_bytes(dirty))
        upload(at, "restore_gt", "truth.png", png_bytes(dirty))
        needle = "the ground truth truth.png is 48x40 but it must be 192x160"
    assert len(at.error) == 1 and needle in at.error[0].value, [e.value for e in at.error]
    assert at.button(key="restore_start").disabled
    assert not at.exception and "Traceback" not in text(at)
    queued = [j.kind for j in jobs.jobs(user_runs)]  # no fit; a speed measurement only for a good image (uploaded before the bad truth)
    assert queued == (["measure"] if case == "ground truth of another size" else [])


def test_a_full_disk_is_one_message(site, monkeypatch: pytest.MonkeyPatch) -> None:
    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(jobs, "write_json", full)  # the disk fills up as the job is written
    _, dirty = noisy()
    at = upload(open_page(), "restore_image", "photo.png", png_bytes(dirty))
    assert len(at.error) == 1 and "is full; free some space there, or start the dashboard with DIP_USER_RUNS" in at.error[0].value
    assert at.button(key="restore_start").disabled
    assert not [p for p in jobs.queue_dir(site[1]).iterdir() if p.is_dir()]  # nothing half-written in the queue


def test_upload_queues_a_speed_measurement_then_shows_the_estimate(site) -> None:
    root, user_runs = site
    _, dirty = noisy()
    at = smoke_upload("photo.png", dirty)
    (measure,) = jobs.jobs(user_runs)
    assert measure.kind == "measure" and measure.phase == "queued" and measure.request["preset"] == "smoke"
    assert "measuring a few iterations" in text(at) and "1. speed measurement: photo.png" in text(at)
    assert worker.command(measure)[-6:] == ["--iterations", "4", "--log-every", "1", "--snapshots", ""]
    at.run()
    assert len(jobs.jobs(user_runs)) == 1  # a rerun does not measure twice
    key = measure.request["speed_key"]
    jobs.write_json(jobs.queue_dir(user_runs) / jobs.SPEED, {key: {"ms_per_iteration": 250.0, "device": "cpu"}})
    worker.mark(measure, "done")
    at.number_input(key="restore_iterations_smoke_denoise_4").set_value(480).run()
    assert "Estimated time on this machine: 2 min 00 s** (250 ms per iteration × 480 iterations, measured on cpu)" in text(at)


def test_settings_that_cannot_run_say_so_before_start(site) -> None:
    root, user_runs = site
    _, dirty = noisy()
    at = upload(open_page(), "restore_image", "photo.png", png_bytes(dirty))
    (measure,) = jobs.jobs(user_runs)
    message = "a 32x32 image is too small for a 5-level network: each side needs at least 32 px"
    worker.mark(measure, "failed", message=message)  # what the worker records from dip restore's error line
    at.run()
    assert [e.value for e in at.error] == [f"These settings cannot run: {message}"] and at.button(key="restore_start").disabled
    at.button(key="restore_measure_again").click().run()
    (again,) = jobs.jobs(user_runs)
    assert again.id != measure.id and again.phase == "queued" and not at.error


def test_start_queues_one_job_and_a_reload_or_second_tab_adds_none(site) -> None:
    root, user_runs = site
    clean, dirty = noisy()
    at = smoke_upload("my photo.png", dirty, clean)
    at.button(key="restore_start").click().run()
    restores = [j for j in jobs.jobs(user_runs) if j.kind == "restore"]
    assert len(restores) == 1 and restores[0].phase == "queued"
    job = restores[0]
    assert job.request["name"] == "my-photo" and job.request["iterations"] == 20 and job.request["gt"] == "gt.png"
    assert sorted(p.name for p in job.path.iterdir()) == ["gt.png", "input.png", "job.json"]
    cmd = worker.command(job)
    assert cmd[1:4] == ["-m", "pipeline.cli", "restore"] and "--status" in cmd and cmd[cmd.index("--gt") + 1] == str(job.path / "gt.png")
    assert "Queued (2)" in [s.value for s in at.subheader] and "my photo.png · Denoise · preset smoke · 20 iterations" in text(at)
    at.run()  # a reload
    second = smoke_upload("my photo.png", dirty, clean)  # a second tab, the same upload and settings, Start pressed again
    second.button(key="restore_start").click().run()
    assert len([j for j in jobs.jobs(user_runs) if j.kind == "restore"]) == 1


def status_of_a_running_fit(job: jobs.Job, iteration: int = 10, total: int = 20) -> None:
    """What ``dip restore --status`` leaves after ``iteration`` (the real writer, two calls)."""
    from dip.fit import Step
    from pipeline.execution.status import StatusWriter

    curve = [{"iteration": 0, "loss": 0.1, "psnr_obs": 10.0, "psnr_gt": 12.5}]
    writer = StatusWriter(job.path / jobs.STATUS, total, curve, "photo.png", every_seconds=0)
    writer(Step(0, torch.rand(1, 3, 32, 32), None, torch.tensor(0.1), None))  # type: ignore[arg-type]
    curve.append({"iteration": iteration, "loss": 0.01, "psnr_obs": 20.0, "psnr_gt": 21.5})
    writer(Step(iteration, torch.rand(1, 3, 32, 32), None, torch.tensor(0.01), None))  # type: ignore[arg-type]


def test_running_shows_progress_and_cancel_asks_the_worker(site) -> None:
    root, user_runs = site
    _, dirty = noisy()
    job = jobs.submit(user_runs, request(), {"input.png": png_bytes(dirty)})
    worker.mark(job, "running", started=time.time(), pid=os.getpid())
    at = open_page()
    assert "Starting: loading the network" in text(at)
    status_of_a_running_fit(job)
    at.run()
    assert "Running: photo.png" in [s.value for s in at.subheader]
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Iteration"] == "10 / 20" and metrics["PSNR vs ground truth"] == "21.50 dB" and metrics["Loss"] == "1.000e-02"
    assert metrics["Time left"] != "…"
    assert at.get("progress")[0].proto.value == 50
    assert any("iteration 10" in img.proto.imgs[0].caption for img in at.image)
    (chart,) = [json.loads(c.proto.spec) for c in at.get("arrow_vega_lite_chart") or at.get("vega_lite_chart")]  # the PSNR curve
    assert chart["encoding"]["y"]["title"] == "PSNR vs ground truth (dB)"
    at.button(key=f"restore_cancel_{job.id}").click().run()
    assert job.cancel_requested and "Cancelling" in text(at)


def test_cancelled_and_failed_jobs_say_why(site) -> None:
    root, user_runs = site
    _, dirty = noisy()
    a = jobs.submit(user_runs, request(), {"input.png": png_bytes(dirty)})
    b = jobs.submit(user_runs, request(iterations=30), {"input.png": png_bytes(dirty)})
    worker.mark(a, "cancelled", message="Cancelled at iteration 7; nothing was written.")
    worker.mark(b, "failed", message="input.png: not a readable image (UnidentifiedImageError)")
    at = open_page()
    assert [w.value for w in at.warning] == ["**photo.png** (photo.png · Denoise · preset smoke · 20 iterations): Cancelled at iteration 7; nothing was written."]
    assert [e.value for e in at.error] == ["**photo.png** (photo.png · Denoise · preset smoke · 30 iterations): input.png: not a readable image (UnidentifiedImageError)"]
    assert "No fit is running" in text(at)
    at.button(key="restore_forget").click().run()
    assert jobs.jobs(user_runs) == [] and not at.warning and not at.error


def finished_run(user_runs: Path, task: str = "denoise") -> Path:
    """A job finished by the real restore code (tiny network, in-process) and the worker's finish."""
    from dip.fit import FitConfig
    from dip.network import NetConfig
    from dip.operators import make_operator
    from pipeline.execution.fits import prepare, run_one
    from pipeline.execution.keys import Fit

    clean, dirty = noisy()
    job = jobs.submit(user_runs, request(task, gt="gt.png"), {"input.png": png_bytes(dirty), "gt.png": png_bytes(clean)})
    worker.mark(job, "running", started=time.time(), pid=os.getpid())
    run_one(Fit(job.path / "input.png", job.path / "out"), lambda f: prepare(
        make_operator(task), dirty.astype(np.float32) / 255, f.out_dir, NetConfig.from_dict({"levels": 2, "width": 4, "skip": 1}),
        FitConfig(iterations=4, exp_weight=0.99), ground_truth=clean.astype(np.float32) / 255, device="cpu", log_every=2, snapshots=(0, 4),
        extra={"preset": "smoke", "input": str(f.source)}))
    worker.finish(user_runs, job)
    assert job.phase == "done"
    return user_runs / job.state["result"]


def test_done_lists_the_result_with_a_download(site) -> None:
    root, user_runs = site
    path = finished_run(user_runs)
    assert sorted(p.name for p in path.iterdir()) == [".dip-output", "curve.csv", "final.png", "ground_truth.png", "meta.json",
                                                       "observation.png", "restored.png", "run.json", "snapshots"]
    assert not (jobs.queue_dir(user_runs) / jobs.jobs(user_runs)[0].id / "out").exists()
    at = open_page()
    assert "Your restorations (1)" in [s.value for s in at.subheader]
    (button,) = at.get("download_button")
    assert button.proto.label == "Download restored.png"
    assert path.name in text(at) and "Gallery / Compare: *user-runs: denoise*" in text(at) and "PSNR" in text(at)


def test_user_runs_appear_in_the_gallery_and_compare(site) -> None:
    root, user_runs = site
    path = finished_run(user_runs)
    group = load.USER_GROUP + "denoise"
    assert load.experiments(root) == [group] and load.images(root, group) == [path.name]
    assert set(load.sources(root, group, path.name)) == {"ground truth", "corrupted input", "DIP", "DIP (last iterate)"}
    at = open_page("gallery")
    at.selectbox(key="gallery_experiment").set_value(group).run()
    assert not at.exception and "denoise · " in text(at) and "Snapshots (2)" in text(at)
    at = open_page("compare")
    at.selectbox(key="compare_experiment").set_value(group).run()
    assert not at.exception
    assert at.selectbox(key="compare_a").value == "corrupted input" and at.selectbox(key="compare_b").value == "DIP"
    assert [m.label for m in at.metric] == ["vs ground truth", "vs ground truth"]


def test_a_worker_that_died_is_recovered(site) -> None:
    root, user_runs = site
    _, dirty = noisy()
    job = jobs.submit(user_runs, request(), {"input.png": png_bytes(dirty)})
    worker.mark(job, "running", started=time.time(), pid=2 ** 22 + 1)
    (job.path / "out").mkdir()  # what a killed fit may leave: never a result
    worker.recover(user_runs)
    job = jobs.load(job.path)
    assert job.phase == "failed" and "start it again" in job.state["message"] and not (job.path / "out").exists()
    assert load.user_runs(root) == {}


# ------------------------------------------------------------------------------ pieces of the page
def test_uploads_read_bit_depths_as_the_cli_does(tmp_path: Path) -> None:
    from pipeline.files import load_image
    from pipeline.files import DEFAULT_MAX_PIXELS

    assert uploads.MAX_PIXELS == DEFAULT_MAX_PIXELS
    deep = (np.arange(16 * 16, dtype=np.uint16).reshape(16, 16) * 257)
    (tmp_path / "deep.png").write_bytes(png_bytes(deep))
    pic = uploads.decode("deep.png", png_bytes(deep))
    assert pic.channels == 1 and pic.size == (16, 16) and pic.pixels.max() == 255
    np.testing.assert_array_equal(pic.pixels, np.round(load_image(tmp_path / "deep.png") * 255).astype(np.uint8))
    with pytest.raises(uploads.UploadError, match="not an image"):
        uploads.decode("x.png", b"\x89PNG but broken")


def test_colour_mask_marks_the_holes_within_the_tolerance() -> None:
    px = np.zeros((4, 5, 3), np.uint8)
    px[1, 2] = (255, 0, 255)
    px[2, 3] = (250, 3, 251)
    pic = uploads.Picture("p.png", b"", px)
    exact = uploads.colour_mask(pic, uploads.hex_colour("#ff00ff"))
    assert (exact == 0).sum() == 1 and exact[1, 2] == 0 and exact[0, 0] == 255
    assert (uploads.colour_mask(pic, (255, 0, 255), tolerance=5) == 0).sum() == 2
    with pytest.raises(uploads.UploadError, match="every pixel"):
        uploads.colour_mask(pic, (0, 0, 0), tolerance=255)


def test_disk_messages_say_what_to_do(tmp_path: Path) -> None:
    assert "is full" in jobs.disk_message(OSError(errno.ENOSPC, "No space left on device"), tmp_path)
    assert "DIP_USER_RUNS set to a folder you may write" in jobs.disk_message(OSError(errno.EROFS, "Read-only file system"), tmp_path)
    assert jobs.safe_name("../../my photo (1).JPG") == "my-photo-1" and jobs.safe_name("···.png") == "image"


def test_restore_status_file_while_fitting(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from pipeline.cli import app

    clean, dirty = noisy()
    Image.fromarray(dirty).save(tmp_path / "noisy.png")
    Image.fromarray(clean).save(tmp_path / "clean.png")
    status = tmp_path / "job" / "status.json"
    args = ["restore", str(tmp_path / "noisy.png"), "--gt", str(tmp_path / "clean.png"), "--preset", "smoke", "--device", "cpu",
            "--iterations", "6", "--log-every", "2", "--snapshots", "0,6"]
    refused = CliRunner().invoke(app, [*args, "--out", str(tmp_path / "out"), "--status", str(tmp_path / "out" / "s.json")])
    assert refused.exit_code == 2 and "lies inside --out" in refused.output and not (tmp_path / "out").exists()
    result = CliRunner().invoke(app, [*args, "--out", str(tmp_path / "out"), "--status", str(status)])
    assert result.exit_code == 0, result.output
    value = json.loads(status.read_text())
    assert value["iteration"] == value["iterations"] == 6 and value["eta_seconds"] == 0 and value["ms_per_iteration"] > 0
    assert [row["iteration"] for row in value["curve"]] == [0, 2, 4, 6] and value["psnr_gt"] == pytest.approx(value["curve"][-1]["psnr_gt"])
    assert Image.open(status.with_suffix(".png")).size == (32, 32)
    assert sorted(p.name for p in status.parent.iterdir()) == ["status.json", "status.png"]  # no temporary file left


# ------------------------------------------------------------------- the real worker, real processes
def wait_for(check, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.fixture
def live(tmp_path: Path):
    """A user-runs folder served by real workers; every worker started is stopped at the end."""
    user_runs = tmp_path / "user-runs"
    yield user_runs
    lock = jobs.queue_dir(user_runs) / jobs.LOCK
    if worker.is_running(user_runs):
        os.kill(int(lock.read_text().split()[0]), signal.SIGTERM)
        wait_for(lambda: not worker.is_running(user_runs), 60, "the worker to stop")


@pytest.mark.integration
def test_the_worker_runs_the_queue_one_fit_at_a_time(live: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    clean, dirty = noisy((48, 48))
    files = {"input.png": png_bytes(dirty), "gt.png": png_bytes(clean)}
    first = jobs.submit(live, request(iterations=300, gt="gt.png", log_every=10, snapshots=[0, 150, 300]), files)
    holes = dirty.copy()
    holes[10:20, 5:40] = (255, 0, 255)
    hole_mask = uploads.encode_png(uploads.colour_mask(uploads.Picture("h.png", b"", holes), (255, 0, 255)))
    inpaint = jobs.submit(live, request("inpaint", iterations=10, mask="mask.png"), {"input.png": png_bytes(holes), "mask.png": hole_mask})
    second = jobs.submit(live, request("sr", iterations=10, factor=2, gt="gt.png"), {"input.png": png_bytes(dirty[::2, ::2]), "gt.png": png_bytes(clean)})
    assert worker.ensure_running(live) and not worker.ensure_running(live)  # one worker per folder, also while it loads
    wait_for(lambda: worker.is_running(live), 60, "the worker to take the lock")
    # a second worker started by hand leaves at once: the lock is taken
    assert subprocess.run([sys.executable, "-m", "dashboard.worker", str(live)], cwd=REPO, env=worker._env(), timeout=60).returncode == 0
    wait_for(lambda: jobs.load(first.path).phase == "running", 60, "the first fit to start")
    assert jobs.load(second.path).phase == "queued"  # one at a time
    wait_for(lambda: jobs.load(first.path).status().get("iteration"), 120, "progress")
    wait_for(lambda: jobs.load(second.path).phase in jobs.FINAL, 240, "both fits to end")
    for job in (jobs.load(first.path), jobs.load(inpaint.path), jobs.load(second.path)):
        assert job.phase == "done", job.state
        out = live / job.state["result"]
        assert {"run.json", "restored.png", "curve.csv", "snapshots", "observation.png", "meta.json"} <= {p.name for p in out.iterdir()}
        assert (out / "ground_truth.png").is_file() == (job.request["task"] != "inpaint") and (out / "mask.png").is_file() == (job.request["task"] == "inpaint")
    sr = live / jobs.load(second.path).state["result"]
    assert Image.open(sr / "restored.png").size == (48, 48) and json.loads((sr / "meta.json").read_text())["factor"] == 2
    monkeypatch.delenv("DIP_USER_RUNS", raising=False)
    assert sorted(load.user_runs(live.parent).values()) == ["denoise", "inpaint", "sr"]  # live = <results root>/user-runs
    run = json.loads((live / jobs.load(first.path).state["result"] / "run.json").read_text())
    assert run["iterations_run"] == 300 and run["preset"] == "smoke" and run["metrics"]["restored"]["psnr"] > run["metrics"]["input"]["psnr"]
    assert [p.name for p in (live / jobs.load(first.path).state["result"] / "snapshots").iterdir()] != []
    assert jobs.speeds(live)["k"]["ms_per_iteration"] > 0


@pytest.mark.integration
def test_cancel_stops_the_fit_and_leaves_nothing(live: Path) -> None:
    _, dirty = noisy((64, 64))
    job = jobs.submit(live, request(iterations=100_000, log_every=5), {"input.png": png_bytes(dirty)})
    bad = jobs.submit(live, request(iterations=5), {"input.png": b"not an image"})
    worker.ensure_running(live)
    wait_for(lambda: jobs.load(job.path).status().get("iteration"), 120, "progress")
    jobs.cancel(job)
    wait_for(lambda: jobs.load(job.path).phase == "cancelled", 60, "the cancel")
    assert "Cancelled at iteration" in jobs.load(job.path).state["message"]
    assert not (job.path / "out").exists() and not [p for p in job.path.iterdir() if p.name.startswith(".")]
    assert not [p for p in live.iterdir() if p.name != jobs.QUEUE]  # nothing in user-runs/
    wait_for(lambda: jobs.load(bad.path).phase in jobs.FINAL, 120, "the bad job")
    failed = jobs.load(bad.path)
    assert failed.phase == "failed" and "not a readable image" in failed.state["message"]


@pytest.mark.integration
def test_a_fit_does_not_outlive_a_killed_worker(live: Path) -> None:
    _, dirty = noisy((64, 64))
    job = jobs.submit(live, request(iterations=100_000, log_every=5), {"input.png": png_bytes(dirty)})
    worker.ensure_running(live)
    wait_for(lambda: jobs.load(job.path).status().get("iteration"), 120, "progress")
    pid, child = int((jobs.queue_dir(live) / jobs.LOCK).read_text().split()[0]), int(jobs.load(job.path).state["pid"])
    os.kill(pid, signal.SIGKILL)
    wait_for(lambda: not Path(f"/proc/{child}").exists() or "Z" in Path(f"/proc/{child}/stat").read_text().split()[2], 60, "the fit to stop")
    assert not worker.is_running(live)
    worker.ensure_running(live)  # the next worker (started by the page) finds the job
    wait_for(lambda: jobs.load(job.path).phase == "failed", 60, "the recovery")
    assert not (job.path / "out").exists()


def test_no_results_root_no_writing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DIP_RESULTS", str(tmp_path / "nowhere"))
    monkeypatch.delenv("DIP_USER_RUNS", raising=False)
    at = open_page()
    assert len(at.error) == 1 and "is not a folder: choose one in the sidebar" in at.error[0].value
    assert not at.get("file_uploader") and not (tmp_path / "nowhere").exists()


def test_damaged_queue_files_are_one_line_each(site) -> None:
    root, user_runs = site
    _, dirty = noisy()
    job = jobs.submit(user_runs, request(), {"input.png": png_bytes(dirty)})
    worker.mark(job, "running", started=time.time(), pid=os.getpid())
    (job.path / jobs.STATUS).write_text(json.dumps({"iteration": "ten", "iterations": 20}))
    broken = jobs.queue_dir(user_runs) / "20000101-000000-000000"
    broken.mkdir()
    (broken / jobs.JOB).write_text("{not json")  # never listed: not a job
    run = user_runs / "photo-20000101-000000"
    run.mkdir()
    (run / "run.json").write_text("[1, 2]")
    (run / "restored.png").write_bytes(b"not a png")
    at = open_page()
    assert not at.exception and "Traceback" not in text(at)
    assert any("progress file" in w.value and "cannot be read; the fit goes on" in w.value for w in at.warning)
    assert "Your restorations (1)" in [s.value for s in at.subheader]
    assert any("restored: `" in w.value and "not a readable image" in w.value for w in at.warning)
    assert [j.id for j in jobs.jobs(user_runs)] == [job.id]


def test_uploads_are_capped_and_the_server_stays_local(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import tomllib

    from typer.testing import CliRunner

    from pipeline import cli
    from pipeline.execution import server

    calls: list[tuple[list[str], dict]] = []
    monkeypatch.setattr(server, "run_server", lambda cmd, env: calls.append((cmd, env)) or 0)
    assert CliRunner().invoke(cli.app, ["dashboard", "--results", str(tmp_path)]).exit_code == 0
    cmd, env = calls[0]
    assert cmd[cmd.index("--server.maxUploadSize") + 1] == "50" and env["STREAMLIT_SERVER_MAX_UPLOAD_SIZE"] == "50"
    assert cmd[cmd.index("--server.address") + 1] == "127.0.0.1"
    config = tomllib.loads((REPO / ".streamlit" / "config.toml").read_text())["server"]
    assert config["maxUploadSize"] == 50 and config["address"] == "127.0.0.1"


def test_a_blank_results_root_is_the_default(site) -> None:
    root, user_runs = site
    at = open_page()
    at.text_input(key="results_root").set_value("").run()  # what a browser sent after a page switch mid-run
    assert not at.exception and not at.error and at.text_input(key="results_root").value == str(root)
    assert "No fit is running" in text(at)
