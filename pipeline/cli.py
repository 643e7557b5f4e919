"""The ``dip`` command line: restore a person's own image, the demo, the network, metrics, and
one sub-command per DVC stage.

Every sub-command is registered here and only parses its options, calls one entry point and
prints: a pipeline stage's logic is the ``stage`` function of its module in ``pipeline/stages/``
(``resolve``, ``fetch``, ``corrupt``, ``run``, ``baselines``, ``evaluate``); every setting is
read and checked by :mod:`pipeline.settings`, the presets of ``dip restore`` included.
Every command turns bad input into one ``error: …`` line and a non-zero exit code.
"""

from __future__ import annotations

import functools
import json
import math
import os
import re
import signal
import sys
from enum import Enum
from pathlib import Path
from typing import Annotated, Any, Callable, Optional, TypeVar

import numpy as np
import typer

from dip.metrics import quality
from pipeline import layout
from pipeline.files import DEFAULT_MAX_PIXELS, check_replaceable, error_line, load_image, output_lock
from pipeline.settings import PROFILE_FILE, preset_configs

app = typer.Typer(
    help="Deep Image Prior: restore images with an untrained network, and reproduce the paper.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)

F = TypeVar("F", bound=Callable[..., Any])
USER_ERRORS: tuple[type[BaseException], ...] = (ValueError, OSError, KeyError)


def fail(message: str, code: int = 2) -> typer.Exit:
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(code)


def user_errors(fn: F) -> F:
    """Turn expected errors into one ``error: …`` line and exit code 2 (never a traceback)."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except USER_ERRORS as err:
            raise fail(error_line(err)) from None
        except KeyboardInterrupt:
            raise fail("interrupted; nothing half-written was left behind", 130) from None

    return wrapper  # type: ignore[return-value]


class Task(str, Enum):
    denoise = "denoise"
    inpaint = "inpaint"
    sr = "sr"


def _parse_ints(text: str) -> list[int]:
    try:
        return [int(t) for t in text.split(",") if t.strip()]
    except ValueError:
        raise ValueError(f"expected comma-separated integers, got {text!r}") from None


def _check_restore_options(inputs: list[Path], task: str, out: Path, mask: Optional[Path], gt: Optional[Path], factor: int,
                           iterations: Optional[int], size_mode: str, log_every: int, group: str, max_pixels: Optional[int],
                           status: Optional[Path]) -> None:
    """``ValueError`` (one line) for options of `dip restore` that cannot be used together or at all."""
    from dip.operators import TASKS

    if task not in TASKS:
        raise ValueError(f"unknown task {task!r}; choose one of {', '.join(TASKS)}")
    if iterations is not None and iterations <= 0:
        raise ValueError(f"--iterations must be a positive number, got {iterations}")
    if log_every <= 0:
        raise ValueError(f"--log-every must be positive, got {log_every}")
    if max_pixels is not None and max_pixels <= 0:
        raise ValueError(f"--max-pixels must be positive, got {max_pixels}")
    if size_mode not in ("pad", "crop"):
        raise ValueError(f"--size-mode must be pad or crop, got {size_mode!r}")
    if task == "sr" and not 2 <= factor <= 16:
        raise ValueError(f"--factor must be between 2 and 16, got {factor}")
    if mask is not None and task != "inpaint":
        raise ValueError(f"--mask is only used by --task inpaint, not {task}; drop it or use --task inpaint")
    if group != "auto" and not (group.isdigit() and int(group) >= 1):
        raise ValueError(f"--group must be auto or a whole number >= 1, got {group!r}")
    if status is not None and status.resolve().is_relative_to(out.resolve()):
        raise ValueError(f"--status {status} lies inside --out {out}, which is written whole at the end; put it elsewhere")
    if status is not None:
        from pipeline.execution.batch import image_files
        from pipeline.execution.status import check_status_path

        check_status_path(status, [*image_files(inputs), *(p for p in (mask, gt) if p is not None)])


def _restore_report(single: bool) -> Any:
    """How `dip restore` reports each image (a :class:`pipeline.execution.batch.Report`): an error
    on one line, a reused or written output, its PSNR where a ground truth was given."""
    from pipeline.execution.batch import Report
    from pipeline.execution.keys import Fit
    from pipeline.execution.progress import console

    class Printer(Report):
        def error(self, source: Path, err: BaseException) -> None:
            message = error_line(err)
            typer.echo(f"error: {message}" if message.startswith(str(source)) else f"error: {source}: {message}", err=True)

        def reused(self, item: Fit) -> None:
            console.print(f"{item.source}: already restored in {item.out_dir}/ (same image and settings)")

        def written(self, item: Fit, record: dict[str, Any]) -> None:
            where = f"{layout.RunDir(item.out_dir).restored}" + ("" if single else f" ({item.source})")
            console.print(f"wrote {where} after {record['iterations_run']} iterations in {record['wall_seconds']:.1f} s on {record['device']}")
            if "metrics" in record:
                mt = record["metrics"]
                console.print(f"PSNR input {mt['input']['psnr']:.2f} dB → restored {mt['restored']['psnr']:.2f} dB (SSIM {mt['restored']['ssim']:.3f})")

    return Printer()


@app.command()
@user_errors
def restore(
    inputs: Annotated[list[Path], typer.Argument(help="The corrupted image (noisy, with holes, or low-resolution), or several images / folders of images.", show_default=False)],
    task: Annotated[str, typer.Option(help="denoise | inpaint | sr")] = "denoise",
    out: Annotated[Path, typer.Option(help="Output directory (one image), or the root of one OUT/NAME/ folder per image (several).")] = Path("dip-out"),
    mask: Annotated[Optional[Path], typer.Option(help="Inpainting mask (white = known pixel), same size as the input; with several inputs, default NAME_mask.png beside each.")] = None,
    factor: Annotated[int, typer.Option(help="Super-resolution factor (the output is FACTOR times larger).")] = 4,
    gt: Annotated[Optional[Path], typer.Option(help="Ground truth, to log PSNR/SSIM (one input only).")] = None,
    iterations: Annotated[Optional[int], typer.Option(help="Override the preset's iteration count.")] = None,
    preset: Annotated[str, typer.Option(help="A profile of params.yaml (paper | quick | smoke) or auto (paper on CUDA, else quick): its network and fitting settings for the task.")] = "auto",
    params: Annotated[Optional[Path], typer.Option("--params", help="params.yaml whose profiles are the presets (default: the one installed with dip).")] = None,
    seed: Annotated[int, typer.Option(help="Seed of the network, input code and perturbations.")] = 0,
    device: Annotated[str, typer.Option(help="auto | cpu | cuda | cuda:N | mps")] = "auto",
    size_mode: Annotated[str, typer.Option(help="pad (work on a padded canvas, keep the size) | crop (authors: centre crop to a multiple of 2^levels)")] = "pad",
    log_every: Annotated[int, typer.Option(help="Curve and progress interval (iterations).")] = 25,
    snapshots: Annotated[str, typer.Option(help="Iterations to save, comma-separated.")] = "0,250,1000,2000,5000,11000",
    early_stop: Annotated[bool, typer.Option(help="ES-WMV early stopping.")] = False,
    group: Annotated[str, typer.Option(help="Same-size images fitted together on CUDA: auto (from free GPU memory) or a number; 1 off CUDA.")] = "auto",
    force: Annotated[bool, typer.Option(help="Replace OUT (or OUT/NAME) if it is an earlier output of dip (never a folder of yours).")] = False,
    max_pixels: Annotated[Optional[int], typer.Option(help="Refuse restored images of more pixels than this (memory); default 2048x2048.")] = None,
    status: Annotated[Optional[Path], typer.Option(help="A new .json file (iteration, loss, PSNR, ms/iteration, ETA) kept up to date while fitting, with the latest output beside it (same name, .png), for a program that polls them; outside --out. Only dip's own earlier status files are ever replaced.")] = None,
) -> None:
    """Restore images of yours with Deep Image Prior.

    One image goes to OUT/. Several images, or folders of images, go to OUT/NAME/ each, fitted together where they have one size (CUDA); finished images are skipped when run again, and an image that cannot be used is reported on one line without stopping the others. A second `dip restore` into the same OUT while one runs stops at once with one line.
    """
    from dip.device import pick_device
    from pipeline.execution.batch import Request, restore_images
    from pipeline.execution.progress import console

    _check_restore_options(inputs, task, out, mask, gt, factor, iterations, size_mode, log_every, group, max_pixels, status)
    single = len(inputs) == 1 and inputs[0].is_file()
    dev = pick_device(device)
    preset_name, net_cfg, fit_cfg = preset_configs(preset, task, factor, seed=seed, device=str(dev), params=params)
    fit_cfg.early_stop = early_stop
    if iterations is not None:
        fit_cfg.iterations = iterations
    req = Request(task, net_cfg, fit_cfg, preset_name, dev, factor=factor, mask=mask, gt=gt, size_mode=size_mode,
                  log_every=log_every, snapshots=_parse_ints(snapshots), group=group, force=force,
                  max_pixels=max_pixels or DEFAULT_MAX_PIXELS, status=status)

    counts = restore_images(inputs, out, req, _restore_report(single))
    if not single:
        console.print(f"{counts.written} restored, {counts.reused} already done, {counts.failed} failed")
    if counts.failed:
        raise typer.Exit(1)


@app.command()
@user_errors
def demo(
    out: Annotated[Path, typer.Option(help="Output directory (the demo replaces its own earlier output, never a folder of yours).")] = Path("dip-demo"),
    iterations: Annotated[int, typer.Option(help="Fitting iterations.")] = 400,
    size: Annotated[int, typer.Option(help="Side of the (downscaled) cameraman image.")] = 256,
    device: Annotated[str, typer.Option(help="auto | cpu | cuda | mps")] = "auto",
    params: Annotated[Optional[Path], typer.Option("--params", help="params.yaml whose quick profile the demo uses (default: the one installed with dip).")] = None,
) -> None:
    """Inpaint scikit-image's cameraman with 50% of its pixels missing (about 2 minutes on a CPU)."""
    import torch
    from skimage import data, transform

    from dip.operators import Inpainting
    from pipeline.execution.progress import console, fits_bar
    from pipeline.execution.fits import prepare, run_one
    from pipeline.execution.keys import Fit

    if iterations <= 0 or size < 32:
        raise ValueError("--iterations must be positive and --size at least 32")
    if size * size > DEFAULT_MAX_PIXELS:
        raise ValueError(f"--size {size} is too large for the demo's memory limit; use at most {math.isqrt(DEFAULT_MAX_PIXELS)}")
    check_replaceable(out, overwrite=True)  # before the fit: only the demo's own earlier output is replaced
    truth = transform.resize(data.camera(), (size, size), anti_aliasing=True).astype(np.float32)
    mask = Inpainting.random_mask(truth.shape, 0.5, torch.Generator().manual_seed(0))
    observation = (truth * mask.numpy()).astype(np.float32)
    _, net_cfg, fit_cfg = preset_configs("quick", "inpaint", device=device, params=params)
    fit_cfg.iterations = iterations
    fit = Fit(None, out, seed=fit_cfg.seed, image="cameraman", extra={"preset": "demo"})  # its inputs are the arrays above
    with output_lock(out), fits_bar("inpainting cameraman", iterations) as bar:
        record = run_one(fit, lambda f: prepare(
            Inpainting(mask), observation, f.out_dir, net_cfg, fit_cfg, ground_truth=truth, device=device,
            log_every=10, snapshots=(0, iterations // 4, iterations // 2, iterations), overwrite=True, extra=dict(f.extra),
            images={"corrupted": observation, "ground_truth": truth},  # inside the folder, written with it
        ), on_step=bar.step, record_group=False)
    mt = record["metrics"]
    console.print(
        f"cameraman {size}x{size}, 50% of pixels missing: PSNR of the input {mt['input']['psnr']:.2f} dB → "
        f"DIP {mt['restored']['psnr']:.2f} dB after {iterations} iterations ({record['wall_seconds']:.0f} s on {record['device']}); see {out}/"
    )


@app.command()
@user_errors
def net(
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
    preset: Annotated[str, typer.Option(help="A profile of params.yaml: paper | quick | smoke")] = "paper",
    channels: Annotated[int, typer.Option(help="Image channels (1 gray, 3 colour).")] = 3,
    params: Annotated[Optional[Path], typer.Option("--params", help="params.yaml whose profiles are the presets (default: the one installed with dip).")] = None,
) -> None:
    """Print the network's architecture per level (a profile's network) and its parameter count."""
    from dip.network import describe

    if channels not in (1, 3):
        raise ValueError(f"--channels must be 1 or 3, got {channels}")
    _, net_cfg, _ = preset_configs(preset, "denoise", device="cpu", params=params)
    info = describe(net_cfg, channels)
    if as_json:
        typer.echo(json.dumps(info, indent=2))
        return
    typer.echo(f"input depth {info['input_depth']} → {channels} channels; downsample {info['downsample']}, upsample {info['upsample']} (align_corners={info['align_corners']}), pad {info['pad']}")
    typer.echo("level  n_d k_d  n_u k_u  n_s k_s")
    for lv in info["levels"]:
        typer.echo(f"{lv['level']:>5}  {lv['n_d']:>3} {lv['k_d']:>3}  {lv['n_u']:>3} {lv['k_u']:>3}  {lv['n_s']:>3} {lv['k_s']:>3}")
    typer.echo(f"parameters: {info['parameters']:,} ({info['inert']['parameters']:,} inert: {info['inert']['why']})")


@app.command()
@user_errors
def metrics(
    reference: Annotated[Path, typer.Argument(help="Ground-truth image.")],
    image: Annotated[Path, typer.Argument(help="Image to score.")],
    protocol: Annotated[str, typer.Option(help="rgb (all channels) | sr (Y channel of YCbCr, border shaved)")] = "rgb",
    shave: Annotated[int, typer.Option(help="Border to remove for --protocol sr (usually the SR factor).")] = 4,
) -> None:
    """Print PSNR and SSIM of IMAGE against REFERENCE as JSON."""

    if protocol not in ("rgb", "sr"):
        raise ValueError(f"--protocol must be rgb or sr, got {protocol!r}")
    ref, img = load_image(reference), load_image(image)
    if ref.shape[:2] != img.shape[:2]:
        raise ValueError(f"{reference} is {ref.shape[1]}x{ref.shape[0]} but {image} is {img.shape[1]}x{img.shape[0]}; give two images of one size")
    if ref.ndim != img.ndim:
        kind = {2: "gray (1 channel)", 3: "colour (3 channels)"}
        raise ValueError(f"{reference} is {kind[ref.ndim]} but {image} is {kind[img.ndim]}; give two gray or two colour images")
    result = quality(ref, img, protocol, shave if protocol == "sr" else 0)  # type: ignore[arg-type]
    psnr = result["psnr"]
    values: dict[str, Any] = {"psnr": round(psnr, 4) if np.isfinite(psnr) else None, "ssim": round(result["ssim"], 4), "protocol": protocol}
    if not np.isfinite(psnr):
        values["note"] = "identical images: PSNR is infinite, printed as null"
    typer.echo(json.dumps(values, allow_nan=False))


# --- the reproduction pipeline: every DVC stage calls one of these ---------------------------

ParamsOpt = Annotated[Path, typer.Option("--params", help="params.yaml to read.")]
ProfileFileOpt = Annotated[Path, typer.Option("--profile-file", help="The resolved profile (written by `dip profile`).")]


@app.command("profile")
@user_errors
def profile_cmd(
    params: ParamsOpt = Path("params.yaml"),
    out: Annotated[Path, typer.Option(help="Where to write the resolution.")] = PROFILE_FILE,
) -> None:
    """Resolve params.yaml's `profile` (auto → paper with CUDA, else quick) into data/profile.json."""
    from pipeline.stages.resolve import stage

    record = stage(params, out)
    typer.echo(f"profile {record['requested']} → {record['profile']} on {record['device']} ({record['device_name']})")


@app.command()
@user_errors
def fetch(
    sets: Annotated[Optional[str], typer.Option(help="Comma-separated sets or set/name; default: what the resolved profile uses.")] = None,
    manifest: Annotated[Path, typer.Option(help="The image manifest.")] = Path("data/manifest.yaml"),
    out: Annotated[Path, typer.Option(help="Image cache directory.")] = Path(layout.IMAGES),
    mirror: Annotated[Optional[str], typer.Option(help="Mirror directory laid out like ../shared/images (default: params fetch.mirror, else $DIP_MIRROR).")] = None,
    params: ParamsOpt = Path("params.yaml"),
    profile_file: ProfileFileOpt = PROFILE_FILE,
    keep_others: Annotated[bool, typer.Option(help="Keep cached images that are not asked for.")] = False,
) -> None:
    """Fetch and verify images: local cache, then mirror, then URL."""
    from pipeline.stages.fetch import stage

    chosen = [s.strip() for s in sets.split(",") if s.strip()] if sets else None
    sources = stage(params, profile_file, manifest, out, sets=chosen, mirror=mirror, keep_others=keep_others)
    counts = {s: list(sources.values()).count(s) for s in sorted(set(sources.values()))}
    typer.echo(f"{len(sources)} images verified in {out}/ (" + ", ".join(f"{n} from {s}" for s, n in counts.items()) + ")")


@app.command()
@user_errors
def corrupt(
    params: ParamsOpt = Path("params.yaml"),
    profile_file: ProfileFileOpt = PROFILE_FILE,
    manifest: Annotated[Path, typer.Option(help="The image manifest.")] = Path("data/manifest.yaml"),
    images: Annotated[Path, typer.Option(help="Fetched images.")] = Path(layout.IMAGES),
    out: Annotated[Path, typer.Option(help="Output root (one folder per experiment).")] = Path("data/corrupted"),
) -> None:
    """Synthesise every experiment's observations (noise, masks, low-resolution), seeded."""
    from pipeline.stages.corrupt import stage

    name, counts = stage(params, profile_file, manifest, images, out)
    typer.echo(f"profile {name}: " + ", ".join(f"{k} {v} image(s)" for k, v in counts.items()))


@app.command("run")
@user_errors
def run_cmd(
    experiment: Annotated[str, typer.Argument(help="Experiment id, e.g. denoise_s25, inpaint_p50, sr_x4, fig7_text.")],
    params: ParamsOpt = Path("params.yaml"),
    profile_file: ProfileFileOpt = PROFILE_FILE,
    corrupted: Annotated[Path, typer.Option(help="Root of the corrupted inputs.")] = Path("data/corrupted"),
    out: Annotated[Path, typer.Option(help="Root of the results.")] = Path("results"),
) -> None:
    """Run DIP on every image and seed of EXPERIMENT (resumes finished images) on params.yaml's
    engine: in-process (`engine.kind: local`) or one Dask task per fit (`engine.kind: dask`)."""
    from pipeline.stages.run import stage

    stats = stage(experiment, params, profile_file, corrupted, out)
    state = "active" if stats["active"] else f"not in profile {stats['profile']}; nothing to run"
    typer.echo(f"{experiment} ({state}): {stats['run']} run, {stats['reused']} reused [{stats['engine']}]")


@app.command()
@user_errors
def baselines(
    experiment: Annotated[str, typer.Argument(help="Experiment id, e.g. denoise_s25, inpaint_p50, sr_x4, fig7_text.")],
    params: ParamsOpt = Path("params.yaml"),
    corrupted: Annotated[Path, typer.Option(help="Root of the corrupted inputs.")] = Path("data/corrupted"),
    out: Annotated[Path, typer.Option(help="Root of the baseline outputs.")] = Path("baselines"),
) -> None:
    """Run the classical baselines of EXPERIMENT's task on the same corrupted inputs as DIP."""
    from pipeline.stages.baselines import stage

    stats = stage(experiment, params, corrupted, out)
    typer.echo(f"{experiment}: {stats['runs']} baseline run(s) on {stats['images']} image(s)")


@app.command()
@user_errors
def evaluate(
    params: ParamsOpt = Path("params.yaml"),
    profile_file: ProfileFileOpt = PROFILE_FILE,
    results: Annotated[Path, typer.Option(help="Root of the results.")] = Path("results"),
    baselines_dir: Annotated[Path, typer.Option("--baselines", help="Root of the baseline outputs.")] = Path("baselines"),
    corrupted: Annotated[Path, typer.Option(help="Root of the corrupted inputs (ground truths).")] = Path("data/corrupted"),
    paper: Annotated[Path, typer.Option(help="The paper's reported numbers.")] = Path("data/paper.yaml"),
    out: Annotated[Path, typer.Option(help="Metrics directory.")] = Path("metrics"),
) -> None:
    """PSNR/SSIM per image, experiment and method, and the report against the paper → metrics/."""
    from pipeline.stages.evaluate import stage

    summary = stage(params, profile_file, results, baselines_dir, corrupted, paper, out)
    typer.echo(f"profile {summary['profile']} on {summary['device']}: report in {out / layout.REPORT_MD}")
    progress = summary.get("progress") or {}
    for exp, methods in summary["experiments"].items():
        p = progress.get(exp) or {}
        part = f" (in progress: {p['images_done']} of {p['images_total']} images)" if p.get("status") == "in progress" else ""
        typer.echo(f"  {exp}{part}: " + ", ".join(f"{k} {v['psnr']} dB" for k, v in methods.items() if not k.startswith("dip_")))
    pending = [exp for exp, p in progress.items() if p.get("status") == "pending"]
    if pending:
        typer.echo(f"  pending (no image fitted yet): {', '.join(pending)}")


@app.command()
@user_errors
def publish(
    sources: Annotated[list[Path], typer.Argument(help="What to merge: parts (a folder with part.json or a .tar.gz of one), folders of parts (../shared/gpu-runs) or workspaces after `dip run`.")],
    into: Annotated[Path, typer.Option(help="The bundle, e.g. results-published/paper-h200 (created if new; only a dip bundle is ever replaced).")],
    commit: Annotated[Optional[str], typer.Option(help="The commit that produced a workspace's fits (default: the workspace's git HEAD, if it is a checkout). Parts carry their own.")] = None,
    max_mb: Annotated[float, typer.Option(help="Refuse a bundle larger than this (MB).")] = 15.0,
    params: ParamsOpt = Path("params.yaml"),
    paper: Annotated[Path, typer.Option(help="The paper's reported numbers, for the report.")] = Path("data/paper.yaml"),
    policy: Annotated[Optional[str], typer.Option(help="What a new bundle keeps: paper (the default; docs/publishing.md) or all (every seed's images, for small profiles such as quick). An existing bundle keeps its own.")] = None,
) -> None:
    """Merge finished fits into one growing results bundle (docs/publishing.md) and rebuild its metrics."""
    from pipeline.outputs.policy import Policy
    from pipeline.outputs.publish import publish as merge

    if not (math.isfinite(max_mb) and max_mb > 0):
        raise ValueError(f"--max-mb must be a positive number of megabytes, e.g. 15; got {max_mb}")
    chosen = Policy.named(policy) if policy is not None else None
    r = merge(sources, into, commit=commit, max_bytes=int(max_mb * 1e6), params=params, paper=paper, policy=chosen)
    counts = ", ".join(f"{len(r[k])} {k}" for k in ("added", "replaced", "unchanged", "older") if r[k])
    for key in r["replaced"]:
        typer.echo(f"  replaced {key} (other settings: fit key {str(r['manifest']['fits'][key]['fit_key'])[:12]})")
    for key in r["older"]:
        typer.echo(f"  kept {key}: the bundle's fit is newer than the part's")
    if r["baselines_added"] or r["baselines_dropped"] or r["baselines_refused"]:
        typer.echo(f"  baselines: {len(r['baselines_added'])} image(s) added, {len(r['baselines_dropped'])} dropped (their fit now has other "
                   f"inputs), {len(r['baselines_refused'])} not taken (no fit here with the inputs they ran on)")
    m = r["manifest"]
    if not r["changed"]:
        typer.echo(f"{into}: unchanged ({counts or 'no fits'}); {len(m['fits'])} fits")
        return
    typer.echo(f"{into}: {counts or 'baselines only'}; {len(m['fits'])} fits, {m['total_bytes'] / 1e6:.2f} MB, profile {m['profile']}; "
               f"metrics rebuilt, `dip check-bundle {into}` passes")


@app.command("publish-run")
@user_errors
def publish_run_cmd(
    budget: Annotated[float, typer.Option(help="Seconds this command may take, from its start (inputs, fits, parts).", show_default=False)],
    out: Annotated[Path, typer.Option(help="Folder for the parts (part-*.tar.gz, at most 4) and publish_run.jsonl.", show_default=False)],
    bundle: Annotated[Optional[Path], typer.Option(help="The committed bundle to resume from, e.g. results-published/paper-h200 (may not exist yet): its fits are skipped.")] = None,
    mirror: Annotated[Optional[str], typer.Option(help="Images folder laid out like ../shared/images (default: params fetch.mirror, else $DIP_MIRROR, else the URLs).")] = None,
    params: ParamsOpt = Path("params.yaml"),
    profile: Annotated[str, typer.Option(help="The profile to publish (whatever params.yaml's `profile` says): paper; smoke for a quick CPU check.")] = "paper",
    choice: Annotated[Optional[Path], typer.Option(help="The speed step's choice file: its execution options and engine group are applied (never the numbers).")] = None,
    work: Annotated[Path, typer.Option(help="Work folder (data/, results/ as in docs/LAYOUT.md); fits finished there by an earlier call are returned, not refitted.")] = Path(".gpu-results"),
    margin: Annotated[float, typer.Option(help="Seconds of the budget kept for the end (the last part, exit).")] = 10.0,
    commit: Annotated[Optional[str], typer.Option(help="The commit the run is made at (default: $DIP_COMMIT, else git HEAD).")] = None,
    seeds: Annotated[Optional[str], typer.Option(help="Comma-separated seeds to fit, e.g. 0,1,2 (default: params.yaml's seeds).")] = None,
) -> None:
    """Fit the paper profile in priority order within --budget seconds, skipping what --bundle holds; the new fits go to --out as parts to merge (`dip publish PART --into BUNDLE`)."""
    from pipeline.outputs.publish_run import run

    if not budget > 0 or not 0 <= margin < budget:
        raise ValueError(f"--budget must be positive and --margin between 0 and the budget, got {budget} and {margin}")
    seed_list = _seed_list(seeds) if seeds is not None else None

    def show(event: dict[str, Any]) -> None:
        kind = event["event"]
        what = event.get("fit") or ""
        detail = event.get("note") or event.get("error") or ""
        if kind == "finished":
            detail = f"{event['seconds']} s ({event['ms_per_it']} ms/it) → {event['part']}"
        elif kind == "started":
            detail = "probe: new shape" if event.get("probe") else f"estimate {event['estimate_s']} s, {event['left_s']} s left"
        elif kind in ("start", "inputs", "end"):
            detail = json.dumps({k: v for k, v in event.items() if k not in ("event", "time", "costs")}, default=str)
        typer.echo(f"{kind:>12} {what} {detail}".rstrip())

    summary = run(params_path=params, out=out, budget=budget, bundle=bundle, profile_name=profile, mirror=mirror, choice=choice,
                  work=work, commit=commit, margin=margin, echo=show, seeds=seed_list)
    returned = sum(p["fits"] for p in summary["parts"])
    typer.echo(f"{returned} fit(s) returned in {len(summary['parts'])} part(s) in {out}/ after {summary['seconds']} s; "
               + ", ".join(f"{n} {k}" for k, n in sorted(summary["decisions"].items())))


def _seed_list(text: str) -> list[int]:
    """``"0,1,2"`` → ``[0, 1, 2]``: different integers ≥ 0, else a ValueError that says what to give."""
    seeds = _parse_ints(text)
    if not seeds or min(seeds) < 0 or len(set(seeds)) != len(seeds):
        raise ValueError(f"--seeds must be different integers ≥ 0 separated by commas, e.g. 0,1,2; got {text!r}")
    return seeds


@app.command("check-bundle")
@user_errors
def check_bundle_cmd(
    bundle: Annotated[Path, typer.Argument(help="A bundle written by `dip publish`.")],
) -> None:
    """Check a bundle: its files against its manifest, its metrics against its fits and images (PSNR recomputed)."""
    from pipeline.outputs.check import check_bundle

    problems = check_bundle(bundle)
    for problem in problems:
        typer.echo(f"error: {problem}", err=True)
    if problems:
        raise typer.Exit(1)
    typer.echo(f"{bundle}: consistent")


@app.command("publish-baselines")
@user_errors
def publish_baselines(
    bundle: Annotated[Path, typer.Argument(help="A bundle written by `dip publish`, e.g. results-published/paper-h200.")],
    experiment: Annotated[Optional[list[str]], typer.Option(help="Only this experiment (repeat it; default: all).")] = None,
    params: ParamsOpt = Path("params.yaml"),
    manifest: Annotated[Path, typer.Option(help="The image sets (checksums, URLs).")] = Path("data/manifest.yaml"),
    mirror: Annotated[Optional[str], typer.Option(help="A directory laid out like the image mirror (default: fetch.mirror or $DIP_MIRROR, else the URLs).")] = None,
    paper: Annotated[Path, typer.Option(help="The paper's reported numbers, for the report.")] = Path("data/paper.yaml"),
) -> None:
    """Run the classical baselines on the CPU for a bundle's images, on exactly its fits' inputs, and merge them."""
    from pipeline.execution.progress import make_progress
    from pipeline.outputs.bundle_baselines import add_baselines

    with make_progress() as progress:
        bar = progress.add_task("baselines", total=None, status="")
        r = add_baselines(bundle, params=params, images_manifest=manifest, paper=paper, mirror=mirror, experiments=experiment,
                          progress=lambda what: progress.update(bar, advance=1, status=what))
    if not r["ran"]:
        typer.echo(f"{bundle}: every image with a ground truth has its baselines; nothing to run")
        return
    typer.echo(f"{bundle}: baselines of {len(r['ran'])} image(s) added; metrics rebuilt, {r['manifest']['total_bytes'] / 1e6:.2f} MB")


@app.command()
@user_errors
def readme(
    path: Annotated[Path, typer.Option("--readme", help="The README whose Results block (between <!-- results:begin --> and <!-- results:end -->) is rewritten.")] = Path("README.md"),
    check: Annotated[bool, typer.Option(help="Write nothing; exit 1 when the block is not what the published bundles give.")] = False,
) -> None:
    """README's Results block from the paper bundles in results-published/ beside it (pending text when there is none),
    and its quick block (<!-- quick:begin --> … <!-- quick:end -->) from results-published/quick-cpu where that exists."""
    from pipeline.outputs.readme import update

    changed = update(path, check=check)
    if check and changed:
        raise fail(f"{path}: the Results block is out of date; run `dip readme --readme {path}`", code=1)
    typer.echo(f"{path}: Results block {'rewritten' if changed else 'up to date'}")


@app.command()
@user_errors
def dashboard(
    results: Annotated[Optional[Path], typer.Option(help="Results root holding data/, results/, baselines/, metrics/ (default: this directory if it has them, else the repository; without results of its own, the newest paper-* bundle in results-published/, else quick-cpu).")] = None,
    port: Annotated[int, typer.Option(help="Port on 127.0.0.1.")] = 8501,
) -> None:
    """Open the results dashboard (Streamlit, bound to 127.0.0.1, usage statistics off, no
    tracebacks in the browser). SIGTERM or Ctrl+C stops the server too."""
    from pipeline.execution.server import run_server

    if not 1 <= port <= 65535:
        raise ValueError(f"--port must be between 1 and 65535, got {port}")
    if results is not None and not results.is_dir():
        raise FileNotFoundError(f"--results {results} is not a directory; run `dvc repro` first or point it at a DVC workspace")
    app_path = Path(__file__).resolve().parents[1] / "dashboard" / "app.py"
    if not app_path.is_file():
        raise FileNotFoundError(f"{app_path} is missing; reinstall the package from its repository")
    # .streamlit/config.toml is read only from the working directory: every setting is passed here
    settings = {"server.address": "127.0.0.1", "server.port": str(port), "server.headless": "true",
                "browser.gatherUsageStats": "false", "client.showErrorDetails": "none", "client.toolbarMode": "minimal",
                "server.maxUploadSize": "50"}  # MB per file on the Restore page
    env = dict(os.environ, **{"STREAMLIT_" + re.sub(r"([A-Z])", r"_\1", k.replace(".", "_")).upper(): v for k, v in settings.items()})
    cmd = [sys.executable, "-m", "streamlit", "run", str(app_path)] + [x for k, v in settings.items() for x in (f"--{k}", v)]
    if results is not None:
        cmd += ["--", "--results", str(results.resolve())]
    typer.echo(f"dashboard on http://127.0.0.1:{port} (Ctrl+C stops it)")
    code = run_server(cmd, env)
    if code:
        raise typer.Exit(code)


def _terminate(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt  # cleaned up like Ctrl+C: temporary output folders are removed


def main() -> None:
    """The ``dip`` entry point; SIGTERM (``kill``, a job scheduler) is handled like Ctrl+C."""
    from pipeline.execution.threads import prepare_openmp

    prepare_openmp()  # before torch loads: OpenMP threads sleep, not spin, while they wait
    signal.signal(signal.SIGTERM, _terminate)
    app()


if __name__ == "__main__":
    main()
