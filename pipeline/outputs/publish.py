"""``dip publish SRC... --into BUNDLE``: merge finished fits into one growing, checked results
bundle in the repository, ``results-published/<name>/`` (docs/publishing.md, docs/LAYOUT.md).

A source is a part (:mod:`pipeline.outputs.parts`: a folder or a ``.tar.gz``), a folder of
parts (``../shared/gpu-runs/``) or a workspace (its fits become a part first). Every part is
verified completely before the bundle is touched. Then, over the fits the bundle holds and the
new ones (parts in the order they were created):

* a fit whose ``fit_key`` equals the bundle's is skipped (already there); a fit of the same id
  with another key replaces it (its manifest entry says which key it replaces), unless its part
  is older than the one the bundle's fit came from;
* the :class:`~pipeline.outputs.policy.Policy` decides, from the fits held, what is kept of each: ``restored.png`` with its
  ground truth, an 8-bit JPEG preview, or only the numbers (``run.json``, ``curve.csv``);
* ``metrics/`` is rebuilt from every fit held by the pipeline's own :func:`~pipeline.stages.evaluate.evaluate`;
* ``manifest.json`` records per fit its ``fit_key``, commit, device, torch/CUDA versions, wall
  time, iterations, part and inputs, and every file with its sha256.

The new bundle is built in a temporary sibling (``.<name>.merge-<pid>-*.tmp``), must pass
:func:`~pipeline.outputs.check.check_bundle` and fit ``max_bytes``, and only then replaces the old
one; a merge killed half-way leaves the old bundle, and the next merge removes what a dead merge
left (or puts back a bundle moved aside just before the kill). One merge at a time per bundle (a
lock file beside it). A folder that is not a bundle is never replaced.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import shutil
import tempfile
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path, PurePosixPath
from typing import Any, Iterator, Sequence

from pipeline import layout
from pipeline.files import OutputBusy, lock_file, output_lock
from pipeline.outputs.check import check_bundle, read_manifest
from pipeline.outputs.part_writer import TreeWriter, is_workspace, write_part
from pipeline.outputs.parts import PART_JSON, PROFILE, REL, Part, fit_provenance, is_part, open_part, parse_time, utc_now
from pipeline.outputs.policy import Keep, Policy, decide
from pipeline.outputs.safe import parse_json, read_inside, sha256_bytes

FORMAT, MANIFEST = layout.BUNDLE_FORMAT, layout.BUNDLE_MANIFEST
DEFAULT_MAX_BYTES = 15_000_000  # 15 MB in git


@dataclass
class Source:
    """A tree the merge copies from (the old bundle or a part) and the sha256 of its files."""

    root: Path
    files: dict[str, str]

    def read(self, rel: str) -> bytes:
        """The bytes of ``rel``, checked against the sha256 verified before the merge began."""
        data = read_inside(self.root, rel)
        if sha256_bytes(data) != self.files.get(rel):
            raise ValueError(f"{self.root / rel} changed during the merge; nothing was changed, run it again")
        return data

    def under(self, prefix: str) -> list[str]:
        return sorted(r for r in self.files if r.startswith(prefix))

    def experiment_records(self) -> dict[str, str]:
        """``{experiment: its experiment.json}`` of the corrupted cases this source holds."""
        return {rel.split("/")[2]: rel for rel in self.under(layout.CORRUPTED + "/")
                if rel.count("/") == 3 and PurePosixPath(rel).name == layout.EXPERIMENT_JSON}


@dataclass
class Held:
    """A fit of the new bundle: its manifest entry, where its files are, its case's size."""

    id: str
    entry: dict[str, Any]
    src: Source
    created: datetime
    size: tuple[int, int]
    scored: bool  # its run.json has metrics (a ground truth)

    @property
    def exp(self) -> str:
        return self.id.split("/")[0]

    @property
    def image(self) -> str:
        return self.id.split("/")[1]

    @property
    def seed(self) -> int:
        return int(self.id.split("/")[2].removeprefix(layout.SEED_PREFIX))

    @property
    def run(self) -> layout.RunDir[PurePosixPath]:
        """The fit's folder in the bundle (and in its source)."""
        return REL.fit(self.id)


