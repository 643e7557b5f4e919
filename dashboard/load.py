"""Reading the pipeline's tracked outputs (``docs/LAYOUT.md``, paths and columns from
:mod:`pipeline.layout`) for the dashboard, checked.

Everything here reads files only; nothing runs DIP. Readers are cached with ``st.cache_data``
keyed on the file's path *and modification time*, so a re-run of the pipeline shows up on the
next page load while unchanged files are read once. Every reader tolerates missing or damaged
files (a wrong type becomes ``None``, a broken file "missing"): a partly finished or damaged
pipeline shows what exists.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import streamlit as st

from dashboard.jobs import json_or_none
from pipeline import files, layout
from pipeline.layout import CaseDir, Run, RunDir, Tree
from pipeline.settings import PROFILE_FILE, parse_experiment

ENV_ROOT = "DIP_RESULTS"
REPO_ROOT = Path(__file__).resolve().parents[1]
LAYOUT_DIRS = layout.OUTPUT_DIRS


# --------------------------------------------------------------------------------------- root
def resolve_root(argv: list[str] | None = None) -> Path:
    """The results root: ``--results DIR`` after ``--`` on the command line, else ``$DIP_RESULTS``,
    else the working directory when it holds pipeline outputs, else the repository root, unless it
    has no outputs of its own and ``results-published/`` (here or in the repository) holds a bundle
    of ``dip publish``: then :func:`default_bundle`."""
    argv = sys.argv[1:] if argv is None else argv
    for i, arg in enumerate(argv):
        if arg == "--results" and i + 1 < len(argv):
            return expand_root(argv[i + 1]).resolve()
        if arg.startswith("--results="):
            return expand_root(arg.split("=", 1)[1]).resolve()
    if os.environ.get(ENV_ROOT):
        return expand_root(os.environ[ENV_ROOT]).resolve()
    cwd = Path.cwd()
    if any((cwd / d).is_dir() for d in LAYOUT_DIRS):
        return cwd.resolve()
    if not any(has_outputs(REPO_ROOT).values()):  # no results of its own: the newest published bundle, if any
        published = default_bundle(cwd / layout.PUBLISHED) or default_bundle(REPO_ROOT / layout.PUBLISHED)
        if published is not None:
            return published.resolve()
    return REPO_ROOT


def bundle_manifest(root: Path) -> dict[str, Any] | None:
    """The ``manifest.json`` of a bundle written by ``dip publish`` (``None`` when ``root`` is none)."""
    try:
        info = files.read_json(Tree(Path(root)).manifest)
    except (OSError, ValueError):
        return None
    return info if isinstance(info, dict) and info.get("format") == layout.BUNDLE_FORMAT else None


def newest_bundle(published: Path, pattern: str = "*") -> Path | None:
    """The bundle under ``published`` (``results-published/``) named like ``pattern`` with the latest ``created``."""
    try:
        found = [(str(m.get("created", "")), p) for p in sorted(published.glob(pattern)) if p.is_dir() and (m := bundle_manifest(p))]
    except OSError:
        return None
    return max(found, key=lambda t: t[0])[1] if found else None


def default_bundle(published: Path) -> Path | None:
    """The bundle the dashboard opens in a checkout without results of its own: the newest of the
    ``paper`` profile (``paper-*``), else the quick profile's CPU bundle (``quick-cpu``), else the newest."""
    quick = published / layout.QUICK_BUNDLE
    paper = newest_bundle(published, layout.PAPER_BUNDLES)
    return paper or (quick if bundle_manifest(quick) is not None else None) or newest_bundle(published)


def has_outputs(root: Path) -> dict[str, bool]:
    """Which of the pipeline's output directories exist and are non-empty (readable)."""
    def non_empty(path: Path) -> bool:
        try:
            return path.is_dir() and any(path.iterdir())
        except OSError:
            return False

    return {d: non_empty(root / d) for d in LAYOUT_DIRS}


def expand_root(text: str) -> Path:
    """The sidebar's root as a path: ``~`` expanded where it can be (``~nosuchuser`` stays as
    written, a path that does not exist, instead of raising)."""
    try:
        return Path(text).expanduser()
    except RuntimeError:  # no home directory for that user
        return Path(text)


def file_mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime_ns / 1e9
    except OSError:
        return -1.0


# ----------------------------------------------------------------------------- cached readers
@st.cache_data(show_spinner=False, max_entries=512)
def _read_csv(path: str, mtime: float) -> pd.DataFrame:
    return pd.read_csv(path)


