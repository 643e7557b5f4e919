"""Restore one image with DIP and write its outputs: the unit of work of the CLI and the pipeline.

Layout of an output directory (:class:`pipeline.layout.RunDir` names its files)::

    restored.png   the estimate (early-stopped, else averaged, else the last output)
    final.png      the last output f_θ(z), when it differs from restored.png
    curve.csv      iteration, loss, psnr_obs[, psnr_gt, ssim_gt, psnr_gt_avg] every log_every iterations
    snapshots/     iter_NNNNN.png at the requested iterations
    run.json       settings, seed, device, versions, wall time, iterations run, early stop, metrics

Many fits run through :func:`restore_stream`, the one driver of `dip run` (in-process engine) and of
`dip restore` on several images: each fit is set up (:class:`LazyFit`) only when its turn comes,
same-size fits run together on CUDA, and a finished fit's network, input code and snapshots are
released as soon as its folder is written, so memory does not grow with the number of images.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import platform
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Hashable, Iterable, Iterator, TypeVar

import numpy as np
import torch

import dip
from dip.callbacks import CurveRecorder, SnapshotTaker
from dip.group import fit_bytes, group_size
from dip.fit import Callback, FitConfig, FitDiverged, Fitter, FitResult, run_fits
from pipeline.files import DEFAULT_MAX_PIXELS, atomic_directory, check_pixels, check_replaceable, save_image, save_json
from dip.io import to_numpy, to_tensor
from dip.metrics import quality
from dip.network import NetConfig
from dip.operators import Operator
from pipeline.layout import RunDir

RUN_CURVE_FIELDS = ("iteration", "loss", "psnr_obs", "psnr_gt", "ssim_gt", "psnr_gt_avg")

def versions() -> dict[str, str | None]:
    """Versions that produced a fit; ``cuda`` is torch's CUDA build (``None`` for a CPU build)."""
    return {"dip": dip.__version__, "torch": torch.__version__, "cuda": torch.version.cuda, "numpy": np.__version__,
            "python": platform.python_version()}


def write_curve(path: Path, rows: list[dict[str, float]]) -> None:
    fields = [f for f in RUN_CURVE_FIELDS if any(f in r for r in rows)]
    with open(path, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=fields, extrasaction="ignore")
        writer.writeheader()
        for row in rows:
            writer.writerow({k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in row.items()})


@dataclass
class Restoration:
    """One image being restored: its fitter (with the curve and snapshot callbacks) and what its
    output folder needs. Nothing is written until :func:`write`."""

    fitter: Fitter
    operator: Operator
    observation: np.ndarray
    out_dir: Path
    curve: CurveRecorder
    snapshots: dict[int, np.ndarray] = field(default_factory=dict)
    ground_truth: np.ndarray | None = None
    protocol: str = "rgb"
    shave: int = 0
    overwrite: bool = False
    extra: dict[str, Any] | None = None
    images: dict[str, np.ndarray] = field(default_factory=dict)  # more PNGs for the folder (the demo's input, truth)
    started: float = field(default_factory=time.time)


def prepare(
    operator: Operator,
    observation: np.ndarray,
    out_dir: Path,
    net_cfg: NetConfig,
    fit_cfg: FitConfig,
    *,
    ground_truth: np.ndarray | None = None,
    protocol: str = "rgb",
    shave: int = 0,
    device: str | torch.device = "auto",
    log_every: int = 50,
    snapshots: Iterable[int] = (),
    callbacks: Iterable[tuple[Callback, int]] = (),
    overwrite: bool = False,
    extra: dict[str, Any] | None = None,
    input_image: np.ndarray | None = None,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    images: dict[str, np.ndarray] | None = None,
) -> Restoration:
    """Check the inputs and set up the fit of one image (curve every ``log_every`` iterations,
    snapshots kept in memory at the requested iterations, the caller's ``callbacks``);
    ``input_image`` is the network's input when ``fit_cfg.input == "image"``; ``images`` are
    written beside the results as ``NAME.png``. Refuses (``ValueError``) a restored image over
    ``max_pixels`` before anything is allocated."""
    check_pixels(*operator.image_size(tuple(observation.shape[:2])), max_pixels)  # type: ignore[arg-type]
    y = to_tensor(observation)
    fitter = Fitter(net_cfg, operator, y, fit_cfg, device, input_image=None if input_image is None else to_tensor(input_image))
    if ground_truth is not None and tuple(ground_truth.shape[:2]) != tuple(fitter.image_size):
        gh, gw = ground_truth.shape[:2]
        raise ValueError(f"ground truth is {gw}x{gh} but the restored image will be {fitter.image_size[1]}x{fitter.image_size[0]}")
    check_replaceable(out_dir, overwrite)
    r = Restoration(fitter, operator, observation, out_dir, CurveRecorder(ground_truth, protocol=protocol, shave=shave),  # type: ignore[arg-type]
                    ground_truth=ground_truth, protocol=protocol, shave=shave, overwrite=overwrite, extra=extra,
                    images=dict(images or {}))
    fitter.add_callback(r.curve, every=log_every)
    marks = sorted({i for i in snapshots if 0 <= i <= fit_cfg.iterations})
    if marks:
        kept = r.snapshots  # the callback holds the dict, not r: no reference cycle keeps a finished fit alive
        fitter.add_callback(SnapshotTaker(lambda i, img: kept.__setitem__(i, img)), at=marks)
    for fn, every in callbacks:
        fitter.add_callback(fn, every=every)
    return r