@dataclass
class Baselines:
    """The classical baselines of one image: where they are, their manifest entry, their scores."""

    src: Source
    entry: dict[str, Any]
    scores: dict[str, tuple[float, float]] = field(default_factory=dict)  # method → (psnr, ssim)


# ------------------------------------------------------------------------------------ bundles
def _stale_name(into: Path) -> re.Pattern[str]:
    return re.compile(rf"\.{re.escape(into.name)}\.merge-(\d+)-[A-Za-z0-9_]+\.(tmp|old)")


def clean_stale(into: Path) -> list[Path]:
    """Remove what merges into ``into`` left when they were killed (their process is gone):
    ``.<name>.merge-<pid>-*.tmp`` folders, and ``.old`` ones, except that a bundle moved aside
    just before the kill is put back when ``into`` is missing. Returns what was removed."""
    from pipeline.files import pid_alive

    pattern, removed, olds = _stale_name(into), [], []
    if not into.parent.is_dir():
        return []
    for p in sorted(into.parent.iterdir()):
        m = pattern.fullmatch(p.name)
        if not m or p.is_symlink() or not p.is_dir() or (int(m[1]) != os.getpid() and pid_alive(int(m[1]))):
            continue
        if m[2] == "old" and not into.exists() and isinstance(read_manifest(p), dict):
            olds.append(p)
            continue
        shutil.rmtree(p)
        removed.append(p)
    if olds:
        olds.sort(key=lambda p: p.stat().st_mtime)
        os.replace(olds.pop(), into)
        for p in olds:
            shutil.rmtree(p)
            removed.append(p)
    return removed


@contextlib.contextmanager
def bundle_lock(into: Path) -> Iterator[None]:
    """Hold the bundle's lock (:func:`pipeline.files.output_lock`: beside it, removed at the end, so
    none is left in a folder that merely holds the bundle): one merge at a time (``ValueError`` if
    another runs)."""
    stack = contextlib.ExitStack()
    try:
        stack.enter_context(output_lock(into))
    except OutputBusy:
        try:
            other = lock_file(into).read_text(errors="replace").strip() or "?"
        except OSError:
            other = "?"
        raise ValueError(f"{into}: another merge (pid {other}) is writing this bundle now; run this one when it has ended") from None
    with stack:
        yield


def check_target(into: Path) -> dict[str, Any] | None:
    """The manifest of the bundle at ``into`` (``None`` for a new one); ``ValueError`` for a
    path that is not a bundle and not new (never replaced)."""
    if into.is_symlink() or (into.exists() and not into.is_dir()):
        raise ValueError(f"{into} exists and is not a folder; choose a bundle folder (results-published/NAME)")
    if not into.exists():
        return None
    manifest = read_manifest(into)
    if isinstance(manifest, str) and any(into.iterdir()):
        raise ValueError(f"{into} exists and is not a results bundle (no {MANIFEST} of dip in it); dip never replaces it: choose a bundle folder of dip or a new one")
    return manifest if isinstance(manifest, dict) else None


# -------------------------------------------------------------------------------------- merge
@dataclass
class Settings:
    """What the metrics rebuild reads from the checkout: params.yaml's experiment order, report
    epsilon and figure descriptions, and the paper's numbers."""

    order: list[str]
    epsilon: float
    about: dict[str, str]
    paper: dict[str, Any]

    @classmethod
    def load(cls, params: Path, paper: Path) -> "Settings":
        from pipeline.report import load_paper
        from pipeline.settings import load_params

        for path, what in ((params, "--params"), (paper, "--paper")):
            if not Path(path).is_file():
                raise ValueError(f"{path}: not found; run dip publish in the repository's root or pass {what}")
        p = load_params(params)
        return cls([str(e) for e in p.get("experiments") or []], float((p.get("report") or {}).get("epsilon", 0.5)),
                   {k: str((v or {}).get("about", k)) for k, v in (p.get("figures") or {}).items()}, load_paper(paper))


