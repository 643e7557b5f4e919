"""Partial results read honestly: an experiment in progress is "k of n images" with its means over
the k fitted images (beside the paper's mean over the same k, and over all n), one with no fit is
pending, never complete.

The trees are real pipeline outputs: the ``smoke`` profile's network and fitting settings (4
iterations instead of 20) on
24×20 crops of scikit-image's cameraman named like the paper's images (so that the paper's
per-image numbers apply), corrupted, fitted and scored by the stages' own functions, then cut by
deleting fits, as an interrupted run or a bundle published in parts leaves them, and evaluated
again by ``dip evaluate``'s code. They are labelled profile ``paper`` so that the report compares
them with the paper (their numbers are toy numbers, far from the paper's: only the arithmetic of
the comparison is tested).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from conftest import ROOT

EXPERIMENTS = ["inpaint_p50", "denoise_s25", "sr_x4"]
IMAGES = {"inpaint": [("inpainting11", n) for n in ("barbara", "peppers", "house")],
          "denoise": [("cset9", n) for n in ("kodim01", "kodim02")],
          "sr": [("set5", "baby"), ("set5", "bird"), ("set14", "comic")]}
RESOLUTION = {"requested": "paper", "profile": "paper", "device": "cpu", "device_name": "test CPU"}


def _paper() -> dict:
    from pipeline.report import load_paper

    return load_paper(ROOT / "data" / "paper.yaml")


def _evaluate(root: Path) -> dict:
    """``dip evaluate``'s code over ``root`` (its metrics/ rewritten), as the evaluate stage calls it."""
    from pipeline.stages.evaluate import evaluate

    shutil.rmtree(root / "metrics", ignore_errors=True)
    return evaluate(root / "results", EXPERIMENTS, RESOLUTION, root / "metrics", baselines=root / "baselines",
                    corrupted=root / "data" / "corrupted", paper=_paper(), epsilon=0.5)


@pytest.fixture(scope="module")
def full_tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Every fit of :data:`EXPERIMENTS` done, baselines of inpainting, evaluated (read-only)."""
    from skimage import data, transform

    from pipeline.files import save_image, save_json
    from pipeline.images.manifest import ImageEntry
    from pipeline.settings import Profile, load_params
    from pipeline.stages.baselines import run_experiment_baselines
    from pipeline.stages.corrupt import corrupt_all
    from pipeline.stages.run import run_experiment

    root = tmp_path_factory.mktemp("partial") / "tree"
    camera = transform.resize(data.camera(), (64, 64), anti_aliasing=True).astype(np.float32)
    entries = {}
    for task, images in IMAGES.items():
        entries[task] = []
        for i, (set_name, name) in enumerate(images):
            save_image(root / "images" / set_name / f"{name}.png", np.rot90(camera[8 * i:, 4 * i:], i)[:24, :20].copy())
            entries[task].append(ImageEntry(set=set_name, name=name, pixel_sha256="-"))
    params = load_params(ROOT / "params.yaml")
    smoke = params["profiles"]["smoke"]
    short = {k: {**v, "iterations": 4, "snapshots": [0, 4]} for k, v in smoke["fit"].items()}  # 4 of its 20 iterations: seconds
    prof = Profile("smoke", {**smoke, "experiments": EXPERIMENTS, "fit": short, "log_every": 2})
    corrupted = root / "data" / "corrupted"
    corrupt_all(EXPERIMENTS, prof, entries, root / "images", corrupted, seed=0)
    save_json(root / "data" / "profile.json", RESOLUTION)
    for exp in EXPERIMENTS:
        run_experiment(exp, corrupted / exp, root / "results" / exp, prof, [0], "cpu")
    run_experiment_baselines(corrupted / "inpaint_p50", root / "baselines" / "inpaint_p50", params.get("baselines") or {})
    _evaluate(root)
    return root


def cut(full: Path, dest: Path, fits: list[str], keep_meta: bool = True) -> Path:
    """A copy of ``full`` without the fits ``exp/image`` (or a whole ``exp``), evaluated again.
    ``keep_meta=False``: the fitted images' ``meta.json`` only, as a published bundle keeps them."""
    shutil.copytree(full, dest)
    for fit in fits:
        shutil.rmtree(dest / "results" / fit)
        if not keep_meta and "/" in fit:
            shutil.rmtree(dest / "data" / "corrupted" / fit)
    _evaluate(dest)
    return dest


