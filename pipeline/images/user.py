"""A person's own image for ``dip restore``: read, checked against the task, cropped if asked.

Its settings are params.yaml's profiles (:func:`pipeline.settings.preset_configs`), as the
pipeline's fits use them; the image sets of the reproduction are :mod:`pipeline.images.manifest`'s.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np


def center_crop(image: np.ndarray, multiple: int) -> np.ndarray:
    """The authors' ``crop_image``: centre crop so both sides are multiples of ``multiple``."""
    h, w = image.shape[:2]
    nh, nw = h - h % multiple, w - w % multiple
    if nh == 0 or nw == 0:
        raise ValueError(f"image {w}x{h} is smaller than {multiple} px, so it cannot be cropped to a multiple of it")
    top, left = (h - nh) // 2, (w - nw) // 2
    return image[top : top + nh, left : left + nw]


def load_user_image(input: Path, task: str, mask: Path | None, factor: int, gt: Path | None, size_mode: str, multiple: int) -> tuple[Any, Any, Any]:
    """Read and check one image to restore: ``(observation, operator, ground truth or None)``."""
    import torch

    from dip.io import load_image, load_mask
    from dip.operators import make_operator

    observation = load_image(input)
    m = load_mask(mask) if mask is not None else None
    if task == "inpaint" and m is None:
        raise ValueError("inpainting needs --mask (white = known pixels, black = pixels to fill), or a NAME_mask.png beside each image")
    if m is not None and m.shape != observation.shape[:2]:
        raise ValueError(f"mask {mask} is {m.shape[1]}x{m.shape[0]} but {input} is {observation.shape[1]}x{observation.shape[0]}; give a mask of the image's size")
    truth = load_image(gt, mode="gray" if observation.ndim == 2 else "rgb") if gt is not None else None
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
