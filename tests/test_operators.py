"""Forward operators and corruption synthesis."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from dip.downsample import LanczosDownsampler, lanczos_kernel_1d
from dip.metrics import to_uint8
from dip.operators import Denoising, Inpainting, SuperResolution, make_operator


@pytest.mark.parametrize("factor, support", [(2, 2), (4, 2), (8, 2), (2, 3)])
def test_lanczos_kernel_sums_to_one_and_is_symmetric(factor: int, support: int) -> None:
    k = lanczos_kernel_1d(factor, support)
    assert k.numel() == 2 * support * factor  # phase 0.5: one tap fewer than 2af + 1
    assert torch.isclose(k.sum(), torch.tensor(1.0, dtype=torch.float64))
    assert torch.allclose(k, k.flip(0))
    assert torch.isclose(torch.outer(k, k).sum(), torch.tensor(1.0, dtype=torch.float64))


@pytest.mark.parametrize("factor", [4, 8])
def test_downsampler_shape_and_constant_image(factor: int) -> None:
    down = LanczosDownsampler(factor)
    x = torch.full((1, 3, 64, 48), 0.3)
    y = down(x)
    assert y.shape == (1, 3, 64 // factor, 48 // factor)
    assert torch.allclose(y, torch.full_like(y, 0.3), atol=1e-6)


def test_mask_drop_rate_and_reproducibility() -> None:
    a = Inpainting.random_mask((256, 256), 0.5, torch.Generator().manual_seed(3))
    b = Inpainting.random_mask((256, 256), 0.5, torch.Generator().manual_seed(3))
    c = Inpainting.random_mask((256, 256), 0.5, torch.Generator().manual_seed(4))
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert abs(1 - a.mean().item() - 0.5) < 0.01
    assert abs(1 - Inpainting.random_mask((256, 256), 0.2, torch.Generator().manual_seed(0)).mean().item() - 0.2) < 0.01


def test_noise_is_reproducible_and_has_sigma() -> None:
    clean = torch.full((1, 1, 128, 128), 0.5)
    a = Denoising.corrupt(clean, 25 / 255, torch.Generator().manual_seed(1))
    b = Denoising.corrupt(clean, 25 / 255, torch.Generator().manual_seed(1))
    assert torch.equal(a, b)
    assert abs((a - clean).std().item() - 25 / 255) < 0.003
    assert 0 <= a.min() and a.max() <= 1


def test_inpainting_operator_masks_and_rejects_wrong_mask_size() -> None:
    mask = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    x = torch.rand(1, 3, 2, 2)
    op = Inpainting(mask)
    assert torch.equal(op(x)[0, :, 0, 1], torch.zeros(3)) and torch.equal(op(x)[0, :, 0, 0], x[0, :, 0, 0])
    with pytest.raises(ValueError, match="mask is 3x3 but the image is 2x2"):
        Inpainting.corrupt(x, torch.ones(3, 3))


def test_sr_corruption_is_lanczos_resize_by_factor() -> None:
    rng = np.random.default_rng(0)
    hr = to_uint8(rng.random((64, 48, 3)))
    lr = SuperResolution.corrupt(hr, 4)
    assert lr.shape == (16, 12, 3) and lr.dtype == np.uint8
    with pytest.raises(ValueError, match="does not divide by factor 4"):
        SuperResolution.corrupt(hr[:63], 4)
    assert SuperResolution.crop_to_factor(hr[:63, :47], 4).shape == (60, 44, 3)
    op = SuperResolution(4)
    assert op.image_size((16, 12)) == (64, 48)
    assert op(torch.rand(1, 3, 64, 48)).shape == (1, 3, 16, 12)


def test_make_operator_rejects_unknown_task() -> None:
    with pytest.raises(ValueError, match="unknown task 'deblur'"):
        make_operator("deblur")
    with pytest.raises(ValueError, match="factor must be >= 2"):
        make_operator("sr", factor=1)
