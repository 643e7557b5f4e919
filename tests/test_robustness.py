"""Issue 11: bad inputs and hostile settings never lose a user's files, never give silently wrong
results, never write outside the output root and never end in a traceback."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image
from typer.testing import CliRunner

from pipeline.files import atomic_directory, save_image
from dip.metrics import to_uint8
from pipeline.cli import app
from pipeline.stages.fetch import FetchOptions, fetch_all
from pipeline.images.manifest import load_manifest, sha256_bytes

runner = CliRunner()
FAST = ["--iterations", "2", "--preset", "quick", "--device", "cpu", "--log-every", "1", "--snapshots", "0"]


def one_line_error(result, needle: str) -> None:
    """Exactly one line, ``error: …`` saying ``needle`` (a progress bar drawn before a failure mid-fit is hidden)."""
    assert result.exit_code != 0, result.output
    lines = [line for line in result.output.strip().splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:"), result.output
    assert needle in lines[0], lines[0]


@pytest.fixture
def clean(tmp_path: Path, camera64: np.ndarray) -> Path:
    path = tmp_path / "clean.png"
    Image.fromarray(to_uint8(camera64)).save(path)
    return path


def user_folder(path: Path) -> Path:
    (path / "docs").mkdir(parents=True)
    (path / "docs" / "thesis.tex").write_text("three years of work")
    return path


# --- 1. data loss ----------------------------------------------------------------------------


def test_force_never_replaces_a_users_folder(tmp_path: Path, clean: Path) -> None:
    out = user_folder(tmp_path / "mine")
    result = runner.invoke(app, ["restore", str(clean), "--out", str(out), "--force", *FAST])
    one_line_error(result, "not an output of dip")
    assert (out / "docs" / "thesis.tex").read_text() == "three years of work"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["clean.png", "mine"]  # no .tmp, no .old


def test_force_replaces_dips_own_output(tmp_path: Path, clean: Path) -> None:
    out = tmp_path / "out"
    assert runner.invoke(app, ["restore", str(clean), "--out", str(out), *FAST]).exit_code == 0
    assert (out / ".dip-output").is_file()
    one_line_error(runner.invoke(app, ["restore", str(clean), "--out", str(out), *FAST]), "pass --force")
    result = runner.invoke(app, ["restore", str(clean), "--out", str(out), "--force", *FAST])
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["clean.png", "out"]


def test_force_onto_a_file_refuses_and_leaves_no_old_copy(tmp_path: Path, clean: Path) -> None:
    target = tmp_path / "notes.txt"
    target.write_text("mine")
    result = runner.invoke(app, ["restore", str(clean), "--out", str(target), "--force", *FAST])
    one_line_error(result, "is not a folder")
    assert target.read_text() == "mine"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["clean.png", "notes.txt"]


def test_demo_keeps_a_users_folder_and_refuses_dot_before_fitting(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import pipeline.execution.fits

    def no_fit(*args, **kwargs):  # the refusal must come before any fitting
        raise AssertionError("fitted although --out is refused")

    monkeypatch.setattr(pipeline.execution.fits, "drive", no_fit)
    out = user_folder(tmp_path / "mine")
    one_line_error(runner.invoke(app, ["demo", "--out", str(out), "--iterations", "1", "--size", "32"]), "not an output of dip")
    assert (out / "docs" / "thesis.tex").is_file()
    monkeypatch.chdir(tmp_path)
    one_line_error(runner.invoke(app, ["demo", "--out", ".", "--iterations", "1", "--size", "32"]), "current folder")


def test_atomic_directory_modes_follow_the_umask(tmp_path: Path) -> None:
    old = os.umask(0o022)
    try:
        with atomic_directory(tmp_path / "out") as tmp:
            save_image(tmp / "a.png", np.zeros((4, 4), np.float32))
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "out").stat().st_mode) == 0o755
    assert stat.S_IMODE((tmp_path / "out" / "a.png").stat().st_mode) == 0o644


def write_manifest(path: Path, images: dict[str, dict[str, dict]]) -> Path:
    path.write_text(yaml.safe_dump({"sets": {s: {"images": imgs} for s, imgs in images.items()}}))
    return path


def test_fetch_prunes_only_the_images_it_manages(tmp_path: Path) -> None:
    pic = np.arange(48, dtype=np.uint8).reshape(4, 4, 3)
    mirror = tmp_path / "mirror"
    (mirror / "s").mkdir(parents=True)
    Image.fromarray(pic).save(mirror / "s" / "a.png")
    entry = {"file": "s/a.png", "pixel_sha256": sha256_bytes(pic.tobytes())}
    manifest = load_manifest(write_manifest(tmp_path / "m.yaml", {"s": {"a": entry, "b": entry}}))
    out = user_folder(tmp_path / "images")
    (out / "s").mkdir()
    (out / "s" / "b.png").write_bytes((mirror / "s" / "a.png").read_bytes())  # a managed image not asked for
    (out / "s" / "notes.txt").write_text("mine")
    fetch_all(manifest, ["s/a"], out, FetchOptions(mirror=mirror, allow_network=False))
    assert (out / "docs" / "thesis.tex").is_file() and (out / "s" / "notes.txt").is_file()
    assert (out / "s" / "a.png").is_file() and not (out / "s" / "b.png").exists()


def test_run_prune_keeps_files_dip_did_not_write(tmp_path: Path) -> None:
    from pipeline.stages.run import prune

    out = tmp_path / "results"
    with atomic_directory(out / "old_image" / "seed_0"):
        pass
    user_folder(out / "other")
    prune(out, [])
    assert not (out / "old_image").exists()
    assert (out / "other" / "docs" / "thesis.tex").is_file()


# --- 3. path traversal -----------------------------------------------------------------------


@pytest.mark.parametrize("set_name, name", [("s", "../../escaped"), ("..", "x"), ("s", ".hidden"), ("s", "a/b"), ("s", "a b"), ("s/..", "x")])
def test_manifest_names_must_be_safe(tmp_path: Path, set_name: str, name: str) -> None:
    path = write_manifest(tmp_path / "m.yaml", {set_name: {name: {"skimage": "camera", "pixel_sha256": "0" * 64}}})
    with pytest.raises(ValueError, match="names may only hold letters, digits"):
        load_manifest(path)


def test_fetch_cli_refuses_an_escaping_manifest(tmp_path: Path) -> None:
    manifest = write_manifest(tmp_path / "m.yaml", {"s": {"../../escaped": {"skimage": "camera", "pixel_sha256": "0" * 64}}})
    out = tmp_path / "a" / "b" / "images"
    result = runner.invoke(app, ["fetch", "--sets", "s", "--manifest", str(manifest), "--out", str(out)])
    one_line_error(result, "'../../escaped'")
    assert not (tmp_path / "a" / "escaped.png").exists() and not (tmp_path / "a").exists()


CORRUPT_PROFILE = {"experiments": ["denoise_s25"], "images": {"denoise": ["t/a"]}, "max_side": 0}


def corrupt_inputs(tmp_path: Path, camera64: np.ndarray, name: str = "a"):
    from pipeline.images.manifest import ImageEntry
    from pipeline.settings import Profile

    save_image(tmp_path / "images" / "t" / "a.png", camera64[:16, :16])
    return Profile("tiny", CORRUPT_PROFILE), {"denoise": [ImageEntry(set="t", name=name, pixel_sha256="-")]}


def test_corrupt_validates_every_id_before_deleting(tmp_path: Path, camera64: np.ndarray) -> None:
    from pipeline.stages.corrupt import corrupt_all

    profile, by_task = corrupt_inputs(tmp_path, camera64)
    out = tmp_path / "corrupted"
    corrupt_all(["denoise_s25"], profile, by_task, tmp_path / "images", out, 0)
    with pytest.raises(ValueError, match="bad experiment id 'deblur_s3'"):
        corrupt_all(["denoise_s25", "deblur_s3"], profile, by_task, tmp_path / "images", out, 0)
    assert (out / "denoise_s25" / "a" / "meta.json").is_file()  # the earlier output is intact


def test_corrupt_never_replaces_a_users_folder_or_escapes(tmp_path: Path, camera64: np.ndarray) -> None:
    from pipeline.stages.corrupt import corrupt_all

    profile, by_task = corrupt_inputs(tmp_path, camera64)
    mine = user_folder(tmp_path / "mine")
    with pytest.raises(FileExistsError, match="not an output of dip"):
        corrupt_all(["denoise_s25"], profile, by_task, tmp_path / "images", mine, 0)
    assert (mine / "docs" / "thesis.tex").is_file()
    profile, by_task = corrupt_inputs(tmp_path, camera64, name="../../../mine")  # an entry built without load_manifest
    with pytest.raises(ValueError, match="outside"):
        corrupt_all(["denoise_s25"], profile, by_task, tmp_path / "images", tmp_path / "corrupted", 0)
    assert (mine / "docs" / "thesis.tex").is_file()


# --- 2. silently wrong results ---------------------------------------------------------------


def test_restore_refuses_to_write_a_non_finite_result(tmp_path: Path, camera64: np.ndarray, monkeypatch: pytest.MonkeyPatch) -> None:
    import torch

    import pipeline.execution.fits as restoring
    from dip.operators import Denoising
    from pipeline.execution.fits import prepare, run_one
    from pipeline.execution.keys import Fit
    from pipeline.settings import preset_configs

    real_run_fits = restoring.run_fits

    def diverged(fitters):  # fits whose output went to NaN
        results = real_run_fits(fitters)
        for result in results:
            result.output.fill_(float("nan"))
        return results

    monkeypatch.setattr(restoring, "run_fits", diverged)
    _, net_cfg, fit_cfg = preset_configs("quick", "denoise", device="cpu")
    fit_cfg.iterations = 1
    out = tmp_path / "out"
    with pytest.raises(ValueError, match="NaN or infinite"):
        run_one(Fit(None, out), lambda f: prepare(Denoising(), camera64[:32, :32], f.out_dir, net_cfg, fit_cfg, device=torch.device("cpu"), snapshots=()))
    assert list(tmp_path.iterdir()) == []  # nothing written, no temporary folder left


# --- 4. crashes become one line ----------------------------------------------------------------


@pytest.mark.parametrize("factor", [3, 5, 7])
def test_odd_sr_factors_work(factor: int) -> None:
    import torch

    from dip.operators import SuperResolution

    rng = np.random.default_rng(factor)
    hr = rng.random((factor * 8, factor * 6, 3)).astype(np.float32)
    op = SuperResolution(factor)
    low = op(torch.from_numpy(hr.transpose(2, 0, 1).copy())[None])
    assert tuple(low.shape[-2:]) == (8, 6)
    const = op(torch.full((1, 1, factor * 4, factor * 4), 0.3))
    assert torch.allclose(const, torch.full_like(const, 0.3), atol=1e-6)


def test_sr_x3_runs_from_the_cli(tmp_path: Path, camera64: np.ndarray) -> None:
    from pipeline.settings import parse_experiment

    assert parse_experiment("sr_x3").factor == 3
    lr = tmp_path / "lr.png"
    Image.fromarray(to_uint8(camera64[:63:3, :63:3])).save(lr)  # 21 x 21
    result = runner.invoke(app, ["restore", str(lr), "--task", "sr", "--factor", "3", "--out", str(tmp_path / "out"), *FAST])
    assert result.exit_code == 0, result.output
    assert Image.open(tmp_path / "out" / "restored.png").size == (63, 63)


def test_a_huge_image_is_refused_before_fitting(tmp_path: Path) -> None:
    big = tmp_path / "big.png"
    Image.new("L", (3000, 2000)).save(big)
    out = tmp_path / "out"
    one_line_error(runner.invoke(app, ["restore", str(big), "--out", str(out), *FAST]), "more than the limit of 4,194,304")
    small = tmp_path / "small.png"
    Image.new("L", (600, 400)).save(small)  # 2,400 x 1,600 restored at factor 4
    one_line_error(runner.invoke(app, ["restore", str(small), "--task", "sr", "--factor", "4", "--out", str(out), "--max-pixels", "1000000", *FAST]),
                   "3,840,000 pixels, more than the limit of 1,000,000")
    one_line_error(runner.invoke(app, ["demo", "--size", "5000", "--out", str(out)]), "use at most 2048")
    assert not out.exists()


@pytest.mark.parametrize("code", [28, 30])  # ENOSPC, EROFS
def test_a_full_or_read_only_disk_is_one_line(tmp_path: Path, clean: Path, monkeypatch: pytest.MonkeyPatch, code: int) -> None:
    import pipeline.execution.fits

    def refuse(path, image):
        raise OSError(code, os.strerror(code), str(path))

    monkeypatch.setattr(pipeline.execution.fits, "save_image", refuse)
    result = runner.invoke(app, ["restore", str(clean), "--out", str(tmp_path / "out"), *FAST])
    one_line_error(result, os.strerror(code))
    assert "writable disk with free space" in result.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["clean.png"]


@pytest.mark.parametrize("device, needle", [("tpu", "unknown device 'tpu'"), ("mps", "not available"), ("cuda:7", "cuda")])
def test_unavailable_devices_are_one_line(tmp_path: Path, clean: Path, device: str, needle: str) -> None:
    import torch

    if torch.cuda.is_available() or torch.backends.mps.is_available():
        pytest.skip("this machine has an accelerator")
    args = ["restore", str(clean), "--out", str(tmp_path / "out"), "--iterations", "1", "--device", device]
    one_line_error(runner.invoke(app, args), needle)


# --- 6. signals ----------------------------------------------------------------------------------


@pytest.mark.integration  # a real `dip restore` process, killed mid-fit (seconds)
def test_sigterm_mid_fit_leaves_nothing_behind(tmp_path: Path, clean: Path) -> None:
    """Outputs are written only after the fit (snapshots are kept in memory), so SIGTERM mid-fit
    must leave no output folder and no temporary folder, with one `error: interrupted` line."""
    import signal
    import subprocess
    import sys
    import time

    root = Path(__file__).resolve().parents[1]
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "pipeline.cli", "restore", str(clean), "--out", str(out), "--iterations", "100000",
           "--preset", "quick", "--device", "cpu", "--snapshots", "0"]
    env = {**os.environ, "PYTHONPATH": str(root), "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(cmd, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        time.sleep(8)  # imports, then the fit of 100000 iterations is under way
        assert proc.poll() is None, "the fit ended before the signal"
        proc.send_signal(signal.SIGTERM)
        _, stderr = proc.communicate(timeout=120)
    finally:
        proc.kill()
    assert proc.returncode != 0
    assert [line for line in stderr.splitlines() if line.strip()][-1].startswith("error: interrupted")
    assert "Traceback" not in stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["clean.png"]


# --- 7. masks and options that would be ignored ------------------------------------------------


def test_all_black_mask_and_mask_without_inpaint_are_errors(tmp_path: Path, clean: Path) -> None:
    black = tmp_path / "black.png"
    Image.new("L", (64, 64)).save(black)
    out = tmp_path / "out"
    one_line_error(runner.invoke(app, ["restore", str(clean), "--task", "inpaint", "--mask", str(black), "--out", str(out), *FAST]), "all black")
    one_line_error(runner.invoke(app, ["restore", str(clean), "--task", "denoise", "--mask", str(black), "--out", str(out), *FAST]),
                   "--mask is only used by --task inpaint")
    assert not out.exists()


# --- 8. small ones -----------------------------------------------------------------------------


def test_metrics_of_identical_images_is_valid_json(clean: Path) -> None:
    result = runner.invoke(app, ["metrics", str(clean), str(clean)])
    assert result.exit_code == 0, result.output
    values = json.loads(result.output)  # strict JSON: no Infinity
    assert values["psnr"] is None and "infinite" in values["note"] and values["ssim"] == 1.0


def test_metrics_gray_against_colour_says_channels(tmp_path: Path, clean: Path) -> None:
    colour = tmp_path / "colour.png"
    Image.open(clean).convert("RGB").save(colour)
    result = runner.invoke(app, ["metrics", str(clean), str(colour)])
    one_line_error(result, "is gray (1 channel) but")
    assert "colour (3 channels)" in result.output