def open_sources(sources: Sequence[Path], scratch: Path, commit: str | None = None) -> list[Part]:
    """Every part of ``sources`` verified (tarballs unpacked under ``scratch``; a workspace's fits
    written as a part there first). ``ValueError`` (one line) for a source that is none of these."""
    parts: list[Part] = []
    for n, src in enumerate(Path(s) for s in sources):
        if is_part(src):
            parts.append(open_part(src, scratch / f"part-{n}"))
        elif is_workspace(src) and not src.is_symlink():
            out = scratch / f"workspace-{n}" / (src.resolve().name or "workspace")
            out.parent.mkdir()
            write_part(src, out, commit=commit)
            parts.append(open_part(out, out))
        elif src.is_dir() and not src.is_symlink():
            found = sorted(p for p in src.iterdir() if not p.name.startswith(".") and is_part(p))
            if not found:
                raise ValueError(f"{src}: holds no part (a folder with {PART_JSON}, or a .tar.gz of one) and is not a workspace")
            parts += [open_part(p, scratch / f"part-{n}-{i}") for i, p in enumerate(found)]
        else:
            raise ValueError(f"{src}: no such part, folder of parts or workspace")
    return parts


def _jpeg(png: bytes, quality: int) -> bytes:
    from PIL import Image

    out = io.BytesIO()
    with Image.open(io.BytesIO(png)) as im:
        im.convert("L" if im.mode in ("L", "1", "I", "I;16") else "RGB").save(out, format="JPEG", quality=quality)
    return out.getvalue()


def _compatible(fit_inputs: dict[str, str], base_inputs: dict[str, str]) -> bool:
    """Baselines ran on the inputs of a fit: the observation and every case file both record agree."""
    common = set(fit_inputs) & set(base_inputs)
    return layout.OBSERVATION_NPY in common and all(fit_inputs[k] == base_inputs[k] for k in common)


def size_category(rel: str) -> str:
    """What a bundle file is, in the size message's words (JPEG previews, snapshots, …)."""
    name = PurePosixPath(rel)
    if name.suffix == ".jpg":
        return "JPEG previews"
    if name.parent.name == layout.SNAPSHOTS:
        return "snapshots"
    if name.name == layout.RESTORED:
        return "restored PNGs"
    if name.name == layout.GROUND_TRUTH:
        return "ground truths"
    if rel.startswith(layout.BASELINES + "/"):
        return "baselines"
    if rel.startswith(layout.METRICS + "/"):
        return "metrics"
    return "records (run.json, curve.csv, meta.json)"


def publish(
    sources: Sequence[Path],
    into: Path,
    *,
    policy: Policy | None = None,
    max_bytes: int = DEFAULT_MAX_BYTES,
    params: Path = Path("params.yaml"),
    paper: Path = Path("data/paper.yaml"),
    commit: str | None = None,
) -> dict[str, Any]:
    """Merge the fits of ``sources`` into the bundle ``into`` (created if new) and return what
    happened: ``added``, ``replaced``, ``unchanged``, ``older`` (fit ids), ``baselines_added``,
    ``baselines_dropped``, ``changed`` and the new ``manifest``. ``policy`` defaults to the
    bundle's own (a new bundle: :class:`Policy`); ``commit`` is recorded for a workspace's fits
    (default: its git HEAD). ``ValueError`` (one line) and nothing changed when a part is refused,
    the profiles differ, the result would exceed ``max_bytes`` or would not pass ``check_bundle``."""
    into = Path(into)
    if not sources:
        raise ValueError("nothing to publish: give a workspace, a part or a folder of parts")
    if max_bytes <= 0:
        raise ValueError(f"the size limit must be positive, got {max_bytes} bytes")
    check_target(into)
    settings = Settings.load(params, paper)
    with bundle_lock(into):
        clean_stale(into)
        old = check_target(into)
        scratch = Path(tempfile.mkdtemp(prefix=f".{into.name}.merge-{os.getpid()}-", suffix=".tmp", dir=into.parent))
        try:
            parts = open_sources(sources, scratch, commit)
            return _merge(into, old, parts, scratch, policy, max_bytes, settings)
        finally:
            shutil.rmtree(scratch, ignore_errors=True)


