"""Corruption by seed, experiment ids, profile resolution, and resuming an interrupted restore."""

from __future__ import annotations

import json
import platform
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import tiny_profile
from pipeline.stages.corrupt import corrupt_all, write_case
from pipeline.images.manifest import ImageEntry
from pipeline.settings import Profile, choose_profile, parse_experiment
from pipeline.stages.resolve import resolve
from pipeline.execution.keys import Fit
from pipeline.stages.run import run_experiment

TINY = tiny_profile(4)


@pytest.mark.parametrize("exp_id,task,value", [("denoise_s25", "denoise", 25 / 255), ("denoise_s8.5", "denoise", 1 / 30), ("inpaint_p50", "inpaint", 0.5), ("sr_x8", "sr", 8)])
def test_experiment_ids(exp_id: str, task: str, value: float) -> None:
    exp = parse_experiment(exp_id)
    assert exp.task == task and list(exp.corruption().values()) == [pytest.approx(value)]


@pytest.mark.parametrize("bad", ["denoise", "inpaint_p", "sr_x1", "deblur_s3"])
def test_bad_experiment_ids(bad: str) -> None:
    with pytest.raises(ValueError, match="experiment id"):
        parse_experiment(bad)


def test_auto_is_paper_on_cuda_and_quick_elsewhere() -> None:
    profiles = {"paper": {}, "quick": {}, "smoke": {}}
    assert choose_profile("auto", profiles, cuda=True) == "paper" and choose_profile("auto", profiles, cuda=False) == "quick"
    assert choose_profile("smoke", profiles, cuda=True) == "smoke"
    with pytest.raises(ValueError, match="unknown profile 'fast'; choose auto or one of paper, quick, smoke"):
        choose_profile("fast", profiles, cuda=False)
    with pytest.raises(ValueError, match="profile 'paper' .resolved from 'auto'. is not defined"):
        choose_profile("auto", {"quick": {}}, cuda=True)


def test_the_resolve_stage_records_profile_and_device() -> None:
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    profiles = {"paper": {}, "quick": {}, "smoke": {}}
    assert resolve("auto", profiles)["profile"] == "quick"
    record = resolve("smoke", profiles, "cpu")
    assert record == {"requested": "smoke", "profile": "smoke", "device": "cpu", "device_name": platform.processor() or platform.machine()}
    assert record["device_name"]


@pytest.mark.parametrize("exp_id", ["denoise_s25", "inpaint_p50", "sr_x4"])
def test_corruption_is_reproducible_by_seed(tmp_path: Path, tiny_images: tuple[Path, list[ImageEntry]], exp_id: str) -> None:
    root, entries = tiny_images
    exp, prof = parse_experiment(exp_id), Profile("t", TINY)
    obs = []
    for run, seed in enumerate((7, 7, 8)):
        write_case(tmp_path / str(run), exp, entries[0], root, prof, seed)
        obs.append(np.load(tmp_path / str(run) / "observation.npy"))
    assert np.array_equal(obs[0], obs[1])
    if exp.task != "sr":  # the low-resolution image has no randomness
        assert not np.array_equal(obs[0], obs[2])
    meta = json.loads((tmp_path / "0/meta.json").read_text())
    assert meta["experiment"] == exp_id and meta["base_seed"] == 7 and meta["size"] == [24 - 24 % (exp.factor or 1), 20 - 20 % (exp.factor or 1)]


def test_interrupted_restore_resumes(tmp_path: Path, tiny_images: tuple[Path, list[ImageEntry]]) -> None:
    root, entries = tiny_images
    prof = Profile("t", TINY)
    corrupted, results = tmp_path / "corrupted", tmp_path / "results"
    corrupt_all(["inpaint_p50", "sr_x4"], prof, {"inpaint": entries}, root, corrupted, seed=0)
    log: list[tuple[str, str]] = []

    def interrupt_after_first(job: Fit, status: str) -> None:
        log.append((job.image, status))
        if status == "run":
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_experiment("inpaint_p50", corrupted / "inpaint_p50", results / "inpaint_p50", prof, [0], "cpu", interrupt_after_first)
    assert (results / "inpaint_p50/a/seed_0/run.json").is_file() and not (results / "inpaint_p50/b").exists()
    first = (results / "inpaint_p50/a/seed_0/run.json").read_text()

    log.clear()
    stats = run_experiment("inpaint_p50", corrupted / "inpaint_p50", results / "inpaint_p50", prof, [0], "cpu", lambda j, s: log.append((j.image, s)))
    assert stats == {"run": 1, "reused": 1} and log == [("a", "reused"), ("b", "run")]
    assert (results / "inpaint_p50/a/seed_0/run.json").read_text() == first  # not redone

    changed = Profile("t", {**TINY, "fit": {"inpaint": {**TINY["fit"]["inpaint"], "iterations": 5}}})
    assert run_experiment("inpaint_p50", corrupted / "inpaint_p50", results / "inpaint_p50", changed, [0], "cpu") == {"run": 2, "reused": 0}
    assert run_experiment("sr_x4", corrupted / "sr_x4", results / "sr_x4", prof, [0], "cpu") == {"run": 0, "reused": 0}
    assert json.loads((results / "sr_x4/experiment.json").read_text())["active"] is False


def test_grouped_run_writes_what_one_at_a_time_writes(tmp_path: Path, tiny_images: tuple[Path, list[ImageEntry]]) -> None:
    """engine.group: seeds of one image (same size) fitted together give each seed's lone result."""
    from pipeline.execution.engines import LocalEngine

    root, entries = tiny_images
    fit64 = {**TINY["fit"]["inpaint"], "precision": "fp64", "backtrack": True, "exp_weight": 0.9}
    prof = Profile("t", {**TINY, "fit": {"inpaint": fit64}})
    corrupted = tmp_path / "corrupted"
    corrupt_all(["inpaint_p50"], prof, {"inpaint": entries}, root, corrupted, seed=0)
    records = {}
    for size in ("auto", "3"):  # auto: one at a time off CUDA
        out = tmp_path / f"group{size}"
        run_experiment("inpaint_p50", corrupted / "inpaint_p50", out, prof, [0, 1, 2], "cpu", engine=LocalEngine(1, size))
        records[size] = {p.parent.relative_to(out).as_posix(): json.loads(p.read_text()) for p in sorted(out.glob("*/seed_*/run.json"))}
    assert len(records["auto"]) == 6 and records["auto"].keys() == records["3"].keys()
    for key, alone in records["auto"].items():
        together = records["3"][key]
        assert alone["group_size"] == 1 and together["group_size"] == 3
        assert together["seed"] == alone["seed"] and together["settings_hash"] == alone["settings_hash"]
        for which in ("final", "averaged"):
            assert together["metrics"][which]["psnr"] == pytest.approx(alone["metrics"][which]["psnr"], abs=1e-6)
