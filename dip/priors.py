"""Explicit image priors that can be added to the data term (``FitConfig.tv_weight``).

Total variation as in the authors' ``tv_loss`` (``utils/sr_utils.py``), used with weight
:math:`\\lambda = 10^{-7}` in their super-resolution prior comparison:

.. math::

    \\mathrm{TV}_\\beta(x) = \\sum_{n,c,i,j} \\big((x_{i,j+1} - x_{i,j})^2 + (x_{i+1,j} - x_{i,j})^2 + \\epsilon\\big)^{\\beta},
    \\qquad \\beta = \\tfrac12

over :math:`i < H-1,\\ j < W-1` (a sum, not a mean). :math:`\\epsilon = 10^{-8}` is ours: it keeps
the gradient finite where the image is locally constant (the authors' version gives NaN there).
"""

from __future__ import annotations

import torch


def tv(x: torch.Tensor, beta: float = 0.5, eps: float = 1e-8) -> torch.Tensor:
    """:math:`\\mathrm{TV}_\\beta(x)` of a batch ``(N, C, H, W)`` (a scalar)."""
    dh = (x[..., :-1, 1:] - x[..., :-1, :-1]) ** 2
    dw = (x[..., 1:, :-1] - x[..., :-1, :-1]) ** 2
    return torch.sum((dh + dw + eps) ** beta)
