"""``dip check-bundle``: is a published bundle what its manifest says, and do its numbers follow
from its files? A bundle is what strangers send each other, so nothing outside it is ever read:
a path in the manifest that is absolute or holds ``..`` is reported and never opened, a link
inside the bundle (file or folder) is reported and never followed.

:func:`check_bundle` reports (one line each, naming the file and the key):

* files that differ from the manifest's sha256 or size, are missing, or are not listed;
* fits without their manifest entry (``fits``) and entries without their ``run.json``; entries,
  ``run.json``, ``curve.csv``, ``meta.json`` and image headers that a part would be refused for
  (the same checks: :func:`~pipeline.outputs.parts.check_listing`,
  :func:`~pipeline.outputs.parts.check_fit_files`, …);
* rows of ``metrics/per_image.csv`` that are malformed, DIP rows that are not their ``run.json``'s
  numbers, fits of ``per_image.csv`` without their ``run.json``;
* ``restored.png`` and baseline PNGs whose PSNR (0.01 dB) or SSIM, recomputed against the
  ground truth in the bundle with the project's own scoring (:func:`dip.metrics.quality`,
  :func:`pipeline.layout.protocol`), is not the one ``per_image.csv`` gives; baselines kept as
  numbers only whose record differs from ``per_image.csv``;
* a bundle larger than its manifest's ``max_bytes``.
"""

from __future__ import annotations

import csv
import io
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from pipeline import layout
from pipeline.outputs.parts import (
    FIT_ID, IMAGE_ID, MAX_PIXELS, REL, check_baseline_entry, check_fit_entry, check_fit_files, check_image_size, check_listing, check_meta,
    check_scores, kind_of, parse_time,
)
from pipeline.outputs.policy import Policy
from pipeline.outputs.safe import Fields, Unsafe, load_json, parse_json, read_inside

MANIFEST = layout.BUNDLE_MANIFEST
PSNR_TOLERANCE = 0.01  # dB
SSIM_TOLERANCE = 1e-3  # per_image.csv holds 4 decimals
ROUNDING = 6e-5  # per_image.csv holds run.json's numbers rounded to 4 decimals


def _number(row: dict[str, str], key: str) -> float | None:
    try:
        return float(row[key])
    except ValueError:
        return None


def _compare(where: str, row: dict[str, str] | None, scores: dict[str, float], tolerances: tuple[float, float]) -> list[str]:
    if row is None:
        return [f"{where}: no row in {layout.METRICS}/{layout.PER_IMAGE_CSV}"]
    out = []
    for key, tol in zip(("psnr", "ssim"), tolerances):
        listed, got = _number(row, key), float(scores[key])
        if listed is None or math.isnan(listed):
            out.append(f"{where}: {key} in {layout.PER_IMAGE_CSV} is {row.get(key)!r}, not a number")
        elif not (math.isclose(listed, got, abs_tol=tol) or (math.isinf(listed) and math.isinf(got))):
            out.append(f"{where}: {key} recomputed from the image is {got:.4f}, {layout.PER_IMAGE_CSV} says {listed:.4f}")
    return out


def _score(bundle: Path, truth: str, image: str, meta: dict[str, Any]) -> dict[str, float] | str:
    from pipeline.files import ImageError, load_image
    from dip.metrics import quality

    try:
        estimate = load_image(bundle / image, max_pixels=MAX_PIXELS)  # from the header first: a 12000² PNG is never decoded
        expected = load_image(bundle / truth, mode="gray" if estimate.ndim == 2 else "rgb", max_pixels=MAX_PIXELS)
        if expected.shape != estimate.shape:
            return f"is {estimate.shape} but its ground truth is {expected.shape}"
        return quality(expected, estimate, *layout.protocol(str(meta["task"]), meta.get("factor")))
    except (ImageError, OSError, ValueError) as err:
        return f"cannot be scored ({type(err).__name__}: {err})"