@dataclass
class _Merge:
    """What the steps of one merge share: the bundle ``into`` and its old manifest, the parts
    (oldest first) and their sources, and the fits and baselines the new bundle will hold."""

    into: Path
    old: dict[str, Any] | None
    parts: list[Part]
    policy: Policy
    max_bytes: int
    settings: Settings
    now: str = field(default_factory=utc_now)
    old_src: Source | None = None
    srcs: list[Source] = field(default_factory=list)
    held: dict[str, Held] = field(default_factory=dict)
    bases: dict[str, Baselines] = field(default_factory=dict)
    contributed: dict[int, list[str]] = field(default_factory=dict)  # part index → the fits it gave

    def __post_init__(self) -> None:
        self.parts = sorted(self.parts, key=lambda p: (p.created, p.name))
        self.srcs = [Source(p.root, p.files) for p in self.parts]
        if self.old is not None:
            self.old_src = Source(self.into, {rel: e["sha256"] for rel, e in self.old["files"].items()})


def _merge(into: Path, old: dict[str, Any] | None, parts: list[Part], scratch: Path, policy: Policy | None,
           max_bytes: int, settings: Settings) -> dict[str, Any]:
    """Merge ``parts`` into the bundle ``into`` (its manifest ``old``) through ``scratch/bundle``."""
    if old is not None:
        must_pass(into, f"{into} does not pass `dip check-bundle`", f"restore it (git checkout -- {into}) before merging into it")
    m = _Merge(into, old, parts, _policy(into, old, parts, policy), max_bytes, settings)
    check_experiments(m.old_src, m.parts, m.srcs)
    m.held = _bundle_fits(old, m.old_src)
    outcome, m.contributed = _take_fits(m.held, m.parts, m.srcs, m.old_src, m.now)
    m.bases = _bundle_baselines(old, m.old_src)
    offered = _take_baselines(m.bases, m.parts, m.srcs, m.now)
    unfit = _unfit_baselines(m.held, m.bases)
    dropped = [k for k in unfit if old is not None and k in (old.get("baselines") or {})]
    new_baselines = sorted(set(offered) - set(unfit))
    changed = any(v in ("added", "replaced") for v in outcome.values()) or bool(new_baselines) or bool(dropped)
    result: dict[str, Any] = {v: sorted(k for k, o in outcome.items() if o == v) for v in ("added", "replaced", "unchanged", "older")}
    result.update(baselines_added=new_baselines, baselines_dropped=dropped, baselines_refused=sorted(set(unfit) - set(dropped)),
                  changed=changed or old is None, bundle=str(into))
    if old is not None and not changed:
        return {**result, "manifest": old}
    if not m.held:
        raise ValueError("the parts hold no fit; nothing to publish")
    new = scratch / "bundle"
    manifest = _build(m, new)
    must_pass(new, "the merged bundle would not pass `dip check-bundle`", f"{into} was not changed")
    if into.exists():
        aside = scratch.with_name(scratch.name[: -len(".tmp")] + ".old")
        os.replace(into, aside)
        os.replace(new, into)
        shutil.rmtree(aside, ignore_errors=True)
    else:
        os.replace(new, into)
    return {**result, "manifest": manifest}


def must_pass(bundle: Path, what: str, remedy: str) -> None:
    """``ValueError`` (``what (first problem and how many more); remedy``) when ``bundle`` does not
    pass :func:`~pipeline.outputs.check.check_bundle`, the one check of a bundle."""
    problems = check_bundle(bundle)
    if problems:
        more = f" and {len(problems) - 1} more" if len(problems) > 1 else ""
        raise ValueError(f"{what} ({problems[0]}{more}); {remedy}")


def _policy(into: Path, old: dict[str, Any] | None, parts: list[Part], policy: Policy | None) -> Policy:
    """The bundle's policy (``policy`` for a new one); refuses parts of another profile than the bundle's."""
    profile = old["profile"] if old else parts[0].info["profile"]
    for part in parts:
        if part.info["profile"] != profile:
            raise ValueError(f"part {part.name} holds fits of profile {part.info['profile']!r}, the bundle {into} those of {profile!r}; "
                             "a bundle holds one profile: choose another --into")
    if old is None:
        return policy or Policy()
    if policy is not None and policy != Policy.from_dict(old["policy"]):
        raise ValueError(f"{into} keeps its own policy ({old['policy']}); a policy is chosen when a bundle is created: leave it out")
    return Policy.from_dict(old["policy"])


