"""``dip publish`` / ``dip check-bundle`` on the smoke profile's outputs: the bundle is a subset of
docs/LAYOUT.md's tree with a per-fit manifest, its metrics are the pipeline's own evaluation of
its fits, ``check-bundle`` finds what was changed, and every bundle committed under
``results-published/`` stays consistent."""

from __future__ import annotations

import csv
import json
import re
import shutil
from fnmatch import fnmatch
from pathlib import Path

import numpy as np
import pytest

from bundles import REPO, TABLE1, files, manifest, merge, rewrite_manifest
from bundles import bundle, parts, workspace  # noqa: F401 - the shared fixtures
from conftest import layout_doc
from pipeline import layout
from pipeline.outputs.check import check_bundle
from pipeline.outputs.part_writer import case_inputs
from pipeline.outputs.policy import is_figure
from pipeline.outputs.publish import MANIFEST
from pipeline.outputs.safe import sha256_bytes


def copy(bundle: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(bundle, tmp_path / layout.PUBLISHED / "bundle"))


def test_the_bundle_is_laid_out_as_layout_md(bundle: Path, workspace: Path) -> None:
    for name in (layout.PER_IMAGE_CSV, layout.CURVES_CSV, layout.REPORT_CSV, layout.SUMMARY_JSON):
        assert (bundle / layout.METRICS / name).read_bytes() == (workspace / layout.METRICS / name).read_bytes(), name
    # report.md: the workspace's, and then which scores the bundle cannot re-derive from its images
    assert (bundle / layout.METRICS / layout.REPORT_MD).read_text().startswith((workspace / layout.METRICS / layout.REPORT_MD).read_text())
    fits = layout.run_files(workspace / layout.RESULTS)
    assert fits and [p.relative_to(workspace) for p in fits] == [p.relative_to(bundle) for p in layout.run_files(bundle / layout.RESULTS)]
    for run_json in fits:
        rel = run_json.parent.relative_to(workspace)
        assert (bundle / rel / "run.json").read_bytes() == run_json.read_bytes() and (bundle / rel / "curve.csv").is_file()
        exp, image = rel.parts[1], rel.parts[2]
        png, jpg = (bundle / rel / "restored.png").is_file(), (bundle / rel / layout.PREVIEW).is_file()
        assert png != jpg, rel  # one of the two
        assert png == (not is_figure(exp)), rel  # Table 1 and one image of every other experiment (smoke: its only one); figures: JPEG
        assert (bundle / layout.CORRUPTED / exp / image / "ground_truth.png").is_file() == png, rel
        assert (bundle / layout.CORRUPTED / exp / image / "meta.json").is_file()
    templates = {re.sub(r"<[^>]+>", "*", t).rstrip("?").rstrip("/") for t in layout_doc()["paths"]} | {
        "results/*/experiment.json", "results/*/*/seed_*/restored.jpg", "manifest.json", "results/*/*/seed_*/snapshots/*", "baselines/*/*/*.json"}
    for rel in files(bundle):
        assert any(fnmatch(rel, t) for t in templates), f"{rel} is not a name of docs/LAYOUT.md"
    snaps = {p.relative_to(bundle).parts[1:3] for p in bundle.glob("results/*/*/seed_*/snapshots/*.png")}
    assert snaps == {(TABLE1, "camera")}
    every = {p.parent.name for p in (workspace / layout.CORRUPTED).glob("*/experiment.json")
             if json.loads(p.read_text()).get("active") is not False}
    assert {p.parent.name for p in (bundle / layout.CORRUPTED).glob("*/experiment.json")} == every  # n images and pending ones


def test_the_manifest_records_each_fit(bundle: Path, workspace: Path) -> None:
    info = manifest(bundle)
    assert info["profile"] == "smoke" and info["device"] == "cpu" and info["created"].endswith("Z") and info["policy"]["png"] == [TABLE1]
    runs = {"/".join(p.parent.relative_to(workspace / layout.RESULTS).parts): json.loads(p.read_text())
            for p in layout.run_files(workspace / layout.RESULTS)}
    assert set(info["fits"]) == set(runs)
    for fid, entry in info["fits"].items():
        run = runs[fid]
        assert set(entry) >= {"fit_key", "commit", "device", "device_name", "torch", "cuda", "wall_seconds", "iterations", "part", "merged", "inputs"}
        assert entry["fit_key"] == run["fit_key"] and entry["wall_seconds"] == run["wall_seconds"] and entry["iterations"] == run["iterations_run"]
        assert entry["device"] == "cpu" and entry["torch"] == run["versions"]["torch"] and entry["cuda"] is None
        assert entry["part"]["name"] == "all" and entry["part"]["created"].endswith("Z")
        exp, image, _ = fid.split("/")
        assert entry["inputs"] == case_inputs(workspace / layout.CORRUPTED / exp / image) and "observation.npy" in entry["inputs"]
    present = set(files(bundle)) | {MANIFEST}
    assert set(info["files"]) | {MANIFEST} == present and all(sha256_bytes((bundle / r).read_bytes()) == e["sha256"] for r, e in info["files"].items())
    assert info["total_bytes"] == sum(e["bytes"] for e in info["files"].values()) + (bundle / MANIFEST).stat().st_size
    assert info["baselines"] and all(set(b["methods"]) and b["inputs"] for b in info["baselines"].values())


