"""Every generator the fitter can use, behind one :func:`build_model`.

``NetConfig.arch`` picks one:

* ``skip`` — the paper's encoder–decoder with skip connections (:class:`dip.network.SkipNet`);
* ``unet`` — the U-Net of the paper's architecture comparison (Fig. 8, supplementary material);
* ``resnet`` — the ResNet of the same comparison;
* ``image`` — no network at all: the image :math:`x` itself is the parameter, so fitting
  :math:`\\min_x \\lVert A(x) - y \\rVert^2 (+ \\lambda\\,\\mathrm{TV}(x))` is the "no prior" row of
  the super-resolution prior comparison (the authors' ``sr_prior_effect`` notebook).

The U-Net and ResNet are written here from the paper's description and the structure of the
authors' ``models/unet.py`` / ``models/resnet.py`` at the settings their inpainting notebook uses
for Fig. 8 (``UNet(feature_scale=8, more_layers=1, upsample_mode='deconv', pad='zero',
norm_layer=InstanceNorm2d)`` and ``ResNet(input_depth, 3, 8, 32)``):

U-Net, channels :math:`f = [64, 128, 256, 512, 1024] / s` (:math:`s` = ``unet_feature_scale``)::

    start   = DC(in → f0, norm)                      DC = (3×3 conv → norm? → ReLU) × 2
    down_k  = maxpool 2 → DC(f_{k-1} → f_k, norm)    k = 1 … 4, then ``unet_more_layers`` × DC(f4 → f4)
    up_k    = ConvTranspose 4×4 /2 (c' → c) → cat(skip) → DC(2c → c, no norm)
    out     = 1×1 conv → sigmoid

Instance norm without affine parameters in the encoder, none in the decoder, zero padding.
At ``s = 8``, one extra level, 1 input and 3 output channels: **1,616,315 parameters**
(the authors' ``UNet`` at the same settings has the same count).

ResNet, ``resnet_blocks`` = 8 blocks of ``resnet_channels`` = 32::

    conv 3×3 (in → c) → LeakyReLU
    8 × [ x + BN(conv(LeakyReLU(BN(conv(x))))) ]     3×3 convolutions without bias
    conv 3×3 (c → c) → BN → conv 3×3 (c → out) → sigmoid

Reflection padding for the first and last convolutions, zero padding inside (as the authors').
With 1 input and 3 output channels: **158,979 parameters** (the authors' ``ResNet`` has the same
count). Batch and instance normalisation use the statistics of the image being fitted, as in the
skip network. The authors' ``ResNet`` takes ``need_sigmoid`` but always ends with a sigmoid; ours
always does.
"""

from __future__ import annotations

import torch
from torch import nn

from dip.layers import ReflectionPad, cat_channels
from dip.network import NetConfig, SkipNet


def _conv3(cin: int, cout: int, pad: str, bias: bool = True) -> nn.Sequential:
    """3×3 convolution keeping the size (reflection or zero padding)."""
    if pad == "reflection":
        return nn.Sequential(ReflectionPad(1), nn.Conv2d(cin, cout, 3, bias=bias))
    return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1, bias=bias))


def _double_conv(cin: int, cout: int, norm: bool, pad: str) -> nn.Sequential:
    """(3×3 conv → instance norm? → ReLU) twice."""
    layers: list[nn.Module] = []
    for a, b in ((cin, cout), (cout, cout)):
        layers += [_conv3(a, b, pad)]
        if norm:
            layers.append(nn.InstanceNorm2d(b))
        layers.append(nn.ReLU())
    return nn.Sequential(*layers)


