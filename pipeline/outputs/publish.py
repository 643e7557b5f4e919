"""``dip publish`` / ``dip check-bundle``: a run's results as a small bundle in the repository.

:func:`publish` copies from a workspace (after ``dvc repro``, or after a GPU run and
``dip evaluate``) a subset of the tree of ``docs/LAYOUT.md`` into ``results-published/<name>/``,
so that every reader (the dashboard, ``pandas.read_csv``) works on it unchanged:

* ``metrics/*`` as they are (``per_image.csv`` is the workspace's, byte for byte);
* ``data/profile.json``, ``data/corrupted/<exp>/experiment.json`` and every image's ``meta.json``;
* ``results/<exp>/experiment.json`` and every fit's ``run.json`` and ``curve.csv``;
* ``restored.png`` for every image of the experiments in ``keep_png`` (default ``inpaint_p50``:
  Table 1) and for the first ``per_experiment`` images (``experiment.json`` order) of each other
  experiment, each with the ground truth it is scored against
  (``data/corrupted/<exp>/<image>/ground_truth.png``); the other restorations only as an 8-bit
  JPEG preview ``restored.jpg`` (their numbers are in ``per_image.csv``; no check recomputes them);
* the ``snapshots/`` of the images in ``snapshots_of`` (default ``inpaint_p50/peppers`` and
  ``inpaint_p50/man``);
* the classical baselines' PNGs (and their ``.json``) of the images whose ground truth is in the
  bundle, only if the bundle still fits ``max_bytes`` with them;
* ``manifest.json``: profile, device, torch/CUDA versions, wall seconds per experiment, commit,
  creation time, total bytes, and every file with its sha256.

:func:`check_bundle` recomputes PSNR/SSIM of every restored (and baseline) PNG that has its
ground truth in the bundle with the project's own scoring (:func:`dip.metrics.quality`,
:func:`pipeline.layout.protocol`) and compares them with ``metrics/per_image.csv``, checks the
manifest's checksums and that every fit in ``per_image.csv`` has its ``run.json``.
"""

from __future__ import annotations

import csv
import json
import math
import re
import shutil
import subprocess
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterable

from pipeline import layout

FORMAT, MANIFEST, PUBLISHED, PREVIEW = layout.BUNDLE_FORMAT, layout.BUNDLE_MANIFEST, layout.PUBLISHED, layout.PREVIEW
DEFAULT_MAX_BYTES = 15_000_000  # 15 MB in git (issue 13)
TABLE1 = ("inpaint_p50",)  # every image kept as PNG, with its ground truth
DEFAULT_SNAPSHOTS = ("inpaint_p50/peppers", "inpaint_p50/man")
JPEG_QUALITY = 90
PSNR_TOLERANCE = 0.01  # dB
SSIM_TOLERANCE = 1e-3  # per_image.csv holds 4 decimals
MARKER = ".dip-output"  # written by dip.io.atomic_directory; not part of the listed files


# ------------------------------------------------------------------------------------- helpers
def sha256(path: Path) -> str:
    """sha256 of a file's bytes (bundle files are at most a few MB)."""
    from pipeline.images.manifest import sha256_bytes

    return sha256_bytes(path.read_bytes())


def read_manifest(bundle: Path) -> dict[str, Any] | None:
    """The bundle's ``manifest.json`` when it is one of ours (``format``), else ``None``."""
    try:
        info = json.loads((Path(bundle) / MANIFEST).read_text())
    except (OSError, ValueError):
        return None
    return info if isinstance(info, dict) and str(info.get("format", "")).startswith("dip-results-bundle/") else None


def bundles(root: Path) -> list[Path]:
    """The bundles under ``root`` (``results-published/``), newest (manifest ``created``) first."""
    found = [(str(m.get("created", "")), p) for p in sorted(Path(root).glob("*/")) if (m := read_manifest(p)) is not None]
    return [p for _, p in sorted(found, key=lambda t: t[0], reverse=True)]


