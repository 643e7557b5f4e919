"""Fitting several same-size images at once: N networks as one model.

N independent fits share nothing but the kernels that compute them. Each network's parameters
are stored **stacked** — one leaf tensor of shape ``(N, *shape)`` per parameter — so that Adam,
backtracking and freezing act on image ``i`` through row ``i`` (no per-iteration copy of the
weights, one update over ``N×`` larger tensors). Two ways to run the forward pass over them
(``FitConfig.many``):

* :class:`Stacked` (``"vmap"``) — ``torch.func.vmap`` of ``functional_call`` over the leaves,
  which PyTorch lowers to grouped convolutions;
* :class:`Grouped` (``"grouped"``) — one network whose layers are built for N images at once: a
  convolution :math:`C_{in} \\to C_{out}` becomes one with :math:`N C_{in} \\to N C_{out}` channels
  and ``groups=N``, a batch norm of :math:`C` channels one of :math:`N C`; the activations hold
  the images' channels side by side, ``(1, N·C, H, W)``, and each leaf is passed to its layer as
  the view ``(N·shape[0], *shape[1:])``.

Batch norm normalises each channel of each image with that image's statistics either way (the
networks only ever use batch statistics), so the result for image ``i`` is the lone fit of image
``i`` up to rounding. (The third way, N lone graphs on N CUDA streams, ``"streams"``, needs no
model of its own: :class:`dip.graphs.OnStreams`.)

:func:`group_size` chooses N from the free GPU memory; on the CPU grouping buys nothing.
"""

from __future__ import annotations

import copy
import math
from typing import Any, Protocol, Sequence

import torch
from torch import nn

from dip.layers import is_channels_last


class Model(Protocol):
    """What the iteration needs of a model: its parameter leaves and ``codes (N, D, H, W) → (N, C, H, W)``.
    ``stacked``: the leaves have a leading image dimension (a group); else one image's weights."""

    stacked: bool
    params: list[torch.Tensor]

    def __call__(self, codes: torch.Tensor) -> torch.Tensor: ...


class Lone:
    """One network, called directly: the model of a fit of one image."""

    stacked = False

    def __init__(self, net: nn.Module) -> None:
        self.net = net
        self.params = list(net.parameters())

    def __call__(self, codes: torch.Tensor) -> torch.Tensor:
        return self.net(codes)


class Stacked:
    """N same-shaped networks as stacked parameter leaves; ``codes (N, D, H, W) → (N, C, H, W)``,
    always in NCHW (``channels_last`` does not apply: see :class:`Grouped` for a channels-last group)."""

    stacked = True

    def __init__(self, nets: Sequence[nn.Module]) -> None:
        from torch.func import functional_call, vmap

        base = nets[0]
        self.names = [name for name, _ in base.named_parameters()]
        per_net = [dict(net.named_parameters()) for net in nets]
        with torch.no_grad():  # NCHW strides: vmap's gradients of 1×1 weights with channels-last strides are wrong (torch 2.13)
            self.params = [torch.stack([p[name] for p in per_net]).clone(memory_format=torch.contiguous_format).requires_grad_()
                           for name in self.names]
        buffers = dict(base.named_buffers())

        def one(params: dict[str, torch.Tensor], code: torch.Tensor) -> torch.Tensor:
            return functional_call(base, (params, buffers), (code[None],))[0]

        self._batched = vmap(one)

    def __call__(self, codes: torch.Tensor) -> torch.Tensor:
        return self._batched(dict(zip(self.names, self.params)), codes.contiguous())


#: layers :class:`Grouped` knows how to widen; any other layer with parameters cannot be grouped
_WIDENED = (nn.Conv2d, nn.ConvTranspose2d, nn.BatchNorm2d, nn.InstanceNorm2d)


def can_group(net: nn.Module) -> bool:
    """Whether :class:`Grouped` can run ``net`` (every parameter belongs to a layer it widens)."""
    return all(isinstance(m, _WIDENED) or not list(m.parameters(recurse=False)) for m in net.modules())


