"""One fit of ``dip run``: the :class:`Job`, its hashes, and how it runs (its settings: :func:`pipeline.settings.job_settings`).

A job is a plain value (corrupted case folder, output folder, settings) so that an execution
engine (:mod:`pipeline.execution.engines`: in-process or Dask) can ship it anywhere; :func:`restore_job`
is a pure function of it. Each finished job leaves ``run.json`` with a ``settings_hash``
covering the settings, the input files and the code that shapes a fit's output
(:data:`CODE_FILES` and ``dip/``); :func:`is_done` compares it, so an interrupted run resumes
where it stopped. It also records the :func:`fit_key`, which names the fit's *numbers* wherever
it runs (no code, device or execution options in it): the publishing run
(:mod:`pipeline.outputs.publish_run`) skips a fit whose key a published bundle already holds. Outputs are written atomically by :func:`pipeline.execution.fits.restore_group`,
so an interrupted job leaves nothing behind.

This module is a leaf of ``pipeline/``: it imports ``dip``, :mod:`pipeline.layout`, :mod:`pipeline.files` and :mod:`pipeline.execution.fits` only;
the engines and the stage (:mod:`pipeline.stages.run`) import it.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

import dip
from dip.config import EXECUTION_FIELDS  # FitConfig fields that change how an iteration runs, not its numbers
from dip.fit import Callback, FitConfig
from dip.network import NetConfig
from dip.operators import make_operator
from pipeline import layout
from pipeline.layout import CaseDir, load_case
from pipeline.execution.fits import Restoration, finished, prepare, restore_group

# Case files that identify a fit's inputs by their decoded pixels (exact 8-bit images, the same on
# every machine); observation.png only where there is no ground truth (a real photograph as is).
IDENTITY_FILES = (layout.GROUND_TRUTH, layout.MASK, layout.INPUT_PNG)

# Besides every module of dip/, the files whose code shapes a fit's output (tests/test_structure.py
# checks that this covers every project module the job imports).
CODE_FILES = ("pipeline/execution/job.py", "pipeline/layout.py", "pipeline/execution/fits.py", "pipeline/files.py")


@dataclass
class Job:
    """One fit: an image of an experiment with one seed."""

    image: str
    seed: int
    case_dir: Path
    out_dir: Path
    settings: dict[str, Any] = field(default_factory=dict)


@lru_cache(maxsize=1)
def code_hash() -> str:
    """sha256 over the sources of ``dip/`` and :data:`CODE_FILES`: results depend on them."""
    root = Path(dip.__file__).resolve().parent
    h = hashlib.sha256()
    for path in sorted(root.glob("*.py")) + [root.parent / p for p in CODE_FILES]:
        if path.is_file():
            h.update(path.name.encode() + path.read_bytes())
    return h.hexdigest()


def files_hash(folder: Path) -> str:
    """sha256 over the names and bytes of the files directly in ``folder``."""
    h = hashlib.sha256()
    for path in sorted(p for p in folder.iterdir() if p.is_file()):
        h.update(path.name.encode() + path.read_bytes())
    return h.hexdigest()


def settings_hash(case_dir: Path, settings: dict[str, Any]) -> str:
    """What a finished job must match to be reused: settings, input files and code."""
    blob = json.dumps({"settings": settings, "inputs": files_hash(case_dir), "code": code_hash()}, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()


def pixels_sha256(path: Path) -> str:
    """sha256 of an image file's decoded pixel array (``pipeline.images.manifest``'s pixel hash):
    independent of how the PNG was compressed."""
    with Image.open(path) as im:
        return hashlib.sha256(np.ascontiguousarray(np.asarray(im)).tobytes()).hexdigest()


def fit_key(case_dir: Path, settings: dict[str, Any]) -> str:
    """sha256 naming what a fit's numbers depend on, the same on every machine and for every code
    version that computes the same iteration:

    * the settings without the device and without execution options (:data:`EXECUTION_FIELDS`:
      CUDA graph, compile, memory format, check interval): ``fit``, ``net``, ``seed``,
      ``log_every``, ``snapshots``, ``profile``;
    * the inputs' identity: ``meta.json`` (experiment, image, set, corruption, its seed, size) and the
      pixel sha256 of the case's exact images (:data:`IDENTITY_FILES`; ``observation.png`` where
      there is no ground truth), never the float bytes of ``observation.npy``;
    * :data:`dip.NUMERICS`, bumped whenever the code changes a fit's numbers (``tests/test_numerics.py``).
    """
    case_dir = Path(case_dir)
    drop = set(EXECUTION_FIELDS)
    numbers = {
        "fit": {k: v for k, v in settings["fit"].items() if k not in drop},
        "net": {k: v for k, v in settings["net"].items() if k not in drop},
        **{k: settings.get(k) for k in ("seed", "log_every", "snapshots", "profile")},
    }
    case = CaseDir(case_dir)
    names = [n for n in IDENTITY_FILES if (case_dir / n).is_file()]
    if not case.ground_truth.is_file():
        names.append(case.observation_png.name)
    inputs = {"meta": json.loads(case.meta.read_text()), "pixels": {n: pixels_sha256(case_dir / n) for n in names}}
    blob = json.dumps({"numbers": numbers, "inputs": inputs, "numerics": dip.NUMERICS}, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(blob.encode()).hexdigest()


def prepare_job(case_dir: Path, out_dir: Path, settings: dict[str, Any], callbacks: list[tuple[Callback, int]] | None = None,
                extra: dict[str, Any] | None = None) -> Restoration:
    """Read one corrupted case and set up its fit (nothing written yet). ``extra`` adds
    provenance keys to run.json (e.g. the engine); it does not enter the hash."""
    case = load_case(case_dir)
    meta = case.meta
    mask = torch.from_numpy(case.mask) if case.mask is not None else None
    operator = make_operator(case.task, mask=mask, factor=case.factor or 4)
    extra = {**(extra or {}), **{k: meta[k] for k in ("experiment", "image", "set", "profile") if k in meta}}
    extra["settings_hash"] = settings_hash(case_dir, settings)
    extra["fit_key"] = fit_key(case_dir, settings)
    return prepare(
        operator, case.observation, out_dir, NetConfig.from_dict(settings["net"]), FitConfig.from_dict(settings["fit"]),
        ground_truth=case.truth, protocol=case.protocol[0], shave=case.protocol[1],
        device=settings["device"], log_every=int(settings["log_every"]), snapshots=settings["snapshots"],
        callbacks=callbacks or (), overwrite=True, extra=extra, input_image=case.input_image,
    )


def restore_job(case_dir: Path, out_dir: Path, settings: dict[str, Any], callbacks: list[tuple[Callback, int]] | None = None,
                extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """Fit DIP to one corrupted case and write ``out_dir`` (restored.png, curve.csv, snapshots/,
    run.json); returns run.json's content. Pure inputs → output folder, no global state."""
    outcome = restore_group([prepare_job(case_dir, out_dir, settings, callbacks, extra)])[0]
    if isinstance(outcome, Exception):
        raise outcome
    return outcome


def is_done(case_dir: Path, out_dir: Path, settings: dict[str, Any]) -> bool:
    """True if ``out_dir`` holds a finished run of exactly these settings and inputs."""
    return finished(out_dir, "settings_hash", settings_hash(case_dir, settings))
