"""Reading and writing images (float arrays in [0, 1]) and atomic file/directory output."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
import warnings
from pathlib import Path
from typing import Any, Iterator, Literal

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from dip.metrics import to_uint8


class ImageError(ValueError):
    """An input image that cannot be used; the message says which file and why."""


def _high_depth_pixels(pil: Image.Image, path: Path) -> np.ndarray | None:
    """Pixels of a 16-bit, 32-bit integer or float single-channel image in [0, 1] at their true
    range (``None`` for 8-bit modes); refuses what has no known range."""
    if pil.mode.startswith("I;16") or (pil.mode == "I" and pil.format == "PNG"):  # PNG: at most 16 bits
        return np.asarray(pil).astype(np.float32) / 65535.0
    if pil.mode == "I":
        raise ImageError(f"{path}: 32-bit integer pixels of unknown range; save it as an 8- or 16-bit image")
    if pil.mode == "F":
        arr = np.asarray(pil).astype(np.float32)
        if not np.isfinite(arr).all() or arr.min() < 0.0 or arr.max() > 1.0:
            raise ImageError(f"{path}: floating-point pixels outside [0, 1] (or not finite); scale them to [0, 1] or save an 8- or 16-bit image")
        return arr
    return None


def load_image(path: str | Path, mode: Literal["keep", "gray", "rgb"] = "keep") -> np.ndarray:
    """Decode ``path`` to float32 in [0, 1]: (H, W) for gray, (H, W, 3) for colour.

    8-bit images are divided by 255, 16-bit ones by 65535, float ones in [0, 1] are kept as
    they are; anything else (float outside [0, 1], 32-bit integers, undecodable or absurdly
    large files) raises :class:`ImageError`. Alpha is dropped.
    """
    path = Path(path)
    if not path.is_file():
        raise ImageError(f"{path}: no such file")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # callers apply their own size limits
            with Image.open(path) as im:
                im.load()
                pil = im
    except Image.DecompressionBombError:
        raise ImageError(f"{path}: the file claims more than {2 * Image.MAX_IMAGE_PIXELS:,} pixels; refusing to decode it") from None
    except (UnidentifiedImageError, OSError, SyntaxError, EOFError, ValueError) as err:
        raise ImageError(f"{path}: not a readable image ({err.__class__.__name__})") from None
    high = _high_depth_pixels(pil, path)
    if high is not None:
        return np.repeat(high[..., None], 3, axis=2) if mode == "rgb" else high
    gray = mode == "gray" or (mode == "keep" and pil.mode in ("1", "L", "LA", "La"))
    try:
        arr = np.asarray(pil.convert("L" if gray else "RGB"))
    except ValueError:
        raise ImageError(f"{path}: colour mode {pil.mode} is not supported; save it as gray or RGB") from None
    return arr.astype(np.float32) / 255.0


def load_mask(path: str | Path) -> np.ndarray:
    """A mask image → float32 (H, W) with 1 for known pixels (any channel > 127 counts as known)."""
    arr = load_image(path, mode="gray")
    return (arr > 0.5).astype(np.float32)


def to_tensor(image: np.ndarray) -> torch.Tensor:
    """(H, W) or (H, W, C) array → (1, C, H, W) float32 tensor."""
    arr = np.asarray(image, dtype=np.float32)
    if arr.ndim == 2:
        arr = arr[..., None]
    return torch.from_numpy(np.ascontiguousarray(arr.transpose(2, 0, 1)))[None]


def to_numpy(tensor: torch.Tensor) -> np.ndarray:
    """(1, C, H, W) or (C, H, W) tensor → (H, W) or (H, W, C) float32 array on the CPU."""
    t = tensor.detach().float().cpu()
    if t.dim() == 4:
        t = t[0]
    arr = t.numpy().transpose(1, 2, 0)
    return arr[..., 0] if arr.shape[-1] == 1 else arr


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; it replaces ``path`` only if the block succeeds.

    The file gets the usual umask-respecting mode (0644 under umask 022), not mkstemp's 0600.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp" + path.suffix, dir=path.parent)
    os.close(fd)
    os.chmod(tmp, 0o666 & ~_umask())
    try:
        yield Path(tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def save_image(path: str | Path, image: np.ndarray) -> None:
    """Write an image (float in [0, 1] or uint8) as 8-bit PNG, atomically."""
    with atomic_path(path) as tmp:
        Image.fromarray(to_uint8(np.asarray(image))).save(tmp, format="PNG")


def save_json(path: str | Path, data: Any) -> None:
    """Write JSON (indented, sorted keys), atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(data, indent=2, sort_keys=True, default=str) + "\n")


