"""``dip publish`` / ``dip check-bundle`` (issue 13) on the smoke profile's outputs: the bundle is a
subset of docs/LAYOUT.md's tree with a manifest, its metrics match its images, and every bundle
committed under ``results-published/`` stays consistent."""

from __future__ import annotations

import csv
import json
import re
import shutil
from fnmatch import fnmatch
from pathlib import Path

import numpy as np
import pytest

from conftest import layout_doc
from pipeline import layout
from pipeline.outputs.publish import MANIFEST, check_bundle, publish

REPO = Path(__file__).resolve().parents[1]
TABLE1 = "inpaint_p50"


@pytest.fixture(scope="module")
def bundle(smoke_outputs: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The smoke outputs published with Table 1's experiment as PNG, no other experiment's PNG
    (JPEG previews) except sr_x4's first image, and the snapshots of inpaint_p50's first image."""
    image = json.loads((smoke_outputs / "results" / TABLE1 / "experiment.json").read_text())["images"][0]
    out = tmp_path_factory.mktemp("published") / "results-published" / "smoke-cpu"
    publish(smoke_outputs, out, keep_png=(TABLE1, "sr_x4"), snapshots_of=(f"{TABLE1}/{image}", "inpaint_p50/no-such-image"),
            per_experiment=0, commit="0" * 40)
    return out


def copy(bundle: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(bundle, tmp_path / "bundle"))


def manifest(bundle: Path) -> dict:
    return json.loads((bundle / MANIFEST).read_text())


def test_the_bundle_is_laid_out_as_layout_md(bundle: Path, smoke_outputs: Path) -> None:
    documented = layout_doc()["paths"]
    for name in (layout.PER_IMAGE_CSV, layout.CURVES_CSV, layout.REPORT_CSV, layout.REPORT_MD, layout.SUMMARY_JSON):
        assert (bundle / layout.METRICS / name).read_bytes() == (smoke_outputs / layout.METRICS / name).read_bytes(), name
    fits = layout.run_files(smoke_outputs / layout.RESULTS)
    assert fits and [p.relative_to(smoke_outputs) for p in fits] == [p.relative_to(bundle) for p in layout.run_files(bundle / layout.RESULTS)]
    for run_json in fits:
        rel = run_json.parent.relative_to(smoke_outputs)
        assert (bundle / rel / "run.json").read_bytes() == run_json.read_bytes() and (bundle / rel / "curve.csv").is_file()
        exp = rel.parts[1]
        png, jpg = (bundle / rel / "restored.png").is_file(), (bundle / rel / layout.PREVIEW).is_file()
        assert png != jpg, rel  # one of the two
        assert png == (exp in (TABLE1, "sr_x4")), rel
        if png and (smoke_outputs / layout.CORRUPTED / exp / rel.parts[2] / "ground_truth.png").is_file():
            assert (bundle / layout.CORRUPTED / exp / rel.parts[2] / "ground_truth.png").is_file()
            assert (bundle / layout.CORRUPTED / exp / rel.parts[2] / "meta.json").is_file()
    templates = {re.sub(r"<[^>]+>", "*", t).rstrip("?").rstrip("/") for t in documented} | {"results/*/experiment.json", "results/*/*/seed_*/restored.jpg", "manifest.json", "results/*/*/seed_*/snapshots/*",
                                                                                     "baselines/*/*/*.json"}
    for path in bundle.rglob("*"):
        if path.is_file() and path.name != ".dip-output":
            rel = path.relative_to(bundle).as_posix()
            assert any(fnmatch(rel, t.replace("<s>", "*")) for t in templates), f"{rel} is not a name of docs/LAYOUT.md"
    snaps = sorted(p.relative_to(bundle).parts[1] for p in bundle.glob("results/*/*/seed_*/snapshots/*.png"))
    assert snaps and set(snaps) == {TABLE1}



def test_the_manifest_is_complete(bundle: Path, smoke_outputs: Path) -> None:
    info = manifest(bundle)
    assert info["profile"] == "smoke" and info["device"] == "cpu" and info["device_name"]
    assert info["torch"] and "cuda" in info and info["commit"] == "0" * 40 and info["created"].endswith("Z")
    runs = [json.loads(p.read_text()) for p in layout.run_files(smoke_outputs / layout.RESULTS)]
    assert set(info["wall_seconds"]) == {r["experiment"] for r in runs}
    assert info["wall_seconds"][TABLE1] == pytest.approx(sum(r["wall_seconds"] for r in runs if r["experiment"] == TABLE1), abs=0.01)
    assert info["snapshots_missing"] == ["inpaint_p50/no-such-image"]
    files = {p.relative_to(bundle).as_posix() for p in bundle.rglob("*") if p.is_file()} - {MANIFEST, ".dip-output"}
    assert set(info["files"]) == files and all(len(e["sha256"]) == 64 for e in info["files"].values())
    assert info["total_bytes"] == sum(e["bytes"] for e in info["files"].values()) + (bundle / MANIFEST).stat().st_size


def test_the_bundle_is_consistent(bundle: Path) -> None:
    assert check_bundle(bundle) == []
    scored = list(bundle.glob("results/*/*/seed_*/restored.png"))
    assert any((bundle / layout.CORRUPTED / p.parts[-4] / p.parts[-3] / "ground_truth.png").is_file() for p in scored)


def _rewrite_manifest(bundle: Path, rel: str) -> None:
    """Give ``rel`` its new sha256 in the manifest: the tampering only the metrics check can find."""
    from pipeline.outputs.publish import sha256

    info = manifest(bundle)
    info["files"][rel]["sha256"] = sha256(bundle / rel)
    (bundle / MANIFEST).write_text(json.dumps(info))


def test_a_changed_restored_image_is_found(bundle: Path, tmp_path: Path) -> None:
    from PIL import Image

    b = copy(bundle, tmp_path)
    path = next(b.glob(f"results/{TABLE1}/*/seed_*/restored.png"))
    pixels = np.array(Image.open(path))
    pixels[: pixels.shape[0] // 2] = 255 - pixels[: pixels.shape[0] // 2]  # far more than 0.01 dB
    Image.fromarray(pixels).save(path)
    problems = check_bundle(b)
    rel = path.relative_to(b).as_posix()
    assert any(p.startswith(f"{rel}: its sha256") for p in problems)
    _rewrite_manifest(b, rel)
    assert [p for p in check_bundle(b) if p.startswith(f"{rel}: psnr recomputed")], check_bundle(b)


def test_an_edited_psnr_is_found(bundle: Path, tmp_path: Path) -> None:
    b = copy(bundle, tmp_path)
    path = b / layout.METRICS / layout.PER_IMAGE_CSV
    with open(path, newline="") as fh:
        rows = list(csv.DictReader(fh))
    row = next(r for r in rows if r["experiment"] == TABLE1 and r["method"] == "dip")
    row["psnr"] = str(float(row["psnr"]) + 0.05)
    with open(path, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    _rewrite_manifest(b, f"{layout.METRICS}/{layout.PER_IMAGE_CSV}")
    problems = check_bundle(b)
    assert len(problems) == 1 and f"results/{TABLE1}/{row['image']}/seed_{row['seed']}/restored.png: psnr" in problems[0], problems


def test_a_missing_run_json_is_found(bundle: Path, tmp_path: Path) -> None:
    b = copy(bundle, tmp_path)
    run_json = next(b.glob(f"results/{TABLE1}/*/seed_*/run.json"))
    run_json.unlink()
    rel = run_json.relative_to(b).as_posix()
    problems = check_bundle(b)
    assert f"{rel}: listed in {MANIFEST} but missing" in problems
    assert f"{rel}: missing, but {layout.PER_IMAGE_CSV} lists the fit" in problems


def test_the_size_cap_refuses_and_leaves_nothing(smoke_outputs: Path, tmp_path: Path) -> None:
    out = tmp_path / "results-published" / "big"
    with pytest.raises(ValueError, match=r"over the limit of 0\.01 MB .*drop some"):
        publish(smoke_outputs, out, max_bytes=10_000)
    assert not out.exists() and not list((tmp_path / "results-published").iterdir())


def test_baselines_only_if_they_fit(smoke_outputs: Path, bundle: Path, tmp_path: Path) -> None:
    assert manifest(bundle)["baselines"] == "included" and list(bundle.glob("baselines/*/*/*.png"))
    out = tmp_path / "b"
    info = publish(smoke_outputs, out, keep_png=(TABLE1, "sr_x4"), snapshots_of=(), per_experiment=0, max_bytes=manifest(bundle)["total_bytes"] - 1)
    assert info["baselines"].startswith("left out") and not (out / "baselines").exists() and check_bundle(out) == []


def test_a_folder_that_is_not_a_bundle_is_never_replaced(smoke_outputs: Path, bundle: Path, tmp_path: Path) -> None:
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep me")
    for force in (False, True):
        with pytest.raises(ValueError, match="not a results bundle"):
            publish(smoke_outputs, mine, force=force)
    assert [p.name for p in mine.iterdir()] == ["notes.txt"]
    with pytest.raises(ValueError, match="has no metrics/"):
        publish(mine, tmp_path / "x")
    earlier = copy(bundle, tmp_path)
    with pytest.raises(ValueError, match="pass --force"):
        publish(smoke_outputs, earlier)
    publish(smoke_outputs, earlier, force=True, per_experiment=1)
    assert manifest(earlier)["per_experiment"] == 1 and check_bundle(earlier) == []


def test_the_cli_publishes_and_checks(smoke_outputs: Path, bundle: Path, tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from pipeline.cli import app

    runner = CliRunner()
    out = tmp_path / "results-published" / "cli"
    res = runner.invoke(app, ["publish", str(smoke_outputs), "--out", str(out), "--commit", "abc", "--png", TABLE1, "--png", "sr_x4",
                              "--per-experiment", "0", "--snapshots", "sr_x4/coffee"])
    assert res.exit_code == 0, res.output
    info = manifest(out)
    assert info["commit"] == "abc" and info["png_experiments"] == [TABLE1, "sr_x4"] and info["per_experiment"] == 0
    assert info["snapshots"] + info["snapshots_missing"] == ["sr_x4/coffee"]
    assert runner.invoke(app, ["check-bundle", str(out)]).exit_code == 0
    (out / layout.METRICS / layout.REPORT_MD).write_text("changed")
    res = runner.invoke(app, ["check-bundle", str(out)])
    assert res.exit_code == 1 and "error: metrics/report.md: its sha256" in res.output
    res = runner.invoke(app, ["publish", str(smoke_outputs), "--out", str(tmp_path)])
    assert res.exit_code == 2 and res.output.count("error:") == 1


def test_every_published_bundle_is_consistent() -> None:
    """Every folder of results-published/ is a bundle that `dip check-bundle` passes (a folder that
    is not a bundle fails too; with none published yet there is nothing to check)."""
    root = REPO / layout.PUBLISHED
    for folder in sorted(p for p in root.iterdir() if p.is_dir()) if root.is_dir() else []:
        assert (folder / MANIFEST).is_file(), f"{folder} is not a bundle of `dip publish` (no {MANIFEST})"
        assert check_bundle(folder) == [], folder