@dataclass
class _Bundle:
    """What the steps of :func:`check_bundle` share: the bundle, its manifest, the size of each
    listed file found intact, the problems found so far."""

    root: Path
    manifest: dict[str, Any]
    sizes: dict[str, int] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)
    runs: dict[str, dict[str, Any]] = field(default_factory=dict)  # fit id → its run.json, checked
    metas: dict[str, dict[str, Any]] = field(default_factory=dict)  # exp/image → its meta.json, checked

    def load(self, rel: str) -> Any:
        return load_json(self.root, rel)

    def mapping(self, key: str) -> dict[str, Any]:
        value = self.manifest.get(key)
        return value if isinstance(value, dict) else {}

    def note(self, check: Callable[..., Any], *args: Any) -> Any:
        """``check(*args)``, or ``None`` with its :class:`Unsafe` line added to the problems."""
        try:
            return check(*args)
        except Unsafe as err:
            self.problems.append(str(err))
            return None


def read_manifest(bundle: Path) -> dict[str, Any] | str:
    """The manifest of the dip results bundle ``bundle``, or the one line saying why there is none."""
    try:
        manifest = parse_json(read_inside(bundle, MANIFEST), MANIFEST)
    except FileNotFoundError:
        return f"{bundle}: no {MANIFEST}; not a dip results bundle"
    except (Unsafe, OSError) as err:
        return str(err)
    if not isinstance(manifest, dict) or not str(manifest.get("format", "")).startswith("dip-results-bundle/"):
        return f"{MANIFEST}: not the manifest of a dip results bundle (no format dip-results-bundle/…)"
    return manifest


def check_bundle(bundle: Path) -> list[str]:
    """What is inconsistent in the bundle ``bundle`` (empty: nothing); see the module's docstring."""
    from pipeline.files import MARKER  # written by earlier versions of dip publish; not a listed file

    bundle = Path(bundle)
    if not bundle.is_dir():
        return [f"{bundle}: no such bundle folder"]
    manifest = read_manifest(bundle)
    if isinstance(manifest, str):
        return [manifest]
    if not isinstance(manifest.get("files"), dict):
        return [f"{MANIFEST}: files is not an object (mapping)"]
    b = _Bundle(bundle, manifest)
    listed = {rel: (e.get("sha256"), e.get("bytes", None)) if isinstance(e, dict) else (None, None) for rel, e in manifest["files"].items()}
    b.sizes, b.problems = check_listing(bundle, listed, MANIFEST, unlisted_ok=(MARKER,))
    b.note(_check_header, manifest)
    _check_fits(b)
    rows = _rows(b)
    _check_dip_rows(b, rows)
    _check_baselines(b, rows)
    limit = manifest.get("max_bytes")
    total = sum(b.sizes.values()) + len(read_inside(bundle, MANIFEST))
    if isinstance(limit, int) and not isinstance(limit, bool) and total > limit:
        b.problems.append(f"the bundle is {total} bytes, more than its limit of {limit} ({MANIFEST} max_bytes)")
    return b.problems


def _check_header(manifest: dict[str, Any]) -> None:
    """What the next merge reads besides fits and baselines."""
    Policy.from_dict(manifest.get("policy"))
    if not isinstance(manifest.get("parts"), list):
        raise Unsafe(f"{MANIFEST}: parts is not a list")


