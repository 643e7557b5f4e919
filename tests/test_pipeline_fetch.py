"""`dip fetch`: cache, mirror and URL sources, checksums, clear errors, nothing half-written."""

from __future__ import annotations

import functools
import http.server
import io
import threading
from pathlib import Path
from typing import Iterator

import numpy as np
import pytest
import yaml
from PIL import Image

from conftest import ROOT, mirror_dir
from pipeline.stages.fetch import FetchError, FetchOptions, fetch_all, fetch_image
from pipeline.images.manifest import ImageEntry, load_manifest, pixel_sha256, sha256_bytes

FAST = dict(timeout=5.0, retries=1, backoff=0.01)


def encode(arr: np.ndarray, fmt: str) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format=fmt)
    return buf.getvalue()


@pytest.fixture
def picture() -> np.ndarray:
    return np.random.default_rng(0).integers(0, 256, (12, 10, 3), dtype=np.uint8)


@pytest.fixture
def server(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """A static HTTP server on 127.0.0.1 serving ``tmp_path/www``."""
    root = tmp_path / "www"
    root.mkdir()
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(root))
    handler.log_message = lambda *a, **k: None  # type: ignore[attr-defined]
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}", root
    httpd.shutdown()
    httpd.server_close()


def entry_for(picture: np.ndarray, **kw: str) -> ImageEntry:
    png = encode(picture, "PNG")
    return ImageEntry(set="s", name="pic", pixel_sha256=sha256_bytes(picture.tobytes()), file="s/pic.png", sha256=sha256_bytes(png), **kw)


def test_mirror_then_cache(tmp_path: Path, picture: np.ndarray) -> None:
    mirror = tmp_path / "mirror"
    (mirror / "s").mkdir(parents=True)
    (mirror / "s/pic.png").write_bytes(encode(picture, "PNG"))
    entry = entry_for(picture)
    out = tmp_path / "images"
    assert fetch_image(entry, out, FetchOptions(mirror=mirror, **FAST)) == "mirror"
    assert (out / "s/pic.png").read_bytes() == (mirror / "s/pic.png").read_bytes()
    assert fetch_image(entry, out, FetchOptions(mirror=None, **FAST)) == "cache"


def test_download_from_local_http_server_converts_bmp(tmp_path: Path, picture: np.ndarray, server: tuple[str, Path]) -> None:
    url, www = server
    bmp = encode(picture, "BMP")
    (www / "pic.bmp").write_bytes(bmp)
    entry = entry_for(picture, url=f"{url}/pic.bmp", source_sha256=sha256_bytes(bmp))
    out = tmp_path / "images"
    assert fetch_image(entry, out, FetchOptions(mirror=None, **FAST)) == "url"
    assert pixel_sha256(out / "s/pic.png") == entry.pixel_sha256
    assert Image.open(out / "s/pic.png").format == "PNG"


def test_corrupted_cache_file_is_replaced(tmp_path: Path, picture: np.ndarray, server: tuple[str, Path]) -> None:
    url, www = server
    (www / "pic.png").write_bytes(encode(picture, "PNG"))
    entry = entry_for(picture, url=f"{url}/pic.png", source_sha256=sha256_bytes(encode(picture, "PNG")))
    dest = tmp_path / "images/s/pic.png"
    dest.parent.mkdir(parents=True)
    dest.write_bytes(b"\x89PNG truncated")
    assert fetch_image(entry, tmp_path / "images", FetchOptions(**FAST)) == "url"
    assert pixel_sha256(dest) == entry.pixel_sha256


def test_undecodable_and_wrong_checksum_are_clear_errors(tmp_path: Path, picture: np.ndarray, server: tuple[str, Path]) -> None:
    url, www = server
    mirror = tmp_path / "mirror"
    (mirror / "s").mkdir(parents=True)
    (mirror / "s/pic.png").write_bytes(b"not an image at all")
    other = picture.copy()
    other[0, 0, 0] ^= 1
    (www / "pic.png").write_bytes(encode(other, "PNG"))  # decodes, but one pixel differs
    entry = entry_for(picture, url=f"{url}/pic.png")
    with pytest.raises(FetchError) as err:
        fetch_image(entry, tmp_path / "images", FetchOptions(mirror=mirror, **FAST))
    msg = str(err.value)
    assert msg.startswith("cannot fetch image s/pic; tried cache:")
    assert "not a decodable image" in msg and "pixel checksum mismatch" in msg and "\n" not in msg
    assert not (tmp_path / "images/s/pic.png").exists()
    assert not any((tmp_path / "images").rglob("*.tmp*")), "a temporary file was left behind"


def test_unreachable_url_names_what_was_tried(tmp_path: Path, picture: np.ndarray, server: tuple[str, Path]) -> None:
    url, _ = server
    entry = entry_for(picture, url=f"{url}/missing.png")
    with pytest.raises(FetchError, match=r"mirror: none set .*url: .*HTTP 404"):
        fetch_image(entry, tmp_path / "images", FetchOptions(mirror=None, **FAST))


def test_cli_error_is_one_line(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from pipeline.cli import app

    result = CliRunner().invoke(app, ["fetch", "--sets", "nosuch", "--manifest", str(ROOT / "data/manifest.yaml"), "--out", str(tmp_path)])
    assert result.exit_code == 2
    assert result.output.strip().startswith("error: unknown image set 'nosuch'") and result.output.strip().count("\n") == 0


def test_manifest_covers_the_paper_sets() -> None:
    m = load_manifest(ROOT / "data/manifest.yaml")
    assert {k: len(v) for k, v in m.sets.items()} == {"inpainting11": 11, "set5": 5, "set14": 14, "cset9": 9, "dip_demo": 12, "embedded": 9}
    assert all(e.url and e.url.startswith("https://") and e.source_sha256 for s in ("set5", "cset9", "dip_demo") for e in m.sets[s].values())


@pytest.mark.skipif(mirror_dir() is None, reason="no image mirror ($DIP_MIRROR or ../shared/images)")
def test_real_manifest_matches_the_mirror(tmp_path: Path) -> None:
    sources = fetch_all(load_manifest(ROOT / "data/manifest.yaml"), ["set5", "embedded/camera"], tmp_path, FetchOptions(mirror=mirror_dir(), allow_network=False))
    assert sources == {**{f"set5/{n}": "mirror" for n in ("baby", "bird", "butterfly", "head", "woman")}, "embedded/camera": "skimage"}
    assert yaml.safe_load((ROOT / "data/manifest.yaml").read_text())["sets"]["cset9"]["mirror_folder"] == "color_denoise"
    # the figures' JPEG sources (snail, cave01) are stored as PNG with the decoded pixels' checksum
    demo = fetch_all(load_manifest(ROOT / "data/manifest.yaml"), ["dip_demo/denoising_snail", "dip_demo/inpainting_vase_mask"], tmp_path / "demo",
                     FetchOptions(mirror=mirror_dir(), allow_network=False))
    assert set(demo.values()) == {"mirror"} and (tmp_path / "demo/dip_demo/denoising_snail.png").is_file()
