"""README's Results block for the ``paper`` profile, and its quick block, generated from the published bundles.

README.md holds the block between ``<!-- results:begin -->`` and ``<!-- results:end -->``; nobody
edits it by hand. :func:`block` writes it from every bundle of the ``paper`` profile under
``results-published/`` (its ``metrics/summary.json`` and ``metrics/report.csv``, the numbers the
pipeline's own evaluate code wrote, and its ``manifest.json`` for the machine): per experiment
its images fitted (k of n), our DIP mean over those images (± the standard deviation over seeds
where there are several) beside the paper's mean over the *same* images, Δ, how many images are
reproduced (:math:`|\\Delta| \\le \\varepsilon`), and the paper's mean over all n; Table 1 per image;
what is pending, as pending. With no bundle it lists the profile's experiments as pending and
says how they will be produced.

A second block, between ``<!-- quick:begin -->`` and ``<!-- quick:end -->``, is the ``quick``
profile's table from the CPU bundle ``results-published/quick-cpu`` (:func:`quick_block`): per
image and per experiment DIP's mean ± the sample standard deviation over seeds and its min–max,
beside the input and the baselines; README keeps that block as it is while the bundle is absent.
``dip readme`` rewrites both blocks (``--check``: only say whether they are up to date).
"""

from __future__ import annotations

import json
import math
import textwrap
from pathlib import Path, PurePosixPath
from typing import Any

import pandas as pd

from pipeline import layout
from pipeline.files import atomic_path
from pipeline.images.manifest import load_manifest
from pipeline.report import load_paper, provenance
from pipeline.settings import Profile, load_params, parse_experiment

BEGIN, END = "<!-- results:begin -->", "<!-- results:end -->"
QUICK_BEGIN, QUICK_END = "<!-- quick:begin -->", "<!-- quick:end -->"
TABLE1 = "inpaint_p50"
GALLERY = ("peppers", "man")


def bundles(published: Path, profile: str | None = None) -> list[Path]:
    """The bundles of ``dip publish`` under ``published`` (a ``manifest.json`` of the bundle format), by
    name; with ``profile``, those of that profile only."""
    out = []
    for path in sorted(Path(published).glob("*/")) if Path(published).is_dir() else []:
        info = _json(path / layout.BUNDLE_MANIFEST)
        if info.get("format") == layout.BUNDLE_FORMAT and profile in (None, info.get("profile")):
            out.append(path)
    return out


def _json(path: Path) -> dict[str, Any]:
    try:
        value = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return value if isinstance(value, dict) else {}


def _num(value: Any, sign: bool = False) -> str:
    try:
        x = float(value)
    except (TypeError, ValueError):
        return "–"
    return "–" if not math.isfinite(x) else (f"{x:+.2f}" if sign else f"{x:.2f}")


def _with_std(psnr: Any, std: Any) -> str:
    """``mean ± std`` over seeds, or the mean alone where there is no spread (one seed)."""
    return _num(psnr) + ("" if _num(std) == "–" else f" ± {_num(std)}")


def seeds_label(dip: pd.DataFrame) -> str:
    """What DIP's numbers are over: "mean ± std over 3 seeds", or "1 seed" (no spread)."""
    n = pd.to_numeric(dip["seeds"], errors="coerce").max() if "seeds" in dip.columns and len(dip) else None
    return f"mean ± std over {int(n)} seeds" if n is not None and not pd.isna(n) and n > 1 else "1 seed"


def _state(progress: dict[str, Any]) -> str:
    k, n = progress.get("images_done", "?"), progress.get("images_total", "?")
    status = progress.get("status", "?")
    return f"{n} of {n}" if status == "complete" else f"**{k} of {n}** ({status})"


