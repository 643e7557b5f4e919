"""The Restore page's background worker: the queue's jobs (:mod:`dashboard.jobs`), one at a time.

Each job runs as the command line does, ``python -m pipeline.cli restore IMAGE … --out JOB/out
--status JOB/status.json``, so a fit from the page has exactly the CLI's checks, its atomic output
folder and its ``error:`` lines. Cancel is SIGTERM to that process, which the CLI handles like
Ctrl+C: its temporary folder is removed, nothing half-written stays. A finished folder gets the
page's inputs beside the CLI's files (``observation.png``, ``mask.png``, ``ground_truth.png``,
``meta.json``) and is then renamed, whole, to ``user-runs/<name>-<time>/``.

One worker per user-runs folder: it holds an exclusive ``flock`` on ``.queue/worker.lock`` for as
long as it lives (the operating system releases it if the worker dies), so a second one, started
by a second tab at the same moment, exits at once. The page starts a worker
(:func:`ensure_running`) whenever jobs wait and the lock is free; a worker exits after
:data:`IDLE_SECONDS` without work. It lives in the dashboard's process group: stopping
``dip dashboard`` stops it, and its running fit is cancelled cleanly. By hand::

    python -m dashboard.worker USER_RUNS

This is dashboard code, not pipeline code: the pipeline knows nothing of queues or pages, and the
worker reaches it only through the ``dip restore`` command line.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from dashboard import jobs, uploads
from dashboard.jobs import LOCK, LOG, SPEED, STATE, STATUS, Job
from pipeline.layout import CaseDir, RunDir

REPO = Path(__file__).resolve().parents[1]
IDLE_SECONDS = 30.0
STARTUP_SECONDS = 30.0  # a worker started this recently is still loading: none is started beside it
STARTED = "worker.started"  # touched when a worker is started, removed once it holds the lock
GRACE_SECONDS = 30.0  # a cancelled fit's time to clean up before SIGKILL
POLL_SECONDS = 0.25


def _env() -> dict[str, str]:
    """The worker's and the fit's environment: this checkout first on the import path (as app.py does)."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO)] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else []))
    return env


