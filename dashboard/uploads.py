"""Checking what a person uploads on the Restore page, before anything is queued.

The page says at once what is wrong with an upload (not an image, too many pixels, a mask of the
wrong size, a colour that marks no pixel) instead of after a wait in the queue. ``dip restore``
checks the same again when it runs and stays the authority: its ``error:`` line is what a job
that fails shows. Pixels are read with Pillow here (no torch in the dashboard's process), with
the CLI's reading of bit depths (:func:`pipeline.files.load_image`): 8-bit ÷ 255, 16-bit ÷ 65535, float
in [0, 1] as it is; shown here as 8-bit.
"""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass

import numpy as np

MAX_PIXELS = 2048 * 2048  # `dip restore`'s default --max-pixels (pipeline.files.DEFAULT_MAX_PIXELS; a test keeps them equal)
SUFFIXES = ("png", "jpg", "jpeg", "tif", "tiff", "bmp", "webp")  # what `dip restore` reads from a folder


class UploadError(ValueError):
    """An upload that cannot be restored; the message says which file, why and what to do."""


@dataclass
class Picture:
    """A decoded upload: ``pixels`` uint8 (H, W) gray or (H, W, 3) colour, as shown; ``data`` the file's bytes."""

    name: str
    data: bytes
    pixels: np.ndarray

    @property
    def size(self) -> tuple[int, int]:
        """``(height, width)``."""
        return int(self.pixels.shape[0]), int(self.pixels.shape[1])

    @property
    def channels(self) -> int:
        return 1 if self.pixels.ndim == 2 else 3


def decode(name: str, data: bytes, max_pixels: int = MAX_PIXELS) -> Picture:
    """The pixels of an uploaded file, or :class:`UploadError` saying why there are none; an image
    of more than ``max_pixels`` is refused from its header, before anything is decoded (as the CLI does)."""
    from PIL import Image

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as im:
                w, h = im.size
                if w * h > max_pixels:
                    raise UploadError(f"{name}: {w}x{h} = {w * h:,} pixels, more than the limit of {max_pixels:,}; "
                                      "downscale or crop it (nothing was decoded)")
                im.load()
                pixels = _eight_bit(im)
    except UploadError:
        raise
    except Exception as err:  # noqa: BLE001 - Pillow raises many types for a file that is not an image
        raise UploadError(f"{name} is not an image that can be read ({type(err).__name__}); upload a PNG, JPEG or TIFF file") from None
    return Picture(name, data, pixels)


def _eight_bit(im) -> np.ndarray:
    """uint8 pixels of an open Pillow image, high bit depths scaled as ``pipeline.files.load_image`` reads them."""
    if im.mode.startswith("I;16") or (im.mode == "I" and im.format == "PNG"):
        return np.round(np.asarray(im).astype(np.float64) / 257.0).astype(np.uint8)
    if im.mode == "I":
        raise UploadError("32-bit integer pixels of unknown range; save the image as an 8- or 16-bit file")
    if im.mode == "F":
        arr = np.asarray(im).astype(np.float64)
        if not np.isfinite(arr).all() or arr.min() < 0 or arr.max() > 1:
            raise UploadError("floating-point pixels outside [0, 1]; scale them to [0, 1] or save an 8- or 16-bit image")
        return np.round(arr * 255).astype(np.uint8)
    return np.asarray(im.convert("L" if im.mode in ("1", "L", "LA", "La") else "RGB"))


def check_pixels(picture: Picture, task: str, factor: int, max_pixels: int = MAX_PIXELS) -> None:
    """:class:`UploadError` when the restored image (``factor``² times larger for ``sr``) is over ``max_pixels``."""
    h, w = picture.size
    scale = factor if task == "sr" else 1
    if h * w * scale * scale > max_pixels:
        raise UploadError(
            f"{picture.name}: the restored image would be {w * scale}x{h * scale} = {h * w * scale * scale:,} pixels, more than "
            f"the limit of {max_pixels:,} (a fit needs memory for many network activations per pixel); downscale or crop it"
        )


def check_same_size(what: str, other: Picture, expected: tuple[int, int]) -> None:
    """:class:`UploadError` unless ``other`` is ``expected`` = ``(height, width)``."""
    if other.size != expected:
        raise UploadError(f"the {what} {other.name} is {other.size[1]}x{other.size[0]} but it must be {expected[1]}x{expected[0]}; "
                          f"upload a {what} of that size")


def hex_colour(text: str) -> tuple[int, int, int]:
    """``#rrggbb`` → ``(r, g, b)``."""
    text = text.strip().lstrip("#")
    if len(text) != 6:
        raise UploadError(f"#{text} is not a colour of the form #rrggbb")
    return int(text[0:2], 16), int(text[2:4], 16), int(text[4:6], 16)


def colour_mask(picture: Picture, colour: tuple[int, int, int], tolerance: int = 0) -> np.ndarray:
    """The inpainting mask (uint8, 255 = known, 0 = hole) whose holes are the pixels within
    ``tolerance`` (per channel, 0–255) of ``colour``; a gray image's pixel matches a gray colour
    only. :class:`UploadError` when no pixel, or every pixel, has that colour."""
    px = picture.pixels.astype(np.int16)
    if px.ndim == 2:
        px = np.repeat(px[..., None], 3, axis=2)
    hole = (np.abs(px - np.array(colour, dtype=np.int16)) <= tolerance).all(axis=2)
    name = "#{:02x}{:02x}{:02x}".format(*colour)
    if not hole.any():
        raise UploadError(f"no pixel of {picture.name} has the colour {name} (tolerance {tolerance}); pick the colour of the holes "
                          "(a JPEG changes colours slightly: raise the tolerance) or upload a mask")
    if hole.all():
        raise UploadError(f"every pixel of {picture.name} has the colour {name}: nothing is left to fit; pick the colour of the holes only")
    return np.where(hole, 0, 255).astype(np.uint8)


def encode_png(pixels: np.ndarray) -> bytes:
    """uint8 pixels as PNG bytes."""
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(pixels)).save(buf, format="PNG")
    return buf.getvalue()
