"""The Restore page's queue: one folder of files per job, read by the page, run by the worker.

Everything lives in files under the user-runs folder, so a reload, a second tab or a restarted
server sees the same queue and never starts a fit twice::

    user-runs/
        <name>-<time>/                 finished restorations: dip restore's folder (run.json, restored.png,
                                       curve.csv, snapshots/) + observation.png, mask.png?, ground_truth.png?, meta.json
        .queue/
            worker.lock                held (flock) by the one worker; holds its pid
            worker.started             a worker was started and is still loading
            worker.log                 the worker's own messages
            speed.json                 measured ms/iteration per machine and settings (the estimates)
            <id>/                      one job (appears whole: written in a temporary folder, then renamed)
                job.json               the request (the page writes it once)
                input.<ext>, mask.png?, gt.<ext>?   the uploads
                cancel                 present once Cancel was pressed (the page)
                state.json             running | done | failed | cancelled, times, message (the worker only)
                status.json, status.png   the fit's progress (dip restore --status)
                log.txt                dip restore's output
                out/                   dip restore's output folder until the worker moves it to user-runs/

A job's state: ``queued`` (no state.json yet), then what state.json says. Only the worker writes
state.json and speed.json (it holds the lock); only the page writes job.json and ``cancel``.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import platform
import re
import secrets
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipeline import files

QUEUE = ".queue"
LOCK, LOG, SPEED = "worker.lock", "worker.log", "speed.json"
JOB, STATE, STATUS, CANCEL = "job.json", "state.json", "status.json", "cancel"
FINAL = ("done", "failed", "cancelled")
MEASURE_ITERATIONS = 4  # a speed measurement: iteration 0 (set-up) and 3 timed iterations
MAX_PENDING = 20  # jobs queued or running at once: one machine fits one at a time, a longer queue is a mistake (or a flood)


class QueueFull(ValueError):
    """The queue holds :data:`MAX_PENDING` unfinished jobs; the message says what to do."""


def queue_dir(user_runs: Path) -> Path:
    return Path(user_runs) / QUEUE


def upload(kind: str, suffix: str) -> str:
    """The name of an upload in a job's folder: ``input``, ``mask`` or ``gt`` with its file's suffix."""
    return f"{kind}{suffix}"


def json_or_none(path: Path) -> Any:
    """A JSON file's value; ``None`` when it is missing or not (yet) JSON (where a missing or
    damaged file is an error, :func:`pipeline.files.read_json`, which this wraps)."""
    try:
        return files.read_json(path)
    except (OSError, ValueError):
        return None


def write_json(path: Path, value: Any) -> None:
    """Replace ``path`` atomically (:func:`pipeline.files.save_json`)."""
    files.save_json(path, value)


def disk_message(err: OSError, where: Path) -> str:
    """One line for an operating-system error while writing under ``where``."""
    if err.errno in (errno.ENOSPC, errno.EDQUOT):
        return f"the disk of {where} is full; free some space there, or start the dashboard with DIP_USER_RUNS set to a folder on another disk"
    if err.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return f"{where} cannot be written ({err.strerror}); start the dashboard with DIP_USER_RUNS set to a folder you may write"
    return f"{where}: {err.strerror or err}"


def safe_name(filename: str) -> str:
    """A folder-name-safe stem of an uploaded file's name (letters, digits, ``-``, ``_``; at most 40)."""
    stem = re.sub(r"[^A-Za-z0-9_-]+", "-", Path(filename).stem).strip("-_")[:40]
    return stem or "image"


def speed_key(preset: str, params: str | None, task: str, factor: int, size: tuple[int, int], channels: int) -> str:
    """What a speed depends on: this machine, the preset (and its params file), the task, the image's size."""
    where = params or "package"
    return f"{platform.node()}|{preset}@{where}|{task}{'x' + str(factor) if task == 'sr' else ''}|{size[0]}x{size[1]}x{channels}"


def speeds(user_runs: Path) -> dict[str, dict[str, Any]]:
    """``{speed_key: {"ms_per_iteration", "device", "measured", "source"}}`` (``{}`` when none)."""
    value = json_or_none(queue_dir(user_runs) / SPEED)
    return value if isinstance(value, dict) else {}


@dataclass
class Job:
    """One job folder as the page sees it."""

    path: Path
    request: dict[str, Any]
    state: dict[str, Any]

    @property
    def id(self) -> str:
        return self.path.name

    @property
    def kind(self) -> str:
        return str(self.request.get("kind", "restore"))

    @property
    def phase(self) -> str:
        """queued | running | done | failed | cancelled."""
        return str(self.state.get("state", "queued"))

    @property
    def cancel_requested(self) -> bool:
        return (self.path / CANCEL).exists()

    def status(self) -> dict[str, Any]:
        """The running fit's ``status.json`` (``{}`` before its first write)."""
        value = json_or_none(self.path / STATUS)
        return value if isinstance(value, dict) else {}


def load(path: Path) -> Job | None:
    request = json_or_none(path / JOB)
    if not isinstance(request, dict):
        return None
    state = json_or_none(path / STATE)
    return Job(path, request, state if isinstance(state, dict) else {})


def jobs(user_runs: Path) -> list[Job]:
    """Every job, oldest first (the queue's order)."""
    base = queue_dir(user_runs)
    try:
        folders = [p for p in base.iterdir() if p.is_dir() and not p.name.startswith(".")]
    except OSError:
        return []
    found = [j for j in map(load, folders) if j is not None]
    return sorted(found, key=lambda j: (float(j.request.get("submitted", 0)), j.id))


