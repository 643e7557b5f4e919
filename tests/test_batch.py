"""`dip restore` on many images (pipeline/execution/batch.py): memory does not grow with the count,
sizes are refused from the header before decoding, a damaged earlier output never stops a batch,
and every error names its file."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import weakref
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from dip.metrics import to_uint8
from pipeline.cli import app

runner = CliRunner()
FAST = ["--iterations", "2", "--preset", "quick", "--device", "cpu", "--log-every", "1", "--snapshots", "0,1,2"]
ROOT = Path(__file__).resolve().parents[1]


def photos(folder: Path, image: np.ndarray, n: int) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        Image.fromarray(to_uint8(np.roll(image, 3 * i, axis=1))).save(folder / f"img{i:02d}.png")
    return folder


def test_each_fit_is_released_when_its_folder_is_written(tmp_path: Path, camera64: np.ndarray, monkeypatch: pytest.MonkeyPatch) -> None:
    """When image k is written, the fits of the images before it are gone (network, input code,
    snapshots) and none after it has been set up: one fit in memory at a time, not all of them."""
    import pipeline.execution.fits as fits

    fitters: list[weakref.ref] = []
    alive_at_write: list[int] = []
    prepare, write = fits.prepare, fits.write

    def tracking_prepare(*args, **kwargs):  # noqa: ANN002, ANN003
        r = prepare(*args, **kwargs)
        fitters.append(weakref.ref(r.fitter))
        return r

    def tracking_write(r, result):  # noqa: ANN001
        alive_at_write.append(sum(ref() is not None for ref in fitters))
        return write(r, result)

    monkeypatch.setattr(fits, "prepare", tracking_prepare)
    monkeypatch.setattr(fits, "write", tracking_write)
    result = runner.invoke(app, ["restore", str(photos(tmp_path / "in", camera64[:32, :32], 4)), "--out", str(tmp_path / "out"), *FAST])
    assert result.exit_code == 0, result.output
    assert len(fitters) == 4 and alive_at_write == [1, 1, 1, 1]
    assert all(ref() is None for ref in fitters)


def test_dip_run_also_releases_each_fit(tmp_path: Path, tiny_images, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: ANN001
    """The in-process engine of `dip run` streams its jobs through the same driver."""
    import pipeline.execution.fits as fits
    import pipeline.execution.job as job
    from conftest import tiny_profile
    from pipeline.settings import Profile
    from pipeline.stages.corrupt import corrupt_all
    from pipeline.stages.run import run_experiment

    root, entries = tiny_images
    prof = Profile("tiny", tiny_profile(iterations=2))
    corrupt_all(["denoise_s25"], prof, {"denoise": entries}, root, tmp_path / "corrupted", 0)
    fitters: list[weakref.ref] = []
    alive_at_write: list[int] = []
    prepare, write = job.prepare, fits.write
    monkeypatch.setattr(job, "prepare", lambda *a, **k: (r := prepare(*a, **k), fitters.append(weakref.ref(r.fitter)))[0])
    monkeypatch.setattr(fits, "write", lambda r, res: (alive_at_write.append(sum(f() is not None for f in fitters)), write(r, res))[1])
    stats = run_experiment("denoise_s25", tmp_path / "corrupted" / "denoise_s25", tmp_path / "results" / "denoise_s25", prof, [0, 1], "cpu")
    assert stats == {"run": 4, "reused": 0} and len(fitters) == 4 and alive_at_write == [1, 1, 1, 1]


def test_a_huge_header_is_refused_before_any_decoding(tmp_path: Path, camera64: np.ndarray, monkeypatch: pytest.MonkeyPatch) -> None:
    """A small file claiming 13000×13000 pixels is refused by its header: nothing is decoded
    (PIL's ``load`` never runs on it), in a batch the other images go on."""
    from PIL import ImageFile

    from test_fuzz_inputs import png_claiming

    folder = photos(tmp_path / "in", camera64[:32, :32], 1)
    (folder / "huge.png").write_bytes(png_claiming(13_000, 13_000))
    decoded: list[tuple[int, int]] = []
    load = ImageFile.ImageFile.load
    monkeypatch.setattr(ImageFile.ImageFile, "load", lambda im: (decoded.append(im.size), load(im))[1])
    result = runner.invoke(app, ["restore", str(folder), "--out", str(tmp_path / "out"), *FAST])
    assert result.exit_code == 1
    errors = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert errors == [f"error: {folder / 'huge.png'}: the restored image would be 13000x13000 = 169,000,000 pixels, more than the limit "
                      "of 4,194,304 (a fit needs memory for many network activations per pixel); downscale or crop it, or raise "
                      "the limit with --max-pixels"], result.output
    assert (13_000, 13_000) not in decoded and (tmp_path / "out" / "img00" / "restored.png").is_file()
    single = runner.invoke(app, ["restore", str(folder / "huge.png"), "--out", str(tmp_path / "one"), *FAST])
    assert single.exit_code == 2 and single.output.startswith(f"error: {folder / 'huge.png'}: the restored image would be 13000x13000")
    assert (13_000, 13_000) not in decoded and not (tmp_path / "one").exists()


def test_a_deeply_nested_run_json_does_not_stop_a_resumed_batch(tmp_path: Path, camera64: np.ndarray) -> None:
    folder = photos(tmp_path / "in", camera64[:32, :32], 3)
    out = tmp_path / "out"
    assert runner.invoke(app, ["restore", str(folder), "--out", str(out), *FAST]).exit_code == 0
    (out / "img01" / "run.json").write_text("[" * 100_000 + "]" * 100_000)
    again = runner.invoke(app, ["restore", str(folder), "--out", str(out), "--force", *FAST])
    assert again.exit_code == 0, again.output
    assert "1 restored, 2 already done, 0 failed" in again.output
    assert json.loads((out / "img01" / "run.json").read_text())["iterations_run"] == 2


def test_a_truncated_image_names_its_file(tmp_path: Path, camera64: np.ndarray) -> None:
    folder = photos(tmp_path / "in", camera64[:32, :32], 2)
    data = (folder / "img01.png").read_bytes()
    (folder / "img01.png").write_bytes(data[: len(data) * 2 // 3])  # the header is intact: it fails when decoded
    result = runner.invoke(app, ["restore", str(folder), "--out", str(tmp_path / "out"), *FAST])
    assert result.exit_code == 1
    errors = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and errors[0].startswith(f"error: {folder / 'img01.png'}: not a readable image")  # the reason after it is Pillow's wording
    single = runner.invoke(app, ["restore", str(folder / "img01.png"), "--out", str(tmp_path / "one"), *FAST])
    assert single.exit_code == 2 and single.output.startswith(f"error: {folder / 'img01.png'}: not a readable image"), single.output


DAMAGE = {
    "truncated observation.npy": ("observation.npy", lambda data: data[:200]),
    "meta.json is a list": ("meta.json", lambda data: b"[" + data + b"]"),
    "meta.json nested 100k deep": ("meta.json", lambda data: b"[" * 100_000 + b"]" * 100_000),
    "factor is Infinity": ("meta.json", lambda data: data.replace(b'"task": "denoise"', b'"task": "sr", "factor": Infinity')),
}


@pytest.mark.parametrize("damage", list(DAMAGE))
def test_dip_run_names_a_damaged_case(tmp_path: Path, tiny_images, damage: str) -> None:  # noqa: ANN001
    """A damaged corrupted case is one error naming that case folder (not a traceback, not a
    message without a file); the other images' results are kept."""
    from conftest import tiny_profile
    from pipeline.settings import Profile
    from pipeline.stages.corrupt import corrupt_all
    from pipeline.stages.run import run_experiment

    root, entries = tiny_images
    prof = Profile("tiny", tiny_profile(iterations=2))
    corrupt_all(["denoise_s25"], prof, {"denoise": entries}, root, tmp_path / "corrupted", 0)
    case = tmp_path / "corrupted" / "denoise_s25" / "b"
    name, change = DAMAGE[damage]
    (case / name).write_bytes(change((case / name).read_bytes()))
    with pytest.raises(ValueError, match=f"^{case}: ") as err:
        run_experiment("denoise_s25", case.parent, tmp_path / "results" / "denoise_s25", prof, [0], "cpu")
    assert "\n" not in str(err.value)
    assert (tmp_path / "results" / "denoise_s25" / "a" / "seed_0" / "restored.png").is_file()


@pytest.mark.parametrize("images", [["../../escaped"], [".hidden"], "a", [["a"]]])
def test_dip_run_refuses_an_experiment_record_naming_paths(tmp_path: Path, tiny_images, images: object) -> None:  # noqa: ANN001
    from conftest import tiny_profile
    from pipeline.settings import Profile
    from pipeline.stages.corrupt import corrupt_all
    from pipeline.stages.run import run_experiment

    root, entries = tiny_images
    prof = Profile("tiny", tiny_profile(iterations=2))
    corrupt_all(["denoise_s25"], prof, {"denoise": entries}, root, tmp_path / "corrupted", 0)
    record = tmp_path / "corrupted" / "denoise_s25" / "experiment.json"
    record.write_text(json.dumps({**json.loads(record.read_text()), "images": images}))
    with pytest.raises(ValueError, match=f"^{record}: "):
        run_experiment("denoise_s25", record.parent, tmp_path / "out" / "results" / "denoise_s25", prof, [0], "cpu")
    assert not (tmp_path / "escaped").exists() and not (tmp_path / "out" / "results" / "denoise_s25" / "a").exists()


def test_demo_writes_its_inputs_inside_the_atomic_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """corrupted.png and ground_truth.png are part of the folder written at once: a failure
    while writing them leaves no folder at all (before: the fit's folder, without them)."""
    import pipeline.execution.fits as fits
    import pipeline.files

    out = tmp_path / "demo"
    result = runner.invoke(app, ["demo", "--out", str(out), "--iterations", "2", "--size", "32", "--device", "cpu"])
    assert result.exit_code == 0, result.output
    assert {"corrupted.png", "ground_truth.png", "restored.png", "run.json", ".dip-output"} <= {p.name for p in out.iterdir()}
    save = pipeline.files.save_image

    def failing(path, image):  # noqa: ANN001
        if Path(path).name == "ground_truth.png":
            raise OSError(28, "No space left on device", str(path))
        save(path, image)

    monkeypatch.setattr(fits, "save_image", failing)
    fresh = tmp_path / "demo2"
    result = runner.invoke(app, ["demo", "--out", str(fresh), "--iterations", "2", "--size", "32", "--device", "cpu"])
    assert result.exit_code == 2 and "No space left on device" in result.output, result.output
    assert not fresh.exists() and sorted(p.name for p in tmp_path.iterdir()) == ["demo"]


@pytest.mark.integration
def test_peak_memory_of_30_images_is_that_of_one(tmp_path: Path) -> None:
    """Peak RSS of `dip restore` on 30 images of 256×256 (10 iterations, a snapshot at each) within
    1.5× that of one image: each fit's network, code and snapshots are released as the next one
    begins (before, every finished fit stayed in memory until the batch ended: 1.9× here)."""
    from skimage import data, transform

    image = transform.resize(data.astronaut(), (256, 256), anti_aliasing=True).astype(np.float32)
    args = ["--iterations", "10", "--snapshots", ",".join(map(str, range(11))), "--preset", "smoke", "--device", "cpu", "--log-every", "1"]
    peaks = {}
    for n in (1, 30):
        folder = photos(tmp_path / f"in{n}", image, n)
        cmd = [sys.executable, "-c", "from pipeline.cli import main; main()", "restore", str(folder), "--out", str(tmp_path / f"out{n}"), *args]
        proc = subprocess.Popen(cmd, env={**os.environ, "PYTHONPATH": os.environ.get("PYTHONPATH", str(ROOT)), "OMP_NUM_THREADS": "1"},
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        _, status, usage = os.wait4(proc.pid, 0)
        assert status == 0, proc.stderr.read().decode() if proc.stderr else status
        peaks[n] = usage.ru_maxrss / 1024  # MB
        assert len(list((tmp_path / f"out{n}").glob("*/snapshots/iter_00010.png"))) == n
    assert peaks[30] <= 1.5 * peaks[1], peaks
