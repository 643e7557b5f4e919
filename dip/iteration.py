"""One DIP iteration for N same-size fits: the whole step, in the order it runs.

An :class:`Iteration` owns everything that changes from one step to the next for a group of
``n`` fits (a lone fit is a group of one) and advances all of them by one step when called:

1. **perturb** the code, :math:`\\tilde z_i = z_i + \\sigma_p \\epsilon_t`, with
   :math:`\\epsilon_t` drawn from image ``i``'s own generator (seeded ``seed + 1``; device side,
   so each CUDA-graph replay draws new noise);
2. **forward** :math:`x_i = f_{\\theta_i}(\\tilde z_i)` on the canvas, cropped to the image
   (``model``: :class:`dip.group.Lone`, :class:`~dip.group.Stacked` or
   :class:`~dip.group.Grouped`; optionally compiled, optionally under bf16 autocast);
3. **loss** :math:`L_i = \\lVert A_i(x_i) - y_i\\rVert^2 / n_i` (+ :math:`\\lambda\\,\\mathrm{TV}(x_i)`)
   and **backward** of :math:`\\sum_i L_i` (image ``i``'s weights only see :math:`L_i`);
4. **backtracking** (optional), on the device: the step is *bad* if
   :math:`L_i > L^{good}_i \\cdot 10^{d/10}` (a drop of ``d`` dB in PSNR) or not finite; a bad
   step restores the last good weights and skips the update (the authors' rule);
5. **Adam** (:class:`dip.adam.Adam`, one step count per image) on the images that step;
6. **output averaging** :math:`\\bar x_i \\leftarrow \\beta \\bar x_i + (1-\\beta) x_i` and the
   **ES-WMV** tracker (:class:`dip.early_stopping.WindowedVariance`) for the images that step;
7. **results** into static buffers — ``out``, ``loss``, ``skipped``, ``nonfinite_at`` — that
   the host reads only when it needs them.

No step reads the device from the host and no tensor outside the step is allocated, so the
whole call can be captured once as a CUDA graph and replayed (:mod:`dip.graphs`); run eagerly
(CPU, or a failed capture) it is the same arithmetic, one kernel at a time. The host loop
around it — callbacks, the NaN check, early stopping, stopping single fits — is
:func:`dip.fit.run_fits`.
"""

from __future__ import annotations

import contextlib
import math
from typing import TYPE_CHECKING, Callable, Sequence

import torch

from dip.adam import Adam
from dip.early_stopping import WindowedVariance
from dip.group import Model
from dip.operators import Operator

if TYPE_CHECKING:
    from dip.config import FitConfig

Forward = Callable[[torch.Tensor], torch.Tensor]


