"""``dip publish-baselines``: the classical baselines of a bundle's images, run here on the cases
made again by the pipeline's own fetch and corrupt, only when every input is byte for byte the
one the fit recorded; they give the numbers the workspace's own baselines stage gave."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from bundles import REPO, TABLE1, files, manifest, merge, part, rewrite_manifest
from bundles import bundle, workspace  # noqa: F401 - the shared fixtures
from pipeline import layout
from pipeline.cli import app
from pipeline.outputs.bundle_baselines import add_baselines
from pipeline.outputs.check import check_bundle

EXPERIMENTS = [TABLE1, "sr_x4"]  # scikit-image's own images in the smoke profile (no mirror, no network); BM3D is slow


@pytest.fixture(scope="module")
def without_baselines(workspace: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A bundle of the smoke run as a GPU run returns it: fits, no baselines."""
    root = tmp_path_factory.mktemp("nobase")
    out = root / layout.PUBLISHED / "gpu"
    merge([part(workspace, root / "part", baselines=False)], out)
    assert not manifest(out)["baselines"]
    return out


def rows(bundle: Path) -> dict[tuple[str, str, str], tuple[str, str]]:
    with open(bundle / layout.METRICS / layout.PER_IMAGE_CSV, newline="") as fh:
        return {(r["experiment"], r["image"], r["method"]): (r["psnr"], r["ssim"]) for r in csv.DictReader(fh) if r["seed"] == ""}


def test_the_baselines_run_on_the_bundles_own_inputs(without_baselines: Path, workspace: Path, tmp_path: Path) -> None:
    b = Path(shutil.copytree(without_baselines, tmp_path / layout.PUBLISHED / "b"))
    res = CliRunner().invoke(app, ["publish-baselines", str(b), *[a for e in EXPERIMENTS for a in ("--experiment", e)],
                                   "--params", str(REPO / "params.yaml"), "--manifest", str(REPO / "data" / "manifest.yaml"),
                                   "--paper", str(REPO / "data" / "paper.yaml")])
    assert res.exit_code == 0, res.output
    assert "baselines of 2 image(s) added; metrics rebuilt" in res.output
    got, expected = rows(b), {k: v for k, v in rows(workspace).items() if k[0] in EXPERIMENTS}
    assert got == expected and len(got) == 3  # biharmonic; bicubic, Lanczos: the same numbers as the workspace's stage
    info = manifest(b)
    assert set(info["baselines"]) == {f"{TABLE1}/camera", "sr_x4/coffee"}
    for key, entry in info["baselines"].items():
        assert entry["inputs"] == info["fits"][f"{key}/seed_0"]["inputs"] and entry["part"]["name"] == "baselines-part"
    assert (b / layout.BASELINES / TABLE1 / "camera" / "biharmonic.png").is_file()  # Table 1 keeps its PNGs
    assert json.loads((b / layout.BASELINES / TABLE1 / "camera" / "biharmonic.json").read_text())["psnr"] == float(expected[(TABLE1, "camera", "biharmonic")][0])
    assert check_bundle(b) == []
    again = add_baselines(b, params=REPO / "params.yaml", images_manifest=REPO / "data" / "manifest.yaml", paper=REPO / "data" / "paper.yaml",
                          experiments=EXPERIMENTS)
    assert again["ran"] == []  # nothing left to run


def test_inputs_that_differ_from_the_fits_are_refused(without_baselines: Path, tmp_path: Path) -> None:
    b = Path(shutil.copytree(without_baselines, tmp_path / layout.PUBLISHED / "b"))
    rewrite_manifest(b, lambda m: m["fits"][f"{TABLE1}/camera/seed_0"]["inputs"].update({"observation.npy": "0" * 64}))
    before = files(b)
    with pytest.raises(ValueError, match=rf"^{TABLE1}/camera: observation\.npy made here differs from the one its fit used .* nothing was added$"):
        add_baselines(b, params=REPO / "params.yaml", images_manifest=REPO / "data" / "manifest.yaml", paper=REPO / "data" / "paper.yaml",
                      experiments=[TABLE1])
    assert files(b) == before and not manifest(b)["baselines"]