def save_array(path: str | Path, array: np.ndarray) -> None:
    """Write a ``.npy`` array, atomically."""
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as fh:
            np.save(fh, np.asarray(array))


def inside(root: str | Path, path: str | Path) -> Path:
    """``path`` if it stays under ``root`` once ``..`` is resolved (lexically: links, e.g. DVC's
    cache links, are not followed); ``ValueError`` otherwise."""
    path = Path(path)
    if not Path(os.path.abspath(path)).is_relative_to(os.path.abspath(root)):
        raise ValueError(f"{path} lies outside {root}; refusing to write there (check the names in the manifest)")
    return path


MARKER = ".dip-output"
"""File that every folder written by :func:`atomic_directory` holds: only such folders are replaced."""
LEGACY_OUTPUT_FILES = ("run.json", "baselines.json")  # what outputs of earlier versions (no marker) hold


def is_dip_output(path: str | Path) -> bool:
    """True if ``path`` is a folder this project wrote (its marker, or a legacy output's file)."""
    path = Path(path)
    return path.is_dir() and not path.is_symlink() and any((path / f).is_file() for f in (MARKER, *LEGACY_OUTPUT_FILES))


def check_replaceable(path: str | Path, overwrite: bool) -> None:
    """Raise ``FileExistsError`` unless an output folder may be written at ``path``.

    A new path is fine; an existing one only with ``overwrite`` and only if it is one of this
    project's own output folders (or empty): a user's folder or file is never replaced.
    """
    path = Path(path)
    here = Path.cwd()
    if path.resolve() in (here, *here.parents):
        raise FileExistsError(f"{path} is the current folder or one above it; give a new folder as the output")
    if not (path.exists() or path.is_symlink()):
        return
    if path.is_symlink() or not path.is_dir():
        raise FileExistsError(f"{path} exists and is not a folder; choose another output folder")
    if not overwrite:
        raise FileExistsError(f"{path} exists; pass --force to overwrite it or choose another --out")
    if not is_dip_output(path) and any(path.iterdir()):
        raise FileExistsError(
            f"{path} exists and is not an output of dip (no {MARKER} or run.json in it); dip replaces only its own "
            "outputs, even with --force: choose another output folder or empty it yourself"
        )


def remove_output(path: str | Path) -> bool:
    """Delete ``path`` if it is one of this project's output folders; returns whether it did."""
    if not is_dip_output(path):
        return False
    shutil.rmtree(path)
    return True


@contextlib.contextmanager
def atomic_directory(path: str | Path, overwrite: bool = False) -> Iterator[Path]:
    """Build a directory in a temporary sibling and move it into place only on success.

    The folder is marked as this project's output (:data:`MARKER`) and gets the usual
    umask-respecting mode. Raises ``FileExistsError`` (see :func:`check_replaceable`) if ``path``
    exists and ``overwrite`` is false, or if it is not an output of this project; an old output
    is replaced only once the new one is complete.
    """
    path = Path(path)
    check_replaceable(path, overwrite)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
    try:
        os.chmod(tmp, 0o777 & ~_umask())
        (tmp / MARKER).write_text("written by dip (Deep Image Prior); dip --force may replace this folder\n")
        yield tmp
        if path.exists():
            old = tmp.with_name(tmp.name[: -len(".tmp")] + ".old")  # unique: named after tmp
            os.replace(path, old)
            os.replace(tmp, path)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, path)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
