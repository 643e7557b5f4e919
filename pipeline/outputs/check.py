"""``dip check-bundle``: is a published bundle what its manifest says, and do its numbers follow
from its files? A bundle is what strangers send each other, so nothing outside it is ever read:
a path in the manifest that is absolute or holds ``..`` is reported and never opened, a link
inside the bundle (file or folder) is reported and never followed.

:func:`check_bundle` reports (one line each, naming the file and the key):

* files that differ from the manifest's sha256 or size, are missing, or are not listed;
* fits without their manifest entry (``fits``) and entries without their ``run.json``; entries
  whose fields are not what the merge writes;
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
from pathlib import Path
from typing import Any

from pipeline import layout
from pipeline.outputs.parts import FIT_ID, IMAGE_ID, MAX_PIXELS, REL, check_meta, check_run, check_scores, parse_time
from pipeline.outputs.policy import Policy
from pipeline.outputs.safe import Fields, Unsafe, is_hex64, parse_json, read_inside, rel_problem, sha256_bytes, walk

MANIFEST = layout.BUNDLE_MANIFEST
PSNR_TOLERANCE = 0.01  # dB
SSIM_TOLERANCE = 1e-3  # per_image.csv holds 4 decimals
ROUNDING = 6e-5  # per_image.csv holds run.json's numbers rounded to 4 decimals


def _fit_entry(fid: str, entry: Any) -> None:
    """The fields of a manifest ``fits`` entry that the merge and the GPU run's resume read."""
    f = Fields(entry, f"{MANIFEST} fits.{fid}")
    f.text("fit_key")
    f.number("wall_seconds")
    f.integer("iterations")
    for key in ("commit", "device", "device_name", "torch", "cuda", "merged"):
        f.text(key, optional=True)
    _part_ref(f, f"{MANIFEST}: fits.{fid}")
    for name, digest in (f.mapping("inputs") or {}).items():
        if not is_hex64(digest):
            raise Unsafe(f"{MANIFEST}: fits.{fid}.inputs.{name[:40]} is not a sha256")


def _part_ref(f: Fields, where: str) -> None:
    part = Fields(f.mapping("part"), f"{where}.part")
    part.text("name")
    try:
        parse_time(part.text("created") or "")
    except ValueError:
        raise Unsafe(f"{where}.part.created is not a UTC ISO time") from None


def _baseline_entry(key: str, entry: Any) -> list[str]:
    f = Fields(entry, f"{MANIFEST} baselines.{key}")
    _part_ref(f, f"{MANIFEST}: baselines.{key}")
    for name, digest in (f.mapping("inputs") or {}).items():
        if not is_hex64(digest):
            raise Unsafe(f"{MANIFEST}: baselines.{key}.inputs.{name[:40]} is not a sha256")
    return f.strings("methods")


def _rows(data: bytes | None) -> tuple[dict[tuple[str, str, str, str], dict[str, str]], list[str]]:
    where = f"{layout.METRICS}/{layout.PER_IMAGE_CSV}"
    if data is None:
        return {}, [f"{where}: missing"]
    try:
        reader = csv.DictReader(io.StringIO(data.decode("utf-8"), newline=""))
        rows, problems = {}, []
        for n, row in enumerate(reader, start=2):
            missing = [k for k in layout.PER_IMAGE_FIELDS if row.get(k) is None]
            if missing or None in row:
                problems.append(f"{where} line {n}: " + (f"no {missing[0]} (a short row)" if missing else "more fields than the header"))
                continue
            rows[(row["experiment"], row["image"], row["method"], row["seed"])] = row
        return rows, problems
    except (UnicodeDecodeError, csv.Error) as err:
        return {}, [f"{where}: not readable CSV ({type(err).__name__})"]


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


