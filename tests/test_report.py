"""The report: Δ to the paper and flags on known numbers, suppression, seeds."""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd
import pytest

from pipeline.report import build, load_paper

PAPER = load_paper(Path(__file__).resolve().parents[1] / "data" / "paper.yaml")
PAPER_RES = {"profile": "paper", "requested": "paper", "device": "cuda", "device_name": "test GPU"}
QUICK_RES = {"profile": "quick", "requested": "auto", "device": "cpu", "device_name": "x86_64"}


def _rows(records: list[tuple]) -> pd.DataFrame:
    return pd.DataFrame(records, columns=["experiment", "image", "set", "method", "seed", "psnr", "ssim", "seconds"])


def _curves(exp: str, images: list[str], rising: bool) -> pd.DataFrame:
    rows = []
    for image in images:
        for it in range(0, 101, 10):
            rows.append({"experiment": exp, "image": image, "seed": 0, "iteration": it, "psnr_gt": 20 + (it / 10 if rising else min(it, 50) / 10)})
    return pd.DataFrame(rows)


def test_delta_and_reproduced_flags_against_table_1() -> None:
    rows = _rows([
        ("inpaint_p50", "barbara", "inpainting11", "dip", 0, 32.00, 0.9, 10.0),
        ("inpaint_p50", "boat", "inpainting11", "dip", 0, 31.00, 0.9, 10.0),
        ("inpaint_p50", "barbara", "inpainting11", "biharmonic", 0, 29.0, 0.8, 1.0),
        ("inpaint_p50", "boat", "inpainting11", "biharmonic", 0, 30.0, 0.8, 1.0),
    ])
    table, md, summary = build(rows, _curves("inpaint_p50", ["barbara", "boat"], True), PAPER, PAPER_RES, epsilon=0.5)
    dip = table[(table["method"] == "dip")].set_index("image")
    assert dip.loc["barbara", "paper_psnr"] == 32.22
    assert dip.loc["barbara", "delta"] == pytest.approx(-0.22)
    assert bool(dip.loc["barbara", "reproduced"]) is True
    assert dip.loc["boat", "delta"] == pytest.approx(-2.06)
    assert bool(dip.loc["boat", "reproduced"]) is False
    assert dip.loc["mean", "delta"] == pytest.approx(31.5 - (32.22 + 33.06) / 2)
    papyan = table[table["method"] == "Papyan et al. CSC (paper)"].set_index("image")
    assert papyan.loc["boat", "psnr"] == 31.44
    assert summary["inpaint_p50"] == {"comparable": True, "mean_delta_dip": pytest.approx(-1.14, abs=1e-3), "reproduced": 1, "compared": 2,
                                      "paper_mean": 32.64, "paper_mean_all": 32.64}  # no Progress: the rows are the whole experiment
    assert "| barbara |" in md and "-0.22 | ✅" in md and "-2.06 | ❌" in md
    assert "DIP beats the best baseline (biharmonic)" in md


def test_paper_columns_are_left_out_for_a_quick_profile() -> None:
    rows = _rows([
        ("inpaint_p50", "camera", "embedded", "dip", 0, 26.0, 0.8, 60.0),
        ("inpaint_p50", "camera", "embedded", "biharmonic", 0, 28.0, 0.85, 0.1),
    ])
    table, md, summary = build(rows, _curves("inpaint_p50", ["camera"], rising=True), PAPER, QUICK_RES, epsilon=0.5)
    assert (table["source"] == "paper").sum() == 0 and table["delta"].isna().all()
    assert summary["inpaint_p50"]["comparable"] is False
    assert "profile `quick`" in summary["inpaint_p50"]["reason"]
    assert "Paper columns left out" in md and "not compared with the paper" in md
    assert "DIP trails the best baseline (biharmonic) by 2.00 dB" in md
    assert "still rising" in md


def test_flattened_curve_is_reported_as_such() -> None:
    rows = _rows([("inpaint_p50", "camera", "embedded", "dip", 0, 26.0, 0.8, 60.0),
                  ("inpaint_p50", "camera", "embedded", "biharmonic", 0, 28.0, 0.85, 0.1)])
    _, md, _ = build(rows, _curves("inpaint_p50", ["camera"], rising=False), PAPER, QUICK_RES, epsilon=0.5)
    assert "had flattened" in md


def test_experiments_the_paper_does_not_report_are_not_compared() -> None:
    rows = _rows([("sr_x8", "baby", "set5", "dip", 0, 25.0, 0.7, 5.0)])
    _, md, summary = build(rows, pd.DataFrame(), PAPER, PAPER_RES, epsilon=0.5)
    assert summary["sr_x8"] == {"comparable": False, "reason": "the paper reports no numbers for sr_x8"}


def test_several_seeds_give_mean_and_std() -> None:
    rows = _rows([
        ("denoise_s25", "kodim01", "cset9", "dip", 0, 30.0, 0.80, 10.0),
        ("denoise_s25", "kodim01", "cset9", "dip", 1, 31.0, 0.82, 12.0),
        ("denoise_s25", "kodim01", "cset9", "bm3d", 0, 31.5, 0.85, 3.0),
    ])
    table, md, _ = build(rows, pd.DataFrame(), PAPER, PAPER_RES, epsilon=0.5)
    dip = table[(table["method"] == "dip") & (table["image"] == "kodim01")].iloc[0]
    assert dip["psnr"] == pytest.approx(30.5) and dip["psnr_std"] == pytest.approx(math.sqrt(0.5)) and dip["seeds"] == 2
    mean = table[(table["method"] == "dip") & (table["image"] == "mean")].iloc[0]
    assert mean["paper_psnr"] == 30.43 and bool(mean["reproduced"]) is True
    assert "30.50 ± 0.71" in md


