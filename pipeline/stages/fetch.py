"""``dip fetch``: put every image of the chosen sets at ``data/images/<set>/<name>.png``, verified.

Each image is resolved, in order, from

1. the local cache (the output directory itself: a file whose pixels check out is kept);
2. scikit-image's bundled images (the ``embedded`` set);
3. a mirror directory laid out like ``../shared/images`` (``mirror`` argument or ``$DIP_MIRROR``);
4. its public URL (timeout, retries with back-off, a progress bar for large files).

Every copy is checked against the manifest's checksums; files are written atomically, so nothing
half-downloaded is ever left at the final path. If no source yields a good copy the error names
the image and what was tried.
"""

from __future__ import annotations

import io
import os
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
from PIL import Image, UnidentifiedImageError

from pipeline.files import atomic_path, inside
from pipeline.execution.progress import make_progress
from pipeline.images.manifest import ImageEntry, Manifest, bundled_pixels, load_manifest, pixel_sha256, pixel_sha256_of_array, sha256_bytes
from pipeline.settings import active_profile, load_params, read_resolution

MIRROR_ENV = "DIP_MIRROR"


class FetchError(ValueError):
    """No source gave a verified copy of an image; the message lists what was tried."""


@dataclass
class FetchOptions:
    mirror: Path | None = None
    timeout: float = 30.0
    retries: int = 3
    backoff: float = 1.0  # seconds before the first retry, doubled after each
    allow_network: bool = True


def mirror_from(value: str | os.PathLike | None) -> Path | None:
    """The mirror directory: ``value`` if given, else ``$DIP_MIRROR``, else none."""
    chosen = str(value) if value else os.environ.get(MIRROR_ENV, "")
    return Path(chosen) if chosen else None


def target_path(out_dir: Path, entry: ImageEntry) -> Path:
    """``out_dir/<set>/<name>.png``; ``ValueError`` if that would lie outside ``out_dir``."""
    return inside(out_dir, Path(out_dir) / entry.set / f"{entry.name}.png")


def _decode(data: bytes, what: str) -> Image.Image:
    try:
        im = Image.open(io.BytesIO(data))
        im.load()
        return im
    except (UnidentifiedImageError, OSError, SyntaxError) as err:
        raise ValueError(f"{what}: not a decodable image ({err.__class__.__name__})") from None


def _write_verified(data: bytes, entry: ImageEntry, dest: Path, what: str, byte_hashes: tuple[str | None, ...]) -> None:
    """Check ``data`` (bytes hash if it is one of ``byte_hashes``, always the pixels) and write a PNG."""
    im = _decode(data, what)
    got = pixel_sha256_of_array(np.asarray(im))
    if got != entry.pixel_sha256:
        raise ValueError(f"{what}: pixel checksum mismatch (got {got[:12]}…, expected {entry.pixel_sha256[:12]}…)")
    digest = sha256_bytes(data)
    known = [h for h in byte_hashes if h]
    if known and digest not in known:
        raise ValueError(f"{what}: file checksum mismatch (got {digest[:12]}…, expected {known[0][:12]}…)")
    with atomic_path(dest) as tmp:
        if im.format == "PNG":
            tmp.write_bytes(data)  # keep the verified bytes as they are
        else:
            im.save(tmp, format="PNG")  # e.g. a BMP source: lossless conversion, pixels identical


def _from_cache(entry: ImageEntry, dest: Path) -> None:
    if not dest.is_file():
        raise ValueError(f"{dest}: not cached")
    got = pixel_sha256(dest)
    if got != entry.pixel_sha256:
        raise ValueError(f"{dest}: cached copy has the wrong pixels")


def _from_skimage(entry: ImageEntry, dest: Path) -> None:
    arr = bundled_pixels(entry.skimage or "")
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG")
    _write_verified(buf.getvalue(), entry, dest, f"skimage.data.{entry.skimage}", ())


def _from_mirror(entry: ImageEntry, dest: Path, mirror: Path) -> None:
    src = mirror / (entry.file or "")  # load_manifest checked every part of the name
    if not entry.file or not src.is_file():
        raise ValueError(f"{src}: not in the mirror")
    _write_verified(src.read_bytes(), entry, dest, str(src), (entry.sha256, entry.source_sha256))


def download(url: str, timeout: float, retries: int, backoff: float, progress: Callable[[int, int | None], None] | None = None) -> bytes:
    """GET ``url`` with ``retries`` extra attempts; raises ``ValueError`` after the last failure."""
    last = ""
    for attempt in range(retries + 1):
        if attempt:
            time.sleep(backoff * 2 ** (attempt - 1))
        try:
            req = urllib.request.Request(url, headers={"User-Agent": "dip-repro"})
            with urllib.request.urlopen(req, timeout=timeout) as resp:
                total = int(resp.headers.get("Content-Length") or 0) or None
                chunks, done = [], 0
                while chunk := resp.read(1 << 16):
                    chunks.append(chunk)
                    done += len(chunk)
                    if progress:
                        progress(done, total)
                if total is not None and done != total:
                    raise OSError(f"truncated: {done} of {total} bytes")
                return b"".join(chunks)
        except urllib.error.HTTPError as err:
            last = f"HTTP {err.code}"
            if 400 <= err.code < 500 and err.code != 429:
                break  # a missing file does not come back by retrying
        except (urllib.error.URLError, OSError, TimeoutError) as err:
            last = str(getattr(err, "reason", err)) or err.__class__.__name__
    raise ValueError(f"{url}: {last} after {attempt + 1} attempt(s)")


