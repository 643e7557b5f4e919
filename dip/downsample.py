"""Lanczos downsampling, as in the authors' ``Downsampler`` (support 2 or 3, phase 0.5 for even
factors; phase 0 for odd ones, whose block centres fall on a pixel).

The 2-D kernel of the authors is a product ``k(i) k(j)`` of one 1-D kernel, normalised to sum
to one, so it is applied here as two 1-D strided convolutions (exactly the same result, cheaper):

.. math::

    L_a(d) = \\frac{a \\sin(\\pi d)\\,\\sin(\\pi d / a)}{\\pi^2 d^2},\\qquad
    d_i = \\frac{|i + \\tfrac12 - c|}{f},\\quad c = \\frac{w + 1}{2},\\quad w = 2af + 1,

for taps :math:`i = 1 … w-1` (phase 0.5 drops one tap), factor :math:`f`, support :math:`a`.
For odd :math:`f` the phase is 0: all :math:`w` taps, :math:`d_i = |i - c| / f`.
The input is replicate-padded by (kernel length :math:`- f`)/2, an integer in both cases, so that
the output is exactly :math:`H/f \\times W/f` for sizes divisible by :math:`f` and each output
pixel is centred on its block of :math:`f \\times f` input pixels (as PIL's resize).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


def lanczos_kernel_1d(factor: int, support: int = 2) -> torch.Tensor:
    """The normalised 1-D Lanczos kernel of the authors' ``get_kernel``, float64: phase 0.5
    (``2·support·factor`` taps) for even factors, phase 0 (one tap more) for odd ones."""
    if factor < 1 or support < 1:
        raise ValueError(f"factor and support must be >= 1, got {factor} and {support}")
    width = 2 * support * factor + 1
    center = (width + 1) / 2.0
    phase = 0.5 if factor % 2 == 0 else 0.0
    taps = []
    for i in range(1, width + (phase == 0.0)):  # phase 0.5: width - 1 taps
        d = abs(i + phase - center) / factor
        if d == 0:
            taps.append(1.0)
        else:
            taps.append(support * math.sin(math.pi * d) * math.sin(math.pi * d / support) / (math.pi**2 * d * d))
    k = torch.tensor(taps, dtype=torch.float64)
    return k / k.sum()


class LanczosDownsampler(nn.Module):
    """Per-channel Lanczos downsampling by an integer ``factor`` (replicate padding, stride f)."""

    def __init__(self, factor: int, support: int = 2) -> None:
        super().__init__()
        self.factor = factor
        kernel = lanczos_kernel_1d(factor, support).float()
        self.register_buffer("kernel", kernel, persistent=False)
        self.pad = (kernel.numel() - factor) // 2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, c, h, w = x.shape
        k = self.kernel.to(dtype=x.dtype)
        y = x.reshape(n * c, 1, h, w)
        y = F.pad(y, (self.pad, self.pad, self.pad, self.pad), mode="replicate")
        y = F.conv2d(y, k.view(1, 1, 1, -1), stride=(1, self.factor))
        y = F.conv2d(y, k.view(1, 1, -1, 1), stride=(self.factor, 1))
        return y.reshape(n, c, y.shape[-2], y.shape[-1])
