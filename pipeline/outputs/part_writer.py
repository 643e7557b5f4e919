"""The one writer of parts (their format, and the reader that verifies them:
:mod:`pipeline.outputs.parts`; docs/gpu-run.md) and of a bundle's files (:class:`TreeWriter`,
used by :mod:`pipeline.outputs.publish`).

* :func:`write_part` writes a workspace's fits as a part folder (``dip publish WORKSPACE``);
  :func:`assemble` any folder part (``dip publish-baselines``' too).
* :class:`PartWriter` (``dip publish-run``) keeps at most ``max_parts`` tarballs of at most
  ``limit`` bytes in one folder and puts each finished fit into the first one with room. A fit
  never moves to another part, so rewriting one tarball (atomically: a temporary file, then a
  rename) after each fit can lose at most the fit being added. A fit too large for every part
  goes in with what a part must hold of it only (run.json, curve.csv, restored.png, meta.json,
  ground_truth.png: no final.png, no snapshots), else in none; :meth:`PartWriter.add` says which.
"""

from __future__ import annotations

import io
import json
import shutil
import subprocess
import tarfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

from pipeline import layout
from pipeline.files import MARKER, atomic_path  # MARKER: atomic_directory's, not part of a case or a run
from pipeline.outputs.parts import PART_FORMAT, PART_JSON, PROFILE, REL, fit_provenance, utc_now
from pipeline.outputs.safe import Unsafe, parse_json, regular_file, sha256_bytes
from pipeline.settings import PROFILE_FILE

FILE_COST = 1536  # bytes a file costs beyond its content: tar header and padding, its line in part.json
KEPT = ("all", "essentials")  # essentials: what every part must hold of a fit (the bundle's reader checks it)


class TreeWriter:
    """New files below ``root``, each written once (never over another file) with its sha256
    recorded in ``files``; a write error names the file being written (a full disk), not its source."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.files: dict[str, str] = {}

    def write(self, rel: str, data: bytes) -> None:
        dest = self.root / rel
        try:
            dest.parent.mkdir(parents=True, exist_ok=True)
            with open(dest, "xb") as fh:
                fh.write(data)
        except OSError as err:
            raise OSError(err.errno, err.strerror, str(dest)) from None
        self.files[rel] = sha256_bytes(data)

    def json(self, rel: str, value: Any) -> None:
        self.write(rel, (json.dumps(value, indent=2, sort_keys=True) + "\n").encode())


def part_json(header: dict[str, Any], files: dict[str, str]) -> dict[str, Any]:
    """A part's ``part.json``: its format and time of writing, ``header`` (commit, machine, profile,
    params_sha256, experiments, fits, …), ``files`` (path → sha256)."""
    return {"format": PART_FORMAT, "created": utc_now(), **header, "files": files}


def case_inputs(case_dir: Path) -> dict[str, str]:
    """sha256 of every file of a corrupted case folder (its marker excepted), as fitted: the
    baselines can prove they use the same."""
    return {p.name: sha256_bytes(p.read_bytes()) for p in sorted(Path(case_dir).iterdir())
            if p.is_file() and not p.is_symlink() and p.name != MARKER}


@dataclass
class FinishedFit:
    """A finished fit of the work folder, as a part lists it."""

    id: str  # <exp>/<image>/seed_<s>
    exp: str
    image: str
    fit_key: str
    wall_seconds: float
    iterations: int
    case_dir: Path  # data/corrupted/<exp>/<image>
    run_dir: Path  # results/<exp>/<image>/seed_<s>
    snapshots: bool  # carry snapshots/ (gallery images and figures)

    def entry(self) -> dict[str, Any]:
        """The fit's entry in ``part.json`` ``fits``."""
        return {"fit_key": self.fit_key, "wall_seconds": self.wall_seconds, "iterations": self.iterations,
                "inputs": case_inputs(self.case_dir)}