def test_the_bundle_is_consistent(bundle: Path) -> None:
    assert check_bundle(bundle) == []
    scored = [p for p in bundle.glob("results/*/*/seed_*/restored.png") if (bundle / layout.CORRUPTED / p.parts[-4] / p.parts[-3] / "ground_truth.png").is_file()]
    assert len(scored) >= 3 and list(bundle.glob("baselines/*/*/*.png"))


def _reprint(bundle: Path, rel: str) -> None:
    """Give ``rel`` its new sha256 in the manifest: the tampering only the metrics check can find."""
    rewrite_manifest(bundle, lambda m: m["files"][rel].update(sha256=sha256_bytes((bundle / rel).read_bytes()), bytes=(bundle / rel).stat().st_size))


def test_a_changed_restored_image_is_found(bundle: Path, tmp_path: Path) -> None:
    from PIL import Image

    b = copy(bundle, tmp_path)
    path = next(b.glob(f"results/{TABLE1}/*/seed_*/restored.png"))
    pixels = np.array(Image.open(path))
    pixels[: pixels.shape[0] // 2] = 255 - pixels[: pixels.shape[0] // 2]  # far more than 0.01 dB
    Image.fromarray(pixels).save(path)
    rel = path.relative_to(b).as_posix()
    assert any(p.startswith(f"{rel}: its sha256") for p in check_bundle(b))
    _reprint(b, rel)
    assert [p for p in check_bundle(b) if p.startswith(f"{rel}: psnr recomputed")], check_bundle(b)


def test_an_edited_psnr_is_found(bundle: Path, tmp_path: Path) -> None:
    b = copy(bundle, tmp_path)
    path = b / layout.METRICS / layout.PER_IMAGE_CSV
    with open(path, newline="") as fh:
        rows = list(csv.DictReader(fh))
    row = next(r for r in rows if r["experiment"] == "fig7_text" and r["method"] == "dip")  # a JPEG preview: only run.json can tell
    row["psnr"] = str(float(row["psnr"]) + 0.05)
    with open(path, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    _reprint(b, f"{layout.METRICS}/{layout.PER_IMAGE_CSV}")
    problems = check_bundle(b)
    assert len(problems) == 1 and problems[0].startswith(f"results/fig7_text/{row['image']}/seed_{row['seed']}/run.json metrics.restored: psnr"), problems


def test_a_missing_run_json_is_found(bundle: Path, tmp_path: Path) -> None:
    b = copy(bundle, tmp_path)
    run_json = next(b.glob(f"results/{TABLE1}/*/seed_*/run.json"))
    run_json.unlink()
    rel = run_json.relative_to(b).as_posix()
    problems = check_bundle(b)
    assert f"{rel}: listed in {MANIFEST} but missing" in problems
    assert f"{rel}: missing, but {layout.PER_IMAGE_CSV} lists the fit" not in problems  # its manifest entry says so first
    fid = rel.removeprefix("results/").removesuffix("/run.json")
    assert f"{MANIFEST}: fits.{fid} has no readable {rel}" in problems, problems


def test_a_fit_whose_manifest_entry_is_missing_is_found(bundle: Path, tmp_path: Path) -> None:
    b = copy(bundle, tmp_path)
    fid = next(k for k in manifest(b)["fits"] if k.startswith(TABLE1 + "/"))
    rewrite_manifest(b, lambda m: m["fits"].pop(fid))
    problems = check_bundle(b)
    assert f"results/{fid}/run.json: a fit without its entry in {MANIFEST} fits (where it came from is unknown)" in problems
    assert f"results/{fid}/run.json: missing, but {layout.PER_IMAGE_CSV} lists the fit" in problems


def test_a_manifest_entry_with_the_wrong_fit_key_is_found(bundle: Path, tmp_path: Path) -> None:
    b = copy(bundle, tmp_path)
    fid = next(iter(manifest(b)["fits"]))
    rewrite_manifest(b, lambda m: m["fits"][fid].update(fit_key="0" * 64))
    assert [p for p in check_bundle(b) if p.startswith(f"results/{fid}/run.json: fit_key is")], check_bundle(b)


def test_the_size_cap_refuses_and_leaves_nothing(parts: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / layout.PUBLISHED / "big"
    with pytest.raises(ValueError, match=r"over the limit of 0\.01 MB \(largest: .*nothing was changed"):
        merge([parts["all"]], out, max_bytes=10_000)
    assert not out.exists() and [p.name for p in (tmp_path / layout.PUBLISHED).iterdir()] == []  # no lock left either


def test_a_folder_that_is_not_a_bundle_is_never_replaced(parts: dict[str, Path], tmp_path: Path) -> None:
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep me")
    with pytest.raises(ValueError, match="not a results bundle"):
        merge([parts["first"]], mine)
    assert [p.name for p in mine.iterdir()] == ["notes.txt"]
    (tmp_path / "file").write_text("x")
    with pytest.raises(ValueError, match="not a folder"):
        merge([parts["first"]], tmp_path / "file")
    with pytest.raises(ValueError, match="holds no part"):
        merge([mine], tmp_path / "new")
    empty = tmp_path / "empty"
    empty.mkdir()
    assert merge([parts["first"]], empty)["added"] and check_bundle(empty) == []  # an empty folder holds nothing to lose


def test_the_cli_publishes_and_checks(workspace: Path, tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from pipeline.cli import app

    runner = CliRunner()
    out = tmp_path / layout.PUBLISHED / "cli"
    options = ["--params", str(REPO / "params.yaml"), "--paper", str(REPO / "data" / "paper.yaml")]
    res = runner.invoke(app, ["publish", str(workspace), "--into", str(out), "--commit", "abc", *options])
    assert res.exit_code == 0, res.output
    assert re.search(r"cli: 12 added; 12 fits, [\d.]+ MB, profile smoke; metrics rebuilt", res.output), res.output
    info = manifest(out)
    assert {e["commit"] for e in info["fits"].values()} == {"abc"} and info["policy"]["galleries"] == ["inpaint_p50/peppers", "inpaint_p50/man"]
    res = runner.invoke(app, ["publish", str(workspace), "--into", str(out), *options])
    assert res.exit_code == 0 and "unchanged (12 unchanged)" in res.output, res.output
    assert runner.invoke(app, ["check-bundle", str(out)]).exit_code == 0
    (out / layout.METRICS / layout.REPORT_MD).write_text("changed")
    res = runner.invoke(app, ["check-bundle", str(out)])
    assert res.exit_code == 1 and "error: metrics/report.md: its sha256" in res.output
    res = runner.invoke(app, ["publish", str(workspace), "--into", str(out), *options])
    assert res.exit_code == 2 and res.output.count("error:") == 1 and "does not pass `dip check-bundle`" in res.output, res.output
    res = runner.invoke(app, ["publish", str(tmp_path / "nothing"), "--into", str(tmp_path / "x"), *options])
    assert res.exit_code == 2 and res.output.count("error:") == 1 and "no such part" in res.output


def published(repo: Path = REPO) -> list[Path]:
    """Every folder of ``results-published/`` (a bundle or not: a folder that is not a consistent
    bundle must fail its check, not be skipped)."""
    root = repo / layout.PUBLISHED
    return sorted(p for p in root.iterdir() if p.is_dir()) if root.is_dir() else []


def test_every_published_bundle_is_consistent() -> None:
    """Every folder of results-published/ is a bundle that `dip check-bundle` passes (with none
    published yet there is nothing to check; the finder itself is tested below)."""
    for folder in published():
        assert (folder / MANIFEST).is_file(), f"{folder} is not a bundle of `dip publish` (no {MANIFEST})"
        assert check_bundle(folder) == [], folder


def test_the_published_bundles_are_found(bundle: Path, tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    good = Path(shutil.copytree(bundle, repo / layout.PUBLISHED / "smoke-cpu"))
    broken = Path(shutil.copytree(bundle, repo / layout.PUBLISHED / "broken"))
    (broken / layout.METRICS / layout.REPORT_MD).write_text("changed")
    assert published(repo) == [broken, good]
    assert check_bundle(good) == [] and check_bundle(broken) != []


def test_the_all_policy_keeps_every_seed_with_its_images() -> None:
    """``dip publish --policy all`` (a small profile such as quick): every seed of every image keeps
    its PNG, ground truth and snapshots; the default keeps only numbers of further seeds."""
    from datetime import datetime, timezone

    from pipeline.outputs.policy import Keep, Policy, decide
    from pipeline.outputs.publish import Held

    now = datetime.now(timezone.utc)
    fits = [Held(f"{e}/{i}/seed_{s}", {}, None, now, (128, 128), True)  # type: ignore[arg-type] - no files needed to decide
            for e in ("denoise_s25", "sr_x4") for i in ("a", "b") for s in (0, 1, 2)]
    every = decide(Policy.named("all"), fits)
    assert all(k == Keep("png", truth=True, snapshots=True) for k in every.values())
    default = decide(Policy.named("paper"), fits)
    assert default["sr_x4/a/seed_1"] == Keep(None) and default["sr_x4/a/seed_0"].restored == "png"  # a: the spot check
    assert Policy.from_dict({**Policy.named("all").__dict__, "png": ["*"], "galleries": ["*"]}) == Policy.named("all")
