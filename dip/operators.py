"""Forward operators: the task lives here, the fitting loop is the same for every task.

DIP solves :math:`\\min_\\theta \\lVert A(f_\\theta(z)) - y \\rVert^2` where :math:`y` is the
observation and :math:`A` the task's forward operator:

* denoising — :math:`A = I`, :math:`y = x + n,\\ n \\sim \\mathcal N(0, \\sigma^2)`;
* inpainting — :math:`A(x) = m \\odot x` with a binary mask :math:`m` (1 = known pixel);
* super-resolution — :math:`A = D_f`, the Lanczos-2 downsampler by factor :math:`f`.

Each operator also synthesises its corruption from a clean image with an explicit
``torch.Generator``, so that a seed reproduces the same observation on every device.
"""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image
from torch import nn

from dip.downsample import LanczosDownsampler

TASKS = ("denoise", "inpaint", "sr")


class Operator(nn.Module):
    """Base class: ``forward(x)`` applies :math:`A` to a batch of images ``(N, C, H, W)``."""

    task: str = ""

    def image_size(self, observation_size: tuple[int, int]) -> tuple[int, int]:
        """Size (H, W) of the image to reconstruct from an observation of this size."""
        return observation_size

    def naive_estimate(self, observation: torch.Tensor) -> torch.Tensor:
        """The corrupted input shown at the image's size (for "PSNR of the input")."""
        return observation

    def extra_repr(self) -> str:
        return f"task={self.task}"


class Denoising(Operator):
    """:math:`A = I`; the corruption adds white Gaussian noise of standard deviation σ."""

    task = "denoise"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x

    @staticmethod
    def corrupt(clean: torch.Tensor, sigma: float, generator: torch.Generator, clip: bool = True) -> torch.Tensor:
        """:math:`y = \\mathrm{clip}_{[0,1]}(x + \\sigma n)`, clipped as the authors' ``get_noisy_image``."""
        if sigma < 0:
            raise ValueError(f"noise sigma must be >= 0, got {sigma}")
        noise = torch.randn(clean.shape, generator=generator, dtype=torch.float32)
        noisy = clean.cpu().float() + sigma * noise
        return noisy.clamp(0, 1) if clip else noisy


class Inpainting(Operator):
    """:math:`A(x) = m \\odot x`, the mask broadcast over channels (1 = observed pixel)."""

    task = "inpaint"

    def __init__(self, mask: torch.Tensor) -> None:
        super().__init__()
        if mask.dim() == 2:
            mask = mask[None, None]
        elif mask.dim() == 3:
            mask = mask[None]
        if not (mask > 0.5).any():
            raise ValueError("the inpainting mask is all black: no pixel is known, so there is nothing to fit; white marks the pixels to keep")
        self.register_buffer("mask", (mask > 0.5).float(), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.mask

    @staticmethod
    def random_mask(size: tuple[int, int], drop: float, generator: torch.Generator) -> torch.Tensor:
        """i.i.d. Bernoulli mask of shape (H, W): each pixel dropped with probability ``drop``."""
        if not 0.0 <= drop < 1.0:
            raise ValueError(f"drop probability must be in [0, 1), got {drop}")
        return (torch.rand(size, generator=generator) >= drop).float()

    @staticmethod
    def corrupt(clean: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """:math:`y = m \\odot x`; raises ``ValueError`` if the mask's size differs from the image's."""
        if tuple(mask.shape[-2:]) != tuple(clean.shape[-2:]):
            raise ValueError(
                f"mask is {mask.shape[-1]}x{mask.shape[-2]} but the image is "
                f"{clean.shape[-1]}x{clean.shape[-2]}; give a mask of the image's size"
            )
        return clean * (mask > 0.5).float()


class SuperResolution(Operator):
    """:math:`A = D_f`: Lanczos-2 downsampling (support 2, phase 0.5, kernel sums to 1)."""

    task = "sr"

    def __init__(self, factor: int, support: int = 2) -> None:
        super().__init__()
        if factor < 2:
            raise ValueError(f"super-resolution factor must be >= 2, got {factor}")
        self.factor = factor
        self.down = LanczosDownsampler(factor, support)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down(x)

    def image_size(self, observation_size: tuple[int, int]) -> tuple[int, int]:
        return observation_size[0] * self.factor, observation_size[1] * self.factor

    def naive_estimate(self, observation: torch.Tensor) -> torch.Tensor:
        """Nearest-neighbour upsampling: the low-resolution input shown at full size (bicubic and
        Lanczos interpolation are baselines of their own)."""
        return nn.functional.interpolate(observation, scale_factor=self.factor, mode="nearest")

    @staticmethod
    def crop_to_factor(image: np.ndarray, factor: int) -> np.ndarray:
        """Crop an (H, W[, C]) image at the bottom/right so both sides divide by ``factor``."""
        h, w = image.shape[:2]
        if h < factor or w < factor:
            raise ValueError(f"image {w}x{h} is smaller than the factor {factor}")
        return image[: h - h % factor, : w - w % factor]

    @staticmethod
    def corrupt(clean_uint8: np.ndarray, factor: int) -> np.ndarray:
        """Low-resolution image by PIL's antialiased Lanczos resize of the 8-bit image, as the
        authors' ``get_low_res`` does; the size must divide by ``factor``. Returns uint8."""
        h, w = clean_uint8.shape[:2]
        if h % factor or w % factor:
            raise ValueError(f"image {w}x{h} does not divide by factor {factor}; crop it first")
        pil = Image.fromarray(clean_uint8)
        return np.asarray(pil.resize((w // factor, h // factor), Image.Resampling.LANCZOS))


def make_operator(task: str, *, mask: torch.Tensor | None = None, factor: int = 4) -> Operator:
    """The operator for ``task`` (``denoise``, ``inpaint`` or ``sr``)."""
    if task == "denoise":
        return Denoising()
    if task == "inpaint":
        if mask is None:
            raise ValueError("inpainting needs a mask")
        return Inpainting(mask)
    if task == "sr":
        return SuperResolution(factor)
    raise ValueError(f"unknown task {task!r}; choose one of {', '.join(TASKS)}")
