"""The output layout of ``docs/LAYOUT.md`` in code: every file name of the outputs lives here.

A folder of the layout is a small frozen type over its path; its properties are the paths of its
files, so no other module spells a file name (``tests/test_layout.py`` walks every module to check):

* :class:`Tree` — a results root (a workspace after ``dvc repro``, a published bundle, a part):
  ``data/corrupted/``, ``results/``, ``baselines/``, ``metrics/`` and the records in them;
* :class:`CaseDir` — a corrupted case ``data/corrupted/<exp>/<image>/`` (:func:`load_case` reads it);
* :class:`RunDir` — one fit ``results/<exp>/<image>/seed_<s>/``, or the folder of ``dip restore``;
* :class:`ExperimentDir` — ``data/corrupted/<exp>/`` or ``results/<exp>/`` with its ``experiment.json``;
* :class:`BaselinesDir` — ``baselines/<exp>/``: ``<image>/<method>.png`` + ``.json``, ``baselines.json``.

The types take a :class:`~pathlib.Path` (files on disk) or a :class:`~pathlib.PurePosixPath`
(``Tree(PurePosixPath())``: the relative names inside a bundle's manifest or a part). Besides:

* :func:`corrupted_experiment`, :func:`results_experiment` — the two ``experiment.json`` records;
* the CSV columns of ``metrics/`` and :func:`protocol`, how a task is scored;
* one reader of runs for ``dip evaluate`` and the dashboard: :func:`find_runs` (the fits of a
  results tree), :func:`per_image_rows` (a ``run.json`` → rows of ``per_image.csv``),
  :func:`curve_rows` (a ``curve.csv`` → rows of ``curves.csv``), :func:`collect` (both, for a tree).

A leaf of ``pipeline/``: it imports ``dip`` (inside :func:`load_case` and :func:`collect` only, so
that the dashboard can import this module without torch) and nothing of ``pipeline``. Two names
of docs/LAYOUT.md have their owner elsewhere: ``data/profile.json``
(:data:`pipeline.settings.PROFILE_FILE`: the settings load without this module) and the
``.dip-output`` marker of every folder written atomically (:data:`pipeline.files.MARKER`).
"""

from __future__ import annotations

import csv
import json
import math
from dataclasses import dataclass
from pathlib import Path, PurePath
from typing import Any, Generic, Iterable, Mapping, TypeVar

import numpy as np

from pipeline.files import load_image, load_mask, read_json

# --- file names (docs/LAYOUT.md) ----------------------------------------------------------------------
# a fit's folder (RunDir)
RUN_JSON, RESTORED, FINAL, CURVE, SNAPSHOTS = "run.json", "restored.png", "final.png", "curve.csv", "snapshots"
SNAPSHOT_PREFIX, SNAPSHOT_SUFFIX = "iter_", ".png"  # snapshots/iter_NNNNN.png
SNAPSHOT_GLOB = f"{SNAPSHOT_PREFIX}*{SNAPSHOT_SUFFIX}"
PREVIEW = "restored.jpg"  # a JPEG preview where a bundle keeps no restored.png (its metrics are in per_image.csv)
# a corrupted case (CaseDir)
META, GROUND_TRUTH, MASK = "meta.json", "ground_truth.png", "mask.png"
OBSERVATION_NPY, OBSERVATION_PNG, INPUT_NPY, INPUT_PNG = "observation.npy", "observation.png", "input.npy", "input.png"
# an experiment's record (data/corrupted/<exp>/, results/<exp>/), the baselines' summary
EXPERIMENT_JSON, BASELINES_JSON = "experiment.json", "baselines.json"
# a published bundle's manifest, a part's record
BUNDLE_MANIFEST, PART_JSON = "manifest.json", "part.json"

# --- metrics/ -----------------------------------------------------------------------------------------
PER_IMAGE_FIELDS = ("experiment", "image", "method", "seed", "psnr", "ssim", "seconds", "profile", "device", "set")
CURVE_FIELDS = ("experiment", "image", "seed", "iteration", "loss", "psnr_obs", "psnr_gt", "ssim_gt")
REPORT_FIELDS = ("experiment", "image", "set", "method", "psnr", "psnr_std", "psnr_min", "psnr_max", "ssim", "ssim_std", "seeds", "seconds",
                 "paper_psnr", "delta", "reproduced", "source", "paper_psnr_all", "images_done", "images_total", "complete")
