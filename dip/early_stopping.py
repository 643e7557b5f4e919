"""ES-WMV: early stopping by windowed moving variance (Wang et al., 2021).

For outputs :math:`x_t` the windowed variance over the last :math:`W` iterations is

.. math::

    \\mathrm{VAR}_t = \\frac1W \\sum_{w=0}^{W-1} \\lVert x_{t-w} - \\bar x_t \\rVert^2 / n,
    \\qquad \\bar x_t = \\frac1W \\sum_{w=0}^{W-1} x_{t-w},

(``n`` = number of pixel values). Fitting stops once VAR has not reached a new minimum for
``patience`` iterations; the result is the output at the minimum.

Everything lives in device tensors updated without a host read (the ring-buffer slot, the
count, the best iteration), so :meth:`WindowedVariance.update` can be captured in a CUDA graph;
the host reads the state only in :meth:`should_stop`, once every ``window`` iterations.
"""

from __future__ import annotations

import math

import torch


class WindowedVariance:
    """A ring buffer of the last ``window`` outputs and the best (lowest-VAR) output."""

    def __init__(self, window: int = 100, patience: int = 1000) -> None:
        if window < 2 or patience < 1:
            raise ValueError("early stopping needs window >= 2 and patience >= 1")
        self.window, self.patience = window, patience
        self.buffer: torch.Tensor | None = None
        self.best_output: torch.Tensor | None = None
        self.best_iteration = -1  # host copy, refreshed by should_stop()

    def bind(self, like: torch.Tensor) -> None:
        """Allocate the device state for outputs shaped like ``like`` (before any capture)."""
        dev = like.device
        self.buffer = torch.zeros((self.window, *like.shape), device=dev)
        self.best_output = torch.zeros(like.shape, device=dev)
        self._best_var = torch.full((), math.inf, device=dev)
        self._best_iter = torch.full((), -1, dtype=torch.long, device=dev)
        self._count = torch.zeros((), dtype=torch.long, device=dev)
        self._history: list[torch.Tensor] = []  # eager use only (benchmarks); empty in graphs
        self._var = torch.full((), math.nan, device=dev)

    def update(self, iteration: int | torch.Tensor, output: torch.Tensor, take: torch.Tensor | None = None) -> None:
        """Add the output of ``iteration`` when ``take`` (a device bool) is true. No host sync."""
        x = output.detach().float()
        if self.buffer is None:
            self.bind(x)
        take = torch.ones((), dtype=torch.bool, device=x.device) if take is None else take
        it = iteration if isinstance(iteration, torch.Tensor) else torch.full((), iteration, dtype=torch.long, device=x.device)
        slot = (self._count % self.window).view(1)
        old = self.buffer.index_select(0, slot)[0]
        self.buffer.index_copy_(0, slot, torch.where(take, x, old)[None])
        self._count += take.long()
        var = self.buffer.var(dim=0, unbiased=False).mean()
        valid = take & (self._count >= self.window)
        self._var.copy_(torch.where(valid, var, torch.full_like(var, math.nan)))
        better = valid & (var < self._best_var)
        self._best_var.copy_(torch.where(better, var, self._best_var))
        self.best_output.copy_(torch.where(better, x, self.best_output))
        self._best_iter.copy_(torch.where(better, it, self._best_iter))

    def record(self) -> None:
        """Keep the last VAR for :attr:`history` (eager callers that want the whole curve)."""
        self._history.append(self._var.clone())

    @property
    def history(self) -> list[float]:
        """VAR of every recorded iteration once the window is full (host read)."""
        values = torch.stack(self._history).tolist() if self._history else []
        return [v for v in values if not math.isnan(v)]

    def should_stop(self, iteration: int) -> bool:
        """Synchronise (once per window) and say whether patience has run out."""
        if self.buffer is None:
            return False
        self.best_iteration = int(self._best_iter.item())
        return self.best_iteration >= 0 and iteration - self.best_iteration >= self.patience

    @property
    def found(self) -> bool:
        """Whether a best output exists (after :meth:`should_stop`)."""
        return self.best_iteration >= 0
