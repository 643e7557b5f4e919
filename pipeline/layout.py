"""The output layout of ``docs/LAYOUT.md`` in code: one place for what the stages write and read.

* :func:`load_case` — a corrupted case folder (``data/corrupted/<exp>/<image>/``): observation,
  the operator's inputs (mask, factor, network input image), ground truth and ``meta.json``; used
  by ``dip run`` (:mod:`pipeline.execution.job`), ``dip baselines`` and ``dip evaluate``.
* :func:`protocol` — how a task is scored: ``("sr", factor)`` (Y channel, ``factor`` pixels
  shaved) for super-resolution, ``("rgb", 0)`` otherwise.
* the CSV columns of ``metrics/`` (``tests/test_layout.py`` checks them against docs/LAYOUT.md).
* path helpers: ``results/<exp>/<image>/seed_<s>/``, ``baselines/<exp>/<image>/<method>.png``,
  the files of ``metrics/``.
* :func:`psnr_from_loss` — the PSNR (dB) of an MSE loss, as the progress bars show it.

A leaf of ``pipeline/``: it imports ``dip`` (inside :func:`load_case` only, so that the dashboard
can import this module without torch) and nothing of ``pipeline``.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

# --- metrics/ (docs/LAYOUT.md) -------------------------------------------------------------------
PER_IMAGE_FIELDS = ("experiment", "image", "method", "seed", "psnr", "ssim", "seconds", "profile", "device", "set")
CURVE_FIELDS = ("experiment", "image", "seed", "iteration", "loss", "psnr_obs", "psnr_gt", "ssim_gt")
REPORT_FIELDS = ("experiment", "image", "set", "method", "psnr", "psnr_std", "ssim", "ssim_std", "seeds", "seconds",
                 "paper_psnr", "delta", "reproduced", "source", "paper_psnr_all", "images_done", "images_total", "complete")
# run.json ``metrics`` key → per_image.csv method
RUN_METHODS = {"input": "input", "restored": "dip", "final": "dip_final", "averaged": "dip_averaged", "early_stopped": "dip_early_stopped"}

METRICS = "metrics"
PER_IMAGE_CSV, CURVES_CSV, REPORT_CSV, REPORT_MD, SUMMARY_JSON = "per_image.csv", "curves.csv", "report.csv", "report.md", "summary.json"

# --- folders of the results root ---------------------------------------------------------------------
CORRUPTED, RESULTS, BASELINES = "data/corrupted", "results", "baselines"
OUTPUT_DIRS = (METRICS, RESULTS, CORRUPTED, BASELINES)
SEED_PREFIX = "seed_"

# --- published bundles (pipeline/outputs/publish.py): a subset of this tree + manifest.json ----------------
PUBLISHED = "results-published"
BUNDLE_MANIFEST = "manifest.json"
BUNDLE_FORMAT = "dip-results-bundle/1"
PREVIEW = "restored.jpg"  # a JPEG preview where a bundle keeps no restored.png (its metrics are in per_image.csv)


def seed_dir(exp_results: Path, image: str, seed: int) -> Path:
    """``results/<exp>/<image>/seed_<s>/``, one DIP run (``exp_results`` = ``results/<exp>``)."""
    return Path(exp_results) / image / f"{SEED_PREFIX}{seed}"


def seed_of(run_dir: Path) -> int | None:
    """The seed of a ``seed_<s>`` folder, ``None`` when the name is not one."""
    try:
        return int(Path(run_dir).name.removeprefix(SEED_PREFIX))
    except ValueError:
        return None


def run_files(results: Path, exp: str | None = None) -> list[Path]:
    """Every ``run.json`` under ``results/<exp>/<image>/seed_<s>/`` (all experiments when ``exp``
    is None), sorted."""
    pattern = f"*/{SEED_PREFIX}*/run.json" if exp is not None else f"*/*/{SEED_PREFIX}*/run.json"
    return sorted((Path(results) / exp if exp is not None else Path(results)).glob(pattern))


def baseline_records(baselines: Path, exp: str) -> list[Path]:
    """Every ``baselines/<exp>/<image>/<method>.json`` (its image is ``<method>.png`` beside it)."""
    return sorted((Path(baselines) / exp).glob("*/*.json"))


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
    from dip.io import load_image, load_mask

    case_dir = Path(case_dir)
    meta = json.loads((case_dir / "meta.json").read_text())
    observation = np.load(case_dir / "observation.npy")
    mode = truth_mode or ("gray" if observation.ndim == 2 else "rgb")
    truth = load_image(case_dir / "ground_truth.png", mode=mode) if (case_dir / "ground_truth.png").is_file() else None
    mask = load_mask(case_dir / "mask.png") if meta["task"] == "inpaint" else None
    input_image = np.load(case_dir / "input.npy") if (case_dir / "input.npy").is_file() else None
    return Case(meta, observation, truth, mask, input_image)