def _unfit_baselines(held: dict[str, Held], bases: dict[str, Baselines]) -> list[str]:
    """Remove from ``bases`` the images whose baselines did not run on the inputs of the image's
    fit of its lowest seed (or that have no fit); returns them."""
    firsts: dict[str, Held] = {}
    for h in sorted(held.values(), key=lambda h: h.seed, reverse=True):
        firsts[f"{h.exp}/{h.image}"] = h
    unfit = sorted(k for k, b in bases.items() if k not in firsts or not _compatible(firsts[k].entry["inputs"], b.entry["inputs"]))
    for key in unfit:
        del bases[key]
    return unfit


def _bundle_fits(old: dict[str, Any] | None, old_src: Source | None) -> dict[str, Held]:
    """The fits the bundle holds (its manifest has passed ``check_bundle``)."""
    held: dict[str, Held] = {}
    if old is None or old_src is None:
        return held
    for fid, entry in old["fits"].items():
        exp, image, _ = fid.split("/")
        meta_rel, run_rel = str(REL.case(exp, image).meta), str(REL.fit(fid).run_json)
        meta = parse_json(old_src.read(meta_rel), meta_rel)
        run = parse_json(old_src.read(run_rel), run_rel)
        held[fid] = Held(fid, entry, old_src, parse_time(entry["part"]["created"]), tuple(meta["size"]), "metrics" in run)  # type: ignore[arg-type]
    return held


def mark_underived(tree: layout.Tree[Path], held: dict[str, Held]) -> list[str]:
    """Say in ``metrics/report.md`` which fits' scores the bundle cannot re-derive (no
    ``restored.png`` beside its ground truth: a JPEG preview or numbers only), so that a reader
    knows those are the part's word, not checked by ``dip check-bundle``; returns their ids."""
    underived = sorted(h.id for h in held.values() if h.scored and not (
        (tree.root / REL.fit(h.id).restored).is_file() and (tree.root / REL.case(h.exp, h.image).ground_truth).is_file()))
    report = tree.metric(layout.REPORT_MD)
    if underived and report.is_file():
        with open(report, "a") as fh:
            fh.write("\n## Scores this bundle cannot re-derive\n\n"
                     f"{len(underived)} fit(s) keep a JPEG preview or only their numbers, no restored.png beside its ground "
                     "truth: their PSNR and SSIM are as their part reported them (checked to be possible, not recomputed by "
                     "`dip check-bundle`): " + ", ".join(f"`{fid}`" for fid in underived) + ".\n")
    return underived


def check_experiments(old_src: Source | None, parts: list[Part], srcs: list[Source]) -> None:
    """Refuse (``ValueError``, one line) a part whose ``experiment.json`` gives an experiment other
    images or another task than the bundle (or an earlier part) does: a part adds fits to an
    experiment, it never redefines which images the experiment has ("1 of 4 images")."""
    known: dict[str, tuple[Any, Any, str]] = {}
    named = ([(old_src, "the bundle")] if old_src else []) + [(s, f"part {p.name}") for p, s in zip(parts, srcs)]
    for src, name in named:
        for exp, rel in src.experiment_records().items():
            record = parse_json(src.read(rel), rel)
            value = (record.get("task"), record.get("images"))
            if exp in known and known[exp][:2] != value:
                raise ValueError(f"{name}: {rel} gives {exp} other images or another task than {known[exp][2]}; "
                                 "a part adds fits, it never changes an experiment: refit it with the bundle's profile")
            known.setdefault(exp, (*value, name))


