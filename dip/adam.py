"""Adam with one step count per fitted image, safe to capture in a CUDA graph.

For each parameter tensor :math:`\\theta` with gradient :math:`g` and step count :math:`t`:

.. math::

    m \\leftarrow \\beta_1 m + (1-\\beta_1) g,\\qquad v \\leftarrow \\beta_2 v + (1-\\beta_2) g^2,\\qquad
    \\theta \\leftarrow \\theta - \\frac{\\mathrm{lr}}{1-\\beta_1^t}\\,
    \\frac{m}{\\sqrt{v}/\\sqrt{1-\\beta_2^t} + \\epsilon}

— the arithmetic of ``torch.optim.Adam`` (which the fits used before). Why our own: when several
images are fitted as one stacked tensor (:mod:`dip.group`), each image must keep its own step
count and be able to skip a step (backtracking, a finished fit) without touching the others;
``torch.optim.Adam`` has one count per tensor. Everything is tensor arithmetic on the device (no
Python scalars that change between iterations), so one step can be captured and replayed.
"""

from __future__ import annotations

import torch


class Adam:
    """Adam over ``params`` whose leading dimension is the image (``stacked``) or a lone image."""

    def __init__(self, params: list[torch.Tensor], lr: float, n: int, stacked: bool,
                 betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8) -> None:
        self.params, self.lr, self.eps = params, lr, eps
        self.beta1, self.beta2 = betas
        self.stacked = stacked
        self.m = [torch.zeros_like(p) for p in params]
        self.v = [torch.zeros_like(p) for p in params]
        self.t = torch.zeros(n, dtype=params[0].dtype, device=params[0].device)

    def per_image(self, values: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
        """``values`` (N,) shaped to broadcast over ``like``: (N, 1, …) stacked, a scalar alone."""
        return values.view(-1, *[1] * (like.dim() - 1)) if self.stacked else values.view(())

    @torch.no_grad()
    def step(self, take: torch.Tensor | None = None) -> None:
        """One update; with ``take`` (N bools) only the images where it is true move."""
        grads = [p.grad for p in self.params]
        kept = None if take is None else [[x.clone() for x in xs] for xs in (self.params, self.m, self.v)]
        self.t += 1 if take is None else take.to(self.t.dtype)
        torch._foreach_lerp_(self.m, grads, 1 - self.beta1)
        torch._foreach_mul_(self.v, self.beta2)
        torch._foreach_addcmul_(self.v, grads, grads, value=1 - self.beta2)
        step_size = self.lr / (1 - self.beta1**self.t)
        bc2_sqrt = (1 - self.beta2**self.t).sqrt()
        denom = torch._foreach_sqrt(self.v)
        torch._foreach_div_(denom, [self.per_image(bc2_sqrt, p) for p in self.params])
        torch._foreach_add_(denom, self.eps)
        update = torch._foreach_div(self.m, denom)
        torch._foreach_mul_(update, [self.per_image(step_size, p) for p in self.params])
        torch._foreach_sub_(self.params, update)
        if kept is not None:
            for now, before in zip((self.params, self.m, self.v), kept):
                for x, old in zip(now, before):
                    x.copy_(torch.where(self.per_image(take, x), x, old))
