"""How a fit of ``dip run`` (a :class:`~pipeline.execution.keys.Fit` of a corrupted case; its
settings: a :class:`pipeline.settings.FitSettings` of :func:`pipeline.settings.job_settings`) is set up: :func:`setup_case`, the ``setup`` that
:func:`pipeline.execution.fits.drive` calls for `dip run` (either engine) and the publishing run.

Each finished fit leaves ``run.json`` with a ``settings_hash`` covering the settings, the input
files and the code that shapes a fit's output (:data:`~pipeline.execution.keys.CODE_FILES` and
``dip/``); :func:`~pipeline.execution.keys.is_done` compares it, so an interrupted run resumes
where it stopped. It also records the :func:`~pipeline.execution.keys.fit_key`, which names the
fit's *numbers* wherever it runs (no code, device or execution options in it): the publishing run
(:mod:`pipeline.outputs.publish_run`) skips a fit whose key a published bundle already holds.
Outputs are written atomically by :func:`pipeline.execution.fits.drive`, so an interrupted fit
leaves nothing behind.

This module imports ``dip``, :mod:`pipeline.layout`, :mod:`pipeline.files` and
:mod:`pipeline.execution.fits` only; the engines and the publishing run import it.
"""

from __future__ import annotations

from typing import Any

import torch

from dip.operators import make_operator
from pipeline.layout import load_case
from pipeline.execution.fits import Restoration, prepare
from pipeline.execution.keys import Fit, fit_key, settings_hash


def setup_case(fit: Fit, extra: dict[str, Any] | None = None) -> Restoration:
    """Read ``fit``'s corrupted case and set up its fit (nothing written yet). ``extra`` (then
    ``fit.extra``) adds provenance keys to run.json (e.g. the engine); it does not enter the hash."""
    assert fit.source is not None and fit.settings is not None, "a fit of `dip run` reads a case folder with its settings"
    case_dir, settings = fit.source, fit.settings
    case = load_case(case_dir)
    meta = case.meta
    mask = torch.from_numpy(case.mask) if case.mask is not None else None
    operator = make_operator(case.task, mask=mask, factor=case.factor or 4)
    extra = {**(extra or {}), **fit.extra, **{k: meta[k] for k in ("experiment", "image", "set", "profile") if k in meta}}
    extra["settings_hash"] = settings_hash(case_dir, settings)
    extra["fit_key"] = fit_key(case_dir, settings)
    return prepare(
        operator, case.observation, fit.out_dir, settings.net, settings.fit,
        ground_truth=case.truth, protocol=case.protocol[0], shave=case.protocol[1],
        device=settings.device, log_every=settings.log_every, snapshots=settings.snapshots,
        overwrite=True, extra=extra, input_image=case.input_image,
    )
