"""``dip evaluate``: PSNR/SSIM per image and experiment → ``metrics/``.

* ``per_image.csv`` — experiment, image, method, seed, psnr, ssim, seconds, profile, device;
  methods: ``input`` (the corrupted image; bicubic upsampling for SR), ``dip`` (the estimate
  DIP reports: early-stopped, else averaged, else final), ``dip_final``, and ``dip_averaged`` /
  ``dip_early_stopped`` where used.
* ``summary.json`` — for ``dvc metrics show``: the resolved profile and device, the mean
  PSNR/SSIM per experiment and method (over the fitted images only, for an experiment in
  progress), and ``progress``: per experiment of the profile ``images_done`` :math:`k`,
  ``images_total`` :math:`n` (its ``data/corrupted/<exp>/experiment.json``), ``complete`` and
  ``status`` (complete, in progress, pending).
* ``curves.csv`` — experiment, image, seed, iteration, loss, psnr_obs, psnr_gt, ssim_gt (for
  ``dvc plots``).
* ``report.md`` / ``report.csv`` — DIP, the classical baselines (``baselines/<exp>/``, scored
  here against the same ground truths with the same protocol) and the paper's numbers side by
  side (:mod:`pipeline.report`); ``summary.json`` gets the baselines' means and a ``paper``
  section (comparable or why not, mean Δ of DIP, images reproduced, the paper's DIP mean over the
  same images as ours and over all of them).

A partial run (an interrupted ``dvc repro``, a bundle published in parts) is evaluated as it is:
``per_image.csv`` and ``curves.csv`` hold every fit found; the means, the report and the summary
of an experiment in progress cover its fitted images only and say "k of n"; an experiment of the
profile (an active ``experiment.json`` among ``experiments``) with no fit is listed as pending.

Runs without a ground truth (figures of real photographs: ``real_snail``, ``flash_cave``) have
no PSNR; they are listed in ``summary.json`` under ``no_ground_truth`` (final loss, PSNR to the
observation) and in their own section of the report, which says so.

The numbers are those of ``run.json`` (8-bit metrics of :mod:`dip.metrics`, Y-channel protocol
with the factor shaved for super-resolution).
"""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path
from typing import Any

import pandas as pd

from pipeline.files import atomic_path, load_image, read_json, save_json
from dip.metrics import quality
from pipeline import layout
from pipeline import report
from pipeline.settings import load_params, read_resolution

PER_IMAGE_FIELDS, CURVE_FIELDS = layout.PER_IMAGE_FIELDS, layout.CURVE_FIELDS


