"""Fuzz-style checks of the image loaders and the CLI: every bit depth and mode is read at its
true range or refused, every broken file is one ``error:`` line, hostile names never escape.

Images are generated on the fly; a new reader (a format, a mode) should be added to these tables.
"""

from __future__ import annotations

import io
import zlib
from pathlib import Path
from typing import Callable

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from pipeline.files import ImageError, load_image, load_mask
from pipeline.cli import app

runner = CliRunner()
RNG_SEED = 11
RAMP = np.linspace(0.0, 1.0, 16 * 16, dtype=np.float64).reshape(16, 16)  # the true values, 0 … 1


def ramp_image(mode: str) -> Image.Image:
    """A 16×16 ramp in ``mode`` whose true values are :data:`RAMP` (rounded to the mode's depth)."""
    if mode == "1":
        return Image.fromarray((RAMP > 0.5).astype(np.uint8) * 255).convert("1")
    if mode == "I;16":
        return Image.fromarray(np.round(RAMP * 65535).astype(np.uint16))
    if mode == "F":
        return Image.fromarray(RAMP.astype(np.float32))
    gray = Image.fromarray(np.round(RAMP * 255).astype(np.uint8))
    if mode == "RGB":
        return Image.merge("RGB", [gray] * 3)
    if mode == "RGBA":
        return Image.merge("RGBA", [gray] * 3 + [Image.new("L", gray.size, 77)])
    if mode == "LA":
        return Image.merge("LA", [gray, Image.new("L", gray.size, 77)])
    if mode == "P":
        return Image.merge("RGB", [gray] * 3).convert("P", palette=Image.Palette.ADAPTIVE, colors=256)
    return gray


# mode, container, expected (H, W[, 3]) with mode="keep", tolerance on the values
READABLE = [
    ("1", "PNG", (16, 16), 0.51),  # thresholded: values are 0 or 1
    ("L", "PNG", (16, 16), 0.5 / 255),
    ("LA", "PNG", (16, 16), 0.5 / 255),
    ("RGB", "PNG", (16, 16, 3), 0.5 / 255),
    ("RGBA", "PNG", (16, 16, 3), 0.5 / 255),
    ("P", "PNG", (16, 16, 3), 2 / 255),
    ("I;16", "PNG", (16, 16), 0.5 / 65535),
    ("I;16", "TIFF", (16, 16), 0.5 / 65535),
    ("F", "TIFF", (16, 16), 1e-6),
    ("L", "TIFF", (16, 16), 0.5 / 255),
    ("RGB", "BMP", (16, 16, 3), 0.5 / 255),
    ("L", "JPEG", (16, 16), 0.05),
]


@pytest.mark.parametrize("mode, fmt, shape, tol", READABLE, ids=[f"{m}-{f}" for m, f, _, _ in READABLE])
def test_every_bit_depth_is_read_at_its_true_range(tmp_path: Path, mode: str, fmt: str, shape: tuple[int, ...], tol: float) -> None:
    path = tmp_path / f"ramp.{fmt.lower()}"
    ramp_image(mode).save(path, format=fmt)
    for want in ("keep", "gray", "rgb"):
        arr = load_image(path, mode=want)  # type: ignore[arg-type]
        assert arr.dtype == np.float32 and np.isfinite(arr).all()
        assert arr.shape == {"keep": shape, "gray": (16, 16), "rgb": (16, 16, 3)}[want]
        assert 0.0 <= arr.min() and arr.max() <= 1.0
        first = arr if arr.ndim == 2 else arr[..., 0]
        assert np.abs(first - RAMP).max() <= tol, f"{mode} {fmt} {want}: not the true values"


def save_bytes(tmp_path: Path, name: str, data: bytes) -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


def encoded(image: Image.Image, fmt: str) -> bytes:
    buf = io.BytesIO()
    image.save(buf, format=fmt)
    return buf.getvalue()


