"""ES-WMV: early stopping by windowed moving variance (Wang et al., 2021).

For outputs :math:`x_t` the windowed variance over the last :math:`W` iterations is

.. math::

    \\mathrm{VAR}_t = \\frac1W \\sum_{w=0}^{W-1} \\lVert x_{t-w} - \\bar x_t \\rVert^2 / n,
    \\qquad \\bar x_t = \\frac1W \\sum_{w=0}^{W-1} x_{t-w},

(``n`` = number of pixel values). Fitting stops once VAR has not reached a new minimum for
``patience`` iterations; the result is the output at the minimum. Everything stays on the
device: the host reads the variance history only every ``window`` iterations.
"""

from __future__ import annotations

import torch


class WindowedVariance:
    """Keeps a ring buffer of the last ``window`` outputs and the best (lowest-VAR) output."""

    def __init__(self, window: int = 100, patience: int = 1000) -> None:
        if window < 2 or patience < 1:
            raise ValueError("early stopping needs window >= 2 and patience >= 1")
        self.window, self.patience = window, patience
        self.buffer: torch.Tensor | None = None
        self.count = 0
        self.history: list[float] = []  # VAR per iteration, filled in at each check
        self._pending: list[torch.Tensor] = []
        self.best_output: torch.Tensor | None = None
        self.best_var: torch.Tensor | None = None
        self.best_iteration = -1

    def update(self, iteration: int, output: torch.Tensor) -> None:
        """Add the output of ``iteration`` (no host synchronisation)."""
        x = output.detach().float()
        if self.buffer is None:
            self.buffer = torch.zeros((self.window, *x.shape), device=x.device)
        self.buffer[self.count % self.window].copy_(x)
        self.count += 1
        if self.count < self.window:
            return
        var = self.buffer.var(dim=0, unbiased=False).mean()
        if self.best_var is None:
            self.best_var, self.best_output = var.clone(), x.clone()
            self._best_iter_t = torch.full((), iteration, device=x.device)
        else:
            better = var < self.best_var
            self.best_var = torch.where(better, var, self.best_var)
            self.best_output = torch.where(better, x, self.best_output)
            self._best_iter_t = torch.where(better, torch.full((), iteration, device=x.device), self._best_iter_t)
        self._pending.append(var)

    def should_stop(self, iteration: int) -> bool:
        """Synchronise (cheaply, once per window) and say whether patience has run out."""
        if self.best_var is None:
            return False
        if self._pending:
            self.history.extend(torch.stack(self._pending).tolist())
            self._pending.clear()
        self.best_iteration = int(self._best_iter_t.item())
        return iteration - self.best_iteration >= self.patience
