"""The paper's encoder–decoder with skip connections ("skip" in the authors' code).

Level ``i`` (``i = 1 … L``, outermost first) of the network on an input ``x`` computes

.. math::

    d_i(x) = \\mathrm{up}\\big(\\,\\mathrm{level}_{i+1}(\\mathrm{down}_i(x))\\,\\big),\\qquad
    \\mathrm{level}_i(x) = u_i\\big(\\mathrm{BN}([\\,s_i(x),\\ d_i(x)\\,])\\big)

where ``down_i`` is two conv–BN–LeakyReLU blocks (the first one halves the resolution),
``s_i`` is a ``k_s×k_s`` conv–BN–LeakyReLU block with ``n_s[i]`` channels, ``u_i`` is a
``k_u×k_u`` conv–BN–LeakyReLU block (plus an optional 1×1 one) and ``[·,·]`` is channel
concatenation. The innermost level has no deeper level. A final 1×1 convolution maps to the
image's channels and a sigmoid puts the output in [0, 1].

The course reproduction we started from met four "peculiarities"; here is how each is resolved:

1. *The network ended with an upsample.* It does not: every level upsamples the deeper path
   *before* its decoder block, so the last layers are ``u_1``, a 1×1 conv and a sigmoid, at
   full resolution — exactly as the authors' ``skip()``.
2. *The output had ``n_s[5]`` channels.* The final 1×1 convolution maps ``n_u[1]`` channels to
   ``out_channels`` (1 for gray, 3 for colour images).
3. *The output was unbounded.* It ends with a sigmoid, so the output lies in [0, 1].
4. *``n_s = 0`` broke the network.* A level with ``n_s[i] = 0`` has no skip branch and its
   decoder sees only the upsampled deeper path (the paper's large-hole inpainting net has no
   skips at all).

Batch normalisation always uses the statistics of the one image being fitted
(``track_running_stats=False``): the network is never switched to running averages.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from dip.config import (  # noqa: F401 - re-exported: the settings live in dip.config (no torch)
    ARCHS, DOWNSAMPLE_MODES, PAD_MODES, UPSAMPLE_MODES, Arch, DownsampleMode, NetConfig, PadMode, UpsampleMode, _per_level,
    upsample_modes,
)
from dip.downsample import LanczosDownsampler

def _conv(cin: int, cout: int, k: int, stride: int, cfg: NetConfig) -> nn.Sequential:
    """Padding + convolution (+ downsampler when ``stride`` > 1 and the mode is not ``stride``)."""
    layers: list[nn.Module] = []
    pad = (k - 1) // 2
    down: nn.Module | None = None
    if stride > 1 and cfg.downsample != "stride":
        down = {
            "max": lambda: nn.MaxPool2d(stride, stride),
            "avg": lambda: nn.AvgPool2d(stride, stride),
            "lanczos2": lambda: LanczosDownsampler(stride, support=2),
            "lanczos3": lambda: LanczosDownsampler(stride, support=3),
        }[cfg.downsample]()
        stride = 1
    if cfg.pad == "reflection" and pad > 0:
        layers.append(nn.ReflectionPad2d(pad))
        pad = 0
    layers.append(nn.Conv2d(cin, cout, k, stride=stride, padding=pad))
    if down is not None:
        layers.append(down)
    return nn.Sequential(*layers)


def _block(cin: int, cout: int, k: int, cfg: NetConfig, stride: int = 1) -> nn.Sequential:
    """conv → BatchNorm (batch statistics only) → LeakyReLU."""
    return nn.Sequential(
        _conv(cin, cout, k, stride, cfg),
        nn.BatchNorm2d(cout, track_running_stats=False),
        nn.LeakyReLU(cfg.leaky_slope, inplace=True),  # BN's backward needs its input, not its output
    )


class Level(nn.Module):
    """One resolution level: skip branch ``s_i``, encoder ``d_i``, deeper levels, decoder ``u_i``."""

    def __init__(self, i: int, cin: int, cfg: NetConfig) -> None:
        super().__init__()
        kd = _per_level(cfg.kernel_down, cfg.levels, "kernel_down")[i]
        ku = _per_level(cfg.kernel_up, cfg.levels, "kernel_up")[i]
        ks = _per_level(cfg.kernel_skip, cfg.levels, "kernel_skip")[i]
        nd, nu, ns = cfg.channels_down[i], cfg.channels_up[i], cfg.channels_skip[i]
        self.skip = _block(cin, ns, ks, cfg) if ns > 0 else None
        self.down = nn.Sequential(_block(cin, nd, kd, cfg, stride=2), _block(nd, nd, kd, cfg))
        last = i == cfg.levels - 1
        self.deeper = None if last else Level(i + 1, nd, cfg)
        deep_channels = nd if last else cfg.channels_up[i + 1]
        mode = upsample_modes(cfg)[i]
        align = cfg.align_corners if mode == "bilinear" else None
        self.upsample = nn.Upsample(scale_factor=2, mode=mode, align_corners=align)
        up: list[nn.Module] = [
            nn.BatchNorm2d(ns + deep_channels, track_running_stats=False),
            _block(ns + deep_channels, nu, ku, cfg),
        ]
        if cfg.conv1x1_up:
            up.append(_block(nu, nu, 1, cfg))
        self.up = nn.Sequential(*up)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        deep = self.down(x)
        if self.deeper is not None:
            deep = self.deeper(deep)
        deep = self.upsample(deep)
        if self.skip is not None:
            deep = torch.cat([self.skip(x), deep], dim=1)
        return self.up(deep)


class SkipNet(nn.Module):
    """The full network: levels, then a 1×1 conv to ``out_channels`` and a sigmoid."""

    def __init__(self, cfg: NetConfig, out_channels: int) -> None:
        super().__init__()
        self.cfg = cfg.validate()
        self.out_channels = out_channels
        self.body = Level(0, cfg.input_depth, cfg)
        self.head = nn.Conv2d(cfg.channels_up[0], out_channels, 1)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.head(self.body(z)))


def count_parameters(net: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in net.parameters() if p.requires_grad)


def describe(cfg: NetConfig, out_channels: int) -> dict[str, Any]:
    """A JSON-friendly description of the architecture, per level, with its parameter count."""
    net = SkipNet(cfg, out_channels)
    levels = []
    for i in range(cfg.levels):
        levels.append(
            {
                "level": i + 1,
                "n_d": cfg.channels_down[i],
                "k_d": _per_level(cfg.kernel_down, cfg.levels, "kernel_down")[i],
                "n_u": cfg.channels_up[i],
                "k_u": _per_level(cfg.kernel_up, cfg.levels, "kernel_up")[i],
                "n_s": cfg.channels_skip[i],
                "k_s": _per_level(cfg.kernel_skip, cfg.levels, "kernel_skip")[i],
            }
        )
    return {
        "input_depth": cfg.input_depth,
        "out_channels": out_channels,
        "downsample": cfg.downsample,
        "upsample": cfg.upsample,
        "align_corners": cfg.align_corners,
        "pad": cfg.pad,
        "conv1x1_up": cfg.conv1x1_up,
        "levels": levels,
        "parameters": count_parameters(net),
    }
