"""Fitting several same-size images at once: N networks as one stacked network.

N independent fits share nothing but the kernels that compute them. Each network's parameters
are stored **stacked** — one leaf tensor of shape ``(N, *shape)`` per parameter — and the forward
pass is ``torch.func.vmap`` of ``functional_call`` over those leaves, which PyTorch lowers to
grouped convolutions. Batch norm inside ``vmap`` normalises each image with its own statistics
(the networks only ever use batch statistics), so the result for image ``i`` is the lone fit of
image ``i`` up to rounding. Stacked leaves (rather than N modules stacked anew every iteration)
mean no per-iteration copy of the weights and one Adam update over ``N×`` larger tensors.

:func:`group_size` chooses N from the free GPU memory; on the CPU grouping buys nothing.
"""

from __future__ import annotations

import math
from typing import Sequence

import torch
from torch import nn


class Lone:
    """One network, called directly: the model of a fit of one image."""

    stacked = False

    def __init__(self, net: nn.Module) -> None:
        self.net = net
        self.params = list(net.parameters())

    def __call__(self, codes: torch.Tensor) -> torch.Tensor:
        return self.net(codes)


class Stacked:
    """N same-shaped networks as stacked parameter leaves; ``codes (N, D, H, W) → (N, C, H, W)``."""

    stacked = True

    def __init__(self, nets: Sequence[nn.Module]) -> None:
        from torch.func import functional_call, vmap

        base = nets[0]
        self.names = [name for name, _ in base.named_parameters()]
        per_net = [dict(net.named_parameters()) for net in nets]
        with torch.no_grad():
            self.params = [torch.stack([p[name] for p in per_net]).requires_grad_() for name in self.names]
        buffers = dict(base.named_buffers())

        def one(params: dict[str, torch.Tensor], code: torch.Tensor) -> torch.Tensor:
            return functional_call(base, (params, buffers), (code[None],))[0]

        self._batched = vmap(one)

    def __call__(self, codes: torch.Tensor) -> torch.Tensor:
        return self._batched(dict(zip(self.names, self.params)), codes)


def fit_bytes(net: nn.Module, code: torch.Tensor) -> int:
    """Peak CUDA memory of one forward/backward of ``net`` on ``code`` (a measurement, not a guess)."""
    if code.device.type != "cuda":
        return 0
    torch.cuda.synchronize(code.device)
    torch.cuda.reset_peak_memory_stats(code.device)
    before = torch.cuda.memory_allocated(code.device)
    net(code).square().mean().backward()
    net.zero_grad(set_to_none=True)
    torch.cuda.synchronize(code.device)
    return torch.cuda.max_memory_allocated(code.device) - before


def group_size(requested: int | str, jobs: int, per_fit_bytes: int, device: torch.device, cap: int = 16) -> int:
    """How many fits to run together: ``requested`` if a number, else (``auto``) as many as half the
    free GPU memory holds at ``per_fit_bytes`` each (times 3 for Adam state, snapshots and the
    graph's pool), at most ``cap`` and ``jobs``; always 1 off CUDA."""
    if requested != "auto":
        n = int(requested)
        if n < 1:
            raise ValueError(f"group size must be >= 1 or 'auto', got {requested!r}")
        return max(1, min(n, jobs))
    if device.type != "cuda" or per_fit_bytes <= 0:
        return 1
    free, _total = torch.cuda.mem_get_info(device)
    return max(1, min(cap, jobs, math.floor(0.5 * free / (3 * per_fit_bytes))))