def write(r: Restoration, result: FitResult) -> dict[str, Any]:
    """Write ``r``'s output folder atomically from the fit's ``result``; returns run.json's content."""
    if result.diverged_at is not None:
        raise FitDiverged(result.diverged_at)
    for name, out in (("restored", result.best), ("final", result.output)):
        if not torch.isfinite(out).all():
            raise ValueError(f"the {name} image holds NaN or infinite values (the fit diverged); nothing was written: "
                             "try a lower learning rate, another --seed or --early-stop")
    record = _record(r.fitter, result, r.curve, r.ground_truth, r.operator, r.observation, r.protocol, r.shave, r.started, r.extra)
    with atomic_directory(r.out_dir, overwrite=r.overwrite) as tmp:
        out = RunDir(tmp)
        out.snapshots.mkdir()
        for i, image in sorted(r.snapshots.items()):
            save_image(out.snapshot(i), image)
        save_image(out.restored, to_numpy(result.best))
        if result.best is not result.output:
            save_image(out.final, to_numpy(result.output))
        write_curve(out.curve, r.curve.rows)
        for name, image in r.images.items():
            save_image(tmp / f"{name}.png", image)
        save_json(out.run_json, record)
    return record


def fit_and_write(operator: Operator, observation: np.ndarray, out_dir: Path, net_cfg: NetConfig, fit_cfg: FitConfig, **options: Any) -> dict[str, Any]:
    """Fit DIP to ``observation`` through ``operator`` and write ``out_dir`` atomically (options as
    :func:`prepare`). Returns the content of ``run.json``."""
    r = prepare(operator, observation, out_dir, net_cfg, fit_cfg, **options)
    return write(r, run_fits([r.fitter])[0])


def restore_group(restorations: list[Restoration]) -> list[dict[str, Any] | Exception]:
    """Fit same-size images together (:mod:`dip.group`) and write each folder; an image that
    fails (e.g. its loss diverged) gets its exception in the list, the others their record."""
    results = run_fits([r.fitter for r in restorations])
    for r in restorations:
        r.extra = {**(r.extra or {}), "group_size": len(restorations)}
    outcomes: list[dict[str, Any] | Exception] = []
    for r, result in zip(restorations, results):
        try:
            outcomes.append(write(r, result))
        except (FitDiverged, ValueError, OSError) as err:
            outcomes.append(err)
    return outcomes


def _record(
    fitter: Fitter,
    result: FitResult,
    curve: CurveRecorder,
    gt: np.ndarray | None,
    operator: Operator,
    observation: np.ndarray,
    protocol: str,
    shave: int,
    started: float,
    extra: dict[str, Any] | None,
) -> dict[str, Any]:
    record: dict[str, Any] = {
        "task": operator.task,
        "net": fitter.net_cfg.to_dict(),
        "fit": dataclasses.asdict(fitter.cfg),
        "seed": fitter.cfg.seed,
        "device": str(fitter.device),
        "device_name": torch.cuda.get_device_name(fitter.device) if fitter.device.type == "cuda" else platform.processor() or platform.machine(),
        "versions": versions(),
        "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(started)),
        "wall_seconds": round(result.seconds, 3),
        "iterations_run": result.iterations_run,
        "early_stop_iteration": result.early_stop_iteration,
        "backtracks": result.backtracks,
        "image_size": list(fitter.image_size),
        "loop": result.mode,
        "estimate": "early_stopped" if result.early_stopped is not None else "averaged" if result.averaged is not None else "final",
        **(extra or {}),
    }
    if gt is not None:
        naive = to_numpy(operator.naive_estimate(to_tensor(observation)))
        metrics = {"input": quality(gt, naive, protocol, shave), "final": quality(gt, to_numpy(result.output), protocol, shave)}  # type: ignore[arg-type]
        if result.averaged is not None:
            metrics["averaged"] = quality(gt, to_numpy(result.averaged), protocol, shave)  # type: ignore[arg-type]
        if result.early_stopped is not None:
            metrics["early_stopped"] = quality(gt, to_numpy(result.early_stopped), protocol, shave)  # type: ignore[arg-type]
        metrics["restored"] = metrics[record["estimate"]]
        record["metrics"] = metrics
    return record