# run.json ``metrics`` key → per_image.csv method
RUN_METHODS = {"input": "input", "restored": "dip", "final": "dip_final", "averaged": "dip_averaged", "early_stopped": "dip_early_stopped"}

METRICS = "metrics"
PER_IMAGE_CSV, CURVES_CSV, REPORT_CSV, REPORT_MD, SUMMARY_JSON = "per_image.csv", "curves.csv", "report.csv", "report.md", "summary.json"
METRICS_FILES = (PER_IMAGE_CSV, CURVES_CSV, REPORT_CSV, REPORT_MD, SUMMARY_JSON)

# --- folders of the results root ---------------------------------------------------------------------
IMAGES, CORRUPTED, RESULTS, BASELINES = "data/images", "data/corrupted", "results", "baselines"  # IMAGES: dip fetch's
OUTPUT_DIRS = (METRICS, RESULTS, CORRUPTED, BASELINES)
SEED_PREFIX = "seed_"

# --- published bundles (pipeline/outputs/publish.py): a subset of this tree + manifest.json ----------------
PUBLISHED = "results-published"
PAPER_BUNDLES, QUICK_BUNDLE = "paper-*", "quick-cpu"  # results-published/paper-<gpu>/ (the paper profile), the quick profile's CPU bundle
BUNDLE_FORMAT = "dip-results-bundle/1"

P = TypeVar("P", bound=PurePath)


def fit_id(exp: str, image: str, seed: int | str) -> str:
    """``<exp>/<image>/seed_<s>``: how bundles, parts and their manifests name a fit."""
    return f"{exp}/{image}/{SEED_PREFIX}{seed}"


def seed_of(run_dir: PurePath | str) -> int | None:
    """The seed of a ``seed_<s>`` folder (or of the last part of a fit id), ``None`` when the name is not one."""
    name = PurePath(run_dir).name
    if not name.startswith(SEED_PREFIX):
        return None
    try:
        return int(name.removeprefix(SEED_PREFIX))
    except ValueError:
        return None


def snapshot_iteration(name: str) -> int | None:
    """The iteration of a snapshot's file name ``iter_NNNNN.png``, ``None`` when it is not one."""
    if not (name.startswith(SNAPSHOT_PREFIX) and name.endswith(SNAPSHOT_SUFFIX)):
        return None
    digits = name[len(SNAPSHOT_PREFIX): -len(SNAPSHOT_SUFFIX)]
    return int(digits) if digits.isascii() and digits.isdigit() else None


# --- the folders --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class RunDir(Generic[P]):
    """One fit's folder (``pipeline/execution/fits.py`` writes it): ``restored.png`` (the estimate),
    ``final.png`` (the last output, where it differs), ``curve.csv``, ``snapshots/iter_NNNNN.png``,
    ``run.json``; in a bundle ``restored.jpg`` may stand for ``restored.png``. The Restore page's
    runs also hold a case's files beside them (:class:`CaseDir` over the same path)."""

    path: P

    @property
    def run_json(self) -> P:
        return self.path / RUN_JSON

    @property
    def restored(self) -> P:
        return self.path / RESTORED

    @property
    def final(self) -> P:
        return self.path / FINAL

    @property
    def curve(self) -> P:
        return self.path / CURVE

    @property
    def preview(self) -> P:
        return self.path / PREVIEW

    @property
    def snapshots(self) -> P:
        return self.path / SNAPSHOTS

    def snapshot(self, iteration: int) -> P:
        """``snapshots/iter_NNNNN.png`` (five digits at least) of ``iteration``."""
        return self.snapshots / f"{SNAPSHOT_PREFIX}{iteration:05d}{SNAPSHOT_SUFFIX}"

    @property
    def records(self) -> tuple[P, P]:
        """The fit's numbers, kept of every fit a bundle holds: ``run.json`` and ``curve.csv``."""
        return self.run_json, self.curve

    def snapshot_files(self: RunDir[Path]) -> list[tuple[int, Path]]:
        """``(iteration, file)`` of every snapshot on disk, by iteration."""
        found = [(snapshot_iteration(p.name), p) for p in self.snapshots.glob(SNAPSHOT_GLOB)]
        return sorted((i, p) for i, p in found if i is not None)

    def is_finished(self: RunDir[Path]) -> bool:
        """Whether the folder holds a finished fit: its ``run.json`` and ``restored.png``."""
        return self.run_json.is_file() and self.restored.is_file()


