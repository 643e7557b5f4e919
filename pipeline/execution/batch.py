"""`dip restore` on a person's own images: which files, their masks, resuming, and the fits.

One image goes to ``OUT/``; several images (or folders of images) go to ``OUT/NAME/`` each. For
every input the batch reads only its header first (a missing, unreadable or too large file is
reported before any fit), skips an image whose ``OUT/NAME/run.json`` records the same input,
mask and settings (``batch_hash``), and hands the rest (:class:`~pipeline.execution.keys.Fit` values) to
:func:`pipeline.execution.fits.drive`, the driver that `dip run` uses too: each image is decoded and its network built only when its
turn comes, same-size images are fitted together on CUDA, and a finished fit is released as soon
as its folder is written. One bar (:func:`pipeline.execution.progress.fits_bar`) counts the
iterations of all of them.

One process at a time writes an output: a second ``dip restore`` into the same ``OUT`` stops at
once with one line naming the first (:func:`pipeline.files.output_lock`), whether either was given
one image or several: ``OUT`` has one lock, beside it.

The command line parses, calls :func:`restore_images` and prints what it reports through
:class:`Report`; a bad image of several is one line and the others go on; with one image, its
error is raised.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

from dip.fit import FitConfig
from pipeline.files import DEFAULT_MAX_PIXELS, check_pixels, check_replaceable, error_line, image_header, output_lock
from dip.network import NetConfig
from pipeline.execution import fits
from pipeline.execution.fits import Restoration, Setup, drive, key_order
from pipeline.execution.keys import Fit, finished, group_key
from pipeline.execution.progress import fits_bar
from pipeline.execution.status import StatusWriter
from pipeline.images.user import load_user_image
from pipeline.layout import protocol
from pipeline.settings import FitSettings

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
            with open(path, "rb") as fh:
                for block in iter(lambda: fh.read(1 << 20), b""):
                    h.update(block)
    return h.hexdigest()


@dataclass
class Request:
    """What ``dip restore`` was asked for, besides the inputs: the task and its settings."""

    task: str
    net: NetConfig
    fit: FitConfig
    preset: str
    device: Any
    factor: int = 4
    mask: Path | None = None  # one mask for every input; None: NAME_mask.* beside each (inpainting)
    gt: Path | None = None  # one input only
    size_mode: str = "pad"
    log_every: int = 25
    snapshots: list[int] = field(default_factory=list)
    group: str = "auto"
    force: bool = False
    max_pixels: int = DEFAULT_MAX_PIXELS
    status: Path | None = None  # --status FILE: a JSON progress file (pipeline.execution.status), outside the output

    def settings(self) -> dict[str, Any]:
        """The settings that shape every output, as JSON: part of each image's ``batch_hash`` and
        group key (kept key for key as it was, so that finished outputs stay reused)."""
        return {"net": self.net.to_dict(), "fit": self.fit.__dict__, "task": self.task, "factor": self.factor,
                "size_mode": self.size_mode, "snapshots": self.snapshots, "log_every": self.log_every, "device": str(self.device)}

    def fit_settings(self) -> FitSettings:
        """The network and fitting settings of every fit of the request, as a :class:`Fit` carries them."""
        return FitSettings(self.net, self.fit, str(self.device), self.log_every, tuple(self.snapshots), self.preset)


class Report:
    """What a batch tells its caller (the command line prints it); every method does nothing here."""

    def error(self, source: Path, err: BaseException) -> None:
        """An input that could not be restored (the others go on); ``err`` says why."""

    def reused(self, item: Fit) -> None:
        """An input already restored with the same image, mask and settings."""

    def written(self, item: Fit, record: dict[str, Any]) -> None:
        """An input restored: its run.json content."""


@dataclass
class Counts:
    written: int = 0
    reused: int = 0
    failed: int = 0


def plan(files: list[Path], out: Path, req: Request, report: Report, counts: Counts, single: bool) -> list[Fit]:
    """The inputs to fit: every file whose header is readable and within the size limit, whose
    name is not taken by another input and that is not already restored (reported as reused).
    With ``single``, a bad input raises; otherwise it is reported and left out."""
    items, names = [], set()
    settings, fit_settings = req.settings(), req.fit_settings()
    for path in files:
        out_dir = out if single else out / path.stem
        try:
            if out_dir in names:
                raise ValueError(f"another input is also named {path.stem!r}; rename one (outputs go to {out}/NAME/)")
            names.add(out_dir)
            try:  # from the header alone: a huge file is refused before it is decoded
                header = image_header(path)
                h, w, _ = header
                scale = req.factor if req.task == "sr" else 1
                check_pixels(h * scale, w * scale, req.max_pixels)
            except ValueError as err:
                raise ValueError(error_line(err, path)) from None
            mask = req.mask if req.mask is not None or req.task != "inpaint" else mask_beside(path)
            digest = batch_hash(path, mask, settings)
            item = Fit(path, out_dir, fit_settings, req.fit.seed, path.name, group_key(header, req.task, settings), mask,
                       {"preset": req.preset, "input": str(path), "batch_hash": digest})
            if not single and finished(out_dir, "batch_hash", digest):
                counts.reused += 1
                report.reused(item)
                continue
            check_replaceable(out_dir, req.force)
            items.append(item)
        except (ValueError, OSError, KeyError) as err:
            if single:
                raise
            counts.failed += 1
            report.error(path, err)
    return items


def setup_image(req: Request) -> Setup:
    """How a fit of ``req`` is set up: its image decoded, its network made (when :func:`drive` runs it)."""
    def setup(item: Fit) -> Restoration:
        assert item.source is not None
        observation, operator, truth = load_user_image(item.source, req.task, item.mask, req.factor, req.gt, req.size_mode,
                                                       req.net.multiple, req.max_pixels)
        metric_protocol, shave = protocol(req.task, req.factor)
        r = fits.prepare(operator, observation, item.out_dir, req.net, req.fit, ground_truth=truth, protocol=metric_protocol,
                         shave=shave, device=req.device, log_every=req.log_every, snapshots=req.snapshots,
                         overwrite=req.force, max_pixels=req.max_pixels, extra=dict(item.extra))
        if req.status is not None:  # after the curve recorder: its row of this iteration is there
            r.fitter.add_callback(StatusWriter(req.status, req.fit.iterations, r.curve.rows, str(item.source)), every=req.log_every)
        return r

    return setup


def restore_images(inputs: list[Path], out: Path, req: Request, report: Report | None = None) -> Counts:
    """Restore ``inputs`` (files or folders of images) into ``out`` (see the module's docstring).

    Returns the counts; with one input image, its error is raised (one line for the command line)."""
    report = report or Report()
    files = image_files(inputs)
    if not files:
        raise ValueError(f"no images ({', '.join(sorted({'.png', '.jpg', '.tif'}))}, …) in {', '.join(map(str, inputs))}")
    single = len(inputs) == 1 and inputs[0].is_file()
    if not single and req.gt is not None:
        raise ValueError("--gt works with one input image; for several, compare afterwards with `dip metrics`")
    counts = Counts()
    if single:
        check_replaceable(out, req.force)  # before any fit: never a user's folder, --force or not
        with output_lock(out):
            _restore(files, out, req, report, counts, single=True)
        return counts
    created = not out.exists()
    with output_lock(out):  # the lock of one image into OUT too: never two writers of one folder
        out.mkdir(parents=True, exist_ok=True)
        try:
            _restore(files, out, req, report, counts, single=False)
        finally:
            if created and out.is_dir() and not any(out.iterdir()):
                out.rmdir()  # nothing written: leave no empty folder behind
    return counts


def _restore(files: list[Path], out: Path, req: Request, report: Report, counts: Counts, single: bool) -> None:
    items = plan(files, out, req, report, counts, single)
    iterations = req.fit.iterations
    label = f"{req.task} {files[0].name}" if single else f"{req.task} {len(items)} image(s)"
    with fits_bar(label, len(items) * iterations) as bar:  # a failing single fit leaves its error line alone
        for item, outcome in drive(key_order(items), setup_image(req), req.group, on_step=bar.step):
            assert item.source is not None
            bar.finish(item.out_dir, iterations)
            if isinstance(outcome, Exception):
                if single:
                    raise outcome
                counts.failed += 1
                report.error(item.source, outcome)
                continue
            counts.written += 1
            report.written(item, outcome)