def _take_fits(held: dict[str, Held], parts: list[Part], srcs: list[Source], old_src: Source | None,
               now: str) -> tuple[dict[str, str], dict[int, list[str]]]:
    """Put the parts' fits into ``held`` by the merge rules; returns each fit id's outcome
    (added, replaced, unchanged, older) and, per part index, the fits it gave."""
    outcome: dict[str, str] = {}
    contributed: dict[int, list[str]] = {}
    for i, (part, src) in enumerate(zip(parts, srcs)):
        for fid, f in sorted(part.fits.items()):
            current = held.get(fid)
            if current is not None and current.entry["fit_key"] == f["fit_key"]:
                outcome.setdefault(fid, "unchanged")
                continue
            if current is not None and current.created > part.created:
                outcome.setdefault(fid, "older")
                continue
            exp, image, _ = fid.split("/")
            run = parse_json(src.read(str(REL.fit(fid).run_json)), fid)
            meta = parse_json(src.read(str(REL.case(exp, image).meta)), fid)
            entry = {"fit_key": f["fit_key"], "commit": part.info.get("commit"),
                     **{k: v or part.info["machine"].get(k) for k, v in fit_provenance(run).items()},
                     "wall_seconds": f["wall_seconds"], "iterations": f["iterations"], "part": part.ref, "merged": now,
                     "inputs": f["inputs"]}
            if current is not None and current.src is old_src:
                entry["replaces"] = {"fit_key": current.entry["fit_key"], "part": current.entry.get("part")}
            outcome[fid] = "replaced" if current is not None and outcome.get(fid) != "added" else "added"
            held[fid] = Held(fid, entry, src, part.created, tuple(meta["size"]), "metrics" in run)  # type: ignore[arg-type]
            contributed.setdefault(i, []).append(fid)
    return outcome, contributed


def _bundle_baselines(old: dict[str, Any] | None, old_src: Source | None) -> dict[str, Baselines]:
    """The baselines the bundle holds, with the scores their records carry."""
    bases: dict[str, Baselines] = {}
    for key, entry in ((old or {}).get("baselines") or {}).items():
        b = Baselines(old_src, entry)  # type: ignore[arg-type]
        exp, image = key.split("/")
        for method in entry["methods"]:
            rel = str(REL.baselines_of(exp).record(image, method))
            rec = parse_json(old_src.read(rel), rel)  # type: ignore[union-attr]
            b.scores[method] = (float(rec["psnr"]), float(rec["ssim"]))
        bases[key] = b
    return bases


def _take_baselines(bases: dict[str, Baselines], parts: list[Part], srcs: list[Source], now: str) -> list[str]:
    """Put the parts' baselines into ``bases`` (not the same results again, not older ones);
    returns the images whose baselines were taken."""
    taken: list[str] = []
    for part, src in zip(parts, srcs):
        scores = _score_baselines(part) if part.baselines else {}
        for key, entry in sorted(part.baselines.items()):
            b = Baselines(src, {"inputs": entry["inputs"], "methods": list(entry["methods"]), "commit": part.info.get("commit"),
                                "part": part.ref, "merged": now}, {m: scores[(key, m)] for m in entry["methods"]})
            current = bases.get(key)
            if current is not None and (current.entry["inputs"] == b.entry["inputs"] and current.scores == b.scores
                                        or parse_time(current.entry["part"]["created"]) > part.created):
                continue
            bases[key] = b
            taken.append(key)
    return taken


def _score_baselines(part: Part) -> dict[tuple[str, str], tuple[float, float]]:
    """PSNR/SSIM of a part's baseline PNGs against its ground truths, by the pipeline's own
    :func:`~pipeline.stages.evaluate.collect_baselines`: ``{("exp/image", method): (psnr, ssim)}``."""
    from pipeline.stages.evaluate import collect_baselines

    resolution = json.loads((part.root / PROFILE).read_text())
    exps = sorted({k.split("/")[0] for k in part.baselines})
    tree = layout.Tree(part.root)
    rows = collect_baselines(tree.baselines, tree.corrupted, exps, resolution)
    by_image = {(f"{r['experiment']}/{r['image']}", r["method"]): (float(r["psnr"]), float(r["ssim"])) for r in rows}
    return by_image


