"""Two layers that keep a network in one memory format and let N images share one pass.

**Reflection padding that keeps the layout.** A channels-last (NHWC) network is fast on a GPU
only if every op keeps NHWC; CUDA's ``reflection_pad2d`` returns NCHW whatever its input, so
each 3×3 convolution would pay two layout copies. :class:`ReflectionPad` computes the same
function,

.. math::

    \\mathrm{pad}(x)_{h,w} = x_{r(h - p),\\, r(w - p)},\\qquad
    r(i) = \\begin{cases} -i & i < 0 \\\\ 2(H-1) - i & i \\ge H \\\\ i & \\text{else,}\\end{cases}

as one copy of ``x`` into an output of the input's own layout plus four thin border strips;
its backward is one copy of the interior of the gradient plus the border strips added back onto
the rows and columns they came from. NCHW input, ``torch.compile`` (Inductor fuses the
pad itself) and ``vmap`` take PyTorch's own ``reflection_pad2d``.

**Channel concatenation in the grouped layout.** :class:`dip.group.Grouped` runs N networks as
one network whose every activation holds the N images' channels side by side,
``(1, N·C, H, W)``, image-major. A concatenation ``[a, b]`` along channels must then interleave
per image, ``[a_1, b_1, a_2, b_2, …]``: :func:`cat_channels` does that, in either layout.
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn


def is_channels_last(x: torch.Tensor) -> bool:
    """Whether ``x`` (4-D) is laid out NHWC and not also NCHW (one channel or 1×1 images are both)."""
    return x.dim() == 4 and x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous()


class _KeepLayoutReflectionPad(torch.autograd.Function):
    """Reflection padding by ``p`` on both spatial sides, output in the input's memory format."""

    @staticmethod
    def forward(x: torch.Tensor, p: int) -> torch.Tensor:  # type: ignore[override]
        n, c, h, w = x.shape
        fmt = torch.channels_last if is_channels_last(x) else torch.contiguous_format
        out = torch.empty((n, c, h + 2 * p, w + 2 * p), dtype=x.dtype, device=x.device, memory_format=fmt)
        out[:, :, p : p + h, p : p + w].copy_(x)
        out[:, :, :p, p : p + w].copy_(x[:, :, 1 : p + 1].flip(2))  # rows first, from x …
        out[:, :, p + h :, p : p + w].copy_(x[:, :, h - p - 1 : h - 1].flip(2))
        out[:, :, :, :p].copy_(out[:, :, :, p + 1 : 2 * p + 1].flip(3))  # … then columns, corners included
        out[:, :, :, p + w :].copy_(out[:, :, :, w - 1 : w + p - 1].flip(3))
        return out

    @staticmethod
    def setup_context(ctx, inputs, output) -> None:  # noqa: ANN001
        ctx.p = inputs[1]
        ctx.fmt = torch.channels_last if is_channels_last(inputs[0]) else torch.contiguous_format

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor, None]:  # noqa: ANN001
        p, fmt = ctx.p, ctx.fmt
        h, w = grad.shape[-2] - 2 * p, grad.shape[-1] - 2 * p
        # undo the columns (full height), then the rows: the reverse order of the forward
        cols = grad[:, :, :, p : p + w].contiguous(memory_format=fmt)
        cols[:, :, :, 1 : p + 1].add_(grad[:, :, :, :p].flip(3))
        cols[:, :, :, w - p - 1 : w - 1].add_(grad[:, :, :, p + w :].flip(3))
        gx = cols[:, :, p : p + h].contiguous(memory_format=fmt)
        gx[:, :, 1 : p + 1].add_(cols[:, :, :p].flip(2))
        gx[:, :, h - p - 1 : h - 1].add_(cols[:, :, p + h :].flip(2))
        return gx, None


def reflection_pad(x: torch.Tensor, p: int) -> torch.Tensor:
    """``F.pad(x, (p, p, p, p), mode="reflect")``, keeping ``x``'s memory format (see the module docstring)."""
    if (p == 0 or torch.compiler.is_compiling() or torch._C._functorch.is_functorch_wrapped_tensor(x)
            or not is_channels_last(x)):
        return F.pad(x, (p, p, p, p), mode="reflect") if p else x
    if p >= min(x.shape[-2:]):
        raise ValueError(f"reflection padding {p} needs sides larger than {p}, got {tuple(x.shape[-2:])}")
    return _KeepLayoutReflectionPad.apply(x, p)


class ReflectionPad(nn.ReflectionPad2d):
    """``nn.ReflectionPad2d(p)`` (same padding on all four sides) that keeps channels-last input channels-last."""

    def __init__(self, p: int) -> None:
        super().__init__(p)
        self.p = p

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return reflection_pad(x, self.p)


def cat_channels(tensors: Sequence[torch.Tensor], images: int = 1) -> torch.Tensor:
    """Concatenate along channels; with ``images`` > 1 each tensor holds ``images`` blocks of channels
    (the grouped layout) and block ``i`` of the result is the concatenation of the blocks ``i``."""
    if images == 1:
        return torch.cat(list(tensors), 1)
    n, _, h, w = tensors[0].shape
    if all(is_channels_last(t) for t in tensors):  # (n, H, W, images, c): the memory order of NHWC
        parts = [t.permute(0, 2, 3, 1).reshape(n, h, w, images, -1) for t in tensors]
        return torch.cat(parts, 4).reshape(n, h, w, -1).permute(0, 3, 1, 2)
    return torch.cat([t.reshape(n, images, -1, h, w) for t in tensors], 2).reshape(n, -1, h, w)
