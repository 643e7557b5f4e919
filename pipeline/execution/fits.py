"""Restore one image with DIP and write its outputs: the unit of work of the CLI and the pipeline.

Layout of an output directory (:class:`pipeline.layout.RunDir` names its files)::

    restored.png   the estimate (early-stopped, else averaged, else the last output)
    final.png      the last output f_θ(z), when it differs from restored.png
    curve.csv      iteration, loss, psnr_obs[, psnr_gt, ssim_gt, psnr_gt_avg] every log_every iterations
    snapshots/     iter_NNNNN.png at the requested iterations
    run.json       settings, seed, device, versions, wall time, iterations run, early stop, metrics

Every fit runs through :func:`drive`, the one driver of `dip run` (in-process engine and each Dask
task), `dip restore`, `dip demo` and the publishing run: a :class:`~pipeline.execution.keys.Fit`
is set up (the caller's ``setup`` → :class:`Restoration`) only when its turn comes, fits of one
key run together (sized by :func:`group_size_of`), and a finished fit's network, input code and
snapshots are released as soon as its folder is written, so memory does not grow with the number
of fits. A :class:`Policy` (the publishing run's budget) decides what starts and may stop a group.
"""

from __future__ import annotations

import csv
import gc
import dataclasses
import platform
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Hashable, Iterable, Iterator, Protocol, TypeVar

import numpy as np
import torch

import dip
from dip.callbacks import CurveRecorder, SnapshotTaker
from dip.group import fit_bytes, group_size
from dip.fit import Callback, FitConfig, FitDiverged, Fitter, FitResult, Step, run_fits
from pipeline.files import DEFAULT_MAX_PIXELS, atomic_directory, check_pixels, check_replaceable, save_image, save_json
from dip.io import to_numpy, to_tensor
from dip.metrics import quality
from dip.network import NetConfig
from dip.operators import Operator
from pipeline.execution.keys import Fit
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
    log_every: int = 50  # the curve's interval: where progress and a policy's guard look too


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
                    images=dict(images or {}), log_every=log_every)
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


DAMAGED_INPUT = (ValueError, OSError, KeyError, TypeError, IndexError, AttributeError, RecursionError, ArithmeticError)
"""What reading a damaged or hostile input file can raise while a fit is set up."""

Setup = Callable[[Fit], Restoration]
Outcome = dict[str, Any] | Exception  # a written fit's run.json record, or what stopped it


class Policy(Protocol):
    """What decides, for :func:`drive`, which fits start and when a group stops (the publishing
    run's budget); without one every fit starts and an error of a whole group is raised."""

    stops: tuple[type[BaseException], ...]  # a group's errors that end that group only (its fits' outcome)

    def admit(self, chunk: list[Fit]) -> int:
        """How many of ``chunk`` (its head first, one key) start now; 0 drops the head (not started)."""
        ...

    def start(self, chunk: list[Fit], ready: list[Restoration]) -> None:
        """The group is set up and about to run (add a guard to a fitter here)."""
        ...

    def end(self, chunk: list[Fit], outcomes: list[Outcome], failure: BaseException | None) -> None:
        """The group ended: each fit's outcome; ``failure`` is what stopped the whole group, if anything did."""
        ...


def set_up(fit: Fit, setup: Setup) -> Restoration:
    """``setup(fit)``; an error while reading damaged inputs (a truncated array, a meta.json of the
    wrong shape or nested too deeply, ...) becomes one ``ValueError`` naming ``fit.source``."""
    try:
        return setup(fit)
    except DAMAGED_INPUT as err:
        text = str(err.args[0]) if isinstance(err, KeyError) and err.args else " ".join(str(err).split())
        if fit.source is None or isinstance(err, (ValueError, OSError)) and str(fit.source) in text:
            raise
        if not isinstance(err, (ValueError, OSError, KeyError)):  # the input's shape, not a message for people
            text = f"damaged input ({err.__class__.__name__}: {text or 'no detail'}); write it again (e.g. `dvc repro`)"
        raise ValueError(f"{fit.source}: {text}") from None