class Iteration:
    """The state of a group of ``n`` fits and the one iteration that advances it (module docstring).

    ``z`` (n, D, H, W) are the codes on the canvas; ``forward`` is ``model`` or its compiled form;
    ``operators``, ``observations`` and ``seeds`` are per image; ``image_size`` is the crop of
    the canvas the loss sees. Buffers the host reads: ``out`` (n, C, h, w), ``loss`` (n,),
    ``averaged``, ``skipped`` (no step taken this iteration), ``nonfinite_at`` (first
    iteration with a NaN/Inf loss, -1 if none), ``backtracks``, ``trackers`` (ES-WMV).
    """

    def __init__(self, model: Model, forward: Forward, z: torch.Tensor, operators: Sequence[Operator],
                 observations: Sequence[torch.Tensor], seeds: Sequence[int], cfg: FitConfig,
                 image_size: tuple[int, int], dtype: torch.dtype,
                 tv: Callable[[torch.Tensor], torch.Tensor] | None = None) -> None:
        n, device = len(operators), z.device
        self.model, self._forward, self.z, self.cfg, self.dtype = model, forward, z, cfg, dtype
        self.n, (self.h, self.w) = n, image_size
        self.operators, self.observations, self.tv = list(operators), list(observations), tv
        self.generators = [torch.Generator(device=device).manual_seed(s + 1) for s in seeds]
        # noise in NCHW order whatever z's layout: the same draws land on the same pixels
        self.noise = torch.empty(z.shape, dtype=z.dtype, device=device)
        self.code = torch.empty_like(z)
        self.params: list[torch.Tensor] = model.params
        self.adam = Adam(self.params, cfg.lr, n, model.stacked)
        channels = self.observations[0].shape[1]
        self.out = torch.zeros((n, channels, self.h, self.w), dtype=dtype, device=device)
        self.loss = torch.zeros(n, dtype=dtype, device=device)
        self.active = torch.ones(n, dtype=torch.bool, device=device)  # false once a fit has stopped
        self.skipped = torch.zeros(n, dtype=torch.bool, device=device)  # no step this iteration
        self.nonfinite_at = torch.full((n,), -1, dtype=torch.long, device=device)
        self.backtracks = torch.zeros(n, dtype=torch.long, device=device)
        self.it = torch.zeros((), dtype=torch.long, device=device)
        self.averaged = torch.zeros_like(self.out) if cfg.exp_weight is not None else None
        self._started = torch.zeros(n, dtype=torch.bool, device=device)
        self.trackers = [WindowedVariance(cfg.es_window, cfg.es_patience) for _ in range(n)] if cfg.early_stop else []
        for i, tracker in enumerate(self.trackers):
            tracker.bind(self.out[i : i + 1].float())
        self.good = [p.detach().clone() for p in self.params] if cfg.backtrack else []
        self.good_loss = torch.full((n,), math.inf, dtype=dtype, device=device)
        self.jump = 10 ** (cfg.backtrack_drop_db / 10)
        # Adam skips an image's step only where backtracking can reject it. Without backtracking
        # every image steps until the host stops it; :meth:`freeze` keeps its weights from then on
        # (masking a group's Adam costs ~9 small kernels per parameter tensor per iteration).
        self.masked = cfg.backtrack
        self._frozen: dict[int, list[torch.Tensor]] = {}

    def autocast(self) -> contextlib.AbstractContextManager:
        if self.cfg.precision == "bf16" and self.z.device.type == "cuda":
            return torch.autocast("cuda", dtype=torch.bfloat16, cache_enabled=False)  # graph-safe
        return contextlib.nullcontext()

    def forward(self, code: torch.Tensor) -> torch.Tensor:
        """``f_θ(code)`` for every image, cropped from the canvas to the image's size."""
        with self.autocast():
            out = self._forward(code)
        return out[..., : self.h, : self.w].to(self.dtype)

    def losses(self, out: torch.Tensor) -> torch.Tensor:
        """Per-image data term (mean squared error through each operator), plus TV if asked."""
        terms = [torch.mean((op(out[i : i + 1]) - y) ** 2) for i, (op, y) in enumerate(zip(self.operators, self.observations))]
        loss = terms[0][None] if self.n == 1 else torch.stack(terms)
        if self.tv is not None:
            loss = loss + torch.stack([self.tv(out[i : i + 1]) for i in range(self.n)])
        return loss

    def freeze(self, i: int) -> None:
        """Image ``i`` has stopped (host decision): keep its weights as they are now, for :meth:`thaw`.
        Its later (unmasked) steps change only its own slice of the stacked weights."""
        self.active[i] = False
        if not self.masked and self.model.stacked:
            self._frozen[i] = [p[i].detach().clone() for p in self.params]

    def thaw(self) -> None:
        """Put back the weights of every image frozen by :meth:`freeze` (before the final forward)."""
        with torch.no_grad():
            for i, saved in self._frozen.items():
                for p, value in zip(self.params, saved):
                    p[i].copy_(value)
        self._frozen.clear()

    def final(self) -> tuple[torch.Tensor, torch.Tensor]:
        """:math:`f_\\theta(z)` without perturbation, and its losses: the fit's result (after :meth:`thaw`)."""
        self.thaw()
        with torch.no_grad():
            out = self.forward(self.z).contiguous()  # NCHW for the caller, whatever the network's layout
            return out, self.losses(out)

    def __call__(self) -> None:
        """One iteration of every image (see the module docstring). No host synchronisation."""
        cfg = self.cfg
        code = self.z  # 1. perturb
        if cfg.reg_noise_std > 0:
            for i, gen in enumerate(self.generators):
                torch.randn(self.noise[i : i + 1].shape, generator=gen, device=self.z.device, dtype=self.z.dtype, out=self.noise[i : i + 1])
            torch.add(self.z, self.noise, alpha=cfg.reg_noise_std, out=self.code)
            code = self.code
        for p in self.params:
            p.grad = None
        out = self.forward(code)  # 2. forward
        loss = self.losses(out)  # 3. loss, backward
        loss.sum().backward()
        with torch.no_grad():
            out, loss = out.detach(), loss.detach()
            take = self.active
            if cfg.backtrack:  # 4. backtracking
                bad = self.active & ~(loss <= self.good_loss * self.jump)  # NaN counts as bad
                for p, good in zip(self.params, self.good):
                    p.copy_(torch.where(self.adam.per_image(bad, p), good, p))
                    good.copy_(p)
                take = self.active & ~bad
                self.good_loss.copy_(torch.where(take, loss, self.good_loss))
                self.backtracks += bad.long()
            for p in self.params:
                if p.grad is None:  # a parameter the loss does not reach (e.g. a skipped branch)
                    p.grad = torch.zeros_like(p)
            self.adam.step(take if self.masked else None)  # 5. Adam
            if self.averaged is not None:  # 6. averaging, ES-WMV
                beta, k = cfg.exp_weight, take.view(-1, 1, 1, 1)
                blended = torch.where(self._started.view(-1, 1, 1, 1), self.averaged * beta + out * (1 - beta), out)
                self.averaged.copy_(torch.where(k, blended, self.averaged))
                self._started |= take
            for i, tracker in enumerate(self.trackers):
                tracker.update(self.it, out[i : i + 1], take[i])
            self.out.copy_(out)  # 7. results
            self.loss.copy_(loss)
            self.skipped.copy_(~take)
            broken = take & ~torch.isfinite(loss) & (self.nonfinite_at < 0)
            self.nonfinite_at.copy_(torch.where(broken, self.it, self.nonfinite_at))
            self.it += 1