def experiment_rows(summary: dict[str, Any], report: pd.DataFrame) -> list[str]:
    """One line per experiment (per set where the paper gives means per set) of the summary table:
    Table 1 first, then the report's order (pending experiments last)."""
    progress = summary.get("progress") or {}
    blind = summary.get("no_ground_truth") or {}
    order = list(dict.fromkeys([TABLE1, *report["experiment"].astype(str), *progress]))
    lines = []
    for exp, prog in ((e, progress[e]) for e in order if e in progress):
        rows = report[(report["experiment"] == exp) & (report["method"] == "dip") & (report["source"] != "paper")]
        means = rows[rows["image"].astype(str).str.startswith("mean")]
        if exp in blind:
            lines.append(f"| `{exp}` | {_state(prog)} | no ground truth: no PSNR | | | | |")
            continue
        if means.empty or prog.get("status") == "pending":
            full = means["paper_psnr_all"].iloc[0] if len(means) else None
            lines.append(f"| `{exp}` | {_state(prog)} | pending | | | | {_num(full)} |")
            continue
        per_image = rows[~rows["image"].astype(str).str.startswith("mean") & rows["delta"].notna()]
        for r in means.itertuples():
            label = f"`{exp}`" + ("" if r.image == "mean" else f" ({str(r.image).split(':', 1)[1]})")
            reproduced = ""
            if r.image == "mean" and len(per_image):  # the paper gives each image's number: how many are reproduced
                reproduced = f"{int(per_image['reproduced'].sum())} of {len(per_image)} images"
            elif not pd.isna(r.delta):
                reproduced = "✅" if bool(r.reproduced) else "❌"
            cells = [label, _state(prog), _with_std(r.psnr, r.psnr_std), _num(r.paper_psnr), _num(r.delta, True), reproduced, _num(r.paper_psnr_all)]
            lines.append("| " + " | ".join(cells) + " |")
    return lines


def table1_rows(report: pd.DataFrame, progress: dict[str, Any], images: list[str]) -> list[str]:
    """Table 1 per image: ours, the paper's, Δ, reproduced; then the mean and the images not fitted yet."""
    rows = report[(report["experiment"] == TABLE1) & (report["method"] == "dip") & (report["source"] == "ours")]
    if rows.empty:
        return []
    k, n = progress.get("images_done", 0), progress.get("images_total", 0)
    lines = [f"| image | DIP (ours), {seeds_label(rows)} | DIP (paper) | Δ | reproduced |", "|---|---|---|---|---|"]
    for r in rows.itertuples():
        label = str(r.image) if r.image != "mean" else ("**mean**" if progress.get("complete") else f"**mean over {k} of {n} images**")
        flag = "" if pd.isna(r.delta) else ("✅" if bool(r.reproduced) else "❌")
        lines.append(f"| {label} | {_with_std(r.psnr, r.psnr_std)} | {_num(r.paper_psnr)} | {_num(r.delta, True)} | {flag} |")
    missing = [i for i in images if i not in set(rows["image"].astype(str))]
    if missing:
        lines += ["", f"Not fitted yet ({len(missing)} of {n}): {', '.join(missing)}."]
    return lines


def bundle_section(bundle: Path, repo: Path) -> str:
    """The block's text for one bundle."""
    tree = layout.Tree(bundle)
    manifest, summary = _json(tree.manifest), _json(tree.metric(layout.SUMMARY_JSON))
    report = _read_report(tree)
    for col in ("paper_psnr", "delta", "paper_psnr_all", "reproduced"):
        if col not in report.columns:
            report[col] = math.nan
    report["reproduced"] = report["reproduced"].map(lambda v: str(v).strip().lower() == "true")
    where = bundle.relative_to(repo).as_posix() if bundle.is_relative_to(repo) else str(bundle)
    md = layout.Tree(PurePosixPath()).metric(layout.REPORT_MD)
    progress = summary.get("progress") or {}
    states = [p.get("status") for p in progress.values()]
    count = ", ".join(f"{states.count(s)} {s}" for s in ("complete", "in progress", "pending") if states.count(s))
    lines = [
        f"**`{summary.get('profile', manifest.get('profile', '?'))}` profile** — the published bundle [`{where}`]({where}/) "
        f"({provenance(manifest)}); its full report, every image and method: [`{md}`]({where}/{md}). "
        f"Experiments: {count or 'none'}. An experiment in progress shows its means over its fitted images only, beside the "
        f"paper's mean over the same images; Δ = ours − paper; ✅ when |Δ| ≤ {summary.get('epsilon', '?')} dB.",
        "",
        f"| experiment | images fitted | DIP (ours), PSNR dB, {seeds_label(report[report['method'] == 'dip'])} | paper, same images | Δ | reproduced | paper, all images |",
        "|---|---|---|---|---|---|---|",
        *experiment_rows(summary, report),
    ]
    images = _json(tree.corrupted_of(TABLE1).record).get("images") or []
    table1 = table1_rows(report, progress.get(TABLE1) or {}, [str(i) for i in images])
    if table1:
        lines += ["", f"Table 1 (`{TABLE1}`, inpainting of 50 % missing pixels), per image:", "", *table1]
    snaps = [i for i in GALLERY if any(layout.RunDir(d).snapshot_files() for d in (tree.results_of(TABLE1).path / i).glob(f"{layout.SEED_PREFIX}*"))]
    if snaps:
        links = ", ".join(f"[{i}]({where}/{layout.RESULTS}/{TABLE1}/{i}/)" for i in snaps)
        lines += ["", f"The iterations of {links} (snapshots from 0 to the last iteration): the dashboard's Gallery page."]
    return "\n".join(lines)