def _build(m: _Merge, new: Path) -> dict[str, Any]:
    """Write the new bundle's tree at ``new`` and its manifest; returns the manifest."""
    w = TreeWriter(new)
    experiments = _write_records(m, w)
    keep = decide(m.policy, list(m.held.values()))
    by_image: dict[str, list[Held]] = {}
    for h in sorted(m.held.values(), key=lambda h: h.id):
        by_image.setdefault(f"{h.exp}/{h.image}", []).append(h)
    for key, fits in sorted(by_image.items()):
        truth = any(keep[h.id].truth for h in fits)
        _write_case(w, key, fits, truth)
        for h in fits:
            _write_fit(w, h, keep[h.id], m.policy.jpeg_quality)
        if key in m.bases:
            _write_baselines(w, key, m.bases[key], truth)
    profile = json.loads((new / PROFILE).read_text()).get("profile")
    for exp in sorted({h.exp for h in m.held.values()}):
        mine = [h for h in m.held.values() if h.exp == exp]
        w.json(str(REL.results_of(exp).record), layout.results_experiment(exp, profile, True, [h.image for h in mine], [h.seed for h in mine]))
    resolution, order = _evaluate(m, w, sorted(set(experiments) | {h.exp for h in m.held.values()}))
    manifest = _manifest(m, w, resolution, order)
    w.json(MANIFEST, manifest)
    return manifest


def _write_records(m: _Merge, w: TreeWriter) -> list[str]:
    """``data/profile.json`` (of the newest part that gave a fit) and each experiment's
    ``experiment.json`` (of the newest source that has it); returns the experiments."""
    contributing = [m.srcs[i] for i in sorted(m.contributed)]
    profile_src = contributing[-1] if contributing else m.old_src or m.srcs[-1]
    w.write(PROFILE, profile_src.read(PROFILE))
    experiments: dict[str, Source] = {}
    for src in ([m.old_src] if m.old_src else []) + m.srcs:
        experiments.update(dict.fromkeys(src.experiment_records(), src))
    for exp, src in sorted(experiments.items()):
        rel = str(REL.corrupted_of(exp).record)
        w.write(rel, src.read(rel))
    return sorted(experiments)


def _write_case(w: TreeWriter, key: str, fits: list[Held], truth: bool) -> None:
    """The image's ``meta.json`` (and ground truth where kept) from its newest fit's source."""
    case = max(fits, key=lambda h: h.created).src
    exp, image = key.split("/")
    meta, truth_png = str(REL.case(exp, image).meta), str(REL.case(exp, image).ground_truth)
    w.write(meta, case.read(meta))
    if truth and truth_png in case.files:
        w.write(truth_png, case.read(truth_png))


def _write_fit(w: TreeWriter, h: Held, keep: Keep, jpeg_quality: int) -> None:
    """What the policy keeps of one fit: its records always; its restored image as a PNG, a JPEG
    preview or not at all; its snapshots."""
    run = h.run
    for rel in map(str, run.records):
        w.write(rel, h.src.read(rel))
    png, jpg = str(run.restored), str(run.preview)
    if keep.restored == "png" and png in h.src.files:
        w.write(png, h.src.read(png))
    elif keep.restored and png in h.src.files:
        w.write(jpg, _jpeg(h.src.read(png), jpeg_quality))
    elif keep.restored and jpg in h.src.files:  # kept as a preview before: a PNG cannot come back
        w.write(jpg, h.src.read(jpg))
    if keep.snapshots:
        for rel in h.src.under(f"{run.snapshots}/"):
            w.write(rel, h.src.read(rel))


def _write_baselines(w: TreeWriter, key: str, b: Baselines, truth: bool) -> None:
    """An image's baseline records, with the scores the merge computed, and their PNGs where the
    image keeps its ground truth."""
    exp, image = key.split("/")
    for method in b.entry["methods"]:
        rec_rel, png_rel = str(REL.baselines_of(exp).record(image, method)), str(REL.baselines_of(exp).png(image, method))
        record = parse_json(b.src.read(rec_rel), rec_rel)
        record.update(psnr=b.scores[method][0], ssim=b.scores[method][1])
        w.json(rec_rel, record)
        if truth and png_rel in b.src.files:
            w.write(png_rel, b.src.read(png_rel))