def _git_commit(workspace: Path) -> str | None:
    """``git rev-parse HEAD`` when ``workspace`` is the top of a git checkout, else ``None``."""
    try:
        top = subprocess.run(["git", "-C", str(workspace), "rev-parse", "--show-toplevel"], capture_output=True, text=True, timeout=30)
        if top.returncode != 0 or Path(top.stdout.strip()).resolve() != workspace.resolve():
            return None
        head = subprocess.run(["git", "-C", str(workspace), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.SubprocessError):
        return None
    return head.stdout.strip() or None if head.returncode == 0 else None


def _cuda(versions: dict[str, Any]) -> str | None:
    """The CUDA version of a run: ``versions.cuda`` where recorded, else what torch's local
    version says (``2.5.1+cu124`` → ``12.4``), else ``None`` (a CPU build)."""
    if versions.get("cuda"):
        return str(versions["cuda"])
    m = re.search(r"\+cu(\d+)(\d)$", str(versions.get("torch", "")))
    return f"{m.group(1)}.{m.group(2)}" if m else None


def _copy(src: Path, dest: Path) -> None:
    dest.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(src, dest)


def _jpeg(src: Path, dest: Path) -> None:
    from PIL import Image

    dest.parent.mkdir(parents=True, exist_ok=True)
    with Image.open(src) as im:
        im.convert("L" if im.mode in ("L", "1", "I", "I;16") else "RGB").save(dest, format="JPEG", quality=JPEG_QUALITY)


def _files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file() and p.name != MARKER)


def _size(paths: Iterable[Path]) -> int:
    return sum(p.stat().st_size for p in paths)


def _manifest_estimate(files: list[Path], root: Path) -> int:
    """An upper bound of the size of ``manifest.json`` listing ``files`` (for the size cap)."""
    return 4096 + sum(len(p.relative_to(root).as_posix()) + 140 for p in files)


def _part(rel: str) -> str:
    """The kind of a bundle file, for the size message."""
    if rel.endswith("/" + PREVIEW):
        return "JPEG previews"
    if "/snapshots/" in rel:
        return "snapshots"
    if rel.endswith("/restored.png"):
        return "restored PNGs"
    if rel.endswith("/ground_truth.png"):
        return "ground truths"
    if rel.startswith(layout.BASELINES + "/"):
        return "baselines"
    if rel.startswith(layout.METRICS + "/"):
        return "metrics"
    return "records (run.json, curve.csv, meta.json)"


# ------------------------------------------------------------------------------------- publish
def _experiments(workspace: Path) -> list[tuple[str, list[str]]]:
    """``(experiment, images)`` of the workspace's results (``experiment.json`` order, then any
    other image folder), active experiments only."""
    out = []
    for info_path in sorted((workspace / layout.RESULTS).glob("*/experiment.json")):
        info = json.loads(info_path.read_text())
        if info.get("active") is False:
            continue
        exp = info_path.parent.name
        on_disk = sorted(p.parent.parent.name for p in layout.run_files(workspace / layout.RESULTS, exp))
        images = [str(i) for i in info.get("images") or [] if str(i) in on_disk]
        out.append((exp, images + [i for i in dict.fromkeys(on_disk) if i not in images]))
    return out