def describe(exp: str, paper: dict[str, Any], figures: dict[str, Any]) -> str:
    """What an experiment is, in a few words."""
    if exp in paper and paper[exp].get("source"):
        return str(paper[exp]["source"]).split(", PSNR")[0].split(", mean PSNR")[0]
    if exp in figures:
        return str((figures[exp] or {}).get("about", exp))
    e = parse_experiment(exp)
    return {"denoise": f"denoising, σ = {e.sigma and round(e.sigma * 255, 1)}/255", "inpaint": f"inpainting, {e.drop and round(e.drop * 100)} % missing",
            "sr": f"super-resolution ×{e.factor}"}[e.task]


def pending_text(repo: Path, profile: str = "paper") -> str:
    """The block before any bundle: the profile's experiments (what, how many images), all pending."""
    params = load_params(repo / "params.yaml")
    prof = Profile(profile, params["profiles"][profile], dict(params.get("figures") or {}))
    paper, manifest = load_paper(repo / "data" / "paper.yaml"), load_manifest(repo / "data" / "manifest.yaml")
    lines = [
        f"**`{profile}` profile** — no result is published yet: every experiment below is pending. They are fitted on a GPU "
        "in short windows, Table 1 first, and each window's finished fits are merged into one bundle, "
        f"`{layout.PUBLISHED}/{profile}-<gpu>/`, that grows until the profile is complete. This block is then generated from "
        "that bundle (`dip readme`): per experiment the images fitted so far (k of n), our mean over them beside the paper's "
        "mean over the same images, Δ and the images reproduced, and what is still pending. No number is shown before it is fitted.",
        "",
        "| experiment | what | images |",
        "|---|---|---|",
    ]
    for exp in prof.experiments:
        specs = prof.specs(exp)[:1] if exp.is_figure else prof.specs(exp)
        n = len(manifest.select(specs))
        sets = "" if exp.is_figure else f" ({', '.join(specs)})"
        lines.append(f"| `{exp.id}` | {describe(exp.id, paper, prof.figures)} | {n}{sets} |")
    return "\n".join(lines)


def _wrap(text: str, width: int = 100) -> str:
    """Prose lines wrapped at ``width`` as README's own; table rows and blank lines as they are."""
    return "\n".join(line if line.startswith("|") or not line else
                     textwrap.fill(line, width, break_long_words=False, break_on_hyphens=False) for line in text.split("\n"))


def block(repo: Path) -> str:
    """README's whole Results block (markers included) for the repository at ``repo``: the ``paper``
    profile's bundles (the quick profile's has its own block, :func:`quick_block`)."""
    found = bundles(repo / layout.PUBLISHED, "paper")
    body = "\n\n".join(bundle_section(b, repo) for b in found) if found else pending_text(repo)
    return f"{BEGIN}\n{_wrap(body)}\n{END}"


def _read_report(tree: layout.Tree) -> pd.DataFrame:
    """A bundle's ``metrics/report.csv`` with the spread's columns (empty where an older report lacks them)."""
    report = pd.read_csv(tree.metric(layout.REPORT_CSV))
    return report.reindex(columns=list(dict.fromkeys([*layout.REPORT_FIELDS, *report.columns])))


def spread_cell(row: pd.Series) -> str:
    """DIP's cell: ``mean ± std (ssim)`` over seeds, or ``mean (ssim), 1 seed`` without a spread."""
    text = _with_std(row["psnr"], row["psnr_std"]) + ("" if pd.isna(row["ssim"]) else f" ({float(row['ssim']):.3f})")
    return text + ("" if not pd.isna(row["psnr_std"]) else ", 1 seed")