@st.cache_data(show_spinner=False, max_entries=2048)
def _cached_json(path: str, mtime: float) -> Any:
    return json_or_none(Path(path))  # pipeline.files.read_json: a file nested too deeply is None, not a RecursionError


def read_csv(path: Path) -> pd.DataFrame | None:
    if not path.is_file():
        return None
    try:
        return _read_csv(str(path), file_mtime(path)).copy()
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError):
        return None


def cached_json(path: Path) -> Any:
    """:func:`dashboard.jobs.json_or_none` (``None`` when missing or not JSON), read again only when the file changes."""
    if not path.is_file():
        return None
    try:
        return _cached_json(str(path), file_mtime(path))
    except (ValueError, OSError):
        return None


def read_json_object(path: Path) -> dict[str, Any]:
    """A JSON file that should hold an object: ``{}`` when missing, unreadable or anything else."""
    value = cached_json(path)
    return value if isinstance(value, dict) else {}


def number(value: Any) -> float | None:
    """``value`` as a finite float when it is an int or float (not a bool), else ``None``."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value) if np.isfinite(value) else None


def numeric(df: pd.DataFrame, columns: tuple[str, ...] | list[str]) -> pd.DataFrame:
    """``columns`` of ``df`` (those present) as numbers; anything else in them becomes NaN."""
    for col in columns:
        if col in df.columns:
            df[col] = pd.to_numeric(df[col], errors="coerce")
    return df


# --------------------------------------------------------------------------------- the outputs
def experiment_task(exp: str, root: Path | None = None) -> str:
    """The task of ``exp``: its ``data/corrupted/<exp>/experiment.json`` (figures: ``fig7_text`` is
    inpainting) when ``root`` is given and the file exists, else what the id says
    (:func:`pipeline.settings.parse_experiment`; ``user-runs: sr`` is sr), else the id's first word."""
    if exp.startswith(USER_GROUP):
        return exp.removeprefix(USER_GROUP)
    info = cached_json(Tree(root).corrupted_of(exp).record) if root is not None else None
    if isinstance(info, dict) and info.get("task"):
        return str(info["task"])
    try:
        return parse_experiment(exp).task
    except ValueError:  # a figure id (its task is in params.yaml figures:) or something else
        return exp.split("_")[0]


def experiment_images(root: Path, exp: str) -> list[str]:
    """Every image of ``exp`` in the profile (its ``data/corrupted/<exp>/experiment.json``; ``[]``
    when missing or damaged)."""
    info = cached_json(Tree(root).corrupted_of(exp).record)
    images = info.get("images") if isinstance(info, dict) else None
    return [str(i) for i in images] if isinstance(images, list) else []


def has_ground_truth(root: Path, exp: str) -> bool:
    """False for a figure of a real photograph (``"ground_truth": false`` in its experiment.json)."""
    info = cached_json(Tree(root).corrupted_of(exp).record)
    return not (isinstance(info, dict) and info.get("ground_truth") is False)


NO_TRUTH = "No ground truth: this is a real photograph, so no PSNR can be computed. Judge the result by eye and by its loss curve."


def profile(root: Path) -> dict[str, Any]:
    """``data/profile.json``, else what the runs and metrics say; ``{}`` when nothing is known."""
    info = cached_json(root / PROFILE_FILE)
    if isinstance(info, dict) and info.get("profile"):
        return info
    summ = summary(root)
    if summ.get("profile"):
        return {k: summ[k] for k in ("profile", "requested", "device", "device_name") if k in summ}
    per = per_image(root)
    if per is not None and "profile" in per.columns and len(per):
        return {"profile": str(per["profile"].iloc[0]), "device": str(per.get("device", pd.Series(["?"])).iloc[0])}
    run_table = runs(root)
    if len(run_table):
        first = run_table.iloc[0]
        return {"profile": first.get("profile") or "unknown", "device": first.get("device") or "?", "device_name": first.get("device_name", "")}
    return {}


def run_dirs(root: Path) -> list[Run]:
    """Every ``results/<exp>/<image>/seed_<s>/`` with a ``run.json`` (finished runs only), as
    ``dip evaluate`` finds them (:func:`pipeline.layout.find_runs`)."""
    return layout.find_runs(Tree(root).results)


def contained(root: Path, path: Path) -> bool:
    """Whether ``path``, every link resolved, lies inside the results root ``root`` or the Restore
    page's own folder (:func:`user_runs_dir`, which may be elsewhere: ``$DIP_USER_RUNS``, or
    ``./user-runs`` beside a published bundle). The dashboard shows no file from outside the
    folders it was given: a link in a results folder (or a bundle from someone else) may point
    anywhere on this machine."""
    try:
        real = Path(os.path.realpath(path))
        return any(real.is_relative_to(os.path.realpath(base)) for base in (root, user_runs_dir(root)))
    except (OSError, ValueError):
        return False


