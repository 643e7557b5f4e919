"""The `dip` CLI through typer's CliRunner, including every bad-input case."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from dip.metrics import to_uint8
from pipeline.cli import app

runner = CliRunner()
FAST = ["--iterations", "3", "--preset", "quick", "--device", "cpu", "--log-every", "1", "--snapshots", "0,2"]


@pytest.fixture
def images(tmp_path: Path, camera64: np.ndarray) -> dict[str, Path]:
    paths = {"clean": tmp_path / "clean.png", "mask": tmp_path / "mask.png", "small_mask": tmp_path / "small.png",
             "lr": tmp_path / "lr.png", "tiny": tmp_path / "tiny.png", "text": tmp_path / "notes.png"}
    Image.fromarray(to_uint8(camera64)).save(paths["clean"])
    mask = (np.random.default_rng(0).random(camera64.shape) > 0.5).astype(np.uint8) * 255
    Image.fromarray(mask).save(paths["mask"])
    Image.fromarray(mask[:32, :32]).save(paths["small_mask"])
    Image.fromarray(to_uint8(camera64[::4, ::4])).save(paths["lr"])
    Image.fromarray(to_uint8(camera64[::8, ::8])).save(paths["tiny"])
    paths["text"].write_text("not an image")
    return paths


def _one_line_error(result, needle: str) -> None:
    assert result.exit_code != 0
    lines = [line for line in result.output.strip().splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:"), result.output
    assert needle in lines[0]
    assert "Traceback" not in result.output


def test_restore_writes_every_output(tmp_path: Path, images: dict[str, Path]) -> None:
    out = tmp_path / "out"
    result = runner.invoke(app, ["restore", str(images["clean"]), "--task", "inpaint", "--mask", str(images["mask"]),
                                 "--gt", str(images["clean"]), "--out", str(out), *FAST])
    assert result.exit_code == 0, result.output
    assert (out / "restored.png").is_file() and (out / "curve.csv").is_file()
    assert sorted(p.name for p in (out / "snapshots").iterdir()) == ["iter_00000.png", "iter_00002.png"]
    run = json.loads((out / "run.json").read_text())
    assert run["iterations_run"] == 3 and run["task"] == "inpaint" and run["device"] == "cpu"
    assert {"psnr", "ssim"} <= set(run["metrics"]["restored"])
    assert Image.open(out / "restored.png").size == (64, 64)
    header = (out / "curve.csv").read_text().splitlines()[0]
    assert header.startswith("iteration,loss,psnr_obs,psnr_gt")


def test_sr_output_is_factor_times_larger(tmp_path: Path, images: dict[str, Path]) -> None:
    out = tmp_path / "sr"
    result = runner.invoke(app, ["restore", str(images["lr"]), "--task", "sr", "--factor", "4", "--out", str(out), *FAST])
    assert result.exit_code == 0, result.output
    assert Image.open(out / "restored.png").size == (64, 64)


@pytest.mark.parametrize(
    "args, needle",
    [
        (["missing.png", "--task", "denoise"], "no such file"),
        (["{text}", "--task", "denoise"], "not a readable image"),
        (["{clean}", "--task", "inpaint", "--mask", "{small_mask}"], "give a mask of the image's size"),
        (["{clean}", "--task", "inpaint"], "inpainting needs --mask"),
        (["{clean}", "--task", "deblur"], "unknown task 'deblur'"),
        (["{clean}", "--task", "denoise", "--iterations", "0"], "--iterations must be a positive number"),
        (["{clean}", "--task", "denoise", "--iterations", "-5"], "--iterations must be a positive number"),
        (["{lr}", "--task", "sr", "--factor", "1"], "--factor must be between 2 and 16"),
        (["{tiny}", "--task", "sr", "--factor", "2"], "too small for the network"),
        (["{clean}", "--task", "sr", "--factor", "4", "--gt", "{clean}"], "--gt is 64x64 but factor 4 gives 256x256"),
        (["{clean}", "--task", "denoise", "--preset", "fastest"], "unknown preset 'fastest'"),
    ],
)
def test_bad_input_is_one_clear_line(tmp_path: Path, images: dict[str, Path], args: list[str], needle: str) -> None:
    filled = [a.format(**{k: str(v) for k, v in images.items()}) for a in args]
    out = tmp_path / "never"
    result = runner.invoke(app, ["restore", *filled, "--out", str(out), "--iterations" if "--iterations" not in filled else "--seed", "1"])
    _one_line_error(result, needle)
    assert not out.exists()  # nothing half-written


def test_existing_output_needs_force(tmp_path: Path, images: dict[str, Path]) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    result = runner.invoke(app, ["restore", str(images["clean"]), "--task", "denoise", "--out", str(out), *FAST])
    _one_line_error(result, "pass --force")
    assert (out / "keep.txt").read_text() == "mine"
    result = runner.invoke(app, ["restore", str(images["clean"]), "--task", "denoise", "--out", str(out), "--force", *FAST])
    _one_line_error(result, "not an output of dip")  # --force replaces only dip's own outputs
    assert (out / "keep.txt").read_text() == "mine"
    (out / "keep.txt").unlink()  # an empty folder may be used
    result = runner.invoke(app, ["restore", str(images["clean"]), "--task", "denoise", "--out", str(out), "--force", *FAST])
    assert result.exit_code == 0, result.output
    assert (out / "restored.png").is_file()


def test_net_json_reports_the_paper_parameter_count() -> None:
    result = runner.invoke(app, ["net", "--json", "--channels", "1"])
    assert result.exit_code == 0
    assert json.loads(result.output)["parameters"] == 2_217_573
    text = runner.invoke(app, ["net"]).output
    assert "parameters: 2,217,831" in text


def test_metrics_prints_json(images: dict[str, Path], tmp_path: Path, camera64: np.ndarray) -> None:
    noisy = tmp_path / "noisy.png"
    Image.fromarray(to_uint8(np.clip(camera64 + 0.05, 0, 1))).save(noisy)
    result = runner.invoke(app, ["metrics", str(images["clean"]), str(noisy)])
    assert result.exit_code == 0, result.output
    values = json.loads(result.output)
    assert 20 < values["psnr"] < 40 and 0 < values["ssim"] < 1
    _one_line_error(runner.invoke(app, ["metrics", str(images["clean"]), str(images["lr"])]), "is 64x64 but")


def test_restore_a_folder_with_a_bad_file_among_good_ones_and_resume(tmp_path: Path, camera64: np.ndarray) -> None:
    """Several inputs: one folder per image, masks NAME_mask.png beside each, a bad file reported
    on one line without stopping the others, exit 1; run again: finished images are skipped."""
    photos = tmp_path / "photos"
    photos.mkdir()
    rng = np.random.default_rng(0)
    for name, image in (("a", camera64), ("b", camera64.T.copy()), ("c", camera64[:, ::-1].copy())):
        Image.fromarray(to_uint8(image)).save(photos / f"{name}.png")
        Image.fromarray((rng.random(image.shape) > 0.5).astype(np.uint8) * 255).save(photos / f"{name}_mask.png")
    (photos / "broken.png").write_bytes(b"not a png at all")
    Image.fromarray(to_uint8(camera64)).save(photos / "nomask.png")
    out = tmp_path / "out"
    args = ["restore", str(photos), "--task", "inpaint", "--out", str(out), *FAST]
    first = runner.invoke(app, args)
    assert first.exit_code == 1, first.output
    errors = [line for line in first.output.splitlines() if line.startswith("error:")]
    assert len(errors) == 2 and any("broken.png" in e for e in errors) and any("nomask.png" in e and "mask" in e for e in errors)
    assert "Traceback" not in first.output
    assert sorted(p.name for p in out.iterdir()) == ["a", "b", "c"]
    for name in "abc":
        run = json.loads((out / name / "run.json").read_text())
        assert run["input"] == str(photos / f"{name}.png") and run["iterations_run"] == 3 and run["batch_hash"]
    stamp = (out / "a" / "run.json").read_text()
    (photos / "broken.png").unlink()
    (photos / "nomask.png").unlink()
    again = runner.invoke(app, args)
    assert again.exit_code == 0, again.output
    assert "0 restored, 3 already done, 0 failed" in again.output
    assert (out / "a" / "run.json").read_text() == stamp  # not redone
    changed = runner.invoke(app, [*args[:-len(FAST)], *FAST[:1], "4", *FAST[2:]])  # other settings: refuses without --force
    assert changed.exit_code == 1 and changed.output.count("error:") == 3 and "--force" in changed.output


def test_restore_many_refuses_gt_and_empty_folders(tmp_path: Path, images: dict[str, Path]) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    _one_line_error(runner.invoke(app, ["restore", str(empty), "--out", str(tmp_path / "o"), *FAST]), "no images")
    _one_line_error(runner.invoke(app, ["restore", str(images["clean"]), str(images["lr"]), "--gt", str(images["clean"]),
                                        "--out", str(tmp_path / "o"), *FAST]), "--gt works with one input")


def test_a_diverged_fit_is_one_error_line_and_writes_nothing(tmp_path: Path, images: dict[str, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    import pipeline.execution.fits as restoring

    real_run_fits = restoring.run_fits

    def diverging(fitters):
        results = real_run_fits(fitters)
        for result in results:
            result.diverged_at = 2
        return results

    monkeypatch.setattr(restoring, "run_fits", diverging)
    out = tmp_path / "out"
    _one_line_error(runner.invoke(app, ["restore", str(images["clean"]), "--out", str(out), *FAST]), "NaN/Inf at iteration 2")
    assert not out.exists() and sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []
