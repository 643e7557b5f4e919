"""Loading the pipeline's tracked outputs (``docs/LAYOUT.md``) for the dashboard.

Everything here reads files only; nothing runs DIP. Readers are cached with ``st.cache_data``
keyed on the file's path *and modification time*, so a re-run of the pipeline shows up on the
next page load while unchanged files are read once. Every reader tolerates missing files: a
partly finished pipeline shows what exists.
"""

from __future__ import annotations

import io
import json
import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import streamlit as st

ENV_ROOT = "DIP_RESULTS"
REPO_ROOT = Path(__file__).resolve().parents[1]
LAYOUT_DIRS = ("metrics", "results", "data/corrupted", "baselines")
PAPER_METHOD = re.compile(r"^paper[:_ ]?(.*)$", re.IGNORECASE)
TASK_OF_PREFIX = {"denoise": "denoise", "inpaint": "inpaint", "sr": "sr"}


# --------------------------------------------------------------------------------------- root
def resolve_root(argv: list[str] | None = None) -> Path:
    """The results root: ``--results DIR`` after ``--`` on the command line, else ``$DIP_RESULTS``,
    else the working directory when it holds pipeline outputs, else the repository root."""
    argv = sys.argv[1:] if argv is None else argv
    for i, arg in enumerate(argv):
        if arg == "--results" and i + 1 < len(argv):
            return Path(argv[i + 1]).expanduser().resolve()
        if arg.startswith("--results="):
            return Path(arg.split("=", 1)[1]).expanduser().resolve()
    if os.environ.get(ENV_ROOT):
        return Path(os.environ[ENV_ROOT]).expanduser().resolve()
    cwd = Path.cwd()
    if any((cwd / d).is_dir() for d in LAYOUT_DIRS):
        return cwd.resolve()
    return REPO_ROOT


def has_outputs(root: Path) -> dict[str, bool]:
    """Which of the pipeline's output directories exist and are non-empty."""
    return {d: (root / d).is_dir() and any((root / d).iterdir()) for d in LAYOUT_DIRS}


def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime_ns / 1e9
    except OSError:
        return -1.0


# ----------------------------------------------------------------------------- cached readers
@st.cache_data(show_spinner=False, max_entries=512)
def _read_csv(path: str, mtime: float) -> pd.DataFrame:
    return pd.read_csv(path)


@st.cache_data(show_spinner=False, max_entries=2048)
def _read_json(path: str, mtime: float) -> Any:
    return json.loads(Path(path).read_text())


@st.cache_data(show_spinner=False, max_entries=1024)
def _read_bytes(path: str, mtime: float) -> bytes:
    return Path(path).read_bytes()


def read_csv(path: Path) -> pd.DataFrame | None:
    if not path.is_file():
        return None
    try:
        return _read_csv(str(path), _mtime(path)).copy()
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError):
        return None


def read_json(path: Path) -> Any:
    if not path.is_file():
        return None
    try:
        return _read_json(str(path), _mtime(path))
    except (json.JSONDecodeError, UnicodeDecodeError):
        return None


def png_bytes(path: Path) -> bytes | None:
    """The file's bytes, unchanged (PNG stays PNG: the dashboard never re-encodes lossily)."""
    return _read_bytes(str(path), _mtime(path)) if path.is_file() else None


def decode(data: bytes) -> np.ndarray:
    """PNG bytes → uint8 array (H, W) or (H, W, 3)."""
    from PIL import Image

    with Image.open(io.BytesIO(data)) as im:
        return np.asarray(im.convert("L" if im.mode in ("L", "1", "I", "I;16") else "RGB"))


def encode_png(array: np.ndarray) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(array)).save(buf, format="PNG")
    return buf.getvalue()


# --------------------------------------------------------------------------------- the outputs
def experiment_task(exp: str) -> str:
    return next((t for p, t in TASK_OF_PREFIX.items() if exp.startswith(p)), exp.split("_")[0])


def profile(root: Path) -> dict[str, Any]:
    """``data/profile.json``, else what the runs and metrics say; ``{}`` when nothing is known."""
    info = read_json(root / "data" / "profile.json")
    if isinstance(info, dict) and info.get("profile"):
        return info
    per = per_image(root)
    if per is not None and "profile" in per.columns and len(per):
        return {"profile": str(per["profile"].iloc[0]), "device": str(per.get("device", pd.Series(["?"])).iloc[0])}
    run_table = runs(root)
    if len(run_table):
        first = run_table.iloc[0]
        return {"profile": first.get("profile") or "unknown", "device": first.get("device") or "?", "device_name": first.get("device_name", "")}
    return {}