def _evaluate(m: _Merge, w: TreeWriter, known: list[str]) -> tuple[dict[str, Any], list[str]]:
    """``metrics/``: the pipeline's own evaluation of every fit (and baseline) the bundle holds;
    returns the resolution it used and the order of the experiments."""
    from pipeline.stages.evaluate import evaluate

    resolution = json.loads((w.root / PROFILE).read_text())
    resolution = {"requested": resolution.get("profile"), "device": "", "device_name": "", **resolution}
    order = [e for e in m.settings.order if e in known] + [e for e in known if e not in m.settings.order]
    tree = layout.Tree(w.root)
    try:
        evaluate(tree.results, order, resolution, tree.metrics, baselines=tree.baselines if m.bases else None, corrupted=tree.corrupted,
                 paper=m.settings.paper, epsilon=m.settings.epsilon, about=m.settings.about)
    except OSError as err:  # a full disk: name the bundle's folder being written
        raise OSError(err.errno, err.strerror, err.filename or str(tree.metrics)) from None
    mark_underived(tree, m.held)
    for p in sorted(tree.metrics.iterdir()):
        w.files[str(REL.metric(p.name))] = sha256_bytes(p.read_bytes())
    return resolution, order


def _part_log(m: _Merge) -> list[dict[str, Any]]:
    """The manifest's ``parts``: the old ones and each new part that gave a fit or baselines."""
    log = list(m.old.get("parts") or []) if m.old else []
    for i, p in enumerate(m.parts):
        ids = m.contributed.get(i, [])
        gave = sorted(k for k in p.baselines if k in m.bases and m.bases[k].entry.get("part") == p.ref)
        if ids or gave:
            log.append({**p.ref, "commit": p.info.get("commit"), "machine": p.info.get("machine"),
                        "params_sha256": p.info.get("params_sha256"), "merged": m.now, "fits": ids, "baselines": gave})
    return log


def _manifest(m: _Merge, w: TreeWriter, resolution: dict[str, Any], order: list[str]) -> dict[str, Any]:
    """The new bundle's manifest; ``ValueError`` (nothing changed) when the bundle would exceed ``max_bytes``."""
    wall: dict[str, float] = {}
    for h in m.held.values():
        wall[h.exp] = round(wall.get(h.exp, 0.0) + float(h.entry.get("wall_seconds") or 0.0), 2)
    manifest: dict[str, Any] = {
        "format": FORMAT,
        "profile": resolution.get("profile"),
        "requested": resolution.get("requested"),
        "device": resolution.get("device"),
        "device_name": resolution.get("device_name"),
        "device_names": sorted({str(h.entry["device_name"]) for h in m.held.values() if h.entry.get("device_name")}),
        "created": m.old.get("created", m.now) if m.old else m.now,
        "updated": m.now,
        "policy": {**asdict(m.policy), "png": list(m.policy.png), "galleries": list(m.policy.galleries)},
        "max_bytes": m.max_bytes,
        "experiments": order,
        "parts": _part_log(m),
        "fits": {h.id: h.entry for h in sorted(m.held.values(), key=lambda h: h.id)},
        "baselines": {k: m.bases[k].entry for k in sorted(m.bases)},
        "wall_seconds": wall,
        "total_bytes": 0,
        "files": {rel: {"bytes": (w.root / rel).stat().st_size, "sha256": w.files[rel]} for rel in sorted(w.files)},
    }
    total = sum(e["bytes"] for e in manifest["files"].values())
    for _ in range(3):  # the manifest counts itself; its length settles at once
        manifest["total_bytes"] = total + len(json.dumps(manifest, indent=2, sort_keys=True).encode()) + 1
    if manifest["total_bytes"] > m.max_bytes:
        kinds: dict[str, int] = {MANIFEST: manifest["total_bytes"] - total}
        for rel, e in manifest["files"].items():
            kinds[size_category(rel)] = kinds.get(size_category(rel), 0) + e["bytes"]
        biggest = ", ".join(f"{k} {v / 1e6:.2f} MB" for k, v in sorted(kinds.items(), key=lambda kv: -kv[1])[:3])
        over = manifest["total_bytes"] - m.max_bytes
        raise ValueError(f"the bundle would be {manifest['total_bytes'] / 1e6:.2f} MB, {over / 1e6:.2f} MB over the limit of "
                         f"{m.max_bytes / 1e6:.2f} MB (largest: {biggest}); nothing was changed: keep fewer images as PNG "
                         "(the bundle's policy, docs/publishing.md) or raise --max-mb")
    return manifest
