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
import hashlib
import json
import platform
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

import numpy as np
import torch

import dip
from dip.callbacks import CurveRecorder, SnapshotTaker
from dip.fit import Callback, FitConfig, FitDiverged, Fitter, FitResult, run_fits
from dip.io import atomic_directory, check_replaceable, save_image, save_json, to_numpy, to_tensor
from dip.metrics import quality
from dip.network import NetConfig
from dip.operators import Operator

RUN_CURVE_FIELDS = ("iteration", "loss", "psnr_obs", "psnr_gt", "ssim_gt", "psnr_gt_avg")
DEFAULT_MAX_PIXELS = 2048 * 2048  # a fit keeps several network activations per pixel: gigabytes beyond this


def check_size(height: int, width: int, max_pixels: int = DEFAULT_MAX_PIXELS) -> None:
    """``ValueError`` before any allocation if a ``height`` × ``width`` restored image is over ``max_pixels``."""
    if height * width > max_pixels:
        raise ValueError(
            f"the restored image would be {width}x{height} = {height * width:,} pixels, more than the limit of "
            f"{max_pixels:,} (a fit needs memory for many network activations per pixel); downscale or crop it, "
            "or raise the limit with --max-pixels"
        )


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
) -> Restoration:
    """Check the inputs and set up the fit of one image (curve every ``log_every`` iterations,
    snapshots kept in memory at the requested iterations, the caller's ``callbacks``);
    ``input_image`` is the network's input when ``fit_cfg.input == "image"``. Refuses
    (``ValueError``) a restored image over ``max_pixels`` before anything is allocated."""
    check_size(*operator.image_size(tuple(observation.shape[:2])), max_pixels)  # type: ignore[arg-type]
    y = to_tensor(observation)
    fitter = Fitter(net_cfg, operator, y, fit_cfg, device, input_image=None if input_image is None else to_tensor(input_image))
    if ground_truth is not None and tuple(ground_truth.shape[:2]) != tuple(fitter.image_size):
        gh, gw = ground_truth.shape[:2]
        raise ValueError(f"ground truth is {gw}x{gh} but the restored image will be {fitter.image_size[1]}x{fitter.image_size[0]}")
    check_replaceable(out_dir, overwrite)
    r = Restoration(fitter, operator, observation, out_dir, CurveRecorder(ground_truth, protocol=protocol, shave=shave),  # type: ignore[arg-type]
                    ground_truth=ground_truth, protocol=protocol, shave=shave, overwrite=overwrite, extra=extra)
    fitter.add_callback(r.curve, every=log_every)
    marks = sorted({i for i in snapshots if 0 <= i <= fit_cfg.iterations})
    if marks:
        fitter.add_callback(SnapshotTaker(lambda i, img: r.snapshots.__setitem__(i, img)), at=marks)
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
        (tmp / "snapshots").mkdir()
        for i, image in sorted(r.snapshots.items()):
            save_image(tmp / "snapshots" / f"iter_{i:05d}.png", image)
        save_image(tmp / "restored.png", to_numpy(result.best))
        if result.best is not result.output:
            save_image(tmp / "final.png", to_numpy(result.output))
        write_curve(tmp / "curve.csv", r.curve.rows)
        save_json(tmp / "run.json", record)
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




IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")


def image_files(inputs: Iterable[Path]) -> list[Path]:
    """The images to restore: each file as given, each folder's images (sorted; ``*_mask.*`` files
    are masks, not inputs). Raises ``FileNotFoundError`` for a path that does not exist."""
    files: list[Path] = []
    for path in inputs:
        if path.is_dir():
            files.extend(sorted(p for p in path.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES
                                and not p.stem.endswith("_mask")))
        elif path.exists():
            files.append(path)
        else:
            raise FileNotFoundError(f"{path}: no such file or folder")
    return files


def mask_beside(image: Path) -> Path | None:
    """``photo_mask.png`` (any image suffix) beside ``photo.jpg``, the authors' naming, if present."""
    for suffix in IMAGE_SUFFIXES:
        candidate = image.with_name(f"{image.stem}_mask{suffix}")
        if candidate.is_file():
            return candidate
    return None


def batch_hash(source: Path, mask: Path | None, settings: dict[str, Any]) -> str:
    """What a finished output folder must match to be reused: the input (and mask) bytes and settings."""
    h = hashlib.sha256(json.dumps(settings, sort_keys=True, default=str).encode())
    for path in (source, mask):
        if path is not None:
            h.update(path.read_bytes())
    return h.hexdigest()


def finished(out_dir: Path, key: str, digest: str) -> bool:
    """Whether ``out_dir`` holds a finished restoration whose run.json records ``key: digest``
    (``batch_hash`` for `dip restore`, ``settings_hash`` for `dip run`)."""
    try:
        return json.loads((out_dir / "run.json").read_text()).get(key) == digest and (out_dir / "restored.png").is_file()
    except (OSError, ValueError, AttributeError):  # missing, not JSON, not a mapping
        return False


def restore_groups(restorations: list[Restoration], group: int | str) -> Iterable[tuple[Restoration, dict[str, Any] | Exception]]:
    """Run ``restorations`` in groups of same-size, same-settings fits (``group``: a number or ``auto`` = from
    free GPU memory, 1 off CUDA), yielding each one's record or exception as its group ends."""
    from dip.group import fit_bytes, group_size

    by_shape: dict[str, list[Restoration]] = {}
    for r in restorations:
        f = r.fitter
        key = repr((tuple(f.observation.shape), f.image_size, r.operator.task, str(f.device), f.net_cfg, dataclasses.replace(f.cfg, seed=0)))
        by_shape.setdefault(key, []).append(r)
    for same in by_shape.values():
        per_fit = 0
        if group == "auto" and same[0].fitter.device.type == "cuda":
            per_fit = fit_bytes(*same[0].fitter.build())
        n = group_size(group, len(same), per_fit, same[0].fitter.device)
        for i in range(0, len(same), n):
            chunk = same[i : i + n]
            yield from zip(chunk, restore_group(chunk))
