"""PSNR/SSIM on 8-bit images and the super-resolution Y-channel protocol."""

from __future__ import annotations

import math

import numpy as np
import pytest

from dip.metrics import psnr, rgb_to_y, ssim, to_uint8


def test_psnr_matches_the_definition_on_8_bit_images() -> None:
    rng = np.random.default_rng(0)
    ref = rng.integers(0, 256, (32, 32, 3)).astype(np.uint8)
    img = np.clip(ref.astype(int) + rng.integers(-5, 6, ref.shape), 0, 255).astype(np.uint8)
    mse = np.mean((ref.astype(float) - img.astype(float)) ** 2)
    assert psnr(ref, img) == pytest.approx(10 * math.log10(255**2 / mse))
    assert psnr(ref, ref) == math.inf
    assert ssim(ref, ref) == pytest.approx(1.0)


def test_float_images_are_quantised_like_saved_pngs() -> None:
    ref = (np.arange(64 * 64) % 256).reshape(64, 64).astype(np.float32) / 255
    assert psnr(ref, ref + 0.4 / 255) == math.inf  # rounds to the same 8-bit values
    assert to_uint8(np.array([0.0, 0.5, 1.0, 1.2])).tolist() == [0, 128, 255, 255]


def test_y_channel_is_bt601_in_16_235() -> None:
    assert rgb_to_y(np.zeros((1, 1, 3), np.uint8)).item() == pytest.approx(16.0)
    assert rgb_to_y(np.full((1, 1, 3), 255, np.uint8)).item() == pytest.approx(235.0)


def test_sr_protocol_shaves_the_border() -> None:
    ref = np.full((32, 32, 3), 0.5, np.float32)
    img = ref.copy()
    img[:4] = 0.0  # damage only the border rows
    assert psnr(ref, img, "sr", shave=4) == math.inf
    assert psnr(ref, img, "sr", shave=0) < 30


def test_shape_mismatch_is_an_error() -> None:
    with pytest.raises(ValueError, match="differ in shape"):
        psnr(np.zeros((4, 4)), np.zeros((4, 5)))