def collect(results: Path, experiments: list[str], resolution: dict[str, str]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Rows of per_image.csv and curves.csv from ``results/<exp>/<image>/seed_<s>/`` (:func:`pipeline.layout.collect`)."""
    return layout.collect(results, experiments, resolution)


def collect_without_truth(results: Path, experiments: list[str]) -> list[dict[str, Any]]:
    """One entry per run that has no ground truth (no ``metrics`` in its run.json): experiment,
    image, seed, iterations, seconds and the last logged loss and PSNR to the observation."""
    out: list[dict[str, Any]] = []
    for run in layout.find_runs(results, experiments):
        record = read_json(run.dir.run_json)
        if "metrics" in record:
            continue
        last = (layout.read_curve(run.dir) or [{}])[-1]
        out.append({**run.key, "iterations": record.get("iterations_run"), "seconds": round(record.get("wall_seconds", 0.0), 2),
                    "loss": float(last.get("loss") or "nan"), "psnr_obs": float(last.get("psnr_obs") or "nan")})
    return out


def collect_baselines(baselines: Path, corrupted: Path, experiments: list[str], resolution: dict[str, str]) -> list[dict[str, Any]]:
    """Rows of per_image.csv for ``baselines/<exp>/<image>/<method>.png``, scored against the
    experiment's ground truth with DIP's protocol (Y channel, factor shaved, for SR); a record
    without its PNG (a published bundle keeps some baselines as numbers only) gives its own
    ``psnr`` and ``ssim``."""
    rows: list[dict[str, Any]] = []
    for exp in experiments:
        for record in layout.BaselinesDir(baselines / exp).records():
            info = json.loads(record.read_text())
            case = layout.ExperimentDir(corrupted / exp).case(record.parent.name)
            meta = json.loads(case.meta.read_text())
            if record.with_suffix(".png").is_file():
                estimate = load_image(record.with_suffix(".png"))
                truth = load_image(case.ground_truth, mode="gray" if estimate.ndim == 2 else "rgb")
                q = quality(truth, estimate, *layout.protocol(str(meta["task"]), meta.get("factor")))
            else:
                q = {"psnr": float(info["psnr"]), "ssim": float(info["ssim"])}
            rows.append({"experiment": exp, "image": meta["image"], "method": info["method"], "seed": "",
                         "psnr": round(q["psnr"], 4), "ssim": round(q["ssim"], 4), "seconds": info["seconds"],
                         "profile": meta.get("profile", resolution["profile"]), "device": "cpu", "set": meta.get("set", "")})
    return rows


def fitted(rows: list[dict[str, Any]], blind: list[dict[str, Any]]) -> dict[str, set[str]]:
    """The images of each experiment with a finished DIP fit (a ``dip`` row, or a run without ground truth)."""
    done: dict[str, set[str]] = {}
    for r in [r for r in rows if r["method"] == "dip"] + blind:
        done.setdefault(r["experiment"], set()).add(str(r["image"]))
    return done


def summarise(rows: list[dict[str, Any]], resolution: dict[str, str]) -> dict[str, Any]:
    """Mean PSNR/SSIM per experiment and method (over images and seeds), and the spread over
    seeds of the per-seed means over images (:func:`pipeline.report.seed_spread`):
    ``seeds``, ``psnr_std`` (ddof = 1; ``None`` with one seed), ``psnr_min``, ``psnr_max``."""
    groups: dict[str, dict[str, list[dict[str, Any]]]] = {}
    for r in rows:
        groups.setdefault(r["experiment"], {}).setdefault(r["method"], []).append(r)
    experiments: dict[str, Any] = {}
    for exp, methods in groups.items():
        experiments[exp] = {}
        for method, rs in methods.items():
            finite = [r["psnr"] for r in rs if math.isfinite(r["psnr"])]
            spread = report.seed_spread(report.seed_means(pd.DataFrame([r for r in rs if math.isfinite(r["psnr"])], columns=["seed", "psnr"]), "psnr"))
            experiments[exp][method] = {
                "psnr": round(sum(finite) / len(finite), 3) if finite else None,
                "ssim": round(sum(r["ssim"] for r in rs) / len(rs), 4),
                "images": len({r["image"] for r in rs}),
                "seeds": max(1, len({str(r["seed"]) for r in rs})),
                **{f"psnr_{k}": report.number(spread[k]) for k in ("std", "min", "max")},
            }
            if method in report.SEEDLESS:
                experiments[exp][method]["psnr_std"] = None
    return {"profile": resolution["profile"], "requested": resolution["requested"], "device": resolution["device"],
            "device_name": resolution.get("device_name", ""), "experiments": experiments}


def write_csv(path: Path, fields: tuple[str, ...], rows: list[dict[str, Any]]) -> None:
    with atomic_path(path) as tmp:
        with open(tmp, "w", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=fields, extrasaction="ignore")
            writer.writeheader()
            writer.writerows(rows)


def evaluate(
    results: Path,
    experiments: list[str],
    resolution: dict[str, str],
    out_dir: Path,
    baselines: Path | None = None,
    corrupted: Path | None = None,
    paper: dict[str, Any] | None = None,
    epsilon: float = 0.5,
    about: dict[str, str] | None = None,
) -> dict[str, Any]:
    """Write ``out_dir/{per_image.csv, curves.csv, summary.json, report.md, report.csv}``;
    returns the summary. ``about`` describes figure experiments (params.yaml ``figures:``).
    ``corrupted`` also gives each experiment's image list (:func:`pipeline.report.read_progress`)."""
    rows, curves = collect(results, experiments, resolution)
    blind = collect_without_truth(results, experiments)
    if not rows and not blind:
        raise ValueError(f"no results under {results} for {', '.join(experiments)}; run `dvc repro`")
    if baselines is not None and corrupted is not None:
        rows += collect_baselines(baselines, corrupted, experiments, resolution)
    progress = report.read_progress(corrupted, results, experiments, fitted(rows, blind))
    summary = summarise([r for r in rows if report.counted(progress, r["experiment"], r["image"])], resolution)
    summary["progress"] = {exp: p.as_dict() for exp, p in progress.items()}
    table, text, paper_summary = report.build(pd.DataFrame(rows, columns=list(PER_IMAGE_FIELDS)), pd.DataFrame(curves), paper or {},
                                              resolution, epsilon, progress)
    if not rows:  # only real photographs ran (e.g. `profiles.paper.experiments=[real_snail]`)
        text += "No run has a ground truth.\n\n"
    summary["paper"] = paper_summary
    summary["epsilon"] = epsilon
    summary["no_ground_truth"] = report.without_truth_summary(blind)
    text += report.figures_section(about or {}, summary["experiments"], blind)
    write_csv(out_dir / layout.PER_IMAGE_CSV, PER_IMAGE_FIELDS, rows)
    write_csv(out_dir / layout.CURVES_CSV, CURVE_FIELDS, curves)
    write_csv(out_dir / layout.REPORT_CSV, report.REPORT_FIELDS, table.to_dict("records"))
    with atomic_path(out_dir / layout.REPORT_MD) as tmp:
        tmp.write_text(text)
    save_json(out_dir / layout.SUMMARY_JSON, summary)
    return summary


def stage(params_path: Path, profile_file: Path, results: Path, baselines: Path, corrupted: Path, paper: Path, out_dir: Path) -> dict[str, Any]:
    """The ``evaluate`` stage (``dip evaluate``): :func:`evaluate` with params.yaml's experiments,
    ``report.epsilon`` (checked > 0) and figure descriptions; returns the summary."""
    p = load_params(params_path)
    epsilon = float((p.get("report") or {}).get("epsilon", 0.5))
    if not epsilon > 0:
        raise ValueError(f"report.epsilon must be > 0 dB, got {epsilon}")
    return evaluate(results, [str(e) for e in p["experiments"]], read_resolution(profile_file), out_dir,
                    baselines=baselines if baselines.is_dir() else None, corrupted=corrupted,
                    paper=report.load_paper(paper), epsilon=epsilon,
                    about={k: str((v or {}).get("about", k)) for k, v in (p.get("figures") or {}).items()})