def png_claiming(width: int, height: int) -> bytes:
    """A 1×1 PNG whose header (with a valid CRC) claims ``width`` × ``height``."""
    data = bytearray(encoded(Image.new("L", (1, 1)), "PNG"))
    data[16:24] = width.to_bytes(4, "big") + height.to_bytes(4, "big")
    data[29:33] = zlib.crc32(bytes(data[12:29])).to_bytes(4, "big")
    return bytes(data)


def float_tiff(values: np.ndarray) -> bytes:
    return encoded(Image.fromarray(values.astype(np.float32)), "TIFF")


PNG = encoded(ramp_image("RGB"), "PNG")
BAD: dict[str, tuple[str, Callable[[], bytes], str]] = {
    # name: (file name, bytes, what the error says)
    "empty": ("empty.png", lambda: b"", "not a readable image"),
    "text": ("notes.png", lambda: b"just some text\n" * 10, "not a readable image"),
    "random": ("noise.png", lambda: np.random.default_rng(RNG_SEED).bytes(2048), "not a readable image"),
    "truncated-header": ("cut.png", lambda: PNG[:20], "not a readable image"),
    "truncated-data": ("cut2.png", lambda: PNG[: len(PNG) // 2], "not a readable image"),
    "bad-crc": ("crc.png", lambda: PNG[:30] + bytes([PNG[30] ^ 0xFF]) + PNG[31:], "not a readable image"),
    "header-100000x100000": ("bomb.png", lambda: png_claiming(100_000, 100_000), "refusing to decode it"),
    "header-12000x12000": ("big.png", lambda: png_claiming(12_000, 12_000), "not a readable image"),
    "int32-tiff": ("i32.tif", lambda: encoded(Image.fromarray(np.arange(256, dtype=np.int32).reshape(16, 16) * 1000), "TIFF"), "32-bit integer"),
    "float-above-1": ("hdr.tif", lambda: float_tiff(RAMP * 4), "outside [0, 1]"),
    "float-negative": ("neg.tif", lambda: float_tiff(RAMP - 0.5), "outside [0, 1]"),
    "float-nan": ("nan.tif", lambda: float_tiff(np.where(RAMP > 0.5, np.nan, RAMP)), "not finite"),
}


@pytest.mark.parametrize("case", list(BAD))
def test_broken_files_are_refused_by_the_loaders(tmp_path: Path, case: str) -> None:
    name, make, needle = BAD[case]
    path = save_bytes(tmp_path, name, make())
    for loader in (load_image, load_mask):
        with pytest.raises(ImageError, match=needle.replace("[", r"\[").replace("]", r"\]")) as err:
            loader(path)
        assert str(err.value).startswith(str(path)) and "\n" not in str(err.value)


def one_line_error(result, needle: str) -> None:
    assert result.exit_code == 2, result.output
    lines = [line for line in result.output.strip().splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:") and needle in lines[0], result.output


@pytest.mark.parametrize("case", list(BAD))
def test_broken_files_are_one_line_in_the_cli(tmp_path: Path, case: str) -> None:
    name, make, needle = BAD[case]
    path = save_bytes(tmp_path, name, make())
    good = tmp_path / "good.png"
    ramp_image("L").save(good)
    out = tmp_path / "out"
    one_line_error(runner.invoke(app, ["metrics", str(good), str(path)]), needle)
    big = case == "header-12000x12000"  # the restore commands refuse it by its header's size, before decoding
    one_line_error(runner.invoke(app, ["restore", str(path), "--out", str(out), "--iterations", "1", "--device", "cpu"]),
                   f"{path}: the restored image would be 12000x12000" if big else needle)
    one_line_error(runner.invoke(app, ["restore", str(good), "--task", "inpaint", "--mask", str(path), "--out", str(out),
                                       "--iterations", "1", "--device", "cpu"]), "is 12000x12000 but" if big else needle)
    assert not out.exists() and not list(tmp_path.glob(".out*"))


@pytest.mark.parametrize("mode, fmt", [("I;16", "PNG"), ("F", "TIFF"), ("RGBA", "PNG"), ("P", "PNG"), ("1", "PNG")])
def test_metrics_scores_high_depth_images_at_their_true_values(tmp_path: Path, mode: str, fmt: str) -> None:
    """A high-depth copy of an 8-bit image scores (almost) perfectly against it: before issue 11
    16-bit and float images were read as all-white or all-black and scored as garbage."""
    reference = tmp_path / "ref.png"
    ramp_image("RGB" if mode in ("RGBA", "P") else "L").save(reference)
    if mode == "1":
        Image.fromarray((RAMP > 0.5).astype(np.uint8) * 255).save(reference)
    other = tmp_path / f"other.{fmt.lower()}"
    ramp_image(mode).save(other, format=fmt)
    result = runner.invoke(app, ["metrics", str(reference), str(other)])
    assert result.exit_code == 0, result.output
    import json

    values = json.loads(result.output)
    assert values["psnr"] is None or values["psnr"] > 45, values


@pytest.mark.parametrize("size", [(1, 1), (1, 9), (9, 1), (3, 5)])
def test_tiny_images_load_and_score(tmp_path: Path, size: tuple[int, int]) -> None:
    path = tmp_path / "tiny.png"
    Image.fromarray(np.random.default_rng(RNG_SEED).integers(0, 256, size, dtype=np.uint8)).save(path)
    assert load_image(path).shape == size
    result = runner.invoke(app, ["metrics", str(path), str(path)])
    assert result.exit_code in (0, 2) and "Traceback" not in result.output, result.output


def test_tiny_image_restore_is_one_error_line(tmp_path: Path) -> None:
    path = tmp_path / "tiny.png"
    Image.new("L", (3, 5), 128).save(path)
    result = runner.invoke(app, ["restore", str(path), "--out", str(tmp_path / "out"), "--iterations", "1", "--device", "cpu"])
    one_line_error(result, "too small")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tiny.png"]


@pytest.mark.parametrize("name", ["with space.png", "ünïcödé.png", "semi;colon.png", "-dash.png", "quote'.png"])
def test_odd_file_names_are_just_names(tmp_path: Path, name: str) -> None:
    path = tmp_path / name
    ramp_image("L").save(path, format="PNG")
    result = runner.invoke(app, ["metrics", "--", str(path), str(path)])
    assert result.exit_code == 0, result.output


def random_names(n: int) -> list[str]:
    rng = np.random.default_rng(RNG_SEED)
    alphabet = list("abcXYZ019._-/\\ :*?\"<>|'\n\t\x00~$") + ["..", "é", "😀"]
    return [("".join(rng.choice(alphabet, size=rng.integers(1, 8)))) for _ in range(n)] + ["..", ".", "", "../x", "/etc/passwd", "a/../../b"]


def test_hostile_manifest_names_never_leave_the_output(tmp_path: Path) -> None:
    import yaml

    from pipeline.stages.fetch import target_path
    from pipeline.images.manifest import SAFE_NAME, load_manifest

    out = tmp_path / "images"
    for name in random_names(200):
        manifest = tmp_path / "m.yaml"
        for set_name, image_name in ((name, "ok"), ("ok", name)):
            manifest.write_text(yaml.safe_dump({"sets": {set_name: {"images": {image_name: {"skimage": "camera", "pixel_sha256": "0"}}}}}))
            try:
                entries = [e for s in load_manifest(manifest).sets.values() for e in s.values()]
            except ValueError as err:
                assert "names may only hold" in str(err) and not SAFE_NAME.fullmatch(name)
                continue
            assert SAFE_NAME.fullmatch(name), f"accepted {name!r}"
            for entry in entries:
                assert target_path(out, entry).resolve().is_relative_to(out.resolve())