OUTSIDE = "a link to a file outside the results folder (not shown)"


def rel(root: Path, path: Path) -> str:
    """``path`` relative to the results root where it is below it (for messages)."""
    try:
        return path.relative_to(root).as_posix()
    except ValueError:
        return str(path)


RUN_NUMBERS = ("wall_seconds", "iterations_run", "early_stop_iteration")
RUN_TEXTS = ("task", "profile", "preset", "device", "device_name", "estimate", "set")


def run_record(path: Path) -> tuple[dict[str, Any], list[str]]:
    """``run.json`` of the run folder ``path``, checked: ``(record, problems)``.

    Fields the dashboard reads that have the wrong type are dropped (``None``) and named in
    ``problems``; ``metrics`` keeps only ``{name: {"psnr", "ssim"}}`` entries with numbers."""
    raw = cached_json(RunDir(path).run_json)
    if not isinstance(raw, dict):
        return {}, ["not valid JSON" if raw is None else f"not a JSON object but a {type(raw).__name__}"]
    rec, problems = dict(raw), []
    for key in RUN_NUMBERS:
        if rec.get(key) is not None and number(rec[key]) is None:
            problems.append(f"{key} is {rec[key]!r}, not a number")
        rec[key] = number(rec.get(key))
    for key in RUN_TEXTS:
        if rec.get(key) is not None and not isinstance(rec[key], str):
            problems.append(f"{key} is {rec[key]!r}, not text")
            rec[key] = None
    metrics = rec.get("metrics") or {}
    if not isinstance(metrics, dict):
        problems.append(f"metrics is {metrics!r}, not a mapping")
        metrics = {}
    rec["metrics"] = {}
    for name, scores in metrics.items():
        if isinstance(scores, dict):
            rec["metrics"][name] = {k: number(scores.get(k)) for k in ("psnr", "ssim")}
        else:
            problems.append(f"metrics.{name} is {scores!r}, not a mapping")
    return rec, problems


def run_problems(root: Path) -> list[str]:
    """One line per finished run whose ``run.json`` is damaged: the file and what is wrong."""
    out = []
    for r in run_dirs(root):
        _, problems = run_record(r.dir.path)
        if problems:
            out.append(f"`{rel(root, r.dir.run_json)}`: " + "; ".join(problems))
    return out


def run_rows(root: Path) -> pd.DataFrame:
    """The rows of ``per_image.csv`` that ``dip evaluate`` makes of the runs' ``run.json``
    (:func:`pipeline.layout.per_image_rows`: every DIP method and the input; damaged numbers empty)."""
    rows = [row for r in run_dirs(root) for row in layout.per_image_rows(r, run_record(r.dir.path)[0], {})]
    df = pd.DataFrame(rows, columns=list(layout.PER_IMAGE_FIELDS))
    df[["psnr", "ssim", "seconds"]] = df[["psnr", "ssim", "seconds"]].astype(float)
    return df


def runs(root: Path) -> pd.DataFrame:
    """One row per finished DIP run with the key fields of its ``run.json`` (damaged fields empty)
    and its scores as ``per_image.csv`` gives them: ``psnr_input``, ``ssim_input`` (method
    ``input``), ``psnr``, ``ssim`` (``dip``, the reported estimate)."""
    rows = []
    for r in run_dirs(root):
        rec, _ = run_record(r.dir.path)
        scores = {row["method"]: row for row in layout.per_image_rows(r, rec, {})}
        rows.append(
            {
                **r.key,
                "set": rec.get("set") or "",
                "path": str(r.dir.path),
                "task": rec.get("task") or experiment_task(r.experiment),
                "profile": rec.get("profile") or rec.get("preset"),
                "device": rec.get("device"),
                "device_name": rec.get("device_name"),
                "iterations_run": rec.get("iterations_run"),
                "early_stop_iteration": rec.get("early_stop_iteration"),
                "wall_seconds": rec.get("wall_seconds"),
                "estimate": rec.get("estimate"),
                "psnr_input": (scores.get("input") or {}).get("psnr"),
                "ssim_input": (scores.get("input") or {}).get("ssim"),
                "psnr": (scores.get("dip") or {}).get("psnr"),
                "ssim": (scores.get("dip") or {}).get("ssim"),
            }
        )
    cols = ["experiment", "image", "set", "seed", "path", "task", "profile", "device", "device_name", "iterations_run", "early_stop_iteration", "wall_seconds", "estimate", "psnr_input", "ssim_input", "psnr", "ssim"]
    return pd.DataFrame(rows, columns=cols)


