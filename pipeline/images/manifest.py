"""The image manifest (``data/manifest.yaml``): every image set, where each image comes from, and
its checksums.

An entry has either a ``url`` (public source at a fixed commit) plus the ``file`` path it has in a
mirror directory laid out like ``../shared/images``, or a ``skimage`` name (an image bundled with
scikit-image, needing neither network nor mirror). Checksums:

* ``sha256`` — bytes of the mirror file (PNG);
* ``source_sha256`` — bytes at ``url`` (differs from ``sha256`` where the source is a BMP);
* ``pixel_sha256`` — the decoded pixel array (``numpy.asarray(PIL.Image.open(f)).tobytes()``),
  the same whatever the container format; the final word on every copy.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import yaml
from PIL import Image, UnidentifiedImageError
from skimage import data as skimage_data

DEFAULT_MANIFEST = Path("data/manifest.yaml")
SAFE_NAME = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9._-]*")  # set and image names become file names


def check_name(name: str, what: str) -> str:
    """``name`` if it is safe as one file name (letters, digits, ``._-``, no leading dot); else ``ValueError``."""
    if not SAFE_NAME.fullmatch(name):
        raise ValueError(f"{what} {name!r}: names may only hold letters, digits, '.', '_' and '-' and must not start with '.'")
    return name


@dataclass(frozen=True)
class ImageEntry:
    """One image of a set and the ways to obtain it."""

    set: str
    name: str
    pixel_sha256: str
    file: str | None = None  # path inside a mirror directory
    url: str | None = None
    sha256: str | None = None  # of the mirror file
    source_sha256: str | None = None  # of the bytes at url
    skimage: str | None = None  # name of a scikit-image bundled image
    size: tuple[int, int] | None = None  # (width, height)
    mode: str | None = None

    @property
    def key(self) -> str:
        return f"{self.set}/{self.name}"


@dataclass
class Manifest:
    sets: dict[str, dict[str, ImageEntry]] = field(default_factory=dict)

    def image(self, set_name: str, name: str) -> ImageEntry:
        if set_name not in self.sets:
            raise KeyError(f"unknown image set {set_name!r}; the manifest has {', '.join(self.sets)}")
        if name not in self.sets[set_name]:
            raise KeyError(f"image {name!r} is not in set {set_name!r}; it has {', '.join(self.sets[set_name])}")
        return self.sets[set_name][name]

    def select(self, specs: list[str]) -> list[ImageEntry]:
        """Entries for ``["set", "set/name", …]`` (a bare set name means all its images), in order."""
        out: list[ImageEntry] = []
        for spec in specs:
            set_name, _, name = str(spec).partition("/")
            if name:
                out.append(self.image(set_name, name))
            else:
                if set_name not in self.sets:
                    raise KeyError(f"unknown image set {set_name!r}; the manifest has {', '.join(self.sets)}")
                out.extend(self.sets[set_name].values())
        seen: dict[str, ImageEntry] = {}
        for entry in out:
            seen.setdefault(entry.key, entry)
        return list(seen.values())


def load_manifest(path: str | Path = DEFAULT_MANIFEST) -> Manifest:
    """Parse ``data/manifest.yaml``; raises ``ValueError`` for a malformed file."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such manifest")
    raw = yaml.safe_load(path.read_text()) or {}
    manifest = Manifest()
    for set_name, body in (raw.get("sets") or {}).items():
        images: dict[str, ImageEntry] = {}
        check_name(str(set_name), f"{path}: set name")
        for name, e in (body.get("images") or {}).items():
            check_name(str(name), f"{path}: set {set_name}: image name")
            if not isinstance(e, dict) or "pixel_sha256" not in e:
                raise ValueError(f"{path}: {set_name}/{name} needs a pixel_sha256")
            if e.get("file"):
                for part in str(e["file"]).split("/"):
                    check_name(part, f"{path}: {set_name}/{name}: mirror file {e['file']!r}: part")
            if not (e.get("url") or e.get("skimage") or e.get("file")):
                raise ValueError(f"{path}: {set_name}/{name} has no source (url, file or skimage)")
            size = tuple(e["size"]) if e.get("size") else None
            images[str(name)] = ImageEntry(
                set=str(set_name), name=str(name), pixel_sha256=e["pixel_sha256"], file=e.get("file"), url=e.get("url"),
                sha256=e.get("sha256"), source_sha256=e.get("source_sha256"), skimage=e.get("skimage"),
                size=size, mode=e.get("mode"),  # type: ignore[arg-type]
            )
        manifest.sets[str(set_name)] = images
    return manifest


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def pixel_sha256_of_array(array: np.ndarray) -> str:
    return sha256_bytes(np.ascontiguousarray(array).tobytes())


def pixel_sha256(path: str | Path) -> str:
    """sha256 of the decoded pixels of an image file; ``ValueError`` if it cannot be decoded."""
    try:
        with Image.open(path) as im:
            return pixel_sha256_of_array(np.asarray(im))
    except (UnidentifiedImageError, OSError, SyntaxError) as err:
        raise ValueError(f"{path}: not a decodable image ({err.__class__.__name__})") from None


def bundled_pixels(name: str) -> np.ndarray:
    """The pixels of scikit-image's bundled image ``name`` as a PNG holds them (a binary image,
    e.g. ``horse``, as 8-bit 0/255): what the manifest's ``pixel_sha256`` of an ``embedded`` entry covers."""
    loader = getattr(skimage_data, name, None)
    if loader is None:
        raise ValueError(f"skimage.data.{name}: no such bundled image")
    arr = np.asarray(loader())
    return arr.astype(np.uint8) * 255 if arr.dtype == bool else arr


def as_yaml(manifest_dict: dict[str, Any]) -> str:
    return yaml.safe_dump(manifest_dict, sort_keys=False, width=200)