@dataclass(frozen=True)
class Run:
    experiment: str
    image: str
    seed: int
    path: Path


def run_dirs(root: Path) -> list[Run]:
    """Every ``results/<exp>/<image>/seed_<s>/`` with a ``run.json`` (finished runs only)."""
    out = []
    for rj in sorted((root / "results").glob("*/*/seed_*/run.json")):
        d = rj.parent
        try:
            seed = int(d.name.removeprefix("seed_"))
        except ValueError:
            continue
        out.append(Run(d.parent.parent.name, d.parent.name, seed, d))
    return out


def runs(root: Path) -> pd.DataFrame:
    """One row per finished DIP run with the key fields of its ``run.json``."""
    rows = []
    for r in run_dirs(root):
        rec = read_json(r.path / "run.json") or {}
        metrics = rec.get("metrics") or {}
        rows.append(
            {
                "experiment": r.experiment,
                "image": r.image,
                "seed": r.seed,
                "path": str(r.path),
                "task": rec.get("task", experiment_task(r.experiment)),
                "profile": rec.get("profile") or rec.get("preset"),
                "device": rec.get("device"),
                "device_name": rec.get("device_name"),
                "iterations_run": rec.get("iterations_run"),
                "early_stop_iteration": rec.get("early_stop_iteration"),
                "wall_seconds": rec.get("wall_seconds"),
                "estimate": rec.get("estimate"),
                "psnr_input": (metrics.get("input") or {}).get("psnr"),
                "ssim_input": (metrics.get("input") or {}).get("ssim"),
                "psnr": (metrics.get("restored") or {}).get("psnr"),
                "ssim": (metrics.get("restored") or {}).get("ssim"),
            }
        )
    cols = ["experiment", "image", "seed", "path", "task", "profile", "device", "device_name", "iterations_run", "early_stop_iteration", "wall_seconds", "estimate", "psnr_input", "ssim_input", "psnr", "ssim"]
    return pd.DataFrame(rows, columns=cols)


def per_image(root: Path) -> pd.DataFrame | None:
    """``metrics/per_image.csv`` without the paper's rows (see :func:`paper`)."""
    df = read_csv(root / "metrics" / "per_image.csv")
    if df is None or not {"experiment", "image", "method"} <= set(df.columns):
        return None
    df["method"] = df["method"].astype(str)
    return df[~df["method"].str.match(PAPER_METHOD)].reset_index(drop=True)


def scores(root: Path) -> tuple[pd.DataFrame, str]:
    """Per image and method scores (experiment, image, method, seed, psnr, ssim) and their source.

    From ``metrics/per_image.csv`` when the evaluate stage has run; otherwise from the runs'
    ``run.json`` (DIP and the corrupted input only): a partly finished pipeline still shows them.
    """
    df = per_image(root)
    if df is not None and len(df):
        return df, "metrics/per_image.csv"
    table = runs(root)
    if not len(table):
        return pd.DataFrame(columns=["experiment", "image", "method", "seed", "psnr", "ssim"]), ""
    dip = table[["experiment", "image", "seed", "psnr", "ssim"]].assign(method="dip")
    inp = table[["experiment", "image", "seed", "psnr_input", "ssim_input"]].rename(columns={"psnr_input": "psnr", "ssim_input": "ssim"}).assign(method="input")
    return pd.concat([inp, dip], ignore_index=True), "results/*/*/seed_*/run.json"


def paper_yaml(data_: Any) -> pd.DataFrame:
    """Rows of ``data/paper.yaml``: ``per_image`` {method: {image: psnr}}, ``per_set``
    {set: {method: psnr}} (image ``mean (<set>)``) and ``mean`` {method: psnr} (image ``mean``)."""
    rows = []
    for exp, spec in (data_ or {}).items():
        if not isinstance(spec, dict):
            continue
        source = spec.get("source", "")
        ours = {str(v): str(k) for k, v in (spec.get("compare") or {}).items()}  # paper method -> our method
        for method, per in (spec.get("per_image") or {}).items():
            rows += [(exp, str(img), method, float(v), source, ours.get(method)) for img, v in (per or {}).items()]
        for set_name, per in (spec.get("per_set") or {}).items():
            rows += [(exp, f"mean ({set_name})", method, float(v), source, ours.get(method)) for method, v in (per or {}).items()]
        rows += [(exp, "mean", method, float(v), source, ours.get(method)) for method, v in (spec.get("mean") or {}).items()]
    return pd.DataFrame(rows, columns=["experiment", "image", "method", "psnr", "source", "ours"])