def publish(
    workspace: Path,
    out: Path,
    *,
    max_bytes: int = DEFAULT_MAX_BYTES,
    keep_png: Iterable[str] = TABLE1,
    snapshots_of: Iterable[str] = DEFAULT_SNAPSHOTS,
    per_experiment: int = 3,
    commit: str | None = None,
    force: bool = False,
) -> dict[str, Any]:
    """Write the bundle of ``workspace`` to ``out`` (atomically) and return its manifest.

    ``ValueError`` (one line) when the workspace has no ``metrics/`` or ``results/``, when the
    bundle would exceed ``max_bytes`` (by how much, and what to drop), or when ``out`` exists and
    is not an earlier bundle (with ``force`` an earlier bundle is replaced; never anything else)."""
    from dip.io import atomic_directory

    workspace, out = Path(workspace), Path(out)
    for d in (layout.METRICS, layout.RESULTS):
        if not (workspace / d).is_dir():
            raise ValueError(f"{workspace} has no {d}/: publish a workspace after `dvc repro` (or a GPU run and `dip evaluate`)")
    if not (workspace / layout.METRICS / layout.PER_IMAGE_CSV).is_file():
        raise ValueError(f"{workspace / layout.METRICS} has no {layout.PER_IMAGE_CSV}; run `dip evaluate` first")
    if per_experiment < 0:
        raise ValueError(f"per_experiment must be >= 0, got {per_experiment}")
    if out.exists() or out.is_symlink():
        if read_manifest(out) is None or out.is_symlink():
            raise ValueError(f"{out} exists and is not a results bundle (no {MANIFEST} of dip in it); choose another --out, "
                             "publish never replaces it")
        if not force:
            raise ValueError(f"{out} is an earlier bundle; pass --force to replace it or choose another --out")
    keep_png, snapshots_of = set(keep_png), set(snapshots_of)
    experiments = _experiments(workspace)
    corrupted, results = workspace / layout.CORRUPTED, workspace / layout.RESULTS

    try:
        with atomic_directory(out, overwrite=force) as tmp:
            for p in sorted((workspace / layout.METRICS).iterdir()):
                if p.is_file():
                    _copy(p, tmp / layout.METRICS / p.name)
            if (workspace / "data" / "profile.json").is_file():
                _copy(workspace / "data" / "profile.json", tmp / "data" / "profile.json")
            wall: dict[str, float] = {}
            runs: list[dict[str, Any]] = []
            scored: list[tuple[str, str]] = []  # (exp, image) with a ground truth in the bundle
            snapshots_missing = sorted(snapshots_of)
            for exp, images in experiments:
                _copy(results / exp / "experiment.json", tmp / layout.RESULTS / exp / "experiment.json")
                if (corrupted / exp / "experiment.json").is_file():
                    _copy(corrupted / exp / "experiment.json", tmp / layout.CORRUPTED / exp / "experiment.json")
                for n, image in enumerate(images):
                    png = exp in keep_png or n < per_experiment
                    case = corrupted / exp / image
                    if (case / "meta.json").is_file():
                        _copy(case / "meta.json", tmp / layout.CORRUPTED / exp / image / "meta.json")
                    if png and (case / "ground_truth.png").is_file():
                        _copy(case / "ground_truth.png", tmp / layout.CORRUPTED / exp / image / "ground_truth.png")
                        scored.append((exp, image))
                    for run_json in layout.run_files(results, exp):
                        if run_json.parent.parent.name != image:
                            continue
                        src = run_json.parent
                        dest = tmp / src.relative_to(workspace)
                        run = json.loads(run_json.read_text())
                        runs.append(run)
                        wall[exp] = wall.get(exp, 0.0) + float(run.get("wall_seconds") or 0.0)
                        _copy(run_json, dest / "run.json")
                        if (src / "curve.csv").is_file():
                            _copy(src / "curve.csv", dest / "curve.csv")
                        if (src / "restored.png").is_file():
                            (_copy if png else _jpeg)(src / "restored.png", dest / ("restored.png" if png else PREVIEW))
                        if f"{exp}/{image}" in snapshots_of and (src / "snapshots").is_dir():
                            for snap in sorted((src / "snapshots").glob("*.png")):
                                _copy(snap, dest / "snapshots" / snap.name)
                            snapshots_missing = [s for s in snapshots_missing if s != f"{exp}/{image}"]
            core = _size(_files(tmp)) + _manifest_estimate(_files(tmp), tmp)
            if core > max_bytes:
                parts: dict[str, int] = {}
                for p in _files(tmp):
                    kind = _part(p.relative_to(tmp).as_posix())
                    parts[kind] = parts.get(kind, 0) + p.stat().st_size
                parts["manifest.json (estimate)"] = _manifest_estimate(_files(tmp), tmp)
                biggest = ", ".join(f"{k} {v / 1e6:.2f} MB" for k, v in sorted(parts.items(), key=lambda kv: -kv[1])[:3])
                raise ValueError(f"the bundle would be {core / 1e6:.2f} MB, {(core - max_bytes) / 1e6:.2f} MB over the limit of "
                                 f"{max_bytes / 1e6:.2f} MB (largest: {biggest}); drop some: fewer PNG experiments (--png) or "
                                 "images per experiment (--per-experiment; the rest become JPEG previews), or fewer --snapshots")
            baseline_files: list[tuple[Path, Path]] = []
            for exp, image in scored:
                for record in sorted((workspace / layout.BASELINES / exp / image).glob("*.json")):
                    if record.with_suffix(".png").is_file():
                        baseline_files += [(s, tmp / s.relative_to(workspace)) for s in (record, record.with_suffix(".png"))]
            baseline_bytes = _size(s for s, _ in baseline_files)
            extra = _manifest_estimate([d for _, d in baseline_files], tmp) - _manifest_estimate([], tmp)
            with_baselines = bool(baseline_files) and core + baseline_bytes + extra <= max_bytes
            for src, dest in baseline_files if with_baselines else []:
                _copy(src, dest)
            resolution = json.loads((tmp / "data" / "profile.json").read_text()) if (tmp / "data" / "profile.json").is_file() else {}
            summary_path = tmp / layout.METRICS / layout.SUMMARY_JSON
            summary = json.loads(summary_path.read_text()) if summary_path.is_file() else {}
            versions = next((r["versions"] for r in runs if isinstance(r.get("versions"), dict)), {})
            files = _files(tmp)
            manifest: dict[str, Any] = {
                "format": FORMAT,
                "profile": resolution.get("profile") or summary.get("profile"),
                "requested": resolution.get("requested") or summary.get("requested"),
                "device": resolution.get("device") or summary.get("device"),
                "device_name": next((r["device_name"] for r in runs if r.get("device_name")), resolution.get("device_name") or summary.get("device_name")),
                "device_names": sorted({str(r["device_name"]) for r in runs if r.get("device_name")}),
                "torch": versions.get("torch"),
                "cuda": _cuda(versions),
                "versions": versions,
                "wall_seconds": {exp: round(s, 2) for exp, s in wall.items()},
                "commit": commit or _git_commit(workspace),
                "created": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
                "png_experiments": sorted(keep_png),
                "per_experiment": per_experiment,
                "snapshots": sorted(snapshots_of - set(snapshots_missing)),
                "snapshots_missing": snapshots_missing,
                "baselines": "included" if with_baselines else ("none" if not baseline_files else
                                                                  f"left out: {baseline_bytes} bytes would exceed the limit"),
                "total_bytes": 0,
                "files": {p.relative_to(tmp).as_posix(): {"bytes": p.stat().st_size, "sha256": sha256(p)} for p in files},
            }
            total = _size(files)
            for _ in range(3):  # the manifest counts itself; its length settles at once
                manifest["total_bytes"] = total + len(json.dumps(manifest, indent=2, sort_keys=True).encode()) + 1
            if manifest["total_bytes"] > max_bytes:
                raise ValueError(f"the bundle would be {manifest['total_bytes']} bytes, {manifest['total_bytes'] - max_bytes} over the "
                                 f"limit of {max_bytes}; drop some PNG experiments (--png), images per experiment (--per-experiment) or --snapshots")
            (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    except FileExistsError as err:  # from atomic_directory: the same refusal, one line
        raise ValueError(str(err)) from None
    return manifest


# ---------------------------------------------------------------------------------------- check
def _rows(bundle: Path) -> tuple[dict[tuple[str, str, str, str], dict[str, str]], list[str]]:
    path = bundle / layout.METRICS / layout.PER_IMAGE_CSV
    try:
        with open(path, newline="") as fh:
            rows = list(csv.DictReader(fh))
    except (OSError, UnicodeDecodeError, csv.Error) as err:
        return {}, [f"{layout.METRICS}/{layout.PER_IMAGE_CSV}: not readable ({type(err).__name__})"]
    return {(r.get("experiment", ""), r.get("image", ""), r.get("method", ""), r.get("seed", "")): r for r in rows}, []


def _compare(where: str, row: dict[str, str] | None, scores: dict[str, float]) -> list[str]:
    if row is None:
        return [f"{where}: no row in {layout.METRICS}/{layout.PER_IMAGE_CSV}"]
    out = []
    for key, tol in (("psnr", PSNR_TOLERANCE), ("ssim", SSIM_TOLERANCE)):
        try:
            listed = float(row.get(key, ""))
        except ValueError:
            out.append(f"{where}: {key} in {layout.PER_IMAGE_CSV} is {row.get(key)!r}, not a number")
            continue
        got = scores[key]
        if not (math.isclose(listed, got, abs_tol=tol) or (math.isinf(listed) and math.isinf(got))):
            out.append(f"{where}: {key} recomputed from the image is {got:.4f}, {layout.PER_IMAGE_CSV} says {listed:.4f}")
    return out


def _score(truth_path: Path, image_path: Path) -> dict[str, float] | str:
    from dip.io import load_image
    from dip.metrics import quality

    try:
        meta = json.loads((truth_path.parent / "meta.json").read_text())
        estimate = load_image(image_path)
        truth = load_image(truth_path, mode="gray" if estimate.ndim == 2 else "rgb")
        if truth.shape != estimate.shape:
            return f"is {estimate.shape} but its ground truth is {truth.shape}"
        return quality(truth, estimate, *layout.protocol(str(meta["task"]), meta.get("factor")))
    except (OSError, ValueError, KeyError) as err:
        return f"cannot be scored ({type(err).__name__}: {err})"


def check_bundle(bundle: Path) -> list[str]:
    """What is inconsistent in the bundle ``bundle`` (empty: nothing): files that differ from the
    manifest's sha256 or are not listed in it, fits of ``per_image.csv`` without their
    ``run.json``, and restored or baseline PNGs whose PSNR (within 0.01 dB) or SSIM, recomputed
    against the ground truth in the bundle, is not the one ``per_image.csv`` gives."""
    bundle = Path(bundle)
    manifest = read_manifest(bundle)
    if manifest is None:
        return [f"{bundle}: no {MANIFEST} of a dip results bundle"]
    problems: list[str] = []
    listed = manifest.get("files") if isinstance(manifest.get("files"), dict) else {}
    for rel, entry in sorted(listed.items()):
        path = bundle / rel
        if not path.is_file():
            problems.append(f"{rel}: listed in {MANIFEST} but missing")
        elif not isinstance(entry, dict) or sha256(path) != entry.get("sha256"):
            problems.append(f"{rel}: its sha256 is not the one in {MANIFEST} (the file changed)")
    for path in _files(bundle):
        rel = path.relative_to(bundle).as_posix()
        if rel != MANIFEST and rel not in listed:
            problems.append(f"{rel}: not listed in {MANIFEST}")
    rows, unreadable = _rows(bundle)
    problems += unreadable
    for exp, image, method, seed in sorted({(k[0], k[1], k[2], k[3]) for k in rows if k[3] != ""}):
        run = layout.seed_dir(bundle / layout.RESULTS / exp, image, int(seed)) if seed.lstrip("-").isdigit() else None
        if method == "dip" and (run is None or not (run / "run.json").is_file()):
            problems.append(f"{layout.RESULTS}/{exp}/{image}/{layout.SEED_PREFIX}{seed}/run.json: missing, but {layout.PER_IMAGE_CSV} lists the fit")
    for restored in sorted((bundle / layout.RESULTS).glob(f"*/*/{layout.SEED_PREFIX}*/restored.png")):
        run = restored.parent
        exp, image, seed = run.parent.parent.name, run.parent.name, layout.seed_of(run)
        truth = bundle / layout.CORRUPTED / exp / image / "ground_truth.png"
        if not truth.is_file() or seed is None:
            continue
        where = restored.relative_to(bundle).as_posix()
        scores = _score(truth, restored)
        problems += [f"{where} {scores}"] if isinstance(scores, str) else _compare(where, rows.get((exp, image, "dip", str(seed))), scores)
    for png in sorted((bundle / layout.BASELINES).glob("*/*/*.png")):
        exp, image, method = png.parent.parent.name, png.parent.name, png.stem
        truth = bundle / layout.CORRUPTED / exp / image / "ground_truth.png"
        if not truth.is_file():
            continue
        where = png.relative_to(bundle).as_posix()
        scores = _score(truth, png)
        problems += [f"{where} {scores}"] if isinstance(scores, str) else _compare(where, rows.get((exp, image, method, "")), scores)
    return problems