def _check_fits(b: _Bundle) -> None:
    """Each run.json has its manifest entry and each entry its run.json, curve.csv and meta.json,
    checked as a part's are (:func:`_check_fit`); each experiment.json lists its images; each PNG
    of a fit or its case has the size its meta.json gives (from the header)."""
    fits = b.manifest.get("fits")
    if not isinstance(fits, dict):
        b.problems.append(f"{MANIFEST}: fits is not an object (mapping)")
        fits = {}
    run_json = "/" + layout.RUN_JSON
    for rel in sorted(r for r in b.manifest["files"] if r.startswith(layout.RESULTS + "/") and r.endswith(run_json)):
        fid = rel[len(layout.RESULTS) + 1: -len(run_json)]
        if not FIT_ID.fullmatch(fid):
            b.problems.append(f"{rel}: not {layout.RESULTS}/<experiment>/<image>/{layout.SEED_PREFIX}<s>{run_json}")
        elif fid not in fits:
            b.problems.append(f"{rel}: a fit without its entry in {MANIFEST} fits (where it came from is unknown)")
    for fid, entry in sorted(fits.items()):
        b.note(_check_fit, b, fid, entry)
    for rel in sorted(b.sizes):
        kind = kind_of(rel)
        if kind and kind[0] == "experiment":  # what readers count "k of n images" from
            b.note(lambda r: Fields(b.load(r), r).strings("images"), rel)
        elif kind and kind[0] in ("fit", "case") and rel.endswith(".png") and f"{kind[1]['exp']}/{kind[1]['image']}" in b.metas:
            b.note(check_image_size, b.root, rel, tuple(b.metas[f"{kind[1]['exp']}/{kind[1]['image']}"]["size"]))


def _check_fit(b: _Bundle, fid: str, entry: Any) -> None:
    """One fit's manifest entry, run.json, curve.csv and meta.json (the checks of a part's)."""
    if not FIT_ID.fullmatch(fid):
        raise Unsafe(f"{MANIFEST}: fits.{fid[:80]} is not <experiment>/<image>/seed_<s>")
    f = Fields(entry, f"{MANIFEST} fits.{fid}")
    check_fit_entry(f)
    for key in ("commit", "device", "device_name", "torch", "cuda", "merged"):
        f.text(key, optional=True)
    _part_ref(f, f"{MANIFEST}: fits.{fid}")
    exp, image, _ = fid.split("/")
    run_dir, meta_rel = REL.fit(fid), str(REL.case(exp, image).meta)
    for rel in map(str, run_dir.records):
        if rel not in b.sizes:
            raise Unsafe(f"{MANIFEST}: fits.{fid} has no readable {rel}")
    if meta_rel not in b.sizes:
        raise Unsafe(f"{meta_rel}: missing, but {run_dir.run_json} needs it")
    meta = b.load(meta_rel)
    run = check_fit_files(b.root, fid, entry["fit_key"], check_meta(meta, meta_rel, exp, image))
    b.runs[fid], b.metas[f"{exp}/{image}"] = run.obj, meta


def _part_ref(f: Fields, where: str) -> None:
    part = Fields(f.mapping("part"), f"{where}.part")
    part.text("name")
    try:
        parse_time(part.text("created") or "")
    except ValueError:
        raise Unsafe(f"{where}.part.created is not a UTC ISO time") from None


Rows = dict[tuple[str, str, str, str], dict[str, str]]


def _rows(b: _Bundle) -> Rows:
    """The rows of ``metrics/per_image.csv`` by (experiment, image, method, seed); a line per malformed row."""
    where = f"{layout.METRICS}/{layout.PER_IMAGE_CSV}"
    if where not in b.sizes:
        b.problems.append(f"{where}: missing")
        return {}
    try:
        reader = csv.DictReader(io.StringIO(read_inside(b.root, where).decode("utf-8"), newline=""))
        rows = {}
        for n, row in enumerate(reader, start=2):
            missing = [k for k in layout.PER_IMAGE_FIELDS if row.get(k) is None]
            if missing or None in row:
                b.problems.append(f"{where} line {n}: " + (f"no {missing[0]} (a short row)" if missing else "more fields than the header"))
                continue
            rows[(row["experiment"], row["image"], row["method"], row["seed"])] = row
        return rows
    except (UnicodeDecodeError, csv.Error) as err:
        b.problems.append(f"{where}: not readable CSV ({type(err).__name__})")
        return {}