def _from_url(entry: ImageEntry, dest: Path, opts: FetchOptions, progress: Callable[[int, int | None], None] | None) -> None:
    if not entry.url:
        raise ValueError("no url")
    if not opts.allow_network:
        raise ValueError(f"{entry.url}: network disabled")
    data = download(entry.url, opts.timeout, opts.retries, opts.backoff, progress)
    _write_verified(data, entry, dest, entry.url, (entry.source_sha256,))


def _no_mirror() -> None:
    raise ValueError(f"none set (--mirror or ${MIRROR_ENV})")


def fetch_image(entry: ImageEntry, out_dir: Path, opts: FetchOptions, progress: Callable[[int, int | None], None] | None = None) -> str:
    """Make ``out_dir/<set>/<name>.png`` a verified copy; returns the source used."""
    dest = target_path(out_dir, entry)
    tried: list[str] = []
    attempts: list[tuple[str, Callable[[], None]]] = [("cache", lambda: _from_cache(entry, dest))]
    if entry.skimage:
        attempts.append(("skimage", lambda: _from_skimage(entry, dest)))
    if entry.file:
        if opts.mirror is not None:
            attempts.append(("mirror", lambda: _from_mirror(entry, dest, opts.mirror)))  # type: ignore[arg-type]
        else:
            attempts.append(("mirror", _no_mirror))
    if entry.url:
        attempts.append(("url", lambda: _from_url(entry, dest, opts, progress)))
    for source, attempt in attempts:
        try:
            attempt()
            return source
        except ValueError as err:
            tried.append(f"{source}: {err}")
    if dest.exists():
        dest.unlink()  # a cached copy that failed verification must not be used downstream
    raise FetchError(f"cannot fetch image {entry.key}; tried " + "; ".join(tried))


def prune(out_dir: Path, keep: list[ImageEntry], manifest: Manifest) -> list[Path]:
    """Remove the images of ``manifest`` that ``out_dir`` holds but ``keep`` does not, and set
    folders left empty; returns what went. Files that fetch does not manage are never touched."""
    wanted = {target_path(out_dir, e) for e in keep}
    removed: list[Path] = []
    for entries in manifest.sets.values():
        for entry in entries.values():
            path = target_path(out_dir, entry)
            if path not in wanted and path.is_file() and not path.is_symlink():
                path.unlink()
                removed.append(path)
    for set_name in manifest.sets:
        folder = Path(out_dir) / set_name
        if folder.is_dir() and not folder.is_symlink() and not any(folder.iterdir()):
            folder.rmdir()
    return removed


def fetch_all(manifest: Manifest, specs: list[str], out_dir: Path, opts: FetchOptions, *, clean: bool = True) -> dict[str, str]:
    """Fetch every image of ``specs`` (set names or ``set/name``); returns ``{key: source}``."""
    entries = manifest.select(specs)
    sources: dict[str, str] = {}
    with make_progress() as progress:
        bar = progress.add_task("fetch", total=len(entries), status="")
        for i, entry in enumerate(entries):
            progress.update(bar, completed=i, status=entry.key)

            def show(done: int, total: int | None, key: str = entry.key) -> None:
                size = f"{done / 1e6:.1f}" + (f"/{total / 1e6:.1f}" if total else "")
                progress.update(bar, status=f"{key} {size} MB")

            sources[entry.key] = fetch_image(entry, out_dir, opts, show)
        progress.update(bar, completed=len(entries), status="done")
    if clean:
        prune(out_dir, entries, manifest)
    return sources


def stage(params_path: Path, profile_file: Path, manifest_path: Path, out_dir: Path, *, sets: list[str] | None = None,
          mirror: str | None = None, keep_others: bool = False) -> dict[str, str]:
    """The ``fetch`` stage (``dip fetch``): every image the resolved profile's experiments use
    (or ``sets``), from params.yaml's ``fetch:`` sources; the cache keeps only those unless
    ``keep_others``. Returns ``{key: source}``."""
    p = load_params(params_path) if not sets or Path(params_path).is_file() else {}  # given sets need no params
    cfg = p.get("fetch") or {}
    if sets:
        specs = list(sets)
    else:
        prof = active_profile(p, read_resolution(profile_file))
        specs = list(dict.fromkeys(s for e in prof.experiments for s in prof.specs(e)))
    opts = FetchOptions(mirror=mirror_from(mirror or cfg.get("mirror")), timeout=float(cfg.get("timeout", 30)), retries=int(cfg.get("retries", 3)))
    return fetch_all(load_manifest(manifest_path), specs, out_dir, opts, clean=not keep_others)


__all__ = ["FetchError", "FetchOptions", "fetch_all", "fetch_image", "mirror_from", "prune", "stage", "target_path"]