def per_image(root: Path) -> pd.DataFrame | None:
    """``metrics/per_image.csv`` (evaluate's per image, method and seed scores), if written."""
    df = read_csv(Tree(root).metric(layout.PER_IMAGE_CSV))
    if df is None or not {"experiment", "image", "method"} <= set(df.columns):
        return None
    df["method"] = df["method"].astype(str)
    return numeric(df, ("psnr", "ssim", "seconds"))


def report(root: Path) -> pd.DataFrame | None:
    """``metrics/report.csv`` (:mod:`pipeline.report`): our rows (``source = ours``) with the
    paper's value, Δ and the *reproduced* flag where comparable, the paper's own methods
    (``source = paper``) and one row per experiment with no fit yet (``source = pending``);
    images then ``mean`` / ``mean:<set>`` rows; each experiment's ``images_done`` of
    ``images_total`` and ``complete`` (empty in a report written before they existed). ``None``
    when not written."""
    df = read_csv(Tree(root).metric(layout.REPORT_CSV))
    if df is None or not {"experiment", "image", "method", "psnr"} <= set(df.columns):
        return None
    df = df.reindex(columns=[c for c in layout.REPORT_FIELDS] + [c for c in df.columns if c not in layout.REPORT_FIELDS])
    for col in ("experiment", "image", "method", "set"):
        df[col] = df[col].astype("string").fillna("").astype(str)
    df["source"] = df["source"].astype("string").fillna("ours").astype(str)
    for col in ("reproduced", "complete"):
        df[col] = df[col].map(lambda v: v if isinstance(v, bool) else {"true": True, "false": False}.get(str(v).strip().lower()))
    return numeric(df, ("psnr", "psnr_std", "ssim", "ssim_std", "seeds", "seconds", "paper_psnr", "delta", "paper_psnr_all", "images_done", "images_total"))


def summary(root: Path) -> dict[str, Any]:
    """``metrics/summary.json`` (``{}`` when not written)."""
    return read_json_object(Tree(root).metric(layout.SUMMARY_JSON))


def paper_status(root: Path) -> dict[str, dict[str, Any]]:
    """The ``paper`` section of ``metrics/summary.json``: per experiment ``comparable`` and either
    ``reason`` or ``mean_delta_dip``, ``reproduced``, ``compared``."""
    section = summary(root).get("paper")
    return {k: v for k, v in section.items() if isinstance(v, dict)} if isinstance(section, dict) else {}


def experiments(root: Path) -> list[str]:
    """Experiment ids with at least one image in results/, data/corrupted/ or baselines/, or
    rows in the metrics (an experiment the profile does not run has an empty folder: left out)."""
    found: set[str] = set()
    for d in (layout.RESULTS, layout.CORRUPTED, layout.BASELINES):
        base = root / d
        if base.is_dir():
            found |= {p.name for p in base.iterdir() if p.is_dir() and not p.name.startswith(".") and _has_subdir(p)}
    df = per_image(root)
    if df is not None:
        found |= set(df["experiment"].astype(str))
    return sorted(found) + sorted({USER_GROUP + t for t in user_runs(root).values()})


def _has_subdir(path: Path) -> bool:
    return any(c.is_dir() and not c.name.startswith(".") for c in path.iterdir())


def images(root: Path, exp: str) -> list[str]:
    if exp.startswith(USER_GROUP):
        return [name for name, task in user_runs(root).items() if USER_GROUP + task == exp]
    found: set[str] = set()
    for d in (layout.RESULTS, layout.CORRUPTED, layout.BASELINES):
        base = root / d / exp
        if base.is_dir():
            found |= {p.name for p in base.iterdir() if p.is_dir() and not p.name.startswith(".")}
    return sorted(found)


def seeds(root: Path, exp: str, image: str) -> list[int]:
    if exp.startswith(USER_GROUP):
        path = user_run(root, exp, image)
        return [int(number(run_record(path)[0].get("seed")) or 0)] if path else []
    return sorted(r.seed for r in run_dirs(root) if r.experiment == exp and r.image == image)


def run_dir(root: Path, exp: str, image: str, seed: int | None = None) -> Path | None:
    if exp.startswith(USER_GROUP):
        return user_run(root, exp, image)
    available = seeds(root, exp, image)
    if not available:
        return None
    return Tree(root).run(exp, image, seed if seed in available else available[0]).path


