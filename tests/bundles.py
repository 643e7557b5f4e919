"""Shared pieces of the bundle tests (tests/test_publish.py, tests/test_bundle_*.py): the smoke
profile's outputs as a workspace whose fits carry a ``fit_key``, parts cut from it, and a merge
with this checkout's params.yaml and paper.yaml."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path
from typing import Any, Iterable

import pytest

from pipeline import layout
from pipeline.outputs.part_writer import write_part
from pipeline.outputs.policy import Policy
from pipeline.outputs.publish import publish

REPO = Path(__file__).resolve().parents[1]
TABLE1 = "inpaint_p50"
SMOKE_POLICY = Policy(galleries=(f"{TABLE1}/camera",))  # the smoke profile's Table 1 image is camera


def keyed_copy(smoke_outputs: Path, dest: Path) -> Path:
    """A copy of the smoke outputs whose every run.json has a ``fit_key``: the one ``dip run``
    wrote, or (a dip that does not write one yet) a stand-in over the fit's settings and case."""
    shutil.copytree(smoke_outputs, dest)
    for path in layout.run_files(dest / layout.RESULTS):
        run = json.loads(path.read_text())
        if "fit_key" not in run:
            run["fit_key"] = hashlib.sha256(json.dumps([run["net"], run["fit"], run["experiment"], run["image"]], sort_keys=True).encode()).hexdigest()
            path.write_text(json.dumps(run, indent=2, sort_keys=True) + "\n")
    return dest


def fit_ids(workspace: Path) -> list[str]:
    return sorted("/".join(p.parent.relative_to(workspace / layout.RESULTS).parts) for p in layout.run_files(workspace / layout.RESULTS))


def part(workspace: Path, out: Path, fits: Iterable[str] | None = None, **options: Any) -> Path:
    write_part(workspace, out, fits=fits, **options)
    return out


def merge(sources: list[Path], bundle: Path, **options: Any) -> dict[str, Any]:
    """:func:`publish` with this checkout's params.yaml and paper.yaml (and the smoke policy)."""
    options.setdefault("policy", SMOKE_POLICY)
    return publish(sources, bundle, params=REPO / "params.yaml", paper=REPO / "data" / "paper.yaml", **options)


def files(bundle: Path) -> dict[str, bytes]:
    """Every file of a bundle but its manifest: ``{relative path: bytes}``."""
    return {p.relative_to(bundle).as_posix(): p.read_bytes() for p in sorted(bundle.rglob("*")) if p.is_file() and p.name != layout.BUNDLE_MANIFEST}


def manifest(bundle: Path) -> dict[str, Any]:
    return json.loads((bundle / layout.BUNDLE_MANIFEST).read_text())


def rewrite_manifest(bundle: Path, change: Any) -> None:
    """Apply ``change(manifest)`` and write the manifest back (the tampering a forger would do)."""
    info = manifest(bundle)
    change(info)
    (bundle / layout.BUNDLE_MANIFEST).write_text(json.dumps(info))


@pytest.fixture(scope="session")
def workspace(smoke_outputs: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The smoke outputs with a ``fit_key`` in every run.json (tests must not modify it)."""
    return keyed_copy(smoke_outputs, tmp_path_factory.mktemp("keyed") / "workspace")


@pytest.fixture(scope="session")
def parts(workspace: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Parts of the workspace: ``all`` its fits, and ``first`` / ``second``, a run cut by its
    budget after Table 1 and two more fits, and the run that finished the rest."""
    root = tmp_path_factory.mktemp("parts")
    ids = fit_ids(workspace)
    first = [i for i in ids if i.startswith(TABLE1 + "/")] + [i for i in ids if not i.startswith(TABLE1 + "/")][:2]
    return {"all": part(workspace, root / "all"), "first": part(workspace, root / "first", first),
            "second": part(workspace, root / "second", [i for i in ids if i not in first])}


@pytest.fixture(scope="session")
def bundle(parts: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The whole smoke run published into a new bundle (tests copy it before changing it)."""
    out = tmp_path_factory.mktemp("published") / layout.PUBLISHED / "smoke-cpu"
    merge([parts["all"]], out)
    return out