def quick_rows(report: pd.DataFrame) -> list[str]:
    """One line per image and per mean of each scored experiment: input, DIP (mean ± std over seeds,
    min–max), the baselines' PSNR (deterministic: one value)."""
    ours = report[(report["source"] == "ours") & report["psnr"].notna()]
    lines = []
    for exp in dict.fromkeys(ours["experiment"].astype(str)):
        rows = ours[ours["experiment"] == exp]
        for n, image in enumerate(dict.fromkeys(rows["image"].astype(str))):
            cell = rows[rows["image"].astype(str) == image].set_index("method")
            label = f"**{image}**" if image.startswith("mean") else image
            inp = cell.loc["input"] if "input" in cell.index else None
            dip = cell.loc["dip"] if "dip" in cell.index else None
            others = [m for m in cell.index if m not in ("input", "dip")]
            cells = [f"`{exp}`" if n == 0 else "", label,
                     "–" if inp is None else _num(inp["psnr"]) + ("" if pd.isna(inp["ssim"]) else f" ({float(inp['ssim']):.3f})"),
                     "–" if dip is None else spread_cell(dip),
                     "–" if dip is None or pd.isna(dip["psnr_std"]) else f"{_num(dip['psnr_min'])}–{_num(dip['psnr_max'])}",
                     ", ".join(f"{m} {_num(cell.loc[m, 'psnr'])}" for m in others) or "–"]
            lines.append("| " + " | ".join(cells) + " |")
    return lines


def quick_section(bundle: Path, repo: Path) -> str:
    """The quick block's text for the CPU bundle: where it is, what made it, the table with the spread."""
    tree = layout.Tree(bundle)
    manifest, report = _json(tree.manifest), _read_report(tree)
    where = bundle.relative_to(repo).as_posix() if bundle.is_relative_to(repo) else str(bundle)
    md = layout.Tree(PurePosixPath()).metric(layout.REPORT_MD)
    dip = report[(report["source"] == "ours") & (report["method"] == "dip")]
    seeds = int(pd.to_numeric(dip["seeds"], errors="coerce").max()) if len(dip) else 0
    wall = sum(float(v) for v in (manifest.get("wall_seconds") or {}).values() if isinstance(v, (int, float)))
    over = f"{seeds} seeds" if seeds > 1 else "1 seed"
    lines = [
        f"**`{manifest.get('profile', '?')}` profile on a CPU** — the published bundle [`{where}`]({where}/) ({provenance(manifest)}; "
        f"{str(manifest.get('updated') or manifest.get('created') or '?')[:10]}; DIP fits {wall:.0f} s in all), {over} per image; "
        f"its full report: [`{md}`]({where}/{md}). PSNR in dB (SSIM in parentheses). DIP is the mean over the seeds ± their sample "
        "standard deviation (ddof = 1), and min–max their range; a **mean** row is the mean over images, its ± and min–max the "
        "spread over seeds of the per-seed means over images. The input and the baselines are deterministic (one value).",
        "",
        f"| experiment | image | input | DIP, mean ± std over {over} | DIP min–max | baselines |",
        "|---|---|---|---|---|---|",
        *quick_rows(report),
    ]
    return "\n".join(lines)


def quick_block(repo: Path) -> str | None:
    """README's quick block (markers included) from ``results-published/quick-cpu``; ``None`` while that bundle does not exist."""
    bundle = Path(repo) / layout.PUBLISHED / layout.QUICK_BUNDLE
    if bundle not in bundles(bundle.parent):
        return None
    return f"{QUICK_BEGIN}\n{_wrap(quick_section(bundle, Path(repo)))}\n{QUICK_END}"


def current(readme_text: str, name: str = "README", markers: tuple[str, str] = (BEGIN, END)) -> str:
    """The block between ``markers`` as it stands in README's text; ``ValueError`` (naming the file
    ``name``) when the markers are missing or out of order."""
    begin, end_marker = markers
    start, end = readme_text.find(begin), readme_text.find(end_marker)
    if start < 0 or end < start or readme_text.count(begin) != 1 or readme_text.count(end_marker) != 1:
        raise ValueError(f"{name} has no single {begin} … {end_marker} block; put the two markers around the text they hold")
    return readme_text[start:end + len(end_marker)]


def update(readme: Path, check: bool = False) -> bool:
    """Rewrite ``readme``'s blocks from the bundles beside it — the Results block, and the quick block
    where ``results-published/quick-cpu`` exists (nothing else of the file changes); returns whether
    it changed (with ``check``: whether it would, writing nothing)."""
    readme = Path(readme)
    text = readme.read_text()
    repo = readme.resolve().parent
    new_text = text.replace(current(text, str(readme)), block(repo))
    quick = quick_block(repo)
    if quick is not None:
        new_text = new_text.replace(current(new_text, str(readme), (QUICK_BEGIN, QUICK_END)), quick)
    if new_text == text or check:
        return new_text != text
    with atomic_path(readme) as tmp:
        tmp.write_text(new_text)
    return True