def paper(root: Path) -> pd.DataFrame:
    """The paper's reported numbers: experiment, image (or ``mean``), method, psnr, source.

    From ``data/paper.yaml`` (the results root's, else the repository's), plus any
    ``metrics/paper.csv`` and rows of ``metrics/per_image.csv`` whose method is ``paper:<method>``.
    """
    import yaml

    frames = []
    for candidate in (root / "data" / "paper.yaml", REPO_ROOT / "data" / "paper.yaml"):
        if candidate.is_file():
            try:
                frames.append(_paper_yaml_cached(str(candidate), _mtime(candidate)))
            except (yaml.YAMLError, ValueError, TypeError, AttributeError):
                pass
            break
    df = read_csv(root / "metrics" / "paper.csv")
    if df is not None and {"experiment", "image", "method", "psnr"} <= set(df.columns):
        frames.append(df if "ours" in df.columns else df.assign(ours=df["method"]))
    raw = read_csv(root / "metrics" / "per_image.csv")
    if raw is not None and "method" in raw.columns:
        rows = raw[raw["method"].astype(str).str.match(PAPER_METHOD)].copy()
        if len(rows):
            rows["method"] = rows["method"].astype(str).str.replace(PAPER_METHOD, r"\1", regex=True)
            frames.append(rows.assign(ours=rows["method"]))
    frames = [f for f in frames if len(f)]
    if not frames:
        return pd.DataFrame(columns=["experiment", "image", "method", "psnr", "source", "ours"])
    out = pd.concat(frames, ignore_index=True)
    out["method"] = out["method"].astype(str).str.lower()
    out["image"] = out["image"].astype(str)
    return out


@st.cache_data(show_spinner=False)
def _paper_yaml_cached(path: str, mtime: float) -> pd.DataFrame:
    import yaml

    return paper_yaml(yaml.safe_load(Path(path).read_text()))


def experiments(root: Path) -> list[str]:
    """Experiment ids found in results/, data/corrupted/, baselines/ or the metrics."""
    found: set[str] = set()
    for d in ("results", "data/corrupted", "baselines"):
        base = root / d
        if base.is_dir():
            found |= {p.name for p in base.iterdir() if p.is_dir() and not p.name.startswith(".")}
    df = per_image(root)
    if df is not None:
        found |= set(df["experiment"].astype(str))
    return sorted(found)


def images(root: Path, exp: str) -> list[str]:
    found: set[str] = set()
    for d in ("results", "data/corrupted", "baselines"):
        base = root / d / exp
        if base.is_dir():
            found |= {p.name for p in base.iterdir() if p.is_dir() and not p.name.startswith(".")}
    return sorted(found)


def seeds(root: Path, exp: str, image: str) -> list[int]:
    return sorted(r.seed for r in run_dirs(root) if r.experiment == exp and r.image == image)


def run_dir(root: Path, exp: str, image: str, seed: int | None = None) -> Path | None:
    available = seeds(root, exp, image)
    if not available:
        return None
    return root / "results" / exp / image / f"seed_{seed if seed in available else available[0]}"


def curve(path: Path) -> pd.DataFrame | None:
    return read_csv(path / "curve.csv")


def curves(root: Path) -> pd.DataFrame:
    """All curves with experiment, image, seed columns: from the runs, else ``metrics/curves.csv``."""
    frames = []
    for r in run_dirs(root):
        df = curve(r.path)
        if df is not None and len(df):
            frames.append(df.assign(experiment=r.experiment, image=r.image, seed=r.seed))
    if frames:
        return pd.concat(frames, ignore_index=True)
    df = read_csv(root / "metrics" / "curves.csv")
    return df if df is not None else pd.DataFrame(columns=["experiment", "image", "seed", "iteration", "loss"])


def snapshots(path: Path) -> list[tuple[int, Path]]:
    out = []
    for p in sorted((path / "snapshots").glob("iter_*.png")):
        try:
            out.append((int(p.stem.removeprefix("iter_")), p))
        except ValueError:
            continue
    return sorted(out)


def sources(root: Path, exp: str, image: str, seed: int | None = None) -> dict[str, Path]:
    """Every image of one scene in one experiment, by label: ground truth, corrupted, DIP, baselines."""
    out: dict[str, Path] = {}
    corr = root / "data" / "corrupted" / exp / image
    for label, name in (("ground truth", "ground_truth.png"), ("corrupted input", "observation.png"), ("mask", "mask.png")):
        if (corr / name).is_file():
            out[label] = corr / name
    rd = run_dir(root, exp, image, seed)
    if rd is not None:
        if (rd / "restored.png").is_file():
            out["DIP"] = rd / "restored.png"
        if (rd / "final.png").is_file():
            out["DIP (last iterate)"] = rd / "final.png"
    base = root / "baselines" / exp / image
    if base.is_dir():
        for p in sorted(base.glob("*.png")):
            out[p.stem] = p
    return out