class Grouped:
    """N same-shaped networks as one network with grouped layers (see the module docstring);
    ``codes (N, D, H, W) → (N, C, H, W)``, the same memory format in and out."""

    stacked = True

    def __init__(self, nets: Sequence[nn.Module]) -> None:
        from torch.func import functional_call

        base, self.n = nets[0], len(nets)
        if not can_group(base):
            raise ValueError(f"{type(base).__name__} has layers that cannot be grouped; use many='vmap'")
        self.names = [name for name, _ in base.named_parameters()]
        per_net = [dict(net.named_parameters()) for net in nets]
        with torch.no_grad():
            self.params = [torch.stack([p[name] for p in per_net]).requires_grad_() for name in self.names]
        self.net = copy.deepcopy(base)
        for m in self.net.modules():  # widen every layer to N images; the weights come from the leaves
            if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
                m.in_channels, m.out_channels, m.groups = m.in_channels * self.n, m.out_channels * self.n, m.groups * self.n
            elif isinstance(m, (nn.BatchNorm2d, nn.InstanceNorm2d)):
                m.num_features *= self.n
            if hasattr(type(m), "images"):  # layers that concatenate channels (dip.layers.cat_channels)
                m.images = self.n
        self._call = functional_call

    def __call__(self, codes: torch.Tensor) -> torch.Tensor:
        n, d, h, w = codes.shape
        last = is_channels_last(codes)
        # (N, D, H, W) -> (1, N·D, H, W), image-major channels, in the codes' memory format
        x = codes.permute(2, 3, 0, 1).reshape(1, h, w, n * d).permute(0, 3, 1, 2) if last else codes.reshape(1, n * d, h, w)
        weights = {name: p.reshape(-1, *p.shape[2:]) for name, p in zip(self.names, self.params)}
        out = self._call(self.net, weights, (x,))
        c = out.shape[1] // n
        return out.permute(2, 3, 0, 1).reshape(h, w, n, c).permute(2, 3, 0, 1) if last else out.reshape(n, c, h, w)


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


def group_model(nets: Sequence[nn.Module], many: str = "vmap") -> Model:
    """The model that runs ``nets`` together: :class:`Lone` for one network, else
    :class:`Grouped` (``many="grouped"``, where every layer can be widened) or :class:`Stacked` (vmap)."""
    if len(nets) == 1:
        return Lone(nets[0])
    if many == "grouped" and can_group(nets[0]):
        return Grouped(nets)
    return Stacked(nets)


class Members:
    """What a group adds to the loop of :func:`dip.fit.run_fits`: where each of its ``n`` fits
    runs, which still run, and how one stops while the others go on.

    The fits run as one iteration over all of them (``streams`` false: fit ``i`` is row ``i``), or
    as one iteration each (``streams``: fit ``i`` is row 0 of iteration ``i``); a lone fit is row 0
    of the one iteration either way. ``iterations`` are :class:`dip.iteration.Iteration` objects
    (which import this module), in the order of :attr:`rows`."""

    def __init__(self, n: int, streams: bool) -> None:
        self.rows: list[list[int]] = [[i] for i in range(n)] if streams else [list(range(n))]  # the fits of each iteration
        self.slot = [(k, row) for k, fits in enumerate(self.rows) for row, _ in enumerate(fits)]  # fit i → (iteration, row)
        self.active = list(range(n))
        self.iterations: list[Any] = []

    def where(self, i: int) -> tuple[Any, int]:
        """Fit ``i``'s iteration and its row there."""
        k, row = self.slot[i]
        return self.iterations[k], row

    def finish(self, i: int, launch: Any) -> None:
        """Fit ``i`` stops: frozen in its iteration, and an iteration whose fits have all stopped is
        launched no more (``launch``: :class:`dip.graphs.OnStreams`)."""
        self.active.remove(i)
        k, row = self.slot[i]
        self.iterations[k].freeze(row)
        if not any(self.slot[j][0] == k for j in self.active):
            launch.stop(k)

    def nonfinite(self) -> list[int]:
        """Each fit's first iteration with a NaN/Inf loss (-1: none): one read from the device per iteration."""
        flags = [it.nonfinite_at.tolist() for it in self.iterations]
        return [flags[k][row] for k, row in self.slot]