def is_running(user_runs: Path) -> bool:
    """Whether a worker holds the lock of ``user_runs``' queue."""
    try:
        fd = os.open(jobs.queue_dir(user_runs) / LOCK, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    else:
        fcntl.flock(fd, fcntl.LOCK_UN)
        return False
    finally:
        os.close(fd)


def ensure_running(user_runs: Path) -> bool:
    """Start a worker for ``user_runs`` unless one runs or one was started less than
    :data:`STARTUP_SECONDS` ago (it is still loading); returns whether it started one. Two callers
    at the same moment may both start one: the second finds the lock taken and exits."""
    queue = jobs.queue_dir(user_runs)
    queue.mkdir(parents=True, exist_ok=True)
    started = queue / STARTED
    if is_running(user_runs) or (started.exists() and time.time() - started.stat().st_mtime < STARTUP_SECONDS):
        return False
    started.touch()
    with open(queue / LOG, "ab") as log:
        subprocess.Popen([sys.executable, "-m", "dashboard.worker", str(Path(user_runs).resolve())], cwd=REPO, env=_env(),
                         stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)
    return True


def say(text: str) -> None:
    print(time.strftime("%Y-%m-%d %H:%M:%S"), text, flush=True)


def mark(job: Job, state: str, **fields: Any) -> None:
    """Record ``job``'s state (only the worker writes state.json)."""
    job.state = {**job.state, "state": state, **fields}
    jobs.write_json(job.path / STATE, job.state)


def command(job: Job) -> list[str]:
    """The ``dip restore`` command line of ``job``."""
    r, here = job.request, job.path
    cmd = [sys.executable, "-m", "pipeline.cli", "restore", str(here / r["input"]), "--task", r["task"], "--preset", r["preset"],
           "--out", str(here / "out"), "--status", str(here / STATUS)]
    if r.get("params"):
        cmd += ["--params", str(r["params"])]
    if r["task"] == "sr":
        cmd += ["--factor", str(r["factor"])]
    if r.get("mask"):
        cmd += ["--mask", str(here / r["mask"])]
    if job.kind == "measure":
        return cmd + ["--iterations", str(jobs.MEASURE_ITERATIONS), "--log-every", "1", "--snapshots", ""]
    if r.get("gt"):
        cmd += ["--gt", str(here / r["gt"])]
    return cmd + ["--iterations", str(r["iterations"]), "--log-every", str(r.get("log_every", 25)), "--snapshots", ",".join(str(s) for s in r.get("snapshots", []))]


def _die_with_parent() -> None:
    """In the fit's process (Linux): SIGTERM to it if the worker dies, so no fit outlives its worker."""
    try:
        import ctypes

        ctypes.CDLL(None).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def last_error(log: Path) -> str:
    """The last ``error: …`` line of the fit's output (its reason), else its last line."""
    try:
        lines = [line.strip() for line in log.read_text(errors="replace").splitlines() if line.strip()]
    except OSError:
        return ""
    errors = [line for line in lines if line.startswith("error: ")]
    return (errors[-1].removeprefix("error: ") if errors else lines[-1] if lines else "")[:600]


def record_speed(user_runs: Path, job: Job, device: str, source: str) -> float | None:
    """Keep the measured ms/iteration of ``job``'s settings in speed.json (the page's estimates)."""
    ms = jobs.json_or_none(job.path / STATUS)
    ms = ms.get("ms_per_iteration") if isinstance(ms, dict) else None
    key = job.request.get("speed_key")
    if not isinstance(ms, (int, float)) or not key:
        return None
    table = jobs.speeds(user_runs)
    table[key] = {"ms_per_iteration": float(ms), "device": device, "source": source, "measured": time.strftime("%Y-%m-%dT%H:%M:%S")}
    jobs.write_json(jobs.queue_dir(user_runs) / SPEED, table)
    return float(ms)


def finish(user_runs: Path, job: Job) -> None:
    """A fit that ended well: record its speed; a restoration's folder gets the inputs and moves, whole, to user-runs/."""
    out, r = job.path / "out", job.request
    device = str((jobs.json_or_none(RunDir(out).run_json) or {}).get("device", "?"))
    if job.kind == "measure":
        ms = record_speed(user_runs, job, device, "measurement")
        shutil.rmtree(out, ignore_errors=True)
        mark(job, "done", finished=time.time(), ms_per_iteration=ms, device=device)
        return
    jobs.check_request(job)
    case = CaseDir(out)  # the page's inputs beside dip restore's files, as a case folder holds them
    observation = uploads.decode(r["input"], (job.path / r["input"]).read_bytes())
    case.observation_png.write_bytes(uploads.encode_png(observation.pixels))
    if r.get("mask"):
        case.mask.write_bytes(uploads.encode_png(uploads.decode(r["mask"], (job.path / r["mask"]).read_bytes()).pixels))
    if r.get("gt"):
        case.ground_truth.write_bytes(uploads.encode_png(uploads.decode(r["gt"], (job.path / r["gt"]).read_bytes()).pixels))
    stamp = time.strftime("%Y%m%d-%H%M%S", time.localtime(float(r.get("submitted", time.time()))))
    dest = Path(user_runs) / f"{r['name']}-{stamp}"
    n = 2
    while dest.exists():
        dest, n = Path(user_runs) / f"{r['name']}-{stamp}-{n}", n + 1
    meta = {"task": r["task"], "image": dest.name, "set": "uploaded", "source": r.get("source", ""), "preset": r["preset"],
            "mask": r.get("mask_from", ""), "ground_truth": bool(r.get("gt")), "job": job.id}
    if r["task"] == "sr":
        meta["factor"] = int(r["factor"])
    jobs.write_json(case.meta, meta)
    os.rename(out, dest)
    record_speed(user_runs, job, device, "fit")
    mark(job, "done", finished=time.time(), result=dest.name)
    say(f"{job.id}: done, {dest}")


def run_job(user_runs: Path, job: Job, stop: list[int]) -> None:
    """Run ``job``'s fit to its end, or until it is cancelled or the worker is asked to stop."""
    jobs.check_request(job)  # a job.json edited by hand never names files or folders outside its own
    say(f"{job.id}: {' '.join(command(job))}")
    started = time.time()
    with open(job.path / "log.txt", "wb") as log:
        proc = subprocess.Popen(command(job), cwd=REPO, env=_env(), stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                preexec_fn=_die_with_parent if sys.platform.startswith("linux") else None)
        mark(job, "running", started=started, pid=proc.pid)
        asked: float | None = None
        while proc.poll() is None:
            if asked is None and (stop or job.cancel_requested):
                proc.send_signal(signal.SIGTERM)
                asked = time.monotonic()
            elif asked is not None and time.monotonic() - asked > GRACE_SECONDS:
                proc.kill()
            try:
                proc.wait(timeout=POLL_SECONDS)
            except subprocess.TimeoutExpired:
                pass
    at = job.status().get("iteration")
    where = f" at iteration {at}" if at is not None else " before its first iteration"
    if proc.returncode != 0:  # a fit stopped late (after its folder was complete) or killed (its temporary folder left)
        for leftover in [job.path / "out", *job.path.glob(".out.*")]:
            shutil.rmtree(leftover, ignore_errors=True)
    if proc.returncode == 0:
        try:
            finish(user_runs, job)
        except (OSError, ValueError) as err:
            shutil.rmtree(job.path / "out", ignore_errors=True)
            message = jobs.disk_message(err, Path(user_runs)) if isinstance(err, OSError) else str(err)
            mark(job, "failed", finished=time.time(), message=message)
    elif asked is not None:
        why = "the dashboard stopped" if stop and not job.cancel_requested else "cancelled"
        mark(job, "cancelled", finished=time.time(), message=f"{why.capitalize()}{where}; nothing was written.")
        say(f"{job.id}: {why}{where}")
    else:
        message = last_error(job.path / "log.txt") or f"dip restore stopped with exit code {proc.returncode}"
        mark(job, "failed", finished=time.time(), message=message, returncode=proc.returncode)
        say(f"{job.id}: failed: {message}")


def recover(user_runs: Path) -> None:
    """Jobs a previous worker left running (it died): finish those whose fit completed, fail the others."""
    for job in jobs.pending(user_runs):
        if job.phase != "running":
            continue
        out = job.path / "out"
        if RunDir(out).is_finished():
            try:
                finish(user_runs, job)
                continue
            except (OSError, ValueError):
                pass
        shutil.rmtree(out, ignore_errors=True)
        mark(job, "failed", finished=time.time(), message="The worker stopped while this fit ran (nothing was written); start it again.")


def serve(user_runs: Path, idle_seconds: float = IDLE_SECONDS) -> int:
    """The worker's loop: take the lock (or leave, if another worker has it), then run queued jobs
    in order until none has come for ``idle_seconds`` or SIGTERM/SIGINT arrives."""
    user_runs = Path(user_runs)
    queue = jobs.queue_dir(user_runs)
    queue.mkdir(parents=True, exist_ok=True)
    fd = os.open(queue / LOCK, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return 0
    os.ftruncate(fd, 0)
    os.write(fd, f"{os.getpid()}\n".encode())
    (queue / STARTED).unlink(missing_ok=True)
    stop: list[int] = []
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda signum, _frame: stop.append(signum))
    say(f"worker {os.getpid()} serves {user_runs}")
    recover(user_runs)
    idle_since = time.monotonic()
    while not stop:
        waiting = jobs.pending(user_runs)
        for job in waiting:
            if job.phase == "queued" and job.cancel_requested:
                mark(job, "cancelled", finished=time.time(), message="Cancelled before it started; nothing was written.")
        job = next((j for j in waiting if j.phase == "queued" and not j.cancel_requested), None)
        if job is not None:
            try:
                run_job(user_runs, job, stop)
            except Exception as err:  # noqa: BLE001 - a damaged job (a job.json edited by hand) must not stop the queue
                mark(job, "failed", finished=time.time(), message=f"this job cannot run: {type(err).__name__}: {err}")
                say(f"{job.id}: cannot run: {err!r}")
            idle_since = time.monotonic()
        elif time.monotonic() - idle_since > idle_seconds:
            break
        else:
            time.sleep(POLL_SECONDS)
    say(f"worker {os.getpid()} stops" + (" (asked to)" if stop else " (idle)"))
    fcntl.flock(fd, fcntl.LOCK_UN)
    os.close(fd)
    if not stop and jobs.pending(user_runs):  # a job came as this worker was leaving: serve it after all
        return serve(user_runs, idle_seconds)
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1:
        print("usage: python -m dashboard.worker USER_RUNS", file=sys.stderr)
        return 2
    return serve(Path(argv[0]))


if __name__ == "__main__":
    sys.exit(main())