def meta(root: Path, exp: str, image: str) -> dict[str, Any]:
    return read_json(root / "data" / "corrupted" / exp / image / "meta.json") or {}


# ----------------------------------------------------------------------------------- ablations
def dvc_experiments(root: Path, timeout: float = 60) -> tuple[pd.DataFrame | None, str]:
    """DVC experiments of the workspace at ``root`` as a table (params and metrics flattened).

    Returns ``(table, message)``; ``table`` is ``None`` with a human-readable reason when there
    is no DVC repository, no experiment, or ``dvc`` fails.
    """
    if not (root / ".dvc").is_dir():
        return None, f"{root} is not a DVC repository (no .dvc/ directory), so there are no DVC experiments to show."
    sig = _mtime(root / ".git" / "refs" / "exps") if (root / ".git").is_dir() else 0.0
    return _dvc_exp_show(str(root), sig, timeout)


@st.cache_data(show_spinner="Reading DVC experiments…", ttl=30)
def _dvc_exp_show(root: str, signature: float, timeout: float) -> tuple[pd.DataFrame | None, str]:
    try:
        proc = subprocess.run(
            ["dvc", "exp", "show", "--json"],
            cwd=root, capture_output=True, text=True, timeout=timeout,
        )
    except FileNotFoundError:
        return None, "The `dvc` command is not installed."
    except subprocess.TimeoutExpired:
        return None, f"`dvc exp show --json` took longer than {timeout:.0f} s."
    if proc.returncode != 0:
        msg = (proc.stderr or proc.stdout).strip().splitlines()
        return None, "`dvc exp show --json` failed: " + (msg[-1] if msg else f"exit code {proc.returncode}")
    try:
        data = json.loads(proc.stdout or "[]")
    except json.JSONDecodeError:
        return None, "`dvc exp show --json` printed something that is not JSON."
    table = parse_exp_show(data)
    return table, "" if len(table) else "No DVC experiments yet."


def _flatten(prefix: str, value: Any, out: dict[str, Any]) -> None:
    if isinstance(value, dict):
        for k, v in value.items():
            _flatten(f"{prefix}.{k}" if prefix else str(k), v, out)
    elif isinstance(value, list):
        out[prefix] = json.dumps(value)
    else:
        out[prefix] = value


def _row(entry: dict[str, Any], kind: str, baseline: str) -> dict[str, Any]:
    data = entry.get("data") or {}
    row: dict[str, Any] = {
        "experiment": "workspace" if entry.get("rev") == "workspace" else entry.get("name") or (entry.get("rev") or data.get("rev") or "")[:7],
        "kind": kind,
        "baseline": baseline,
        "rev": (entry.get("rev") or data.get("rev") or "")[:9],
        "created": data.get("timestamp"),
        "status": data.get("status") or ("Success" if not entry.get("error") else "Failed"),
    }
    for section, label in (("params", "param"), ("metrics", "metric")):
        for file, content in (data.get(section) or {}).items():
            flat: dict[str, Any] = {}
            _flatten("", (content or {}).get("data") or {}, flat)
            for k, v in flat.items():
                row[f"{label}:{k}" if file in ("params.yaml", "metrics/summary.json") else f"{label}:{file}:{k}"] = v
    return row


def parse_exp_show(data: Any) -> pd.DataFrame:
    """Flatten ``dvc exp show --json`` (DVC 3: a list of baselines, each with ``experiments``)."""
    rows: list[dict[str, Any]] = []
    for base in data if isinstance(data, list) else []:
        if not isinstance(base, dict):
            continue
        bname = base.get("name") or (base.get("rev") or "")[:7]
        rows.append(_row(base, "workspace" if base.get("rev") == "workspace" else "baseline", bname))
        for exp in base.get("experiments") or []:
            for rev in exp.get("revs") or []:
                rows.append(_row({**rev, "name": rev.get("name") or exp.get("name")}, "experiment", bname))
    return pd.DataFrame(rows)


def changed_columns(table: pd.DataFrame) -> list[str]:
    """The ``param:``/``metric:`` columns whose values differ between rows."""
    out = []
    for col in table.columns:
        if col.startswith(("param:", "metric:")):
            values = table[col].astype(str).fillna("")
            if values.nunique(dropna=False) > 1:
                out.append(col)
    return out