@dataclass(frozen=True)
class CaseDir(Generic[P]):
    """A corrupted case (``pipeline/stages/corrupt.py`` writes it): ``meta.json``,
    ``ground_truth.png`` (none for a real photograph), ``observation.npy`` / ``.png``, ``mask.png``
    (inpainting), ``input.npy`` / ``.png`` (an image as the network's input)."""

    path: P

    @property
    def meta(self) -> P:
        return self.path / META

    @property
    def ground_truth(self) -> P:
        return self.path / GROUND_TRUTH

    @property
    def observation_npy(self) -> P:
        return self.path / OBSERVATION_NPY

    @property
    def observation_png(self) -> P:
        return self.path / OBSERVATION_PNG

    @property
    def mask(self) -> P:
        return self.path / MASK

    @property
    def input_npy(self) -> P:
        return self.path / INPUT_NPY

    @property
    def input_png(self) -> P:
        return self.path / INPUT_PNG


@dataclass(frozen=True)
class BaselinesDir(Generic[P]):
    """``baselines/<exp>/`` (``pipeline/stages/baselines.py`` writes it): ``<image>/<method>.png``
    and its record ``<method>.json`` ({"method", "params", "seconds"}), ``baselines.json``."""

    path: P

    @property
    def summary(self) -> P:
        return self.path / BASELINES_JSON

    def png(self, image: str, method: str) -> P:
        return self.path / image / f"{method}.png"

    def record(self, image: str, method: str) -> P:
        return self.path / image / f"{method}.json"

    def records(self: BaselinesDir[Path]) -> list[Path]:
        """Every ``<image>/<method>.json`` (its image is ``<method>.png`` beside it), sorted."""
        return sorted(self.path.glob("*/*.json"))


@dataclass(frozen=True)
class ExperimentDir(Generic[P]):
    """An experiment's folder with its ``experiment.json``: ``data/corrupted/<exp>/`` (its cases,
    :func:`corrupted_experiment`) or ``results/<exp>/`` (its runs, :func:`results_experiment`)."""

    path: P

    @property
    def record(self) -> P:
        return self.path / EXPERIMENT_JSON

    def case(self, image: str) -> CaseDir[P]:
        return CaseDir(self.path / image)

    def run(self, image: str, seed: int | str) -> RunDir[P]:
        return RunDir(self.path / image / f"{SEED_PREFIX}{seed}")


@dataclass(frozen=True)
class Tree(Generic[P]):
    """A results root: what the stages write under a workspace, and what a published bundle
    (plus ``manifest.json``) or a part (plus ``part.json``) holds with the same names."""

    root: P

    @property
    def images(self) -> P:
        """The fetched images (``dip fetch``): ``<set>/<name>.png``."""
        return self.root / IMAGES

    @property
    def corrupted(self) -> P:
        return self.root / CORRUPTED

    @property
    def results(self) -> P:
        return self.root / RESULTS

    @property
    def baselines(self) -> P:
        return self.root / BASELINES

    @property
    def metrics(self) -> P:
        return self.root / METRICS

    @property
    def manifest(self) -> P:
        """A published bundle's ``manifest.json``."""
        return self.root / BUNDLE_MANIFEST

    @property
    def part_json(self) -> P:
        """A part's ``part.json``."""
        return self.root / PART_JSON

    def corrupted_of(self, exp: str) -> ExperimentDir[P]:
        """``data/corrupted/<exp>/``."""
        return ExperimentDir(self.corrupted / exp)

    def results_of(self, exp: str) -> ExperimentDir[P]:
        """``results/<exp>/``."""
        return ExperimentDir(self.results / exp)

    def baselines_of(self, exp: str) -> BaselinesDir[P]:
        """``baselines/<exp>/``."""
        return BaselinesDir(self.baselines / exp)

    def case(self, exp: str, image: str) -> CaseDir[P]:
        """``data/corrupted/<exp>/<image>/``."""
        return self.corrupted_of(exp).case(image)

    def run(self, exp: str, image: str, seed: int | str) -> RunDir[P]:
        """``results/<exp>/<image>/seed_<s>/``."""
        return self.results_of(exp).run(image, seed)

    def fit(self, fid: str) -> RunDir[P]:
        """The run folder of the fit id ``<exp>/<image>/seed_<s>`` (:func:`fit_id`)."""
        return RunDir(self.results / fid)

    def metric(self, name: str) -> P:
        """``metrics/<name>`` (one of :data:`METRICS_FILES`)."""
        return self.metrics / name