def _check_dip_rows(b: _Bundle, rows: Rows) -> None:
    """DIP rows are run.json's numbers, every listed fit is present, each restored.png beside its
    ground truth scores what its row says."""
    fits = b.mapping("fits")
    for fid, run in sorted(b.runs.items()):
        exp, image, seed = fid.split("/")
        seed = seed.removeprefix(layout.SEED_PREFIX)
        for key, method in layout.RUN_METHODS.items():
            if key in (run.get("metrics") or {}):
                row, where = rows.get((exp, image, method, seed)), f"{REL.fit(fid).run_json} metrics.{key}"
                b.problems += [f"{where}: no {method} row in {layout.PER_IMAGE_CSV}"] if row is None else _compare(
                    where, row, run["metrics"][key], (ROUNDING, ROUNDING))
        _check_png(b, str(REL.fit(fid).restored), exp, image, b.metas[f"{exp}/{image}"], rows.get((exp, image, "dip", seed)))
    for exp, image, method, seed in sorted(k for k in rows if k[3] != "" and k[2] == "dip"):
        if layout.fit_id(exp, image, seed) not in fits:
            b.problems.append(f"{REL.run(exp, image, seed).run_json}: missing, but {layout.PER_IMAGE_CSV} lists the fit")


def _check_png(b: _Bundle, png: str, exp: str, image: str, meta: dict[str, Any], row: dict[str, str] | None) -> None:
    """Recompute the scores of ``png`` where the bundle holds it and its ground truth."""
    truth = str(REL.case(exp, image).ground_truth)
    if png in b.sizes and truth in b.sizes:
        scores = _score(b.root, truth, png, meta)
        b.problems += [f"{png} {scores}"] if isinstance(scores, str) else _compare(png, row, scores, (PSNR_TOLERANCE, SSIM_TOLERANCE))


def _check_baselines(b: _Bundle, rows: Rows) -> None:
    """Each baselines entry has its records, scores that can be and are per_image.csv's, PNGs that
    score them; each baseline file has its entry."""
    baselines = b.mapping("baselines")
    for key, entry in sorted(baselines.items()):
        methods = b.note(_baseline_entry, key, entry)
        exp, image = key.split("/") if methods else ("", "")
        for method in methods or []:
            rec_rel, png_rel = str(REL.baselines_of(exp).record(image, method)), str(REL.baselines_of(exp).png(image, method))
            numbers = b.note(_baseline_record, b, key, rec_rel, method, b.metas.get(key))
            if numbers is not None:
                row = rows.get((exp, image, method, ""))
                b.problems += _compare(rec_rel, row, numbers, (ROUNDING, ROUNDING))
                if key in b.metas:
                    _check_png(b, png_rel, exp, image, b.metas[key], row)
    for rel in sorted(r for r in b.sizes if r.startswith(layout.BASELINES + "/") and r.endswith(".json")):
        if "/".join(rel.split("/")[1:3]) not in baselines:
            b.problems.append(f"{rel}: a baseline without its entry in {MANIFEST} baselines")


def _baseline_entry(key: str, entry: Any) -> list[str]:
    if not IMAGE_ID.fullmatch(key):
        raise Unsafe(f"{MANIFEST}: baselines.{key[:80]} is not <experiment>/<image>")
    f = Fields(entry, f"{MANIFEST} baselines.{key}")
    _part_ref(f, f"{MANIFEST}: baselines.{key}")
    return check_baseline_entry(f)


def _baseline_record(b: _Bundle, key: str, rel: str, method: str, meta: dict[str, Any] | None) -> dict[str, float]:
    if rel not in b.sizes:
        raise Unsafe(f"{rel}: missing, but {MANIFEST} baselines.{key} lists {method}")
    record = Fields(b.load(rel), rel)
    record.equals("method", method)
    size = (meta or {}).get("size")
    check_scores(record, tuple(size) if isinstance(size, list) and len(size) == 2 else None)  # type: ignore[arg-type]
    return {"psnr": record.number("psnr"), "ssim": record.number("ssim")}  # type: ignore[dict-item]
