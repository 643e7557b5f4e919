"""Files, the one safe way: atomic writes of JSON, images and arrays; output folders that replace
only dip's own; one writer per output (locks a killed process never leaves behind); safe reading of
JSON and images (bounded, one ``ValueError`` naming the file). Torch-free, so that the stages and
commands that only read or write files do not load torch.

A write goes to a hidden sibling ``.NAME.dip<pid>.<random>.tmp`` and replaces ``NAME`` with one
``os.replace``: a reader sees the old file or the new one, never half of one.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import re
import shutil
import tempfile
import warnings
from pathlib import Path
from typing import Any, Iterator, Literal

import numpy as np
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


def image_header(path: str | Path) -> tuple[int, int, str]:
    """``(height, width, PIL mode)`` of an image file from its header alone (nothing is decoded),
    so that a size limit can refuse a huge image before it takes any memory; :class:`ImageError`
    if the file is missing or not an image."""
    path = Path(path)
    if not path.is_file():
        raise ImageError(f"{path}: no such file")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(path) as im:
                width, height = im.size
                mode = im.mode
    except Image.DecompressionBombError:
        raise ImageError(f"{path}: the file claims more than {2 * Image.MAX_IMAGE_PIXELS:,} pixels; refusing to decode it") from None
    except (UnidentifiedImageError, OSError, SyntaxError, EOFError, ValueError) as err:
        raise ImageError(f"{path}: not a readable image ({_reason(err)})") from None
    return height, width, mode


DISK_ERRNOS = {errno.ENOSPC, errno.EROFS, errno.EACCES, errno.EPERM, errno.EDQUOT}


def error_line(err: BaseException, source: str | Path | None = None) -> str:
    """One line for an expected error (never a traceback): a ``KeyError``'s key, an operating-system
    error's file and reason (and what to do where the disk is full or not writable), else the
    text on one line; with ``source``, prefixed by it where the text does not name it."""
    if isinstance(err, KeyError) and err.args:
        text = str(err.args[0])
    elif isinstance(err, OSError) and err.strerror:
        where = f"{err.filename}: " if err.filename else ""
        hint = "; choose an output folder on a writable disk with free space" if err.errno in DISK_ERRNOS else ""
        text = f"{where}{err.strerror}{hint}"
    else:
        text = " ".join(str(err).split())
    return short_paths(text if source is None or str(source) in text else f"{source}: {text}")


def short_paths(line: str, longest: int = 160) -> str:
    """``line`` with every word (a path) longer than ``longest`` characters cut in its middle: an
    error line stays readable whatever depth of folders it names."""
    half = longest // 2
    return " ".join(w if len(w) <= longest else f"{w[:half]}…{w[-half:]}" for w in line.split(" "))


DEFAULT_MAX_PIXELS = 2048 * 2048  # a fit keeps several network activations per pixel: gigabytes beyond this


def check_pixels(height: int, width: int, max_pixels: int = DEFAULT_MAX_PIXELS) -> None:
    """``ValueError`` before any allocation if a ``height`` × ``width`` restored image is over ``max_pixels``."""
    if height * width > max_pixels:
        raise ValueError(
            f"the restored image would be {width}x{height} = {height * width:,} pixels, more than the limit of "
            f"{max_pixels:,} (a fit needs memory for many network activations per pixel); downscale or crop it, "
            "or raise the limit with --max-pixels"
        )


def _reason(err: BaseException) -> str:
    """A short reason for a decoding error (PIL's text where it has one, e.g. "image file is truncated")."""
    text = " ".join(str(err).split())
    return f"{err.__class__.__name__}: {text}" if text else err.__class__.__name__


def load_image(path: str | Path, mode: Literal["keep", "gray", "rgb"] = "keep", max_pixels: int | None = None) -> np.ndarray:
    """Decode ``path`` to float32 in [0, 1]: (H, W) for gray, (H, W, 3) for colour.

    8-bit images are divided by 255, 16-bit ones by 65535, float ones in [0, 1] are kept as
    they are; anything else (float outside [0, 1], 32-bit integers, undecodable or absurdly
    large files, more than ``max_pixels`` pixels by the file's header, checked before decoding)
    raises :class:`ImageError` naming the file. Alpha is dropped.
    """
    path = Path(path)
    if not path.is_file():
        raise ImageError(f"{path}: no such file")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # callers apply their own size limits
            with Image.open(path) as im:
                width, height = im.size  # the header only: nothing is decoded yet
                if max_pixels is not None and width * height > max_pixels:
                    raise ImageError(f"{path}: {width}x{height} = {width * height:,} pixels, more than the limit of {max_pixels:,}; "
                                     "downscale or crop it (nothing was decoded)")
                im.load()
                pil = im
    except Image.DecompressionBombError:
        raise ImageError(f"{path}: the file claims more than {2 * Image.MAX_IMAGE_PIXELS:,} pixels; refusing to decode it") from None
    except ImageError:
        raise
    except (UnidentifiedImageError, OSError, SyntaxError, EOFError, ValueError) as err:
        raise ImageError(f"{path}: not a readable image ({_reason(err)})") from None
    high = _high_depth_pixels(pil, path)
    if high is not None:
        return np.repeat(high[..., None], 3, axis=2) if mode == "rgb" else high
    gray = mode == "gray" or (mode == "keep" and pil.mode in ("1", "L", "LA", "La"))
    try:
        arr = np.asarray(pil.convert("L" if gray else "RGB"))
    except ValueError:
        raise ImageError(f"{path}: colour mode {pil.mode} is not supported; save it as gray or RGB") from None
    except OSError as err:
        raise ImageError(f"{path}: not a readable image ({_reason(err)})") from None
    return arr.astype(np.float32) / 255.0


def load_mask(path: str | Path, max_pixels: int | None = None) -> np.ndarray:
    """A mask image → float32 (H, W) with 1 for known pixels (any channel > 127 counts as known)."""
    arr = load_image(path, mode="gray", max_pixels=max_pixels)
    return (arr > 0.5).astype(np.float32)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


# --- temporary files and folders, and what a killed run leaves of them ---------------------------

_LEFTOVER = re.compile(r"^\.(?P<name>.+)\.dip(?P<pid>\d+)\.[A-Za-z0-9_]{8}\.(?:tmp|old)(?:\.[A-Za-z0-9]+)?$")


def _temp_prefix(name: str) -> str:
    """Hidden temporary siblings of ``name`` carry the writer's pid: ``.NAME.dip<pid>.<random>.tmp``."""
    return f".{name}.dip{os.getpid()}."


def pid_alive(pid: int) -> bool:
    """Whether process ``pid`` exists on this machine (another user's counts)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    except (OverflowError, ValueError):
        return False
    return True


def _alive(pid: int) -> bool:
    return pid == os.getpid() or pid_alive(pid)


def clean_leftovers(folder: str | Path, name: str | None = None) -> list[Path]:
    """Remove the temporary files and folders that killed dip processes left in ``folder`` (of the
    output ``name`` only, if given); returns what went.

    Only entries named as :func:`atomic_path` and :func:`atomic_directory` name them
    (``.NAME.dip<pid>.<random>.tmp`` or ``.old``) whose writing process no longer exists are
    removed: a run in progress (its pid alive) keeps its temporary folder; links are never followed.
    """
    removed: list[Path] = []
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return removed
    for entry in entries:
        m = _LEFTOVER.match(entry.name)
        if not m or (name is not None and m["name"] != name) or _alive(int(m["pid"])):
            continue
        path = Path(entry.path)
        try:
            if entry.is_dir(follow_symlinks=False):
                shutil.rmtree(path)
            else:
                path.unlink()
            removed.append(path)
        except FileNotFoundError:  # another process cleaned it first
            continue
    return removed


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; it replaces ``path`` only if the block succeeds.

    The file gets the usual umask-respecting mode (0644 under umask 022), not mkstemp's 0600.
    Its name carries this process's pid, so that what a killed run leaves is recognised and
    removed by the next write of ``path`` (:func:`clean_leftovers`).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    clean_leftovers(path.parent, path.name)
    fd, tmp = tempfile.mkstemp(prefix=_temp_prefix(path.name), suffix=".tmp" + path.suffix, dir=path.parent)
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


def is_dip_output(path: str | Path) -> bool:
    """True if ``path`` is a folder this project wrote: it holds dip's own marker (:data:`MARKER`).

    Nothing else counts (a folder of yours that holds a ``run.json`` is still yours)."""
    path = Path(path)
    return path.is_dir() and not path.is_symlink() and (path / MARKER).is_file()


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
            f"{path} exists and is not an output of dip (no {MARKER} file in it); dip replaces only its own "
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
    is replaced only once the new one is complete. The temporary sibling's name carries this
    process's pid; leftovers of killed runs in the same folder are removed first
    (:func:`clean_leftovers`).
    """
    path = Path(path)
    check_replaceable(path, overwrite)
    path.parent.mkdir(parents=True, exist_ok=True)
    clean_leftovers(path.parent)
    tmp = Path(tempfile.mkdtemp(prefix=_temp_prefix(path.name), suffix=".tmp", dir=path.parent))
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


# --- one writer per output -----------------------------------------------------------------------

class OutputBusy(OSError):
    """Another dip process is writing the same output; the message names it and that process."""


LOCK_NAME = ".dip-lock"


def lock_file(path: str | Path, inside: bool = False) -> Path:
    """Where the lock of output ``path`` lives: ``path/.dip-lock`` for a folder that stays in place
    while it is written (``inside``: a batch's or an experiment's root), else ``.NAME.dip-lock``
    beside it (a folder that is replaced whole)."""
    path = Path(path)
    return path / LOCK_NAME if inside else path.parent / f".{path.name}{LOCK_NAME}"


@contextlib.contextmanager
def output_lock(path: str | Path, inside: bool = False) -> Iterator[Path]:
    """Hold the exclusive lock of output ``path`` (:func:`lock_file`) while the block runs; raise
    :class:`OutputBusy` at once, naming the other process, if one holds it.

    The lock is an ``flock`` on the lock file, so the operating system releases it when its holder
    ends in any way (``SIGKILL`` included): a killed run never leaves a stale lock, only a file that
    the next run takes over. The file is removed when the block ends.
    """
    where = lock_file(path, inside)
    where.parent.mkdir(parents=True, exist_ok=True)
    while True:
        fd = os.open(where, os.O_RDWR | os.O_CREAT, 0o666 & ~_umask())
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as err:
            owner = os.pread(fd, 64, 0).decode(errors="replace").strip() or "?"
            os.close(fd)
            if err.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise
            raise OutputBusy(f"{path} is being written by another dip process (pid {owner}); "
                             "wait until it ends, or choose another output") from None
        try:  # the previous holder may have removed the file between our open and our lock: retry on the new one
            same = os.stat(where).st_ino == os.fstat(fd).st_ino
        except FileNotFoundError:
            same = False
        if same:
            break
        os.close(fd)
    try:
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        yield where
    finally:
        with contextlib.suppress(OSError):
            os.unlink(where)
        os.close(fd)


def read_json(path: str | Path) -> Any:
    """The JSON value in ``path``; ``ValueError`` naming the file for anything that is not readable
    JSON: bad syntax or encoding, or nesting too deep for Python (a hostile file)."""
    try:
        return json.loads(Path(path).read_text())
    except (ValueError, RecursionError) as err:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        what = "nested too deeply" if isinstance(err, RecursionError) else "not valid JSON"
        raise ValueError(f"{path}: {what}; delete or repair it") from None
