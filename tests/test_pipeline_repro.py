"""The smoke profile's `dvc repro` end to end in a fresh copy of the project."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

from conftest import layout_doc, run_in

ACTIVE = ("denoise_s25", "inpaint_p50", "sr_x4")
FIGURES = ("fig7_text", "fig6_vase", "fig8_library", "sup_kate98", "sr_prior_none", "sr_prior_tv", "sr_prior_dip")  # with ground truth
BLIND = ("real_snail", "flash_cave")  # real photographs: no ground truth


def test_outputs_follow_the_layout(smoke_project: Path) -> None:
    """Every path docs/LAYOUT.md documents is written (for one image of each experiment)."""
    doc = layout_doc()
    for exp, image, method in (("denoise_s25", "astronaut", "bm3d"), ("inpaint_p50", "camera", "biharmonic"), ("sr_x4", "coffee", "bicubic")):
        names = {"<exp>": exp, "<image>": image, "<set>": "embedded", "<name>": image, "<s>": "0", "<method>": method, "NNNNN": "*"}
        for template in doc["paths"]:
            path = template
            for placeholder, value in names.items():
                path = path.replace(placeholder, value)
            optional = path.endswith("?") or (path.endswith("mask.png") and exp != "inpaint_p50")  # mask: inpainting only
            assert optional or list(smoke_project.glob(path.rstrip("/"))), f"docs/LAYOUT.md documents {template}; missing: {path}"
        run = json.loads((smoke_project / "results" / exp / image / "seed_0" / "run.json").read_text())
        assert set(doc["run_json"]) <= set(run), f"run.json lacks documented keys {set(doc['run_json']) - set(run)}"
        for col in doc["curve"][:3]:  # the rest are optional (no ground truth, no averaging)
            assert col in (smoke_project / "results" / exp / image / "seed_0" / "curve.csv").read_text().splitlines()[0].split(",")
    profile = json.loads((smoke_project / "data/profile.json").read_text())
    assert profile["requested"] == "smoke" and profile["profile"] == "smoke" and profile["device"] == "cpu"
    assert sorted(p.name for p in (smoke_project / "data/images").iterdir()) == ["embedded"]  # bundled images only: offline
    assert sorted(p.name for p in (smoke_project / "data/images/embedded").iterdir()) == [
        "astronaut.png", "camera.png", "chelsea.png", "coffee.png", "horse.png", "immunohistochemistry.png", "page.png", "rocket.png"]
    inpaint = smoke_project / "data/corrupted/inpaint_p50/camera"
    assert {p.name for p in inpaint.iterdir()} == {"ground_truth.png", "observation.npy", "observation.png", "mask.png", "meta.json", ".dip-output"}
    meta = json.loads((inpaint / "meta.json").read_text())
    assert meta["drop"] == 0.5 and meta["set"] == "embedded" and max(meta["size"]) == 48
    for exp, image in zip(ACTIVE, ("astronaut", "camera", "coffee")):
        run_dir = smoke_project / "results" / exp / image / "seed_0"
        assert (run_dir / "restored.png").is_file() and (run_dir / "snapshots/iter_00020.png").is_file()
        run = json.loads((run_dir / "run.json").read_text())
        assert run["iterations_run"] == 20 and run["profile"] == "smoke" and len(run["settings_hash"]) == 64
    inactive = json.loads((smoke_project / "results/sr_x8/experiment.json").read_text())
    assert inactive["active"] is False and inactive["images"] == []


def test_metrics_and_plots(smoke_project: Path) -> None:
    summary = json.loads((smoke_project / "metrics/summary.json").read_text())
    assert summary["profile"] == "smoke" and sorted(summary["experiments"]) == sorted(ACTIVE + FIGURES)
    assert sorted(summary["no_ground_truth"]) == sorted(BLIND)
    for exp in ACTIVE:
        for method in ("input", "dip", "dip_final"):
            assert math.isfinite(summary["experiments"][exp][method]["psnr"])
    assert "dip_averaged" in summary["experiments"]["denoise_s25"]  # exp averaging 0.99
    rows = list(csv.DictReader(open(smoke_project / "metrics/per_image.csv")))
    assert {r["experiment"] for r in rows} == set(ACTIVE + FIGURES) and all(r["device"] == "cpu" for r in rows)
    curves = list(csv.DictReader(open(smoke_project / "metrics/curves.csv")))
    assert {int(r["iteration"]) for r in curves if r["experiment"] == "sr_x4"} == {0, 5, 10, 15, 20}
    shown = json.loads(run_in(smoke_project, "dvc", "metrics", "show", "--json").stdout)
    assert "metrics/summary.json" in json.dumps(shown)
    run_in(smoke_project, "dvc", "plots", "show", "--json")


def test_second_repro_has_nothing_to_do(smoke_project: Path) -> None:
    status = json.loads(run_in(smoke_project, "dvc", "status", "--json").stdout)
    assert set(status) <= {"resolve"}, status  # resolve is always_changed; nothing else is stale


def test_baselines_and_report(smoke_project: Path) -> None:
    expected = {"denoise_s25": ("astronaut", ["bm3d", "nlm", "tv"]), "inpaint_p50": ("camera", ["biharmonic"]), "sr_x4": ("coffee", ["bicubic", "lanczos"])}
    summary = json.loads((smoke_project / "metrics/summary.json").read_text())
    per_image = {(r["experiment"], r["image"], r["method"]): r for r in csv.DictReader(open(smoke_project / "metrics/per_image.csv"))}
    for exp, (image, methods) in expected.items():
        for method in methods:
            record = json.loads((smoke_project / "baselines" / exp / image / f"{method}.json").read_text())
            assert record["method"] == method
            assert float(per_image[(exp, image, method)]["seconds"]) == record["seconds"]  # evaluate reports the baseline's time
            assert record["seconds"] > 0 or method in ("bicubic", "lanczos")  # rounded to ms: a 48-pixel resize may take 0.000
            assert (smoke_project / "baselines" / exp / image / f"{method}.png").is_file()
            assert summary["experiments"][exp][method]["psnr"] > summary["experiments"][exp]["input"]["psnr"]
        assert summary["paper"][exp]["comparable"] is False and "smoke" in summary["paper"][exp]["reason"]
    report = (smoke_project / "metrics/report.md").read_text()
    assert "`smoke`-profile" in report and report.count("Paper columns left out") == len(ACTIVE + FIGURES)
    rows = list(csv.DictReader(open(smoke_project / "metrics/report.csv")))
    assert {r["method"] for r in rows if r["experiment"] == "sr_x4"} == {"input", "dip", "bicubic", "lanczos"}
    assert all(r["source"] == "ours" for r in rows)


def test_figures_end_to_end(smoke_project: Path) -> None:
    """Issue 14: every figure's case, run and report line in the smoke profile."""
    corrupted, results = smoke_project / "data/corrupted", smoke_project / "results"
    # the smoke profile's figure cases on scikit-image's bundled images (profiles.smoke.figures): a page of text and a
    # horse's silhouette as the masks, a JPEG photograph as the real photo, another image as the network's input
    assert (corrupted / "fig7_text/astronaut/mask.png").is_file() and (corrupted / "fig6_vase/coffee/mask.png").is_file()
    assert (corrupted / "flash_cave/astronaut/input.png").is_file()
    assert not (corrupted / "real_snail/rocket/ground_truth.png").exists()
    runs = {e: json.loads(next((results / e).glob("*/seed_0/run.json")).read_text()) for e in FIGURES + BLIND}
    assert runs["fig6_vase"]["fit"]["input"] == "meshgrid" and runs["flash_cave"]["fit"]["input"] == "image"
    assert runs["fig8_library"]["net"]["channels_skip"] == [0, 0] and runs["fig8_library"]["net"]["conv1x1_up"] is False
    assert runs["sr_prior_none"]["net"]["arch"] == "image" and runs["sr_prior_tv"]["fit"]["tv_weight"] == 1e-7
    assert runs["flash_cave"]["net"]["upsample"] == ["nearest", "nearest", "bilinear"]
    for e in BLIND:
        assert "metrics" not in runs[e] and not list((smoke_project / "baselines" / e).glob("*/*.png"))
    report = (smoke_project / "metrics/report.md").read_text()
    assert "## Figures" in report and report.count("no PSNR can be computed") == 2