def fit_files(fit: FinishedFit, kept: str) -> dict[str, Path]:
    """``{path in the part: source file}`` of one fit at the level ``kept`` (:data:`KEPT`)."""
    case, part_case = layout.CaseDir(fit.case_dir), REL.case(fit.exp, fit.image)
    run, part_run = layout.RunDir(fit.run_dir), REL.fit(fit.id)
    files = {str(part_case.meta): case.meta}
    if case.ground_truth.is_file():
        files[str(part_case.ground_truth)] = case.ground_truth
    for src in (*run.records, run.restored) + ((run.final,) if kept == "all" else ()):
        if src.is_file():
            files[str(part_run.path / src.name)] = src
    if kept == "all" and fit.snapshots:
        for _, snap in run.snapshot_files():
            files[str(part_run.snapshots / snap.name)] = snap
    return files


# ------------------------------------------------------------------------------ a folder part
def assemble(out: Path, header: dict[str, Any], sources: dict[str, Path]) -> dict[str, Any]:
    """Write a part to the new folder ``out``: each ``sources`` file at its relative path, then
    ``part.json`` (:func:`part_json` of ``header``), built beside ``out`` and moved into place
    when complete. Returns the ``part.json`` written. A write error names the part's file."""
    out = Path(out)
    if out.exists() or out.is_symlink():
        raise FileExistsError(f"{out} exists; a part is written to a new folder")
    tmp = out.with_name(f".{out.name}.part-tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    writer = TreeWriter(tmp)
    try:
        for rel, src in sorted(sources.items()):
            writer.write(rel, Path(src).read_bytes())
        info = part_json(header, dict(writer.files))
        writer.json(PART_JSON, info)
        tmp.rename(out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return info


def git_commit(folder: Path) -> str | None:
    """``git rev-parse HEAD`` when ``folder`` is the top of a git checkout, else ``None``."""
    try:
        top = subprocess.run(["git", "-C", str(folder), "rev-parse", "--show-toplevel"], capture_output=True, text=True, timeout=30)
        if top.returncode != 0 or Path(top.stdout.strip()).resolve() != Path(folder).resolve():
            return None
        head = subprocess.run(["git", "-C", str(folder), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.SubprocessError):
        return None
    return (head.stdout.strip() or None) if head.returncode == 0 else None


def is_workspace(path: Path) -> bool:
    """A results root of ``dvc repro`` / ``dip run``: ``results/`` and ``data/corrupted/``."""
    return (Path(path) / layout.RESULTS).is_dir() and (Path(path) / layout.CORRUPTED).is_dir()


def _mapping(workspace: Path, rel: str, remedy: str) -> dict[str, Any]:
    """The JSON mapping ``workspace/rel``; ``ValueError`` naming the file otherwise."""
    try:
        value = parse_json((workspace / rel).read_bytes(), f"{workspace}/{rel}")
    except Unsafe as err:
        raise ValueError(f"{err}; run `{remedy}` again") from None
    if not isinstance(value, dict):
        raise ValueError(f"{workspace}/{rel}: a JSON {type(value).__name__}, not a mapping; run `{remedy}` again")
    return value


def write_part(
    workspace: Path,
    out: Path,
    *,
    fits: Iterable[str] | None = None,
    snapshots: bool = True,
    baselines: bool = True,
    commit: str | None = None,
    hostname: str | None = None,
) -> dict[str, Any]:
    """Write the part of ``workspace``'s fits (all, or the ids ``fits``) to the new folder ``out``
    and return its ``part.json``. Snapshots and ``final.png`` come along with ``snapshots``, the
    workspace's classical baselines of those images with ``baselines``. ``commit`` defaults to
    the workspace's git HEAD when it is the top of a checkout.

    ``ValueError`` (one line) for a workspace without fits, an unknown fit id, or a run.json
    without ``fit_key`` (fitted by a dip that did not record it: run ``dip run`` again)."""
    workspace = Path(workspace)
    profile, experiments, held = _read_workspace(workspace)
    wanted = _wanted(workspace, held, fits)
    tree = layout.Tree(workspace)
    sources: dict[str, Path] = {PROFILE: workspace / PROFILE_FILE}
    sources.update({str(REL.corrupted_of(e).record): tree.corrupted_of(e).record for e in experiments})
    part_fits: dict[str, dict[str, Any]] = {}
    part_baselines: dict[str, dict[str, Any]] = {}
    machine: dict[str, Any] = {}
    for fid in wanted:
        fit, run = _finished(workspace, fid, held[fid], snapshots)
        machine = machine or {**fit_provenance(run), "hostname": hostname}
        part_fits[fid] = fit.entry()
        sources.update(fit_files(fit, KEPT[0] if snapshots else KEPT[1]))
        if baselines:
            part_baselines.update(_baseline_files(tree, fit, part_fits[fid]["inputs"], sources))
    _own_files(workspace, sources)
    params = workspace / "params.yaml"
    return assemble(out, {
        "commit": commit or git_commit(workspace), "machine": machine, "profile": profile,
        "params_sha256": sha256_bytes(params.read_bytes()) if params.is_file() else None,
        "experiments": experiments, "fits": part_fits, "baselines": part_baselines,
    }, sources)


def _read_workspace(workspace: Path) -> tuple[str, dict[str, dict[str, Any]], dict[str, layout.RunDir[Path]]]:
    """The workspace's profile, its active experiments (task, images) and their finished fits."""
    if not is_workspace(workspace):
        raise ValueError(f"{workspace}: not a workspace (no {layout.RESULTS}/ and {layout.CORRUPTED}/); give a workspace after `dip run`, a part or a folder of parts")
    tree = layout.Tree(workspace)
    resolution = _mapping(workspace, PROFILE, "dip profile")
    if not isinstance(resolution.get("profile"), str):
        raise ValueError(f"{workspace / PROFILE}: no profile; run `dip profile`")
    experiments: dict[str, dict[str, Any]] = {}
    for record in sorted(tree.corrupted.glob(f"*/{layout.EXPERIMENT_JSON}")):
        info = _mapping(workspace, record.relative_to(workspace).as_posix(), "dip corrupt")
        if info.get("active", True) is not False:
            experiments[record.parent.name] = {"task": str(info.get("task")), "images": [str(i) for i in info.get("images") or []]}
    held = {run.id: run.dir for run in layout.find_runs(tree.results) if run.experiment in experiments}
    return resolution["profile"], experiments, held


def _wanted(workspace: Path, held: dict[str, Any], fits: Iterable[str] | None) -> list[str]:
    wanted = list(held) if fits is None else list(fits)
    missing = [fid for fid in wanted if fid not in held]
    if missing:
        raise ValueError(f"{workspace}: no finished fit {missing[0]} ({REL.fit(missing[0]).run_json})" + (f" and {len(missing) - 1} more" if len(missing) > 1 else ""))
    if not wanted:
        raise ValueError(f"{workspace}: no finished fit under {layout.RESULTS}/; nothing to publish")
    return wanted


def _finished(workspace: Path, fid: str, run_dir: layout.RunDir[Path], snapshots: bool) -> tuple[FinishedFit, dict[str, Any]]:
    """The workspace's fit ``fid`` and its run.json (which must hold the fit's key)."""
    exp, image, _ = fid.split("/")
    run = _mapping(workspace, str(REL.fit(fid).run_json), f"dip run {exp}")
    if not isinstance(run.get("fit_key"), str):
        raise ValueError(f"{run_dir.run_json}: no fit_key (fitted by an older dip); run `dip run {exp}` again to refit it")
    fit = FinishedFit(fid, exp, image, run["fit_key"], float(run.get("wall_seconds") or 0.0), int(run.get("iterations_run") or 0),
                      layout.Tree(workspace).case(exp, image).path, run_dir.path, snapshots)
    return fit, run


def _baseline_files(tree: layout.Tree[Path], fit: FinishedFit, inputs: dict[str, str], sources: dict[str, Path]) -> dict[str, dict[str, Any]]:
    """Add the workspace's baselines of ``fit``'s image to ``sources`` (those with their PNG, where
    the image has its ground truth); returns their ``part.json`` ``baselines`` entry."""
    mine = tree.baselines_of(fit.exp)
    records = sorted(r for r in (mine.path / fit.image).glob("*.json") if r.with_suffix(".png").is_file())
    if not records or not tree.case(fit.exp, fit.image).ground_truth.is_file():
        return {}
    for record in records:
        sources[str(REL.baselines_of(fit.exp).record(fit.image, record.stem))] = record
        sources[str(REL.baselines_of(fit.exp).png(fit.image, record.stem))] = mine.png(fit.image, record.stem)
    return {f"{fit.exp}/{fit.image}": {"inputs": inputs, "methods": [r.stem for r in records]}}


def _own_files(workspace: Path, sources: dict[str, Path]) -> None:
    """A results folder linked from elsewhere is never published."""
    for src in sources.values():
        try:
            regular_file(workspace, src.relative_to(workspace).as_posix())
        except Unsafe as err:
            raise ValueError(f"{workspace}: {err}; a part holds only the workspace's own files: copy them in instead of linking") from None


# ------------------------------------------------------------------ the tarballs of a publishing run
@dataclass
class _Tarball:
    name: str  # file stem and the folder inside the tarball
    files: dict[str, Path] = field(default_factory=dict)
    fits: dict[str, dict[str, Any]] = field(default_factory=dict)
    size: int = 0  # estimated bytes of the tarball


class PartWriter:
    """Up to ``max_parts`` part tarballs ``<out>/<stamp>-<k>.tar.gz`` of at most ``limit`` bytes.

    ``header`` holds part.json's run-wide fields (commit, machine, profile, params_sha256,
    experiments, …); ``common`` the files every part carries (``{path in the part: source}``).
    """

    def __init__(self, out: Path, stamp: str, header: dict[str, Any], common: dict[str, Path], limit: int, max_parts: int = 4) -> None:
        self.out, self.stamp, self.header, self.common = Path(out), stamp, header, common
        self.limit, self.max_parts = limit, max_parts
        self.parts: list[_Tarball] = []
        self._sha: dict[Path, str] = {}
        self.base = sum(p.stat().st_size + FILE_COST for p in common.values()) + len(json.dumps(header)) + 4096

    def _cost(self, part: _Tarball | None, files: dict[str, Path]) -> int:
        new = {rel: src for rel, src in files.items() if part is None or rel not in part.files}
        return sum(src.stat().st_size + FILE_COST for src in new.values()) + 512

    def add(self, fit: FinishedFit) -> dict[str, Any]:
        """Put ``fit`` into the first part with room and rewrite that tarball; returns
        ``{"part": file name, "kept": all | essentials, "bytes", "seconds"}``, or
        ``{"part": None, ...}`` when not even its essentials fit in any part."""
        started = time.perf_counter()
        for kept in KEPT:
            files = fit_files(fit, kept)
            for part in self.parts + ([None] if len(self.parts) < self.max_parts else []):  # type: ignore[list-item]
                size = (part.size if part is not None else self.base) + self._cost(part, files)
                if size <= self.limit:
                    if part is None:
                        part = _Tarball(f"{self.stamp}-{len(self.parts) + 1}", size=self.base)
                        self.parts.append(part)
                    part.size = size
                    part.files.update(files)
                    part.fits[fit.id] = fit.entry()
                    written = self._write(part)
                    return {"part": f"{part.name}.tar.gz", "kept": kept, "bytes": written, "seconds": round(time.perf_counter() - started, 3)}
        return {"part": None, "kept": None, "bytes": 0, "seconds": round(time.perf_counter() - started, 3)}

    def _digest(self, path: Path) -> str:
        if path not in self._sha:
            self._sha[path] = sha256_bytes(path.read_bytes())
        return self._sha[path]

    def _write(self, part: _Tarball) -> int:
        """Write ``part`` as ``<out>/<name>.tar.gz`` atomically; returns its size in bytes."""
        files = {**self.common, **part.files}
        info = part_json({**self.header, "fits": part.fits}, {rel: self._digest(src) for rel, src in sorted(files.items())})
        target = self.out / f"{part.name}.tar.gz"
        with atomic_path(target) as tmp, tarfile.open(tmp, "w:gz", compresslevel=6, format=tarfile.PAX_FORMAT) as tar:
            blob = (json.dumps(info, indent=1, sort_keys=True) + "\n").encode()
            _add(tar, f"{part.name}/{PART_JSON}", io.BytesIO(blob), len(blob))
            for rel, src in sorted(files.items()):
                with open(src, "rb") as fh:
                    _add(tar, f"{part.name}/{rel}", fh, src.stat().st_size)
        return target.stat().st_size


def _add(tar: tarfile.TarFile, name: str, fh: Any, size: int) -> None:
    """A plain file member: no owner, no links, mode 0644."""
    member = tarfile.TarInfo(name)
    member.size, member.mode, member.mtime = size, 0o644, int(time.time())
    tar.addfile(member, fh)
