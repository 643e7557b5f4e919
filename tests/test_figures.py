"""The paper's other figures (issue 14): settings pinned to the authors' notebooks, figure cases
from the corrupt stage, runs without ground truth, the evaluate/report listing."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import yaml

from pipeline.files import save_image
from dip.models import build_model
from dip.config import FitConfig
from dip.network import NetConfig, count_parameters, upsample_modes
from pipeline.stages.corrupt import corrupt_all
from pipeline.images.manifest import ImageEntry, load_manifest
from pipeline.settings import Profile, job_settings, parse_experiment
from pipeline.stages.run import run_experiment

ROOT = Path(__file__).resolve().parents[1]
PARAMS = yaml.safe_load((ROOT / "params.yaml").read_text())
FIGURES = PARAMS["figures"]


def paper() -> Profile:
    return Profile("paper", PARAMS["profiles"]["paper"], FIGURES)


def settings(exp_id: str, variant: str | None = None) -> tuple[NetConfig, FitConfig]:
    prof = paper()
    if variant:
        prof = Profile("paper", {**prof.body, "variants": {**prof.body["variants"], exp_id: variant}}, FIGURES)
    s = job_settings(prof.experiment(exp_id), prof, 0, "cpu")
    return s.net, s.fit


# (experiment, variant) → network and fitting settings of the authors' notebook; see the
# docstring of each case for the notebook cell they come from.
NOTEBOOK = {
    # inpainting.ipynb, 'kate.png': skip 128×5 / 128×5 / 128×5, nearest, input 32, LR 0.01, 6001 it, σ_p 0.03
    ("fig7_text", None): (dict(input_depth=32, channels_down=[128] * 5, channels_up=[128] * 5, channels_skip=[128] * 5, upsample="nearest"),
                          dict(iterations=6001, lr=0.01, reg_noise_std=0.03, input="noise")),
    # inpainting.ipynb, 'vase.png': meshgrid (2 ch), skip 128/128/0, nearest, LR 0.01, 5001 it, σ_p 0.03
    ("fig6_vase", None): (dict(input_depth=2, channels_down=[128] * 5, channels_up=[128] * 5, channels_skip=[0] * 5, upsample="nearest"),
                          dict(iterations=5001, lr=0.01, reg_noise_std=0.03, input="meshgrid")),
    # inpainting.ipynb, 'library.png', NET_TYPE skip_depth6: 16-32-64-128-128-128, n_s 0, k_d 5, no 1×1 up, nearest, z 1 ch
    ("fig8_library", None): (dict(input_depth=1, channels_down=[16, 32, 64, 128, 128, 128], channels_skip=[0] * 6, kernel_down=5, kernel_up=3,
                                  conv1x1_up=False, upsample="nearest"),
                             dict(iterations=3001, lr=0.01, reg_noise_std=0.0)),
    ("fig8_library", "skip_depth4"): (dict(channels_down=[16, 32, 64, 128], channels_skip=[0] * 4, kernel_down=5, conv1x1_up=False), dict(lr=0.01)),
    ("fig8_library", "skip_depth2"): (dict(channels_down=[16, 32], channels_skip=[0] * 2, kernel_down=5, conv1x1_up=False), dict(lr=0.01)),
    # UNet(feature_scale=8, more_layers=1, deconv, zero pad, InstanceNorm) and ResNet(1, 3, 8, 32), both LR 0.001
    ("fig8_library", "unet"): (dict(arch="unet", input_depth=1, unet_feature_scale=8, unet_more_layers=1), dict(iterations=3001, lr=0.001, reg_noise_std=0.0)),
    ("fig8_library", "resnet"): (dict(arch="resnet", input_depth=1, resnet_blocks=8, resnet_channels=32), dict(iterations=3001, lr=0.001, reg_noise_std=0.0)),
    # restoration.ipynb, 'kate.png': 16-32-64-128-128, n_s 0, bilinear, avg downsampling, z 32, LR 0.01, 1000 it, σ_p 0
    ("sup_kate98", None): (dict(input_depth=32, channels_down=[16, 32, 64, 128, 128], channels_skip=[0] * 5, upsample="bilinear", downsample="avg"),
                           dict(iterations=1000, lr=0.01, reg_noise_std=0.0)),
    # denoising.ipynb, snail: 8-16-32-64-128, skip 0-0-0-4-4, z 3, bilinear, LR 0.01, 2400 it, σ_p 1/30, averaging 0.99, backtracking
    ("real_snail", None): (dict(input_depth=3, channels_down=[8, 16, 32, 64, 128], channels_skip=[0, 0, 0, 4, 4], upsample="bilinear"),
                           dict(iterations=2400, lr=0.01, reg_noise_std=pytest.approx(1 / 30, abs=1e-6), exp_weight=0.99, backtrack=True)),
    # flash-no-flash.ipynb: flash image as input (3 ch), skip 128/128/4, nearest ×2 then bilinear, LR 0.1, 601 it, σ_p 0
    ("flash_cave", None): (dict(input_depth=3, channels_down=[128] * 5, channels_skip=[4] * 5, upsample=["nearest", "nearest", "bilinear", "bilinear", "bilinear"]),
                           dict(iterations=601, lr=0.1, reg_noise_std=0.0, input="image")),
    # sr_prior_effect.ipynb, zebra ×4: the image itself (LR 0.01, 2000 it), + TV 1e-7, then skip 128/128/4 bilinear, z 3, σ_p 1/30
    ("sr_prior_none", None): (dict(arch="image"), dict(iterations=2000, lr=0.01, reg_noise_std=0.0, tv_weight=0.0)),
    ("sr_prior_tv", None): (dict(arch="image"), dict(iterations=2000, lr=0.01, reg_noise_std=0.0, tv_weight=1e-7)),
    ("sr_prior_dip", None): (dict(arch="skip", input_depth=3, channels_down=[128] * 5, channels_skip=[4] * 5, upsample="bilinear"),
                             dict(iterations=2000, lr=0.01, reg_noise_std=pytest.approx(1 / 30, abs=1e-6), tv_weight=0.0)),
}


@pytest.mark.parametrize(("exp_id", "variant"), list(NOTEBOOK), ids=[f"{e}-{v or 'default'}" for e, v in NOTEBOOK])
def test_paper_profile_matches_the_notebooks(exp_id: str, variant: str | None) -> None:
    net, fit = settings(exp_id, variant)
    want_net, want_fit = NOTEBOOK[(exp_id, variant)]
    for key, value in want_net.items():
        got = upsample_modes(net) if key == "upsample" and isinstance(value, list) else getattr(net, key)
        assert got == value, (key, got, value)
    if net.arch == "skip":
        assert net.channels_up == net.channels_down and net.pad == "reflection" and net.kernel_skip == 1
    for key, value in want_fit.items():
        assert getattr(fit, key) == value, (key, getattr(fit, key), value)


def test_paper_runs_every_figure_and_the_default_library_net_is_skip_depth6() -> None:
    assert set(FIGURES) <= set(PARAMS["profiles"]["paper"]["experiments"]) <= set(PARAMS["experiments"])
    assert PARAMS["profiles"]["paper"]["variants"]["fig8_library"] == "skip_depth6"
    assert not set(FIGURES) & set(PARAMS["profiles"]["quick"]["experiments"])  # quick keeps its 15-minute budget
    assert set(FIGURES) <= set(PARAMS["profiles"]["smoke"]["experiments"])


def test_figure_cases_and_images_are_in_the_manifest() -> None:
    manifest = load_manifest(ROOT / "data/manifest.yaml")
    prof = paper()
    for exp_id, spec in FIGURES.items():
        exp = prof.experiment(exp_id)
        assert exp.is_figure and exp.task == spec["task"] and exp.fit_key == exp_id
        assert len(manifest.select(prof.specs(exp))) == len(prof.specs(exp))
    assert prof.experiment("sup_kate98").drop == 0.98
    assert prof.experiment("real_snail").ground_truth is False and prof.experiment("flash_cave").input
    assert {prof.experiment(e).factor for e in ("sr_prior_none", "sr_prior_tv", "sr_prior_dip")} == {4}


def test_figure_specs_are_validated() -> None:
    with pytest.raises(ValueError, match="either mask"):
        parse_experiment("f", {"f": {"task": "inpaint", "image": "s/a"}})
    with pytest.raises(ValueError, match="unknown key"):
        parse_experiment("f", {"f": {"task": "sr", "image": "s/a", "factor": 4, "colour": 1}})
    with pytest.raises(ValueError, match="factor"):
        parse_experiment("f", {"f": {"task": "sr", "image": "s/a"}})


def test_figure8_parameter_counts_at_paper_settings() -> None:
    """RGB output; input 1 channel (the notebook's library input depth)."""
    counts = {v: count_parameters(build_model(settings("fig8_library", v)[0], 3)) for v in ("skip_depth6", "skip_depth4", "skip_depth2", "unet", "resnet")}
    assert counts == {"skip_depth6": 2_996_467, "skip_depth4": 1_060_339, "skip_depth2": 59_635, "unet": 1_616_315, "resnet": 158_979}


def test_figure_parameter_counts_match_the_authors_nets() -> None:
    """RGB output; the counts of the authors' ``skip(...)`` with each notebook's arguments."""
    counts = {e: count_parameters(build_model(settings(e)[0], 3)) for e in ("fig7_text", "fig6_vase", "sup_kate98", "real_snail", "flash_cave", "sr_prior_dip")}
    assert counts == {"fig7_text": 3_002_627, "fig6_vase": 2_157_955, "sup_kate98": 1_027_379, "real_snail": 572_827,
                      "flash_cave": 2_184_307, "sr_prior_dip": 2_184_307}


# --- corrupt → run on toy figures -------------------------------------------------------------

TOY_FIGURES = {
    "given": {"task": "inpaint", "image": "t/photo", "mask": "t/holes"},
    "bern": {"task": "inpaint", "image": "t/photo", "drop": 0.98},
    "real": {"task": "denoise", "image": "t/photo", "ground_truth": False},
    "flash": {"task": "denoise", "image": "t/photo", "input": "t/flash", "ground_truth": False},
    "pixels": {"task": "sr", "image": "t/photo", "factor": 4},
}
TOY_NET = {"levels": 2, "width": 4, "skip": 1, "input_depth": 3}
TOY_FIT = {"iterations": 3, "lr": 0.01, "reg_noise_std": 0.0, "snapshots": [0, 3]}
TOY = {
    "experiments": list(TOY_FIGURES), "images": {}, "max_side": 24, "log_every": 1,
    "fit": {"given": TOY_FIT, "bern": TOY_FIT, "real": TOY_FIT, "flash": {**TOY_FIT, "input": "image", "net": TOY_NET},
            "pixels": {**TOY_FIT, "tv_weight": 1e-4, "net": {"arch": "image", "input_depth": 3}}},
    "net": {"levels": 2, "width": 4, "skip": 1},
}


@pytest.fixture
def toy(tmp_path: Path, astronaut64: np.ndarray) -> tuple[Profile, Path, Path]:
    images = tmp_path / "images"
    save_image(images / "t" / "photo.png", astronaut64[:48, :40])
    save_image(images / "t" / "flash.png", astronaut64[:48, :40][:, ::-1])
    holes = np.ones((48, 40), np.float32)
    holes[10:30, 5:20] = 0
    save_image(images / "t" / "holes.png", holes)
    prof = Profile("toy", TOY, TOY_FIGURES)
    entries = {e: [ImageEntry(set="t", name="photo", pixel_sha256="-")] for e in TOY_FIGURES}
    out = tmp_path / "corrupted"
    corrupt_all(list(TOY_FIGURES), prof, entries, images, out, seed=0)
    return prof, out, tmp_path / "results"


def test_corrupt_writes_each_figure_case(toy: tuple[Profile, Path, Path]) -> None:
    _, out, _ = toy
    case = lambda e: out / e / "photo"  # noqa: E731
    mask = np.asarray(__import__("PIL.Image", fromlist=["Image"]).open(case("given") / "mask.png"))
    assert mask.shape == (24, 20) and set(np.unique(mask)) == {0, 255} and (mask == 0).sum() == 10 * 8  # nearest, halved
    bern = np.load(case("bern") / "observation.npy")
    assert 0.005 < (bern.max(-1) > 0).mean() < 0.06  # ~2 % kept
    real = json.loads((case("real") / "meta.json").read_text())
    assert real["ground_truth"] is False and not (case("real") / "ground_truth.png").exists()
    assert np.array_equal(np.load(case("real") / "observation.npy"), np.load(case("flash") / "observation.npy"))  # nothing added
    assert np.load(case("flash") / "input.npy").shape == (24, 20, 3) and (case("flash") / "input.png").is_file()
    assert json.loads((out / "flash" / "experiment.json").read_text())["ground_truth"] is False
    assert np.load(case("pixels") / "observation.npy").shape == (6, 5, 3)


def test_figures_run_and_evaluate_without_ground_truth(toy: tuple[Profile, Path, Path]) -> None:
    from pipeline.stages.evaluate import evaluate

    prof, out, results = toy
    for exp in TOY_FIGURES:
        assert run_experiment(exp, out / exp, results / exp, prof, [0], "cpu") == {"run": 1, "reused": 0}
    flash = json.loads((results / "flash" / "photo" / "seed_0" / "run.json").read_text())
    assert "metrics" not in flash and flash["fit"]["input"] == "image"
    pixels = json.loads((results / "pixels" / "photo" / "seed_0" / "run.json").read_text())
    assert pixels["net"]["arch"] == "image" and pixels["fit"]["tv_weight"] == 1e-4 and "psnr" in pixels["metrics"]["restored"]
    resolution = {"profile": "toy", "requested": "toy", "device": "cpu"}
    summary = evaluate(results, list(TOY_FIGURES), resolution, results.parent / "metrics", about={e: f"what {e} is" for e in TOY_FIGURES})
    assert set(summary["no_ground_truth"]) == {"real", "flash"} and set(summary["experiments"]) == {"given", "bern", "pixels"}
    assert "no PSNR" in summary["no_ground_truth"]["flash"]["note"]
    report = (results.parent / "metrics" / "report.md").read_text()
    assert "## Figures" in report and "| `flash` | what flash is | no ground truth" in report
    only_blind = evaluate(results, ["real", "flash"], resolution, results.parent / "metrics_blind")
    assert only_blind["experiments"] == {} and set(only_blind["no_ground_truth"]) == {"real", "flash"}