def run_files(results: Path, exp: str | None = None) -> list[Path]:
    """Every ``run.json`` under ``results/<exp>/<image>/seed_<s>/`` (all experiments when ``exp``
    is None), sorted."""
    pattern = f"*/{SEED_PREFIX}*/{RUN_JSON}" if exp is not None else f"*/*/{SEED_PREFIX}*/{RUN_JSON}"
    return sorted((Path(results) / exp if exp is not None else Path(results)).glob(pattern))


# --- experiment.json ---------------------------------------------------------------------------------
def corrupted_experiment(experiment: str, task: str, corruption: Mapping[str, Any], profile: str, active: bool,
                         images: Iterable[str], seed: int) -> dict[str, Any]:
    """``data/corrupted/<exp>/experiment.json``: the experiment, its task and corruption
    (``sigma`` | ``drop`` | ``factor``; a figure's ``mask``, ``input``, ``ground_truth``), the
    profile, whether the profile runs it, its images (n of "k of n") and the base seed."""
    return {"experiment": experiment, "task": task, **corruption, "profile": profile, "active": active,
            "images": list(images), "seed": seed}


def results_experiment(experiment: str, profile: str | None, active: bool, images: Iterable[str], seeds: Iterable[int]) -> dict[str, Any]:
    """``results/<exp>/experiment.json``: the experiment, its profile, whether the profile runs it,
    and the images and seeds with a fit (sorted, each once)."""
    return {"experiment": experiment, "profile": profile, "active": active, "images": sorted(set(images)), "seeds": sorted(set(seeds))}


# --- the runs of a results tree: one reader for `dip evaluate` and the dashboard ---------------------------
@dataclass(frozen=True)
class Run:
    """A finished fit of a results tree (a seed folder with its ``run.json``)."""

    experiment: str
    image: str
    seed: int
    dir: RunDir[Path]

    @property
    def id(self) -> str:
        return fit_id(self.experiment, self.image, self.seed)

    @property
    def key(self) -> dict[str, Any]:
        """The columns that name the run in ``per_image.csv`` and ``curves.csv``."""
        return {"experiment": self.experiment, "image": self.image, "seed": self.seed}


def find_runs(results: Path, experiments: Iterable[str] | None = None) -> list[Run]:
    """Every finished fit under ``results/`` (its ``run.json`` exists): of ``experiments`` in that
    order (each one's sorted by path), or of all experiments sorted by path. A folder named
    ``seed_<not a number>`` is not a run."""
    files = run_files(results) if experiments is None else [f for exp in experiments for f in run_files(results, exp)]
    out = []
    for f in files:
        seed = seed_of(f.parent)
        if seed is not None:
            out.append(Run(f.parent.parent.parent.name, f.parent.parent.name, seed, RunDir(f.parent)))
    return out


def _rounded(value: float | None, digits: int) -> float | None:
    return None if value is None else round(value, digits)