@pytest.fixture(scope="module")
def partial_tree(full_tree: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Table 1 at 2 of 3 images, denoising at 1 of 2, SR ×4 pending (read-only)."""
    return cut(full_tree, tmp_path_factory.mktemp("cut") / "tree", ["inpaint_p50/house", "denoise_s25/kodim02", "sr_x4"])


def metrics(root: Path) -> tuple[dict, pd.DataFrame, pd.DataFrame, str]:
    m = root / "metrics"
    return (json.loads((m / "summary.json").read_text()), pd.read_csv(m / "report.csv"), pd.read_csv(m / "per_image.csv"),
            (m / "report.md").read_text())


def test_a_complete_run_says_so_and_keeps_its_numbers(full_tree: Path) -> None:
    summary, report, per_image, md = metrics(full_tree)
    assert summary["progress"] == {
        "inpaint_p50": {"images_done": 3, "images_total": 3, "complete": True, "status": "complete"},
        "denoise_s25": {"images_done": 2, "images_total": 2, "complete": True, "status": "complete"},
        "sr_x4": {"images_done": 3, "images_total": 3, "complete": True, "status": "complete"},
    }
    assert "in progress" not in md and "Partial results" not in md and "Pending" not in md and (report["source"] != "pending").all()
    dip = per_image[(per_image["experiment"] == "inpaint_p50") & (per_image["method"] == "dip")]
    assert summary["experiments"]["inpaint_p50"]["dip"]["psnr"] == pytest.approx(dip["psnr"].mean(), abs=1e-3)
    paper = _paper()["inpaint_p50"]["per_image"]["dip"]
    table1 = (paper["barbara"] + paper["peppers"] + paper["house"]) / 3
    assert summary["paper"]["inpaint_p50"]["paper_mean"] == summary["paper"]["inpaint_p50"]["paper_mean_all"] == pytest.approx(table1, abs=1e-3)
    assert summary["paper"]["denoise_s25"]["paper_mean"] == 30.43  # the paper's mean, once every image is fitted


def test_an_experiment_in_progress_is_k_of_n_with_means_over_the_fitted_images(partial_tree: Path) -> None:
    summary, report, per_image, md = metrics(partial_tree)
    assert summary["progress"]["inpaint_p50"] == {"images_done": 2, "images_total": 3, "complete": False, "status": "in progress"}
    assert summary["progress"]["denoise_s25"] == {"images_done": 1, "images_total": 2, "complete": False, "status": "in progress"}
    # per_image.csv keeps every score (the baseline of house too); the means are over barbara and peppers only
    inpaint = per_image[per_image["experiment"] == "inpaint_p50"]
    assert set(inpaint.loc[inpaint["method"] == "biharmonic", "image"]) == {"barbara", "peppers", "house"}
    done = inpaint[inpaint["image"].isin(["barbara", "peppers"])].groupby("method")["psnr"].mean()
    for method in ("dip", "biharmonic", "input"):
        assert summary["experiments"]["inpaint_p50"][method]["psnr"] == pytest.approx(done[method], abs=1e-3), method
        assert summary["experiments"]["inpaint_p50"][method]["images"] == 2
    rows = report[report["experiment"] == "inpaint_p50"]
    assert set(rows["image"]) == {"barbara", "peppers", "mean"}  # no row of the image DIP has not fitted
    assert (rows["images_done"] == 2).all() and (rows["images_total"] == 3).all() and (~rows["complete"].astype(bool)).all()
    ours = rows[(rows["source"] == "ours") & (rows["method"] == "dip")].set_index("image")
    assert ours.loc["mean", "psnr"] == pytest.approx(done["dip"], abs=1e-3)


def test_delta_compares_like_with_like_and_the_full_mean_is_beside_it(partial_tree: Path) -> None:
    summary, report, per_image, md = metrics(partial_tree)
    paper = _paper()["inpaint_p50"]["per_image"]["dip"]
    same, everything = (paper["barbara"] + paper["peppers"]) / 2, (paper["barbara"] + paper["peppers"] + paper["house"]) / 3
    ours = per_image[(per_image["experiment"] == "inpaint_p50") & (per_image["method"] == "dip")]["psnr"].mean()
    entry = summary["paper"]["inpaint_p50"]
    assert entry["paper_mean"] == pytest.approx(same, abs=1e-3) and entry["paper_mean_all"] == pytest.approx(everything, abs=1e-3)
    assert entry["mean_delta_dip"] == pytest.approx(ours - same, abs=2e-3) and entry["compared"] == 2
    mean = report[(report["experiment"] == "inpaint_p50") & (report["image"] == "mean")].set_index(["source", "method"])
    assert mean.loc[("ours", "dip"), "paper_psnr"] == pytest.approx(same) and mean.loc[("ours", "dip"), "paper_psnr_all"] == pytest.approx(everything)
    assert mean.loc[("paper", "DIP (paper)"), "psnr"] == pytest.approx(same) and mean.loc[("paper", "DIP (paper)"), "paper_psnr_all"] == pytest.approx(everything)
    # the paper gives denoising only as a mean over all its images: no Δ until they are all fitted
    assert summary["paper"]["denoise_s25"] == {"comparable": True, "mean_delta_dip": None, "reproduced": 0, "compared": 0,
                                               "paper_mean": None, "paper_mean_all": 30.43}
    assert "## inpaint_p50 — in progress: 2 of 3 images" in md and "**mean over 2 of 3 images**" in md
    assert f"over all 3 images: DIP (paper) {everything:.2f}" in md and "Not fitted yet (1): house." in md
    assert "## denoise_s25 — in progress: 1 of 2 images" in md and "Δ waits until that set is fitted" in md


def test_an_experiment_without_a_fit_is_pending_not_complete(partial_tree: Path) -> None:
    summary, report, per_image, md = metrics(partial_tree)
    assert summary["progress"]["sr_x4"] == {"images_done": 0, "images_total": 3, "complete": False, "status": "pending"}
    assert "sr_x4" not in summary["experiments"]
    rows = report[report["experiment"] == "sr_x4"]
    assert list(rows["source"]) == ["pending"] and rows["psnr"].isna().all() and not rows["complete"].astype(bool).any()
    assert "Pending (no image fitted yet): `sr_x4`" in md and "| `sr_x4` | 0 of 3 |" in md and "## sr_x4\n" not in md


def test_a_set_mean_is_compared_once_that_set_is_fitted(full_tree: Path, tmp_path: Path) -> None:
    """SR ×4: the paper gives a mean per set. Set5 fitted, Set14 not: Δ for Set5 only. In a bundle
    (no meta.json of the unfitted image: its set is unknown) neither is compared yet."""
    summary, report, _, md = metrics(cut(full_tree, tmp_path / "workspace", ["sr_x4/comic"]))
    dip = report[(report["experiment"] == "sr_x4") & (report["method"] == "dip")].set_index("image")
    assert summary["progress"]["sr_x4"]["images_done"] == 2 and list(dip.index) == ["baby", "bird", "mean"]
    assert dip.loc["mean", "paper_psnr"] == 29.90  # the fitted images are all of Set5: the paper's Set5 mean
    assert np.isnan(dip.loc["mean", "paper_psnr_all"])  # the paper has no one mean over Set5 and Set14
    assert "**mean over 2 of 3 images**" in md
    _, bundle, _, _ = metrics(cut(full_tree, tmp_path / "bundle", ["sr_x4/comic"], keep_meta=False))
    mean = bundle[(bundle["experiment"] == "sr_x4") & (bundle["method"] == "dip") & (bundle["image"] == "mean")].iloc[0]
    assert np.isnan(mean["paper_psnr"]) and np.isnan(mean["delta"])


def test_dvc_metrics_numbers_stay_flat(partial_tree: Path) -> None:
    """What ``dvc metrics show`` flattens: progress, the paper section, means: numbers, booleans, text or null."""
    summary = metrics(partial_tree)[0]

    def leaves(value, path=""):
        if isinstance(value, dict):
            for k, v in value.items():
                yield from leaves(v, f"{path}.{k}")
        else:
            yield path, value

    bad = [(p, v) for p, v in leaves(summary) if not (v is None or isinstance(v, (bool, int, float, str)))]
    assert not bad


# ------------------------------------------------------------------------------------ dashboard
def overview(root: Path, monkeypatch: pytest.MonkeyPatch):
    import streamlit  # noqa: F401 - a dependency: missing is a failure, not a skip
    from streamlit.testing.v1 import AppTest

    monkeypatch.setenv("DIP_RESULTS", str(root))
    at = AppTest.from_file(str(ROOT / "dashboard" / "app.py"), default_timeout=60).run()
    assert not at.exception, [e.message for e in at.exception]
    return at


def test_overview_shows_k_of_n_pending_and_the_papers_full_mean(partial_tree: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    at = overview(partial_tree, monkeypatch)
    heads = [s.value.split(" ·")[0] for s in at.subheader]
    assert heads == ["inpaint_p50", "denoise_s25", "sr_x4"]
    badges = [m.value for m in at.markdown if "-badge[" in m.value and "profile" not in m.value]
    assert badges == [":orange-badge[in progress: 2 of 3 images]", ":orange-badge[in progress: 1 of 2 images]", ":gray-badge[pending: 0 of 3 images]"]
    assert any("Partial results" in i.value and "Pending (no image fitted yet): sr_x4" in i.value for i in at.info)
    inpaint = at.dataframe[0].value
    report = pd.read_csv(partial_tree / "metrics" / "report.csv")
    mean = report[(report["experiment"] == "inpaint_p50") & (report["image"] == "mean") & (report["method"] == "dip")].iloc[0]
    assert list(inpaint.index) == ["barbara", "peppers", "mean over 2 of 3 images"]
    assert inpaint.loc["mean over 2 of 3 images", "dip"] == pytest.approx(mean["psnr"])
    assert inpaint.loc["mean over 2 of 3 images", "DIP (paper)"] == pytest.approx(mean["paper_psnr"])  # the same 2 images
    assert inpaint.loc["mean over 2 of 3 images", "Δ dip"] == pytest.approx(mean["delta"])
    captions = [c.value for c in at.caption]
    assert any(c.startswith("Only 2 of the 3 images are fitted yet") and f"DIP (paper) {mean['paper_psnr_all']:.2f}" in c
               and "Not fitted yet: house." in c for c in captions)
    assert any("Δ waits until they are fitted" in c and "NLM (paper) 30.26" in c for c in captions)  # denoising: a mean over all only
    assert any(c.startswith("Paper comparison") and "no Δ yet: the paper gives only its mean over all the images" in c for c in captions)
    assert "No image of this experiment is fitted yet." in captions
    assert len(at.dataframe) >= 2 and "sr_x4" not in " ".join(str(t.value.index.tolist()) for t in at.dataframe[:2])


def test_before_evaluate_the_dashboard_counts_the_same_k_of_n(partial_tree: Path, tmp_path: Path) -> None:
    """Without metrics/ the Overview's table comes from the runs through the same aggregation: same k, n, pending."""
    from dashboard import tables

    root = tmp_path / "tree"
    shutil.copytree(partial_tree, root, ignore=shutil.ignore_patterns("metrics", "baselines"))
    built = tables.report_from_runs(root)
    written = pd.read_csv(partial_tree / "metrics" / "report.csv")
    for exp in EXPERIMENTS:
        assert tables.progress(built[built["experiment"] == exp]) == tables.progress(written[written["experiment"] == exp]), exp
    assert list(built.loc[built["source"] == "pending", "experiment"]) == ["sr_x4"]
    mean = built[(built["experiment"] == "inpaint_p50") & (built["image"] == "mean") & (built["method"] == "dip")]
    assert mean["psnr"].iloc[0] == pytest.approx(written.set_index(["experiment", "image", "method"]).loc[("inpaint_p50", "mean", "dip"), "psnr"], abs=1e-3)


def test_the_smoke_run_cut_short_lists_what_is_pending(smoke_outputs: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The smoke profile's own tree with SR ×4 and Fig. 7 not fitted yet (an interrupted `dvc repro`):
    those two are pending, the profile's inactive experiments are not listed, the rest is complete."""
    from pipeline.report import load_paper
    from pipeline.settings import load_params
    from pipeline.stages.evaluate import evaluate

    root = tmp_path / "ws"
    for d in ("data", "results", "baselines"):
        shutil.copytree(smoke_outputs / d, root / d)
    for exp in ("sr_x4", "fig7_text"):
        for fit in (root / "results" / exp).glob("*/seed_*"):
            shutil.rmtree(fit.parent)
    p = load_params(ROOT / "params.yaml")
    summary = evaluate(root / "results", [str(e) for e in p["experiments"]], json.loads((root / "data" / "profile.json").read_text()),
                       root / "metrics", baselines=root / "baselines", corrupted=root / "data" / "corrupted",
                       paper=load_paper(ROOT / "data" / "paper.yaml"), epsilon=0.5)
    active = p["profiles"]["smoke"]["experiments"]
    assert sorted(summary["progress"]) == sorted(active)  # denoise_s8.5 and sr_x8 are not in the smoke profile
    states = {e: s["status"] for e, s in summary["progress"].items()}
    assert states == {e: "pending" if e in ("sr_x4", "fig7_text") else "complete" for e in active}
    assert summary["progress"]["sr_x4"] == {"images_done": 0, "images_total": 1, "complete": False, "status": "pending"}
    md = (root / "metrics" / "report.md").read_text()
    assert "sr_x4" not in summary["experiments"] and "## fig7_text" not in md and "| `fig7_text` | 0 of 1 |" in md
    at = overview(root, monkeypatch)
    badges = [m.value for m in at.markdown if "-badge[" in m.value and "profile" not in m.value]
    scored = [e for e in summary["experiments"]]  # the complete ones with a PSNR: a green badge each, nothing "in progress"
    assert sorted(badges) == sorted([":green-badge[complete: 1 of 1 images]"] * len(scored) + [":gray-badge[pending: 0 of 1 images]"] * 2)


def test_the_gallery_shows_a_bundles_snapshots(smoke_outputs: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A published bundle keeps the snapshots of Table 1's gallery images (peppers and man in the
    paper profile; the smoke profile's inpainting image here): the Gallery shows each saved iteration."""
    from pipeline.outputs.policy import Policy
    from pipeline.outputs.publish import publish

    image = json.loads((smoke_outputs / "results" / "inpaint_p50" / "experiment.json").read_text())["images"][0]
    bundle = tmp_path / "results-published" / "smoke-cpu"
    publish([smoke_outputs], bundle, policy=Policy(spot_check=False, galleries=(f"inpaint_p50/{image}",)))
    saved = sorted(p.name for p in (bundle / "results" / "inpaint_p50" / image / "seed_0" / "snapshots").glob("iter_*.png"))
    assert saved == ["iter_00000.png", "iter_00020.png"]
    at = overview(bundle, monkeypatch)
    at.switch_page("views/gallery.py").run()  # opens on the run whose snapshots the bundle keeps
    assert at.selectbox(key="gallery_experiment").value == "inpaint_p50" and at.selectbox(key="gallery_image").value == image
    assert not at.exception and any(s.value == "Snapshots (2)" for s in at.subheader)
    captions = [img.proto.imgs[0].caption for img in at.image]
    assert any(c.startswith("iteration 0") for c in captions) and any(c.startswith("iteration 20") for c in captions)
    at.selectbox(key="gallery_experiment").set_value("denoise_s25").run()
    assert any(f"keeps those of: inpaint_p50/{image}." in i.value for i in at.info) and not at.exception


def test_readmes_block_from_a_partial_bundle(partial_tree: Path, tmp_path: Path) -> None:
    """`dip readme` over a bundle published from the partial run: Table 1 in progress (2 of 3 with
    our mean beside the paper's over the same images, and its mean over all 3), per image, what is
    not fitted yet, the pending experiment as pending, and a link to the kept iterations of peppers."""
    from pipeline.outputs import readme
    from pipeline.outputs.policy import Policy
    from pipeline.outputs.publish import publish

    publish([partial_tree], tmp_path / "results-published" / "paper-test", policy=Policy(galleries=("inpaint_p50/peppers",)))
    block = readme.block(tmp_path)
    report = pd.read_csv(partial_tree / "metrics" / "report.csv")
    dip = report[(report["experiment"] == "inpaint_p50") & (report["method"] == "dip") & (report["source"] == "ours")].set_index("image")
    mean = dip.loc["mean"]
    assert (f"| `inpaint_p50` | **2 of 3** (in progress) | {mean['psnr']:.2f} | {mean['paper_psnr']:.2f} | {mean['delta']:+.2f} | 0 of 2 images | "
            f"{mean['paper_psnr_all']:.2f} |") in block
    assert block.index("`inpaint_p50`") < block.index("`denoise_s25`") < block.index("`sr_x4`")  # Table 1 first, pending last
    assert "| `sr_x4` | **0 of 3** (pending) | pending |" in block
    assert "| `denoise_s25` | **1 of 2** (in progress) |" in block and "| 30.43 |" in block  # no Δ: the paper's mean is over all
    barbara = dip.loc["barbara"]
    assert f"| barbara | {barbara['psnr']:.2f} | 32.22 | {barbara['delta']:+.2f} | ❌ |" in block
    assert "| **mean over 2 of 3 images** |" in block and "Not fitted yet (1 of 3): house." in block
    assert "[peppers](results-published/paper-test/results/inpaint_p50/peppers/)" in block and "[man]" not in block
    assert block.startswith(readme.BEGIN) and block.endswith(readme.END)
