"""README's Results block for the ``paper`` profile, generated from the published bundles.

README.md holds the block between ``<!-- results:begin -->`` and ``<!-- results:end -->``; nobody
edits it by hand. :func:`block` writes it from every bundle of ``dip publish`` under
``results-published/`` (its ``metrics/summary.json`` and ``metrics/report.csv``, the numbers the
pipeline's own evaluate code wrote, and its ``manifest.json`` for the machine): per experiment
its images fitted (k of n), our DIP mean over those images beside the paper's mean over the
*same* images, Δ, how many images are reproduced (:math:`|\\Delta| \\le \\varepsilon`), and the
paper's mean over all n; Table 1 per image; what is pending, as pending. With no bundle it
lists the profile's experiments as pending and says how they will be produced. ``dip readme``
rewrites README's block (``--check``: only say whether it is up to date).
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
from pipeline.report import load_paper
from pipeline.settings import Profile, load_params, parse_experiment

BEGIN, END = "<!-- results:begin -->", "<!-- results:end -->"
TABLE1 = "inpaint_p50"
GALLERY = ("peppers", "man")


def bundles(published: Path) -> list[Path]:
    """The bundles of ``dip publish`` under ``published`` (a ``manifest.json`` of the bundle format), by name."""
    out = []
    for path in sorted(Path(published).glob("*/")) if Path(published).is_dir() else []:
        info = _json(path / layout.BUNDLE_MANIFEST)
        if info.get("format") == layout.BUNDLE_FORMAT:
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


def provenance(manifest: dict[str, Any]) -> str:
    """The machine(s) and code of a bundle's fits: GPU, torch, CUDA, commit(s)."""
    fits = [f for f in (manifest.get("fits") or {}).values() if isinstance(f, dict)] if isinstance(manifest.get("fits"), dict) else []

    def values(key: str, fallback: Any) -> list[str]:
        found = sorted({str(f[key]) for f in fits if f.get(key)})
        return found or ([str(v) for v in fallback] if isinstance(fallback, list) else [str(fallback)] if fallback else [])

    names = values("device_name", manifest.get("device_names") or manifest.get("device_name"))
    torch, cuda = values("torch", manifest.get("torch")), values("cuda", manifest.get("cuda"))
    commits = [c[:10] for c in values("commit", manifest.get("commit"))]
    parts = [", ".join(names) or str(manifest.get("device") or "?")]
    parts += [f"torch {', '.join(torch)}"] if torch else []
    parts += [f"CUDA {', '.join(cuda)}"] if cuda else []
    parts += [f"commit{'s' if len(commits) > 1 else ''} {', '.join(commits)}"] if commits else []
    return "; ".join(parts)


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
            cells = [label, _state(prog), _num(r.psnr), _num(r.paper_psnr), _num(r.delta, True), reproduced, _num(r.paper_psnr_all)]
            lines.append("| " + " | ".join(cells) + " |")
    return lines


def table1_rows(report: pd.DataFrame, progress: dict[str, Any], images: list[str]) -> list[str]:
    """Table 1 per image: ours, the paper's, Δ, reproduced; then the mean and the images not fitted yet."""
    rows = report[(report["experiment"] == TABLE1) & (report["method"] == "dip") & (report["source"] == "ours")]
    if rows.empty:
        return []
    k, n = progress.get("images_done", 0), progress.get("images_total", 0)
    lines = ["| image | DIP (ours) | DIP (paper) | Δ | reproduced |", "|---|---|---|---|---|"]
    for r in rows.itertuples():
        label = str(r.image) if r.image != "mean" else ("**mean**" if progress.get("complete") else f"**mean over {k} of {n} images**")
        flag = "" if pd.isna(r.delta) else ("✅" if bool(r.reproduced) else "❌")
        lines.append(f"| {label} | {_num(r.psnr)} | {_num(r.paper_psnr)} | {_num(r.delta, True)} | {flag} |")
    missing = [i for i in images if i not in set(rows["image"].astype(str))]
    if missing:
        lines += ["", f"Not fitted yet ({len(missing)} of {n}): {', '.join(missing)}."]
    return lines


def bundle_section(bundle: Path, repo: Path) -> str:
    """The block's text for one bundle."""
    tree = layout.Tree(bundle)
    manifest, summary = _json(tree.manifest), _json(tree.metric(layout.SUMMARY_JSON))
    report = pd.read_csv(tree.metric(layout.REPORT_CSV))
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
        "| experiment | images fitted | DIP (ours), PSNR dB | paper, same images | Δ | reproduced | paper, all images |",
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
    """README's whole Results block (markers included) for the repository at ``repo``."""
    found = bundles(repo / layout.PUBLISHED)
    body = "\n\n".join(bundle_section(b, repo) for b in found) if found else pending_text(repo)
    return f"{BEGIN}\n{_wrap(body)}\n{END}"


def current(readme_text: str, name: str = "README") -> str:
    """The block as it stands in README's text; ``ValueError`` (naming the file ``name``) when the
    markers are missing or out of order."""
    start, end = readme_text.find(BEGIN), readme_text.find(END)
    if start < 0 or end < start or readme_text.count(BEGIN) != 1 or readme_text.count(END) != 1:
        raise ValueError(f"{name} has no single {BEGIN} … {END} block; put the two markers around the Results paragraph")
    return readme_text[start:end + len(END)]


def update(readme: Path, check: bool = False) -> bool:
    """Rewrite ``readme``'s block from the bundles beside it (nothing else of the file changes);
    returns whether it changed (with ``check``: whether it would, writing nothing)."""
    readme = Path(readme)
    text = readme.read_text()
    old, new = current(text, str(readme)), block(readme.resolve().parent)
    if old == new or check:
        return old != new
    with atomic_path(readme) as tmp:
        tmp.write_text(text.replace(old, new))
    return True