class _Up(nn.Module):
    """Transposed-conv upsampling of the deeper path, concatenation with the skip, double conv."""

    images = 1  # > 1 in the grouped layout of several images (dip.group.Grouped)

    def __init__(self, deep: int, out: int, pad: str) -> None:
        super().__init__()
        self.up = nn.ConvTranspose2d(deep, out, 4, stride=2, padding=1)
        self.conv = _double_conv(2 * out, out, norm=False, pad=pad)

    def forward(self, deep: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        return self.conv(cat_channels([self.up(deep), skip], self.images))


class UNet(nn.Module):
    """The U-Net of the paper's architecture comparison (see the module docstring)."""

    def __init__(self, in_channels: int, out_channels: int, feature_scale: int = 8, more_layers: int = 1, pad: str = "zero") -> None:
        super().__init__()
        f = [c // feature_scale for c in (64, 128, 256, 512, 1024)]
        self.start = _double_conv(in_channels, f[0], norm=True, pad=pad)
        widths = f + [f[4]] * more_layers
        self.downs = nn.ModuleList(
            nn.Sequential(nn.MaxPool2d(2), _double_conv(widths[k - 1], widths[k], norm=True, pad=pad)) for k in range(1, len(widths))
        )
        self.ups = nn.ModuleList(_Up(widths[k + 1], widths[k], pad) for k in range(len(widths) - 1))
        self.head = nn.Conv2d(f[0], out_channels, 1)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        feats = [self.start(z)]
        for down in self.downs:
            feats.append(down(feats[-1]))
        x = feats[-1]
        for k in reversed(range(len(self.ups))):
            x = self.ups[k](x, feats[k])
        return torch.sigmoid(self.head(x))


class _Residual(nn.Module):
    """:math:`x + \\mathrm{BN}(\\mathrm{conv}(\\mathrm{act}(\\mathrm{BN}(\\mathrm{conv}(x)))))`."""

    def __init__(self, c: int, slope: float) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(c, c, 3, padding=1, bias=False), nn.BatchNorm2d(c, track_running_stats=False), nn.LeakyReLU(slope),
            nn.Conv2d(c, c, 3, padding=1, bias=False), nn.BatchNorm2d(c, track_running_stats=False),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


class ResNet(nn.Module):
    """The ResNet of the paper's architecture comparison: full resolution throughout."""

    def __init__(self, in_channels: int, out_channels: int, blocks: int = 8, channels: int = 32, slope: float = 0.2) -> None:
        super().__init__()
        self.body = nn.Sequential(
            ReflectionPad(1), nn.Conv2d(in_channels, channels, 3), nn.LeakyReLU(slope),
            *(_Residual(channels, slope) for _ in range(blocks)),
            nn.Conv2d(channels, channels, 3, padding=1), nn.BatchNorm2d(channels, track_running_stats=False),
            ReflectionPad(1), nn.Conv2d(channels, out_channels, 3),
        )

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.body(z))


class ImageParameter(nn.Module):
    """No network: the output *is* the parameter :math:`x \\in \\mathbb R^{1×C×H×W}`, initialised
    :math:`\\mathcal U(0, 0.1)` (the authors' ``get_noise``) and returned unbounded, as their
    identity "network"; the input code is ignored."""

    def __init__(self, out_channels: int, canvas: tuple[int, int], scale: float = 0.1) -> None:
        super().__init__()
        self.image = nn.Parameter(torch.rand((1, out_channels, *canvas)) * scale)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.image.expand(z.shape[0], -1, -1, -1)


def build_model(cfg: NetConfig, out_channels: int, in_channels: int | None = None, canvas: tuple[int, int] | None = None) -> nn.Module:
    """The generator of ``cfg.arch`` mapping ``in_channels`` (default ``cfg.input_depth``) to
    ``out_channels``; ``canvas`` (H, W) is needed by ``image`` only. Weights come from torch's
    global generator (seed it, as :meth:`dip.fit.Fitter.build` does)."""
    cfg.validate()
    cin = cfg.input_depth if in_channels is None else in_channels
    if cfg.arch == "skip":
        if cin != cfg.input_depth:
            import dataclasses

            cfg = dataclasses.replace(cfg, input_depth=cin)
        return SkipNet(cfg, out_channels)
    if cfg.arch == "unet":
        return UNet(cin, out_channels, cfg.unet_feature_scale, cfg.unet_more_layers, pad="zero")
    if cfg.arch == "resnet":
        return ResNet(cin, out_channels, cfg.resnet_blocks, cfg.resnet_channels, cfg.leaky_slope)
    if canvas is None:
        raise ValueError("arch 'image' needs the canvas size (H, W)")
    return ImageParameter(out_channels, canvas)
