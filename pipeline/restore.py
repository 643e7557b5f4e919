"""Restore one image with DIP and write its outputs: the unit of work of the CLI and the pipeline.

Layout of an output directory::

    restored.png   the estimate (early-stopped, else averaged, else the last output)
    final.png      the last output f_θ(z), when it differs from restored.png
    curve.csv      iteration, loss, psnr_obs[, psnr_gt, ssim_gt, psnr_gt_avg] every log_every iterations
    snapshots/     iter_NNNNN.png at the requested iterations
    run.json       settings, seed, device, versions, wall time, iterations run, early stop, metrics
"""

from __future__ import annotations

import csv
import dataclasses
import platform
import time
from pathlib import Path
from typing import Any, Iterable

import numpy as np
import torch

import dip
from dip.callbacks import CurveRecorder, SnapshotTaker
from dip.fit import Callback, FitConfig, Fitter, FitResult
from dip.io import atomic_directory, save_image, save_json, to_numpy, to_tensor
from dip.metrics import quality
from dip.network import NetConfig
from dip.operators import Operator

CURVE_FIELDS = ("iteration", "loss", "psnr_obs", "psnr_gt", "ssim_gt", "psnr_gt_avg")
DEFAULT_MAX_PIXELS = 2048 * 2048  # a fit keeps several network activations per pixel: gigabytes beyond this


def check_size(height: int, width: int, max_pixels: int = DEFAULT_MAX_PIXELS) -> None:
    """``ValueError`` before any allocation if a ``height`` × ``width`` restored image is over ``max_pixels``."""
    if height * width > max_pixels:
        raise ValueError(
            f"the restored image would be {width}x{height} = {height * width:,} pixels, more than the limit of "
            f"{max_pixels:,} (a fit needs memory for many network activations per pixel); downscale or crop it, "
            "or raise the limit with --max-pixels"
        )


def versions() -> dict[str, str]:
    return {"dip": dip.__version__, "torch": torch.__version__, "numpy": np.__version__, "python": platform.python_version()}


def write_curve(path: Path, rows: list[dict[str, float]]) -> None:
    fields = [f for f in CURVE_FIELDS if any(f in r for r in rows)]
    with open(path, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=fields, extrasaction="ignore")
        writer.writeheader()
        for row in rows:
            writer.writerow({k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in row.items()})


def restore(
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
    max_pixels: int = DEFAULT_MAX_PIXELS,
) -> dict[str, Any]:
    """Fit DIP to ``observation`` through ``operator`` and write ``out_dir`` atomically.

    Refuses (``ValueError``) a restored image over ``max_pixels`` before fitting, and a result
    that is not finite before writing it. Returns the content of ``run.json``.
    """
    check_size(*operator.image_size(tuple(observation.shape[:2])), max_pixels)  # type: ignore[arg-type]
    y = to_tensor(observation)
    fitter = Fitter(net_cfg, operator, y, fit_cfg, device)
    if ground_truth is not None and tuple(ground_truth.shape[:2]) != tuple(fitter.image_size):
        gh, gw = ground_truth.shape[:2]
        raise ValueError(f"ground truth is {gw}x{gh} but the restored image will be {fitter.image_size[1]}x{fitter.image_size[0]}")
    with atomic_directory(out_dir, overwrite=overwrite) as tmp:
        (tmp / "snapshots").mkdir()
        curve = CurveRecorder(ground_truth, protocol=protocol, shave=shave)  # type: ignore[arg-type]
        fitter.add_callback(curve, every=log_every)
        marks = sorted({i for i in snapshots if 0 <= i <= fit_cfg.iterations})
        if marks:
            taker = SnapshotTaker(lambda i, img: save_image(tmp / "snapshots" / f"iter_{i:05d}.png", img))
            fitter.add_callback(taker, at=marks)
        for fn, every in callbacks:
            fitter.add_callback(fn, every=every)
        started = time.time()
        result = fitter.run()
        for name, out in (("restored", result.best), ("final", result.output)):
            if not torch.isfinite(out).all():
                raise ValueError(f"the {name} image holds NaN or infinite values (the fit diverged); nothing was written: "
                                 "try a lower learning rate, another --seed or --early-stop")
        record = _record(fitter, result, curve, ground_truth, operator, observation, protocol, shave, started, extra)
        save_image(tmp / "restored.png", to_numpy(result.best))
        if result.best is not result.output:
            save_image(tmp / "final.png", to_numpy(result.output))
        write_curve(tmp / "curve.csv", curve.rows)
        save_json(tmp / "run.json", record)
    return record


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


