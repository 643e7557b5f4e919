"""``dip run``: DIP on every image (and seed) of one experiment, resumable.

The unit of work is :func:`restore_job`, a plain function of (corrupted case folder, output
folder, settings) so that an execution engine (:mod:`pipeline.engines`: in-process or Dask) can
ship it anywhere.
Each finished job leaves ``run.json`` with a ``settings_hash`` covering the settings, the input
files and the code of ``dip/`` and this module; :func:`run_experiment` skips jobs whose hash is
unchanged, so an interrupted run resumes where it stopped. Outputs are written atomically by
:func:`pipeline.restore.restore`, so an interrupted job leaves nothing behind.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

import numpy as np
import torch

import dip
from dip.fit import Callback, FitConfig
from dip.io import load_image, load_mask, remove_output, save_json
from dip.network import NetConfig
from dip.operators import make_operator
from pipeline.profiles import Experiment, Profile

if TYPE_CHECKING:
    from pipeline.engines import DaskEngine, LocalEngine
    from pipeline.restore import Restoration

    Engine = LocalEngine | DaskEngine

CODE_FILES = ("pipeline/restore.py", "pipeline/run.py")


@lru_cache(maxsize=1)
def code_hash() -> str:
    """sha256 over the sources of ``dip/`` and the restore code: results depend on them."""
    root = Path(dip.__file__).resolve().parent
    h = hashlib.sha256()
    for path in sorted(root.glob("*.py")) + [root.parent / p for p in CODE_FILES]:
        if path.is_file():
            h.update(path.name.encode() + path.read_bytes())
    return h.hexdigest()


def files_hash(folder: Path) -> str:
    h = hashlib.sha256()
    for path in sorted(p for p in folder.iterdir() if p.is_file()):
        h.update(path.name.encode() + path.read_bytes())
    return h.hexdigest()


def settings_hash(case_dir: Path, settings: dict[str, Any]) -> str:
    """What a finished job must match to be reused: settings, input files and code."""
    blob = json.dumps({"settings": settings, "inputs": files_hash(case_dir), "code": code_hash()}, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()


def job_settings(exp: Experiment, profile: Profile, seed: int, device: str) -> dict[str, Any]:
    """Everything :func:`restore_job` needs besides the files (JSON-serialisable)."""
    fit, snapshots = profile.fit(exp)
    net_cfg = NetConfig.from_dict(profile.net(exp)).to_dict()  # validated, every field explicit
    fit_cfg = FitConfig.from_dict({**fit, "seed": seed})
    return {"net": net_cfg, "fit": fit_cfg.__dict__.copy(), "seed": seed, "device": device,
            "log_every": profile.log_every, "snapshots": snapshots, "profile": profile.name}


def prepare_job(case_dir: Path, out_dir: Path, settings: dict[str, Any], callbacks: list[tuple[Callback, int]] | None = None,
                extra: dict[str, Any] | None = None) -> "Restoration":
    """Read one corrupted case and set up its fit (nothing written yet). ``extra`` adds
    provenance keys to run.json (e.g. the engine); it does not enter the hash."""
    from pipeline.restore import prepare

    meta = json.loads((case_dir / "meta.json").read_text())
    observation = np.load(case_dir / "observation.npy")
    has_truth = (case_dir / "ground_truth.png").is_file()  # figures of real photographs have none
    truth = load_image(case_dir / "ground_truth.png", mode="gray" if observation.ndim == 2 else "rgb") if has_truth else None
    input_image = np.load(case_dir / "input.npy") if (case_dir / "input.npy").is_file() else None
    mask = torch.from_numpy(load_mask(case_dir / "mask.png")) if meta["task"] == "inpaint" else None
    factor = int(meta.get("factor") or 0)
    operator = make_operator(meta["task"], mask=mask, factor=factor or 4)
    extra = {**(extra or {}), **{k: meta[k] for k in ("experiment", "image", "set", "profile") if k in meta}}
    extra["settings_hash"] = settings_hash(case_dir, settings)
    return prepare(
        operator, observation, out_dir, NetConfig.from_dict(settings["net"]), FitConfig.from_dict(settings["fit"]),
        ground_truth=truth, protocol="sr" if meta["task"] == "sr" else "rgb", shave=factor if meta["task"] == "sr" else 0,
        device=settings["device"], log_every=int(settings["log_every"]), snapshots=settings["snapshots"],
        callbacks=callbacks or (), overwrite=True, extra=extra, input_image=input_image,
    )


def restore_job(case_dir: Path, out_dir: Path, settings: dict[str, Any], callbacks: list[tuple[Callback, int]] | None = None,
                extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """Fit DIP to one corrupted case and write ``out_dir`` (restored.png, curve.csv, snapshots/,
    run.json); returns run.json's content. Pure inputs → output folder, no global state."""
    from pipeline.restore import restore_group

    outcome = restore_group([prepare_job(case_dir, out_dir, settings, callbacks, extra)])[0]
    if isinstance(outcome, Exception):
        raise outcome
    return outcome


