"""Image quality metrics, computed as the paper's saved 8-bit PNGs would give them.

PSNR: :math:`10 \\log_{10}(255^2 / \\mathrm{MSE})` on images quantised to 8 bits.
SSIM: scikit-image's ``structural_similarity`` with ``data_range=255`` (channel axis for colour).

The super-resolution protocol (``protocol="sr"``) is the one of the SR literature the paper
compares with: luma :math:`Y = 16 + (65.481 R + 128.553 G + 24.966 B)` for RGB in [0, 1]
(ITU-R BT.601, range [16, 235]), a border of ``shave`` pixels (default: the SR factor) removed,
then PSNR/SSIM on Y with ``data_range=255``.
"""

from __future__ import annotations

from typing import Literal

import numpy as np

Protocol = Literal["rgb", "sr"]


def to_uint8(image: np.ndarray) -> np.ndarray:
    """Float image in [0, 1] → uint8, rounding as PNG writers do; uint8 passes through."""
    if image.dtype == np.uint8:
        return image
    return np.clip(np.round(np.asarray(image, dtype=np.float64) * 255.0), 0, 255).astype(np.uint8)


def rgb_to_y(image_uint8: np.ndarray) -> np.ndarray:
    """BT.601 luma in [16, 235] as float64 (gray images are returned as they are)."""
    img = image_uint8.astype(np.float64)
    if img.ndim == 2:
        return img
    rgb = img[..., :3] / 255.0
    return 16.0 + rgb @ np.array([65.481, 128.553, 24.966])


def _prepare(reference: np.ndarray, image: np.ndarray, protocol: Protocol, shave: int) -> tuple[np.ndarray, np.ndarray]:
    ref, img = to_uint8(reference), to_uint8(image)
    if ref.shape != img.shape:
        raise ValueError(f"images differ in shape: reference {ref.shape}, image {img.shape}")
    if protocol == "sr":
        ref, img = rgb_to_y(ref), rgb_to_y(img)
        if shave > 0:
            ref, img = ref[shave:-shave, shave:-shave], img[shave:-shave, shave:-shave]
    elif protocol != "rgb":
        raise ValueError(f"unknown protocol {protocol!r}; use 'rgb' or 'sr'")
    return ref.astype(np.float64), img.astype(np.float64)


def psnr(reference: np.ndarray, image: np.ndarray, protocol: Protocol = "rgb", shave: int = 0) -> float:
    """PSNR in dB of ``image`` against ``reference`` (arrays HxW or HxWxC, float [0,1] or uint8)."""
    from skimage.metrics import peak_signal_noise_ratio  # here: scikit-image's metrics take half a second to import

    ref, img = _prepare(reference, image, protocol, shave)
    if np.array_equal(ref, img):
        return float("inf")
    return float(peak_signal_noise_ratio(ref, img, data_range=255.0))


def ssim(reference: np.ndarray, image: np.ndarray, protocol: Protocol = "rgb", shave: int = 0) -> float:
    """SSIM of ``image`` against ``reference`` (Gaussian-free default window of scikit-image)."""
    from skimage.metrics import structural_similarity

    ref, img = _prepare(reference, image, protocol, shave)
    channel_axis = -1 if ref.ndim == 3 else None
    return float(structural_similarity(ref, img, data_range=255.0, channel_axis=channel_axis))


def quality(reference: np.ndarray, image: np.ndarray, protocol: Protocol = "rgb", shave: int = 0) -> dict[str, float]:
    """``{"psnr": …, "ssim": …}``."""
    return {"psnr": psnr(reference, image, protocol, shave), "ssim": ssim(reference, image, protocol, shave)}
