"""Input codes :math:`z` of the generator: ``FitConfig.input`` picks one.

* ``noise`` — :math:`z \\sim \\mathcal U(0, s)^{D×H×W}` with :math:`s` = ``input_noise_scale``
  (0.1, the authors' ``get_noise(…, 'noise')``), drawn from the fit's seed;
* ``meshgrid`` — two channels :math:`z_0(i, j) = j / (W - 1)`, :math:`z_1(i, j) = i / (H - 1)`
  over the image (the authors' ``get_noise(2, 'meshgrid', …)``, Fig. 6's vase); on the padded
  canvas the ramps continue past 1;
* ``image`` — a given image, e.g. the flash photograph of the flash/no-flash experiment, padded
  to the canvas by repeating its border rows and columns.

Every code covers the canvas (sides multiples of ``NetConfig.multiple``); the image occupies its
top-left ``H × W`` corner, as the fitter's output crop expects.
"""

from __future__ import annotations

import torch
from torch import nn

from dip.config import INPUT_KINDS


def make_input(
    kind: str,
    depth: int,
    image_size: tuple[int, int],
    canvas: tuple[int, int],
    generator: torch.Generator,
    scale: float = 0.1,
    image: torch.Tensor | None = None,
) -> torch.Tensor:
    """The code ``(1, D, H_canvas, W_canvas)`` on the CPU (float32). ``depth`` must be 2 for
    ``meshgrid``; for ``image`` it must equal the image's channel count (``ValueError`` otherwise)."""
    hc, wc = canvas
    h, w = image_size
    if kind == "noise":
        return torch.rand((1, depth, hc, wc), generator=generator) * scale
    if kind == "meshgrid":
        if depth != 2:
            raise ValueError(f"a meshgrid input has 2 channels; set net input_depth: 2 (got {depth})")
        xs = torch.arange(wc, dtype=torch.float32) / max(w - 1, 1)
        ys = torch.arange(hc, dtype=torch.float32) / max(h - 1, 1)
        grid_y, grid_x = torch.meshgrid(ys, xs, indexing="ij")
        return torch.stack([grid_x, grid_y])[None]
    if kind == "image":
        if image is None:
            raise ValueError("input 'image' needs the image (Fitter(..., input_image=...))")
        x = image.detach().cpu().float()
        x = x[None, None] if x.dim() == 2 else x[None] if x.dim() == 3 else x
        if tuple(x.shape[-2:]) != (h, w):
            raise ValueError(f"the input image is {x.shape[-1]}x{x.shape[-2]} but the image to restore is {w}x{h}")
        if x.shape[1] != depth:
            raise ValueError(f"the input image has {x.shape[1]} channels; set net input_depth: {x.shape[1]} (got {depth})")
        return nn.functional.pad(x, (0, wc - w, 0, hc - h), mode="replicate") if (hc, wc) != (h, w) else x
    raise ValueError(f"unknown input {kind!r}; choose one of {', '.join(INPUT_KINDS)}")
