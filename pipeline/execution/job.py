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

from pathlib import Path
from typing import Any

import torch

from dip.fit import Callback, FitConfig
from dip.network import NetConfig
from dip.operators import make_operator
from pipeline.layout import load_case
from pipeline.execution.fits import Restoration, prepare, restore_group
from pipeline.execution.keys import fit_key, settings_hash

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