def per_image_rows(run: Run, record: Mapping[str, Any], fallback: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The rows of ``per_image.csv`` of one fit's ``run.json`` ``record``: one per key of its
    ``metrics`` (:data:`RUN_METHODS`: ``input`` → input, ``restored`` → dip, …), PSNR and SSIM to
    4 decimals, the wall time (2 decimals) on the DIP rows; ``profile`` and ``device`` from
    ``fallback`` where the record has none. A number the caller has found damaged (``None``)
    stays empty. No ``metrics`` (no ground truth): no row."""
    rows = []
    metrics = record.get("metrics") or {}
    for key, method in RUN_METHODS.items():
        if key in metrics:
            m = metrics[key]
            rows.append({"experiment": run.experiment, "image": run.image, "method": method, "seed": run.seed,
                         "psnr": _rounded(m["psnr"], 4), "ssim": _rounded(m["ssim"], 4),
                         "seconds": _rounded(record["wall_seconds"], 2) if method.startswith("dip") else 0.0,
                         "profile": record.get("profile", fallback.get("profile")), "device": record.get("device", fallback.get("device")),
                         "set": record.get("set", "")})
    return rows


def read_curve(run_dir: RunDir[Path]) -> list[dict[str, str]]:
    """The rows of a fit's ``curve.csv`` as text (``iteration, loss, psnr_obs[, psnr_gt, …]``)."""
    with open(run_dir.curve, newline="") as fh:
        return list(csv.DictReader(fh))


def curve_rows(run: Run, rows: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """The rows of ``curves.csv`` of one fit's ``curve.csv`` rows (a missing column empty)."""
    return [{**run.key, **{k: r.get(k, "") for k in CURVE_FIELDS[3:]}} for r in rows]


def collect(results: Path, experiments: Iterable[str], fallback: Mapping[str, Any]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The rows of ``per_image.csv`` (the DIP methods) and ``curves.csv`` of every finished fit of
    ``experiments`` under ``results/`` (``fallback``: ``profile`` and ``device`` of the resolution,
    for a record without them). ``ValueError`` naming a ``run.json`` that is not JSON."""
    rows: list[dict[str, Any]] = []
    curves: list[dict[str, Any]] = []
    for run in find_runs(results, experiments):
        rows += per_image_rows(run, read_json(run.dir.run_json), fallback)
        curves += curve_rows(run, read_curve(run.dir))
    return rows, curves


# --- scoring ----------------------------------------------------------------------------------------
def protocol(task: str, factor: int | float | None = 0) -> tuple[str, int]:
    """``(protocol, shave)`` of :func:`dip.metrics.quality` for ``task``: super-resolution is scored
    on the Y channel with ``factor`` pixels shaved, everything else on all channels."""
    return ("sr", int(factor or 0)) if task == "sr" else ("rgb", 0)


def psnr_from_loss(loss: float) -> float:
    """PSNR (dB) of an MSE ``loss`` on [0, 1] images (clamped at 120 dB)."""
    return -10 * math.log10(max(loss, 1e-12))


# --- a corrupted case -------------------------------------------------------------------------------
@dataclass
class Case:
    """One ``data/corrupted/<exp>/<image>/`` folder, loaded."""

    meta: dict[str, Any]
    observation: np.ndarray
    truth: np.ndarray | None  # None: a real photograph without ground truth
    mask: np.ndarray | None  # inpainting only (1 = known)
    input_image: np.ndarray | None  # figures with an image as the network's input

    @property
    def task(self) -> str:
        return str(self.meta["task"])

    @property
    def factor(self) -> int:
        return int(self.meta.get("factor") or 0)

    @property
    def protocol(self) -> tuple[str, int]:
        return protocol(self.task, self.factor)


def load_case(case_dir: Path, truth_mode: str | None = None) -> Case:
    """Read a corrupted case folder. The ground truth is read gray or RGB like the observation
    (or as ``truth_mode`` says); ``None`` where the folder has none."""
    case = CaseDir(Path(case_dir))
    meta = json.loads(case.meta.read_text())
    observation = np.load(case.observation_npy)
    mode = truth_mode or ("gray" if observation.ndim == 2 else "rgb")
    truth = load_image(case.ground_truth, mode=mode) if case.ground_truth.is_file() else None
    mask = load_mask(case.mask) if meta["task"] == "inpaint" else None
    input_image = np.load(case.input_npy) if case.input_npy.is_file() else None
    return Case(meta, observation, truth, mask, input_image)