def check_bundle(bundle: Path) -> list[str]:
    """What is inconsistent in the bundle ``bundle`` (empty: nothing); see the module's docstring."""
    from pipeline.files import MARKER  # written by earlier versions of dip publish; not a listed file

    bundle = Path(bundle)
    if not bundle.is_dir():
        return [f"{bundle}: no such bundle folder"]
    try:
        manifest = parse_json(read_inside(bundle, MANIFEST), MANIFEST)
    except FileNotFoundError:
        return [f"{bundle}: no {MANIFEST}; not a dip results bundle"]
    except (Unsafe, OSError) as err:
        return [str(err)]
    if not isinstance(manifest, dict) or not str(manifest.get("format", "")).startswith("dip-results-bundle/"):
        return [f"{MANIFEST}: not the manifest of a dip results bundle (no format dip-results-bundle/…)"]
    problems: list[str] = []

    # files: listed = present, sha256 and size; nothing outside the bundle is opened
    listed = manifest.get("files")
    if not isinstance(listed, dict):
        return problems + [f"{MANIFEST}: files is not an object (mapping)"]
    data: dict[str, bytes] = {}
    for rel, entry in sorted(listed.items()):
        why = rel_problem(rel)
        if why:
            problems.append(f"{MANIFEST}: files names {str(rel)[:80]!r}, which {why}; not opened (a bundle holds only its own files)")
            continue
        if not isinstance(entry, dict) or not is_hex64(entry.get("sha256")):
            problems.append(f"{MANIFEST}: files.{rel} has no sha256")
            continue
        try:
            blob = read_inside(bundle, rel)
        except FileNotFoundError:
            problems.append(f"{rel}: listed in {MANIFEST} but missing")
            continue
        except Unsafe as err:
            problems.append(str(err))
            continue
        except OSError as err:
            problems.append(f"{rel}: cannot be read ({err.strerror})")
            continue
        if sha256_bytes(blob) != entry["sha256"] or entry.get("bytes", len(blob)) != len(blob):
            problems.append(f"{rel}: its sha256 is not the one in {MANIFEST} (the file changed)")
            continue
        data[rel] = blob
    present, found = walk(bundle)
    problems += found
    for rel in present:
        if rel not in listed and rel not in (MANIFEST, MARKER):
            problems.append(f"{rel}: not listed in {MANIFEST}")

    def load(rel: str) -> Any:
        return parse_json(data[rel], rel)

    try:  # what the next merge reads besides fits and baselines
        Policy.from_dict(manifest.get("policy"))
        if not isinstance(manifest.get("parts"), list):
            raise Unsafe(f"{MANIFEST}: parts is not a list")
    except Unsafe as err:
        problems.append(str(err))

    # fits: each run.json has its manifest entry and each entry its run.json
    fits = manifest.get("fits") if isinstance(manifest.get("fits"), dict) else None
    if fits is None:
        problems.append(f"{MANIFEST}: fits is not an object (mapping)")
        fits = {}
    runs: dict[str, dict[str, Any]] = {}
    metas: dict[str, dict[str, Any]] = {}
    run_json = "/" + layout.RUN_JSON
    for rel in sorted(r for r in listed if isinstance(r, str) and r.startswith(layout.RESULTS + "/") and r.endswith(run_json)):
        fid = rel[len(layout.RESULTS) + 1: -len(run_json)]
        if not FIT_ID.fullmatch(fid):
            problems.append(f"{rel}: not {layout.RESULTS}/<experiment>/<image>/{layout.SEED_PREFIX}<s>{run_json}")
        elif fid not in fits:
            problems.append(f"{rel}: a fit without its entry in {MANIFEST} fits (where it came from is unknown)")
    for fid, entry in sorted(fits.items()):
        try:
            if not FIT_ID.fullmatch(fid):
                raise Unsafe(f"{MANIFEST}: fits.{fid[:80]} is not <experiment>/<image>/seed_<s>")
            _fit_entry(fid, entry)
            rel = str(REL.fit(fid).run_json)
            if rel not in data:
                raise Unsafe(f"{MANIFEST}: fits.{fid} has no readable {rel}")
            exp, image, seed = fid.split("/")
            meta_rel = str(REL.case(exp, image).meta)
            if meta_rel not in data:
                raise Unsafe(f"{meta_rel}: missing, but {rel} needs it")
            size = check_meta(load(meta_rel), meta_rel, exp, image)
            run = check_run(load(rel), rel, int(seed.removeprefix(layout.SEED_PREFIX)), size)
            run.equals("fit_key", entry["fit_key"])
            runs[fid], metas[f"{exp}/{image}"] = run.obj, load(meta_rel)
        except Unsafe as err:
            problems.append(str(err))

    for rel in sorted(r for r in data if r.startswith(layout.CORRUPTED + "/") and r.count("/") == 3 and r.endswith("/" + layout.EXPERIMENT_JSON)):
        try:  # what readers count "k of n images" from
            Fields(load(rel), rel).strings("images")
        except Unsafe as err:
            problems.append(str(err))

    # metrics: rows well formed, DIP rows = run.json's numbers, every listed fit present
    rows, bad_rows = _rows(data.get(f"{layout.METRICS}/{layout.PER_IMAGE_CSV}"))
    problems += bad_rows
    for fid, run in sorted(runs.items()):
        exp, image, seed = fid.split("/")
        for key, method in layout.RUN_METHODS.items():
            if key in (run.get("metrics") or {}):
                row = rows.get((exp, image, method, seed.removeprefix(layout.SEED_PREFIX)))
                where = f"{REL.fit(fid).run_json} metrics.{key}"
                if row is None:
                    problems.append(f"{where}: no {method} row in {layout.PER_IMAGE_CSV}")
                    continue
                problems += _compare(where, row, run["metrics"][key], (ROUNDING, ROUNDING))
    for exp, image, method, seed in sorted(k for k in rows if k[3] != "" and k[2] == "dip"):
        if layout.fit_id(exp, image, seed) not in fits:
            problems.append(f"{REL.run(exp, image, seed).run_json}: missing, but {layout.PER_IMAGE_CSV} lists the fit")

    # images: recompute what has its ground truth here
    for fid in sorted(runs):
        exp, image, seed = fid.split("/")
        png, truth = str(REL.fit(fid).restored), str(REL.case(exp, image).ground_truth)
        if png in data and truth in data:
            scores = _score(bundle, truth, png, metas[f"{exp}/{image}"])
            problems += [f"{png} {scores}"] if isinstance(scores, str) else _compare(
                png, rows.get((exp, image, "dip", seed.removeprefix(layout.SEED_PREFIX))), scores, (PSNR_TOLERANCE, SSIM_TOLERANCE))
    baselines = manifest.get("baselines") if isinstance(manifest.get("baselines"), dict) else {}
    for key, entry in sorted(baselines.items()):
        try:
            if not IMAGE_ID.fullmatch(key):
                raise Unsafe(f"{MANIFEST}: baselines.{key[:80]} is not <experiment>/<image>")
            methods = _baseline_entry(key, entry)
        except Unsafe as err:
            problems.append(str(err))
            continue
        exp, image = key.split("/")
        truth = str(REL.case(exp, image).ground_truth)
        for method in methods:
            rec_rel, png_rel = str(REL.baselines_of(exp).record(image, method)), str(REL.baselines_of(exp).png(image, method))
            try:
                if rec_rel not in data:
                    raise Unsafe(f"{rec_rel}: missing, but {MANIFEST} baselines.{key} lists {method}")
                record = Fields(load(rec_rel), rec_rel)
                record.equals("method", method)
                size = metas[key].get("size") if key in metas else None
                check_scores(record, tuple(size) if isinstance(size, list) and len(size) == 2 else None)  # type: ignore[arg-type]
                numbers = {"psnr": record.number("psnr"), "ssim": record.number("ssim")}
            except Unsafe as err:
                problems.append(str(err))
                continue
            row = rows.get((exp, image, method, ""))
            problems += _compare(rec_rel, row, numbers, (ROUNDING, ROUNDING))  # type: ignore[arg-type]
            if png_rel in data and truth in data and key in metas:
                scores = _score(bundle, truth, png_rel, metas[key])
                problems += [f"{png_rel} {scores}"] if isinstance(scores, str) else _compare(png_rel, row, scores, (PSNR_TOLERANCE, SSIM_TOLERANCE))
    for rel in sorted(r for r in data if r.startswith(layout.BASELINES + "/") and r.endswith(".json")):
        key = "/".join(rel.split("/")[1:3])
        if key not in baselines:
            problems.append(f"{rel}: a baseline without its entry in {MANIFEST} baselines")

    limit = manifest.get("max_bytes")
    total = sum(len(b) for b in data.values()) + len(read_inside(bundle, MANIFEST))
    if isinstance(limit, int) and not isinstance(limit, bool) and total > limit:
        problems.append(f"the bundle is {total} bytes, more than its limit of {limit} ({MANIFEST} max_bytes)")
    return problems
