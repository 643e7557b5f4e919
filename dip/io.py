"""Reading and writing images (float arrays in [0, 1]) and atomic file/directory output."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Iterator, Literal

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from dip.metrics import to_uint8


class ImageError(ValueError):
    """An input image that cannot be used; the message says which file and why."""


def load_image(path: str | Path, mode: Literal["keep", "gray", "rgb"] = "keep") -> np.ndarray:
    """Decode ``path`` to float32 in [0, 1]: (H, W) for gray, (H, W, 3) for colour."""
    path = Path(path)
    if not path.is_file():
        raise ImageError(f"{path}: no such file")
    try:
        with Image.open(path) as im:
            im.load()
            pil = im
    except (UnidentifiedImageError, OSError) as err:
        raise ImageError(f"{path}: not a readable image ({err.__class__.__name__})") from None
    if mode == "gray" or (mode == "keep" and pil.mode in ("L", "1", "I", "I;16", "F", "LA")):
        arr = np.asarray(pil.convert("L"))
    else:
        arr = np.asarray(pil.convert("RGB"))
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


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; it replaces ``path`` only if the block succeeds."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp" + path.suffix, dir=path.parent)
    os.close(fd)
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


@contextlib.contextmanager
def atomic_directory(path: str | Path, overwrite: bool = False) -> Iterator[Path]:
    """Build a directory in a temporary sibling and move it into place only on success.

    Raises ``FileExistsError`` if ``path`` exists and ``overwrite`` is false; an old directory is
    replaced only once the new one is complete.
    """
    path = Path(path)
    if path.exists() and not overwrite:
        raise FileExistsError(f"{path} exists; pass --force to overwrite it")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
    try:
        yield tmp
        if path.exists():
            old = path.with_name(f".{path.name}.old")
            shutil.rmtree(old, ignore_errors=True)
            os.replace(path, old)
            os.replace(tmp, path)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, path)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