def group_key(observation_shape: tuple[int, ...], task: str, settings: Any) -> str:
    """Fits with equal keys may run together (:mod:`dip.group`): one observation shape, task and
    settings (``settings`` without the seed: the network, the fitting settings, the device)."""
    return json.dumps([list(observation_shape), task, settings], sort_keys=True, default=str)


@dataclass
class LazyFit:
    """A fit to run, not yet set up: ``prepare`` builds its :class:`Restoration` (reads the inputs,
    builds the network) only when its turn comes; fits of one ``key`` (:func:`group_key`) may run
    together. ``tag`` is the caller's handle (a job, an input file)."""

    prepare: Callable[[], Restoration]
    key: str
    tag: Any = None
    where: Path | str | None = None  # the input that an error while setting up names (a file, a case folder)

    def setup(self) -> Restoration:
        """``prepare()``; an error while reading damaged inputs (a truncated array, a meta.json of
        the wrong shape or nested too deeply, ...) becomes one ``ValueError`` naming :attr:`where`."""
        try:
            return self.prepare()
        except DAMAGED_INPUT as err:
            text = str(err.args[0]) if isinstance(err, KeyError) and err.args else " ".join(str(err).split())
            if self.where is None:
                raise
            if isinstance(err, (ValueError, OSError)) and str(self.where) in text:
                raise
            if not isinstance(err, (ValueError, OSError, KeyError)):  # the input's shape, not a message for people
                text = f"damaged input ({err.__class__.__name__}: {text or 'no detail'}); write it again (e.g. `dvc repro`)"
            raise ValueError(f"{self.where}: {text}") from None


DAMAGED_INPUT = (ValueError, OSError, KeyError, TypeError, IndexError, AttributeError, RecursionError, ArithmeticError)
"""What reading a damaged or hostile input file can raise while a fit is set up."""


def restore_stream(fits: Iterable[LazyFit], group: int | str = 1) -> Iterator[tuple[LazyFit, dict[str, Any] | Exception]]:
    """Run ``fits`` in groups of one key (``group``: a number, or ``auto`` = from free GPU
    memory; 1 off CUDA), yielding each one's run.json record, or the exception that stopped it
    (a user error while it was set up, a diverged fit, a full disk), as soon as its group is written.

    A group is set up just before it runs and released (network, input code, Adam state,
    snapshots) before the next one is set up: memory stays that of one group, whatever the count.
    """
    by_key: dict[str, list[LazyFit]] = {}
    for p in fits:
        by_key.setdefault(p.key, []).append(p)
    for same in by_key.values():
        queue, size = list(same), 0
        while queue:
            chunk: list[tuple[LazyFit, Restoration]] = []
            failed: list[tuple[LazyFit, Exception]] = []
            while queue and len(chunk) < max(size, 1):
                p = queue.pop(0)
                try:
                    chunk.append((p, p.setup()))
                except (ValueError, OSError, KeyError) as err:  # what setup() leaves of DAMAGED_INPUT
                    failed.append((p, err))
                if not size and chunk:  # the first fit of the key sets the group size
                    size = group_size_of(chunk[0][1].fitter, group, len(same))
            outcomes = restore_group([r for _, r in chunk]) if chunk else []
            done = [(p, outcome) for (p, _), outcome in zip(chunk, outcomes)]
            del chunk, outcomes  # the group's fitters go here, before the next group is set up
            yield from failed
            yield from done


def group_size_of(fitter: Fitter, group: int | str, count: int) -> int:
    """How many fits like ``fitter``'s run together (:func:`dip.group.group_size`): ``group`` if a
    number, else (``auto``) as many as the free GPU memory holds at the size of ``fitter``'s network
    and input (built here if not yet; 1 off CUDA); at most ``count``. The one sizing of a group,
    for :func:`restore_stream` and the publishing run."""
    per_fit = fit_bytes(*fitter.build()) if group == "auto" and fitter.device.type == "cuda" else 0
    return group_size(group, count, per_fit, fitter.device)


T = TypeVar("T")


def take_group(queue: list[T], key: Callable[[T], Hashable], size: int) -> list[T]:
    """Take the next fits to run together out of ``queue``: its head and up to ``size`` − 1 more
    of the head's ``key``, in queue order."""
    head = queue.pop(0)
    chunk = [head] + [f for f in queue if key(f) == key(head)][: max(size, 1) - 1]
    for f in chunk[1:]:
        queue.remove(f)
    return chunk