def curve(path: Path) -> pd.DataFrame | None:
    """``curve.csv`` of a run with numeric columns (rows without an iteration dropped); ``None``
    when missing or unreadable."""
    df = read_csv(RunDir(path).curve)
    if df is None or "iteration" not in df.columns:
        return None
    df = numeric(df, [c for c in df.columns])
    return df.dropna(subset=["iteration"]).astype({"iteration": int})


def curves(root: Path) -> pd.DataFrame:
    """All curves with experiment, image, seed columns: from the runs, else ``metrics/curves.csv``."""
    frames = []
    for r in run_dirs(root):
        df = curve(r.dir.path)
        if df is not None and len(df):
            frames.append(df.assign(**r.key))
    if frames:
        return pd.concat(frames, ignore_index=True)
    df = read_csv(Tree(root).metric(layout.CURVES_CSV))
    return df if df is not None else pd.DataFrame(columns=list(layout.CURVE_FIELDS[:5]))


def with_snapshots(root: Path) -> list[tuple[str, str]]:
    """``(experiment, image)`` of every run that has snapshots (a published bundle keeps those of
    a few images only: Table 1's peppers and man), in run order."""
    return list(dict.fromkeys((r.experiment, r.image) for r in run_dirs(root) if r.dir.snapshot_files()))


def snapshots(path: Path) -> list[tuple[int, Path]]:
    """``(iteration, file)`` of the run's ``snapshots/iter_NNNNN.png``, by iteration."""
    return RunDir(path).snapshot_files()


def sources(root: Path, exp: str, image: str, seed: int | None = None) -> dict[str, Path]:
    """Every image of one scene in one experiment, by label: ground truth, corrupted, DIP, baselines."""
    out: dict[str, Path] = {}
    corr = Tree(root).case(exp, image)
    if exp.startswith(USER_GROUP):  # a user run holds its inputs beside its results
        corr = CaseDir(user_run(root, exp, image) or corr.path)
    for label, path in (("ground truth", corr.ground_truth), ("corrupted input", corr.observation_png), ("mask", corr.mask),
                        ("network input", corr.input_png)):
        if path.is_file():
            out[label] = path
    path = run_dir(root, exp, image, seed)
    if path is not None:
        rd = RunDir(path)
        if rd.restored.is_file():
            out["DIP"] = rd.restored
        elif rd.preview.is_file():  # a published bundle keeps only a JPEG preview of this one
            out["DIP (JPEG preview)"] = rd.preview
        if rd.final.is_file():
            out["DIP (last iterate)"] = rd.final
    base = Tree(root).baselines_of(exp).path / image
    if base.is_dir():
        for p in sorted(base.glob("*.png")):
            out[p.stem] = p
    return out


def meta(root: Path, exp: str, image: str) -> dict[str, Any]:
    if exp.startswith(USER_GROUP):
        path = user_run(root, exp, image)
        return read_json_object(CaseDir(path).meta) if path else {}
    return read_json_object(Tree(root).case(exp, image).meta)


# ------------------------------------------------------------------- runs of the Restore page
USER_RUNS_ENV = "DIP_USER_RUNS"
USER_RUNS = "user-runs"
USER_GROUP = "user-runs: "  # + task: the experiment id under which the Gallery and Compare pages list them


def user_runs_dir(root: Path) -> Path:
    """Where the Restore page keeps its runs: ``$DIP_USER_RUNS``, else ``<results root>/user-runs``
    (for a published bundle, which is not to be written to: ``./user-runs``)."""
    if os.environ.get(USER_RUNS_ENV):
        return expand_root(os.environ[USER_RUNS_ENV]).resolve()
    return (Path.cwd() if bundle_manifest(root) is not None else Path(root)).resolve() / USER_RUNS


def user_runs(root: Path) -> dict[str, str]:
    """``{folder name: task}`` of the finished runs in :func:`user_runs_dir` (a run.json and a
    restored.png), newest first."""
    base = user_runs_dir(root)
    try:
        found = [p for p in base.iterdir() if p.is_dir() and not p.name.startswith(".") and RunDir(p).is_finished()]
    except OSError:
        return {}
    found.sort(key=lambda p: (file_mtime(RunDir(p).run_json), p.name), reverse=True)
    return {p.name: str(read_json_object(CaseDir(p).meta).get("task") or run_record(p)[0].get("task") or "denoise") for p in found}


def user_run(root: Path, exp: str, image: str) -> Path | None:
    """The folder of the user run ``image`` when it belongs to the group ``exp``."""
    task = user_runs(root).get(image)
    return user_runs_dir(root) / image if task is not None and USER_GROUP + task == exp else None