def drive(fits: Iterable[Fit], setup: Setup, group: int | str = 1, *, policy: Policy | None = None,
          on_step: Callable[[Fit, Step], None] | None = None, record_group: bool = True) -> Iterator[tuple[Fit, Outcome]]:
    """Run ``fits`` in queue order, each with the fits of its key that follow it (``group``: a
    number, or ``auto`` = from free GPU memory, :func:`group_size_of`), yielding each one's run.json
    record, or the exception that stopped it (a user error while it was set up, a diverged fit, a
    full disk), as soon as its group is written. ``on_step(fit, step)`` sees every curve point;
``record_group`` writes run.json's ``group_size`` (the demo's record has none).

    A group is set up just before it runs and released (network, input code, Adam state,
    snapshots) before the next one is set up: memory stays that of one group, whatever the count.
    """
    queue, sizes = list(fits), {}
    while queue:
        head, first = queue[0], None
        if head.together not in sizes:  # the first fit of a key sizes its groups
            try:
                first = set_up(head, setup) if group == "auto" else None  # auto measures a built fit
            except (ValueError, OSError, KeyError) as err:  # what set_up leaves of DAMAGED_INPUT
                yield queue.pop(0), err
                continue
            count = sum(f.together == head.together for f in queue)
            sizes[head.together] = group_size_of(None if first is None else first.fitter, group, count)
        chunk = take_group(queue, lambda f: f.together, sizes[head.together])
        n = len(chunk) if policy is None else policy.admit(chunk)
        queue[0:0] = chunk[max(n, 1):]
        if n == 0:
            continue
        pairs, failed = [], []
        for fit in chunk[:n]:
            try:
                pairs.append((fit, first if fit is head and first is not None else set_up(fit, setup)))
            except (ValueError, OSError, KeyError) as err:
                failed.append((fit, err))
        del first
        done, stopped = run_group(pairs, policy, on_step, record_group) if pairs else ([], False)
        del pairs  # the group's fitters go here, before the next group is set up
        if stopped:
            _free()
        yield from failed
        yield from done


def run_group(pairs: list[tuple[Fit, Restoration]], policy: Policy | None, on_step: Callable[[Fit, Step], None] | None,
              record_group: bool = True) -> tuple[list[tuple[Fit, Outcome]], bool]:
    """Fit set-up fits together (:mod:`dip.group`) and write each folder: each fit's outcome (a
    fit that fails, e.g. its loss diverged, gets its exception), and whether the policy stopped
    the whole group (its error is then every fit's outcome)."""
    chunk, ready = [f for f, _ in pairs], [r for _, r in pairs]
    for fit, r in pairs:
        if record_group:
            r.extra = {**(r.extra or {}), "group_size": len(pairs)}
        if on_step is not None:
            r.fitter.add_callback(lambda step, fit=fit: on_step(fit, step), every=r.log_every)
    if policy is not None:
        policy.start(chunk, ready)
    stops = policy.stops if policy is not None else ()
    try:
        results = run_fits([r.fitter for r in ready])
    except stops as err:
        err.__traceback__ = None  # it holds the stopped fits' memory
        policy.end(chunk, [err] * len(chunk), err)  # type: ignore[union-attr]
        return [(f, err) for f in chunk], True
    outcomes: list[Outcome] = []
    for r, result in zip(ready, results):
        try:
            outcomes.append(write(r, result))
        except (FitDiverged, ValueError, OSError) as err:
            outcomes.append(err)
    if policy is not None:
        policy.end(chunk, outcomes, None)
    return list(zip(chunk, outcomes)), False


def key_order(fits: Iterable[Fit]) -> list[Fit]:
    """``fits`` with those of one key together, keys in order of first appearance: the order in
    which `dip run` and `dip restore` write (the publishing run keeps its priority order instead)."""
    by_key: dict[str, list[Fit]] = {}
    for fit in fits:
        by_key.setdefault(fit.together, []).append(fit)
    return [fit for same in by_key.values() for fit in same]


def run_one(fit: Fit, setup: Setup, on_step: Callable[[Fit, Step], None] | None = None, record_group: bool = True) -> dict[str, Any]:
    """:func:`drive` one fit; returns its run.json record or raises what stopped it."""
    [(_, outcome)] = list(drive([fit], setup, on_step=on_step, record_group=record_group))
    if isinstance(outcome, Exception):
        raise outcome
    return outcome


def group_size_of(fitter: Fitter | None, group: int | str, count: int) -> int:
    """How many fits like ``fitter``'s run together (:func:`dip.group.group_size`): ``group`` if a
    number (no fitter needed), else (``auto``) as many as the free GPU memory holds at the size of
    ``fitter``'s network and input (built here if not yet; 1 off CUDA, or where it cannot be
    measured); at most ``count``. The one sizing of a group (:func:`drive`)."""
    if fitter is None:
        return group_size(group, count, 0, torch.device("cpu"))
    try:
        per_fit = fit_bytes(*fitter.build()) if group == "auto" and fitter.device.type == "cuda" else 0
    except (AttributeError, TypeError, RuntimeError):  # no measurement (another loop, out of memory): one at a time
        return 1
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


def _free() -> None:
    """Release a stopped group's memory (its graph's pool) before the next one."""
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