def pending(user_runs: Path) -> list[Job]:
    """Jobs not finished yet (queued or running), in order."""
    return [j for j in jobs(user_runs) if j.phase not in FINAL]


def submit(user_runs: Path, request: dict[str, Any], files: dict[str, bytes]) -> Job:
    """Queue a job: ``files`` (``{"input.png": bytes, …}``) and ``request`` (job.json) are written in a
    temporary folder that is then renamed into the queue, so the worker never sees half a job.
    An identical job (same files and request) that is still queued or running is returned instead
    of a second one. ``OSError`` (disk full, no permission) leaves nothing behind; :class:`QueueFull`
    when :data:`MAX_PENDING` jobs wait already."""
    base = queue_dir(user_runs)
    digest = hashlib.sha256(json.dumps(request, sort_keys=True).encode())
    for name in sorted(files):
        digest.update(name.encode() + files[name])
    request = {**request, "digest": digest.hexdigest()}
    waiting = pending(user_runs)
    for job in waiting:
        if job.request.get("digest") == request["digest"] and not job.cancel_requested:
            return job
    if len(waiting) >= MAX_PENDING:
        raise QueueFull(f"{len(waiting)} fits are already queued or running (at most {MAX_PENDING}); "
                        "wait for some to finish or remove queued ones, then start this one")
    base.mkdir(parents=True, exist_ok=True)
    now = time.time()
    job_id = time.strftime("%Y%m%d-%H%M%S", time.localtime(now)) + f"-{secrets.token_hex(3)}"
    tmp = base / f".{job_id}.tmp"
    try:
        tmp.mkdir()
        for name, data in files.items():
            (tmp / name).write_bytes(data)
        write_json(tmp / JOB, {**request, "id": job_id, "submitted": now})
        os.rename(tmp, base / job_id)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    job = load(base / job_id)
    assert job is not None
    return job


NAME = re.compile(r"^[A-Za-z0-9_-]{1,40}$")  # what safe_name gives: one folder-name component, never ".." or "/"
UPLOAD = re.compile(r"^(input|mask|gt)\.[A-Za-z0-9]{1,8}$")  # what upload gives: a file of the job's own folder


def _upload_path(job: Job, field: str) -> Path | None:
    """The job's upload named by request ``field`` (``None`` when the field is empty); ``ValueError``
    unless it is a regular file of the job's own folder (no ``..``, no absolute path, no link)."""
    value = job.request.get(field)
    if value in (None, "") and field != "input":
        return None
    if not isinstance(value, str) or not UPLOAD.match(value) or not value.startswith(field):
        raise ValueError(f"job.json: {field} {str(value)[:80]!r} is not an upload of this job ({field}.png, …); submit the job again from the page")
    path = job.path / value
    if path.is_symlink() or not path.is_file():
        raise ValueError(f"job.json: {field} {value} is not a regular file in the job's folder; submit the job again from the page")
    return path


def _whole(value: Any, low: int, high: int) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and low <= value <= high


def check_request(job: Job) -> None:
    """Refuse (``ValueError``, one line) a ``job.json`` the page did not write: a ``name`` that is not
    one safe folder-name component, uploads outside the job's folder or not regular files, a task,
    factor, iteration count, log interval or snapshot list of the wrong kind or range."""
    r = job.request
    if job.kind not in ("restore", "measure"):
        raise ValueError(f"job.json: unknown kind {str(r.get('kind'))[:40]!r}; submit the job again from the page")
    if not isinstance(r.get("name"), str) or not NAME.match(r["name"]):
        raise ValueError(f"job.json: name {str(r.get('name'))[:80]!r} is not a plain folder name (letters, digits, - and _); submit the job again from the page")
    for field in ("input", "mask", "gt"):
        _upload_path(job, field)
    if r.get("task") not in ("denoise", "inpaint", "sr") or not isinstance(r.get("preset"), str):
        raise ValueError("job.json: task must be denoise, inpaint or sr and preset a name; submit the job again from the page")
    if r["task"] == "sr" and not _whole(r.get("factor"), 2, 16):
        raise ValueError("job.json: factor must be a whole number from 2 to 16; submit the job again from the page")
    if r.get("params") is not None and not isinstance(r["params"], str):
        raise ValueError("job.json: params must be a file name; submit the job again from the page")
    if job.kind == "restore":
        if not _whole(r.get("iterations"), 1, 100_000) or not _whole(r.get("log_every", 25), 1, 100_000):
            raise ValueError("job.json: iterations and log_every must be whole numbers from 1 to 100000; submit the job again from the page")
        snaps = r.get("snapshots", [])
        if not isinstance(snaps, list) or len(snaps) > 1000 or not all(_whole(s, 0, 100_000) for s in snaps):
            raise ValueError("job.json: snapshots must be a list of iterations; submit the job again from the page")


def cancel(job: Job) -> None:
    """Ask the worker to stop ``job`` (a queued one never starts; a running fit gets SIGTERM: nothing half-written)."""
    (job.path / CANCEL).touch()


def forget(user_runs: Path, only: Job | None = None) -> int:
    """Remove the folders of finished jobs, or of the finished job ``only`` (their results in
    user-runs/ stay); returns how many."""
    gone = 0
    for job in jobs(user_runs) if only is None else [only]:
        if job.phase in FINAL:
            shutil.rmtree(job.path, ignore_errors=True)
            gone += 1
    return gone

