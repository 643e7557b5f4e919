"""The layout-keeping reflection pad and the grouped channel concatenation."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from dip.layers import ReflectionPad, cat_channels, is_channels_last, reflection_pad


@pytest.mark.parametrize("p", [1, 2, 3])
@pytest.mark.parametrize("shape", [(2, 5, 7, 9), (1, 3, 8, 8), (1, 1, 6, 11)])
def test_pad_equals_reflectionpad2d_in_values_and_gradients(p: int, shape: tuple[int, ...]) -> None:
    gen = torch.Generator().manual_seed(p)
    x = torch.randn(shape, dtype=torch.float64, generator=gen).contiguous(memory_format=torch.channels_last).requires_grad_()
    ref = x.detach().contiguous().requires_grad_()
    got, want = ReflectionPad(p)(x), nn.ReflectionPad2d(p)(ref)
    assert torch.equal(got, want)
    grad = torch.randn(want.shape, dtype=torch.float64, generator=gen)
    got.backward(grad.contiguous(memory_format=torch.channels_last))
    want.backward(grad)
    torch.testing.assert_close(x.grad, ref.grad, atol=1e-12, rtol=0)
    if shape[1] > 1:  # one channel is NCHW and NHWC at once
        assert is_channels_last(got) and is_channels_last(x.grad)


def test_pad_passes_gradcheck_and_keeps_nchw_nchw() -> None:
    x = torch.randn(1, 3, 5, 6, dtype=torch.float64).contiguous(memory_format=torch.channels_last).requires_grad_()
    assert torch.autograd.gradcheck(lambda t: reflection_pad(t, 2), (x,))
    y = torch.randn(1, 3, 5, 6)
    out = ReflectionPad(1)(y)
    assert out.is_contiguous() and torch.equal(out, nn.functional.pad(y, (1, 1, 1, 1), mode="reflect"))


def test_pad_wider_than_the_image_is_refused() -> None:
    x = torch.randn(1, 2, 2, 5).contiguous(memory_format=torch.channels_last)
    with pytest.raises(ValueError, match="larger than 2"):
        reflection_pad(x, 2)


@pytest.mark.parametrize("last", [False, True])
def test_cat_channels_interleaves_per_image(last: bool) -> None:
    a, b = torch.randn(1, 6, 4, 5), torch.randn(1, 4, 4, 5)
    if last:
        a, b = (t.contiguous(memory_format=torch.channels_last) for t in (a, b))
    got = cat_channels([a, b], images=2)  # image 1: a[:3], b[:2]; image 2: a[3:], b[2:]
    torch.testing.assert_close(got, torch.cat([a[:, :3], b[:, :2], a[:, 3:], b[:, 2:]], 1), atol=0, rtol=0)
    assert is_channels_last(got) == last
    assert torch.equal(cat_channels([a, b]), torch.cat([a, b], 1))