def test_super_resolution_compares_per_set_means() -> None:
    rows = _rows([
        ("sr_x4", "baby", "set5", "dip", 0, 30.0, 0.8, 5.0),
        ("sr_x4", "bird", "set5", "dip", 0, 29.0, 0.8, 5.0),
        ("sr_x4", "comic", "set14", "dip", 0, 24.0, 0.7, 5.0),
    ])
    table, _, _ = build(rows, pd.DataFrame(), PAPER, PAPER_RES, epsilon=0.5)
    dip = table[table["method"] == "dip"].set_index("image")
    assert dip.loc["mean:set5", "paper_psnr"] == 29.90 and dip.loc["mean:set5", "delta"] == pytest.approx(29.5 - 29.90)
    assert dip.loc["mean:set14", "paper_psnr"] == 27.00
    assert math.isnan(dip.loc["mean", "paper_psnr"]) and math.isnan(dip.loc["baby", "paper_psnr"])


def test_the_spread_over_seeds_on_known_numbers() -> None:
    """Two images × three seeds: per image mean ± sample std (ddof = 1) and min–max over seeds; the
    mean row is the mean over images, with the spread over seeds of the per-seed means over images."""
    from pipeline.report import seed_spread

    psnr = {("a", 0): 30.0, ("a", 1): 31.0, ("a", 2): 32.0, ("b", 0): 20.0, ("b", 1): 20.0, ("b", 2): 26.0}
    rows = _rows([("denoise_s25", i, "t", "dip", s, v, 0.5 + s / 10, 10.0) for (i, s), v in psnr.items()]
                 + [("denoise_s25", i, "t", "bm3d", "", 28.0, 0.9, 1.0) for i in ("a", "b")])
    table, md, _ = build(rows, pd.DataFrame(), PAPER, QUICK_RES, epsilon=0.5)
    dip = table[table["method"] == "dip"].set_index("image")
    assert dip.loc["a", ["psnr", "psnr_std", "psnr_min", "psnr_max", "seeds"]].tolist() == pytest.approx([31.0, 1.0, 30.0, 32.0, 3])
    assert dip.loc["b", ["psnr", "psnr_std", "psnr_min", "psnr_max"]].tolist() == pytest.approx([22.0, math.sqrt(12), 20.0, 26.0])
    # per-seed means over images: 25, 25.5, 29 → mean 26.5, std sqrt(((1.5)² + 1² + 2.5²) / 2) = sqrt(4.75)
    assert dip.loc["mean", ["psnr", "psnr_std", "psnr_min", "psnr_max"]].tolist() == pytest.approx([26.5, math.sqrt(4.75), 25.0, 29.0])
    assert dip.loc["mean", "ssim_std"] == pytest.approx(0.1)
    bm3d = table[table["method"] == "bm3d"].set_index("image")
    assert bm3d.loc["mean", "seeds"] == 1 and math.isnan(bm3d.loc["mean", "psnr_std"]) and math.isnan(bm3d.loc["a", "psnr_std"])
    assert f"26.50 ± {math.sqrt(4.75):.2f} [25.00–29.00]" in md and "31.00 ± 1.00 [30.00–32.00]" in md
    assert "DIP: 3 seeds." in md and "sample standard deviation (ddof = 1)" in md
    assert seed_spread([3.0]) == {"mean": 3.0, "std": pytest.approx(math.nan, nan_ok=True), "min": 3.0, "max": 3.0, "n": 1}


def test_one_seed_says_so() -> None:
    rows = _rows([("denoise_s25", "a", "t", "dip", 0, 30.0, 0.8, 10.0), ("denoise_s25", "b", "t", "dip", 0, 32.0, 0.8, 10.0)])
    table, md, _ = build(rows, pd.DataFrame(), PAPER, QUICK_RES, epsilon=0.5)
    mean = table[(table["method"] == "dip") & (table["image"] == "mean")].iloc[0]
    assert mean["seeds"] == 1 and math.isnan(mean["psnr_std"]) and mean["psnr_min"] == mean["psnr_max"] == 31.0
    assert "DIP: 1 seed (no spread over seeds)." in md and "±" not in md.split("\n## ")[1]


def test_the_input_has_no_spread_and_the_run_time_counts_every_seed() -> None:
    rows = _rows([("denoise_s25", "a", "t", m, s, v, 0.5, 10.0 + s) for s in (0, 1, 2) for m, v in (("dip", 30.0 + s), ("input", 20.0))])
    table, md, _ = build(rows, pd.DataFrame(), PAPER, QUICK_RES, epsilon=0.5)
    inp = table[table["method"] == "input"].set_index("image")
    assert math.isnan(inp.loc["a", "psnr_std"]) and math.isnan(inp.loc["mean", "psnr_std"]) and inp.loc["mean", "psnr"] == 20.0
    assert "| a | 31.00 ± 1.00 [30.00–32.00] (0.500) | 20.00 (0.500) |" in md
    assert "DIP run time: 33 s in total." in md  # 10 + 11 + 12
