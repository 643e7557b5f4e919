"""A person's own image for ``dip restore``: read, checked against the task, cropped if asked.

Its settings are params.yaml's profiles (:func:`pipeline.settings.preset_configs`), as the
pipeline's fits use them; the image sets of the reproduction are :mod:`pipeline.images.manifest`'s.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from pipeline.files import DEFAULT_MAX_PIXELS, check_pixels, image_header, load_image, load_mask


def center_crop(image: np.ndarray, multiple: int) -> np.ndarray:
    """The authors' ``crop_image``: centre crop so both sides are multiples of ``multiple``."""
    h, w = image.shape[:2]
    nh, nw = h - h % multiple, w - w % multiple
    if nh == 0 or nw == 0:
        raise ValueError(f"image {w}x{h} is smaller than {multiple} px, so it cannot be cropped to a multiple of it")
    top, left = (h - nh) // 2, (w - nw) // 2
    return image[top : top + nh, left : left + nw]


def restored_size(input: Path, task: str, factor: int) -> tuple[int, int]:
    """``(height, width)`` of the image that restoring ``input`` gives (before a centre crop), from
    the file's header: nothing is decoded."""
    h, w, _ = image_header(input)
    return (h * factor, w * factor) if task == "sr" else (h, w)


def load_user_image(input: Path, task: str, mask: Path | None, factor: int, gt: Path | None, size_mode: str, multiple: int,
                    max_pixels: int | None = None) -> tuple[Any, Any, Any]:
    """Read and check one image to restore: ``(observation, operator, ground truth or None)``.

    Sizes are checked from the files' headers before anything is decoded: the restored image
    against ``max_pixels`` (default :data:`pipeline.files.DEFAULT_MAX_PIXELS`), the mask
    against the image, so that a huge or mismatched file costs no memory."""
    import torch

    from dip.operators import make_operator

    limit = max_pixels or DEFAULT_MAX_PIXELS
    check_pixels(*restored_size(input, task, factor), limit)
    h, w, _ = image_header(input)
    if mask is not None:
        mh, mw, _ = image_header(mask)
        if (mh, mw) != (h, w):
            raise ValueError(f"mask {mask} is {mw}x{mh} but {input} is {w}x{h}; give a mask of the image's size")
    if gt is not None:
        gh, gw, _ = image_header(gt)
        want = (h * factor, w * factor) if task == "sr" else (h, w)
        if size_mode == "pad" and (gh, gw) != want:
            what = f"factor {factor} gives {want[1]}x{want[0]}" if task == "sr" else f"{input} is {w}x{h}"
            raise ValueError(f"--gt is {gw}x{gh} but {what}; give the ground truth at the restored image's size")
    observation = load_image(input, max_pixels=h * w)
    m = load_mask(mask, max_pixels=h * w) if mask is not None else None
    if task == "inpaint" and m is None:
        raise ValueError("inpainting needs --mask (white = known pixels, black = pixels to fill), or a NAME_mask.png beside each image")
    truth = load_image(gt, mode="gray" if observation.ndim == 2 else "rgb", max_pixels=limit * 2) if gt is not None else None
    if size_mode == "crop":
        mult = multiple if task != "sr" else max(1, multiple // factor)
        observation = center_crop(observation, mult)
        m = center_crop(m, mult) if m is not None else None
        truth = center_crop(truth, mult * (factor if task == "sr" else 1)) if truth is not None else None
    if task == "sr":
        h, w = observation.shape[:2]
        if min(h, w) * factor < multiple:
            raise ValueError(f"a {w}x{h} image at factor {factor} is too small for the network ({multiple} px per side needed)")
        if truth is not None and truth.shape[:2] != (h * factor, w * factor):
            raise ValueError(f"--gt is {truth.shape[1]}x{truth.shape[0]} but factor {factor} gives {w * factor}x{h * factor}")
    operator = make_operator(task, mask=torch.from_numpy(m) if m is not None else None, factor=factor)
    return observation, operator, truth
