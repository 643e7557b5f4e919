"""The parts a publishing run returns (``dip publish-run``): self-describing, mergeable by any checkout.

A part is one folder, returned as a ``.tar.gz`` of it (docs/gpu-run.md)::

    <part>/part.json        format, created, commit, machine, profile, params_sha256, experiments,
                            fits {<exp>/<image>/seed_<s>: fit_key, wall_seconds, iterations, inputs},
                            files {<relative path>: sha256} (every other file of the part)
    <part>/data/profile.json
    <part>/data/corrupted/<exp>/experiment.json            every experiment of the profile
    <part>/data/corrupted/<exp>/<image>/meta.json, ground_truth.png   each image with a fit here
    <part>/results/<exp>/<image>/seed_<s>/run.json, curve.csv, restored.png, final.png?, snapshots/

:class:`PartWriter` keeps at most ``max_parts`` tarballs of at most ``limit`` bytes in one folder
and puts each finished fit into the first one with room. A fit never moves to another part, so
rewriting one tarball (atomically: a temporary file, then a rename) after each fit can lose at
most the fit being added. A fit too large for every part goes in with what a part must hold
of it only (run.json, curve.csv, restored.png, meta.json, ground_truth.png: no final.png, no
snapshots), else in none; :meth:`PartWriter.add` says which.
"""

from __future__ import annotations

import io
import json
import tarfile
import time
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from pipeline.files import MARKER, atomic_path  # MARKER: atomic_directory's, not part of a case or a run
from pipeline import layout
from pipeline.images.manifest import sha256_bytes

PART_FORMAT = "dip-results-part/1"
PART_JSON = layout.PART_JSON
REL = layout.Tree(PurePosixPath())  # the names of the files inside a part
FILE_COST = 1536  # bytes a file costs beyond its content: tar header and padding, its line in part.json
KEPT = ("all", "essentials")  # essentials: what every part must hold of a fit (the bundle's reader checks it)


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


def case_inputs(case_dir: Path) -> dict[str, str]:
    """sha256 of every file of a case folder, as fitted: the baselines can prove they use the same."""
    return {p.name: sha256_bytes(p.read_bytes()) for p in sorted(Path(case_dir).iterdir()) if p.is_file() and p.name != MARKER}


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


@dataclass
class _Part:
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
        self.parts: list[_Part] = []
        self._sha: dict[Path, str] = {}
        self.base = sum(p.stat().st_size + FILE_COST for p in common.values()) + len(json.dumps(header)) + 4096

    def _cost(self, part: _Part | None, files: dict[str, Path]) -> int:
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
                        part = _Part(f"{self.stamp}-{len(self.parts) + 1}", size=self.base)
                        self.parts.append(part)
                    part.size = size
                    part.files.update(files)
                    part.fits[fit.id] = {"fit_key": fit.fit_key, "wall_seconds": fit.wall_seconds, "iterations": fit.iterations,
                                         "inputs": case_inputs(fit.case_dir)}
                    written = self._write(part)
                    return {"part": f"{part.name}.tar.gz", "kept": kept, "bytes": written, "seconds": round(time.perf_counter() - started, 3)}
        return {"part": None, "kept": None, "bytes": 0, "seconds": round(time.perf_counter() - started, 3)}

    def _digest(self, path: Path) -> str:
        if path not in self._sha:
            self._sha[path] = sha256_bytes(path.read_bytes())
        return self._sha[path]

    def _write(self, part: _Part) -> int:
        """Write ``part`` as ``<out>/<name>.tar.gz`` atomically; returns its size in bytes."""
        files = {**self.common, **part.files}
        info = {"format": PART_FORMAT, "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), **self.header,
                "fits": part.fits, "files": {rel: self._digest(src) for rel, src in sorted(files.items())}}
        target = self.out / f"{part.name}.tar.gz"
        with atomic_path(target) as tmp:
            with tarfile.open(tmp, "w:gz", compresslevel=6, format=tarfile.PAX_FORMAT) as tar:
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