def is_done(case_dir: Path, out_dir: Path, settings: dict[str, Any]) -> bool:
    """True if ``out_dir`` holds a finished run of exactly these settings and inputs."""
    record = out_dir / "run.json"
    if not (record.is_file() and (out_dir / "restored.png").is_file()):
        return False
    try:
        return json.loads(record.read_text()).get("settings_hash") == settings_hash(case_dir, settings)
    except (json.JSONDecodeError, OSError):
        return False


@dataclass
class Job:
    image: str
    seed: int
    case_dir: Path
    out_dir: Path
    settings: dict[str, Any] = field(default_factory=dict)


def plan(exp_id: str, corrupted: Path, out_root: Path, profile: Profile, seeds: list[int], device: str) -> list[Job]:
    """The jobs of an experiment: every image of ``corrupted/<exp>`` × every seed."""
    exp = profile.experiment(exp_id)
    info = json.loads((corrupted / "experiment.json").read_text())
    if info.get("profile") != profile.name:
        raise ValueError(f"{corrupted} was made for profile {info.get('profile')!r}, not {profile.name!r}; run `dvc repro`")
    jobs = []
    for image in info["images"]:
        for seed in seeds:
            jobs.append(Job(image, int(seed), corrupted / image, out_root / image / f"seed_{seed}", job_settings(exp, profile, int(seed), device)))
    return jobs


def prune(out_root: Path, jobs: list[Job]) -> None:
    """Remove result folders (images, seeds, leftovers) that the plan does not contain; only
    folders that dip wrote are removed, never other files."""
    wanted = {j.out_dir for j in jobs}
    images = {j.out_dir.parent for j in jobs}
    if not out_root.is_dir():
        return
    for image_dir in out_root.iterdir():
        if not image_dir.is_dir() or image_dir.is_symlink():
            continue
        for seed_dir in image_dir.iterdir():
            if seed_dir not in wanted:
                remove_output(seed_dir)
        if image_dir not in images and not any(image_dir.iterdir()):
            image_dir.rmdir()


def run_experiment(exp_id: str, corrupted: Path, out_root: Path, profile: Profile, seeds: list[int], device: str,
                   on_job: Callable[[Job, str], None] | None = None, engine: "Engine | None" = None) -> dict[str, int]:
    """Run (or resume) every job of ``exp_id`` on ``engine`` (default: in-process), with one
    progress bar and ETA over the iterations of all jobs.

    Returns ``{"run": n, "reused": m}``. Results are identical whichever engine runs them.
    """
    from pipeline.engines import LocalEngine
    from pipeline.progress import make_progress

    engine = engine or LocalEngine()
    jobs = plan(exp_id, corrupted, out_root, profile, seeds, device) if profile.is_active(exp_id) else []
    out_root.mkdir(parents=True, exist_ok=True)
    prune(out_root, jobs)
    todo = [j for j in jobs if not is_done(j.case_dir, j.out_dir, j.settings)]
    for job in jobs:
        if job not in todo and on_job:
            on_job(job, "reused")
    total = sum(int(j.settings["fit"]["iterations"]) for j in jobs)
    done = total - sum(int(j.settings["fit"]["iterations"]) for j in todo)
    running: dict[Path, int] = {}  # iterations so far of the fits in flight
    with make_progress() as progress:
        bar = progress.add_task(f"{exp_id} ({profile.name})", total=max(total, 1), completed=done, status=f"{len(jobs) - len(todo)} reused")

        def advance(job: Job, iteration: int, loss: float) -> None:
            running[job.out_dir] = iteration
            psnr = -10 * math.log10(max(loss, 1e-12))
            where = f"{len(running)} running" if len(running) > 1 else f"{job.image} seed {job.seed}"
            progress.update(bar, completed=done + sum(running.values()), status=f"{where}  loss {loss:.2e}  PSNR(obs) {psnr:.2f} dB")

        for job, _record in engine.run(todo, advance):
            running.pop(job.out_dir, None)
            done += int(job.settings["fit"]["iterations"])
            progress.update(bar, completed=done + sum(running.values()))
            if on_job:
                on_job(job, "run")
    save_json(out_root / "experiment.json", {
        "experiment": exp_id, "profile": profile.name, "active": profile.is_active(exp_id),
        "images": sorted({j.image for j in jobs}), "seeds": sorted({j.seed for j in jobs}),
    })
    return {"run": len(todo), "reused": len(jobs) - len(todo)}
