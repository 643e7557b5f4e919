"""The settings of a fit as plain dataclasses, importable without torch.

:class:`NetConfig` is the generator's architecture (the supplementary material's Fig. 1:
per level :math:`n_d, k_d, n_u, k_u, n_s, k_s`, the down- and upsampling, the padding) and
:class:`FitConfig` the optimisation (iterations, Adam's learning rate, the input perturbation
:math:`\\sigma_p`, output averaging :math:`\\beta`, backtracking, ES-WMV, …). Both validate
themselves and read from a ``dict`` (``from_dict``), so ``params.yaml`` can be checked, hashed
and shipped to another machine without loading torch (:mod:`pipeline.settings`). The network is
built by :mod:`dip.network` / :mod:`dip.models`, the loop that uses the settings is :mod:`dip.fit`;
both re-export these classes.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any, Literal, Sequence

#: the input code z: uniform noise, a 2-channel meshgrid, or an image (:func:`dip.inputs.make_input`)
INPUT_KINDS = ("noise", "meshgrid", "image")

DownsampleMode = Literal["stride", "max", "avg", "lanczos2", "lanczos3"]
UpsampleMode = Literal["nearest", "bilinear"]
Arch = Literal["skip", "unet", "resnet", "image"]
PadMode = Literal["reflection", "zero"]
DOWNSAMPLE_MODES = ("stride", "max", "avg", "lanczos2", "lanczos3")
UPSAMPLE_MODES = ("nearest", "bilinear")
PAD_MODES = ("reflection", "zero")
#: generators :func:`dip.models.build_model` knows: the paper's skip network, the U-Net and
#: ResNet of its architecture comparison (Fig. 8), and "image" (no network: the pixels themselves)
ARCHS = ("skip", "unet", "resnet", "image")


def _per_level(value: int | Sequence[int], levels: int, name: str) -> list[int]:
    values = [int(value)] * levels if isinstance(value, int) else [int(v) for v in value]
    if len(values) != levels:
        raise ValueError(f"{name} has {len(values)} entries but the network has {levels} levels")
    return values


def upsample_modes(cfg: "NetConfig") -> list[str]:
    """The upsampling mode of each level, outermost first (``cfg.upsample`` may be one mode or a list)."""
    if isinstance(cfg.upsample, str):
        return [cfg.upsample] * cfg.levels
    modes = [str(m) for m in cfg.upsample]
    if len(modes) != cfg.levels:
        raise ValueError(f"upsample has {len(modes)} entries but the network has {cfg.levels} levels")
    return modes


@dataclass
class NetConfig:
    """Architecture hyper-parameters (supplementary material, Fig. 1). Defaults = the paper's."""

    input_depth: int = 32
    channels_down: list[int] = field(default_factory=lambda: [128] * 5)  # n_d
    channels_up: list[int] = field(default_factory=lambda: [128] * 5)  # n_u
    channels_skip: list[int] = field(default_factory=lambda: [4] * 5)  # n_s
    kernel_down: int | list[int] = 3  # k_d
    kernel_up: int | list[int] = 3  # k_u
    kernel_skip: int | list[int] = 1  # k_s
    downsample: DownsampleMode = "stride"
    upsample: UpsampleMode | list[UpsampleMode] = "bilinear"  # one mode, or one per level (outermost first)
    align_corners: bool = True  # PyTorch < 0.4 behaviour, which the paper's runs used
    pad: PadMode = "reflection"
    conv1x1_up: bool = True
    leaky_slope: float = 0.2
    arch: Arch = "skip"  # skip | unet | resnet | image (dip.models.build_model)
    unet_feature_scale: int = 8  # unet: channels [64, 128, 256, 512, 1024] // feature_scale
    unet_more_layers: int = 1  # unet: extra levels beyond the 4 of the classic U-Net
    resnet_blocks: int = 8  # resnet: residual blocks
    resnet_channels: int = 32  # resnet: channels of every block

    @property
    def levels(self) -> int:
        return len(self.channels_down)

    def validate(self) -> "NetConfig":
        """Raise ``ValueError`` with a readable message for nonsense settings."""
        n = self.levels
        if n < 1:
            raise ValueError("the network needs at least one level")
        if len(self.channels_up) != n or len(self.channels_skip) != n:
            raise ValueError(
                f"channels_down/up/skip must have one entry per level, got {n}, "
                f"{len(self.channels_up)} and {len(self.channels_skip)}"
            )
        if self.input_depth < 1 or min(self.channels_down + self.channels_up) < 1:
            raise ValueError("input_depth and every down/up channel count must be >= 1")
        if min(self.channels_skip) < 0:
            raise ValueError("skip channels must be >= 0 (0 means no skip at that level)")
        for name in ("kernel_down", "kernel_up", "kernel_skip"):
            if min(_per_level(getattr(self, name), n, name)) < 1:
                raise ValueError(f"{name} must be >= 1")
        if self.downsample not in DOWNSAMPLE_MODES:
            raise ValueError(f"downsample must be one of {DOWNSAMPLE_MODES}, got {self.downsample!r}")
        bad = [m for m in upsample_modes(self) if m not in UPSAMPLE_MODES]
        if bad:
            raise ValueError(f"upsample must be one of {UPSAMPLE_MODES} (or a list of them, one per level), got {self.upsample!r}")
        if self.arch not in ARCHS:
            raise ValueError(f"arch must be one of {ARCHS}, got {self.arch!r}")
        if min(self.unet_feature_scale, self.resnet_blocks, self.resnet_channels) < 1 or self.unet_more_layers < 0:
            raise ValueError("unet_feature_scale, resnet_blocks and resnet_channels must be >= 1, unet_more_layers >= 0")
        if self.pad not in PAD_MODES:
            raise ValueError(f"pad must be one of {PAD_MODES}, got {self.pad!r}")
        check_range("leaky_slope", self.leaky_slope, 0.0, 1.0)
        check_network_size(self)
        return self

    @property
    def multiple(self) -> int:
        """Spatial sizes the network accepts are multiples of this: ``2**levels`` for the skip
        network, ``2**(4 + more_layers)`` for the U-Net, 1 for the ResNet and the pixel image."""
        if self.arch == "unet":
            return 2 ** (4 + self.unet_more_layers)
        if self.arch in ("resnet", "image"):
            return 1
        return 2**self.levels

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> "NetConfig":
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(values) - known - {"levels", "width", "skip"}
        if unknown:
            raise ValueError(f"unknown network setting(s): {', '.join(sorted(unknown))}")
        values = dict(values)
        levels = int(values.pop("levels", 5))
        width = values.pop("width", 128)
        skip = values.pop("skip", 4)
        if width is not None:
            values.setdefault("channels_down", [int(width)] * levels)
            values.setdefault("channels_up", [int(width)] * levels)
        if skip is not None:
            values.setdefault("channels_skip", [int(skip)] * levels)
        for key in ("channels_down", "channels_up", "channels_skip"):
            if key in values and isinstance(values[key], int):
                values[key] = [values[key]] * levels
        return cls(**values).validate()

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def check_range(name: str, value: Any, low: float, high: float, low_open: bool = False, high_open: bool = False) -> None:
    """Raise ``ValueError`` unless ``value`` is a finite number in the interval from ``low`` to
    ``high`` (each end closed unless ``*_open``): every float setting has a range that means something."""
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) \
        and (value > low if low_open else value >= low) and (value < high if high_open else value <= high)
    if not ok:
        span = f"{'(' if low_open else '['}{low:g}, {high:g}{')' if high_open else ']'}"
        raise ValueError(f"{name} must be a finite number in {span}, got {value!r}")


#: Ranges of :class:`FitConfig`'s floats: (low, high, low_open, high_open). The paper uses lr 0.01,
#: σ_p 1/30 or 1/20 on inputs of scale 0.1, β 0.99, a 5 dB jump for backtracking; TV weights are
#: small fractions. Beyond these ends a fit is all black or never learns.
FIT_RANGES: dict[str, tuple[float, float, bool, bool]] = {
    "lr": (0.0, 1.0, True, False), "reg_noise_std": (0.0, 1.0, False, False), "input_noise_scale": (0.0, 10.0, True, False),
    "backtrack_drop_db": (0.0, 100.0, True, False), "tv_weight": (0.0, 100.0, False, False),
}


MAX_PARAMETERS = 100_000_000  # the paper's network has about 2.2 M; more does not fit a GPU's memory with its activations
MAX_FLOATS_PER_PIXEL = 8192  # activations of the widest level per input pixel (the paper's: about 900)


def network_size(cfg: "NetConfig", out_channels: int = 3) -> tuple[int, int]:
    """``(weights, activations per pixel)`` of ``cfg``'s network, counted from its settings alone
    (nothing is built): the convolutions' weights, and the floats one input pixel carries through
    the widest level's tensors (each level has a quarter of the pixels of the one above)."""
    if cfg.arch == "resnet":
        c, b = cfg.resnet_channels, cfg.resnet_blocks
        return cfg.input_depth * c * 9 + 2 * b * c * c * 9 + c * c * 9 + c * out_channels * 9, cfg.input_depth + (2 * b + 3) * c
    if cfg.arch == "unet":
        widths = [min(64 * 2**i, 1024) // cfg.unet_feature_scale for i in range(5 + cfg.unet_more_layers)]
        weights = sum(2 * 9 * w * w * 4 for w in widths) + cfg.input_depth * widths[0] * 9
        return weights, cfg.input_depth + 8 * widths[0]
    if cfg.arch == "image":
        return out_channels, out_channels
    n = cfg.levels
    kd, ku, ks = (_per_level(getattr(cfg, k), n, k) for k in ("kernel_down", "kernel_up", "kernel_skip"))
    weights, floats, cin = cfg.channels_up[0] * out_channels, 0.0, cfg.input_depth
    for i in range(n):
        nd, nu, ns = cfg.channels_down[i], cfg.channels_up[i], cfg.channels_skip[i]
        deep = nd if i == n - 1 else cfg.channels_up[i + 1]
        weights += cin * ns * ks[i] ** 2 + (cin + nd) * nd * kd[i] ** 2 + (ns + deep) * nu * ku[i] ** 2 + (nu * nu if cfg.conv1x1_up else 0)
        floats = max(floats, (cin + 3 * ns + 2 * deep + 3 * nu) / 4**i, 3 * nd / 4 ** (i + 1))
        cin = nd
    return weights, int(floats)


def check_network_size(cfg: "NetConfig") -> None:
    """``ValueError`` (one line) for a network too large to be meant, before any of it is built."""
    weights, floats = network_size(cfg)
    if weights > MAX_PARAMETERS or floats > MAX_FLOATS_PER_PIXEL:
        raise ValueError(f"the network would have {weights:,} weights and {floats:,} activations per pixel, more than "
                         f"{MAX_PARAMETERS:,} and {MAX_FLOATS_PER_PIXEL:,}; lower width, input_depth or the kernel sizes")


#: how a group of same-size fits runs (:mod:`dip.group`, :class:`dip.graphs.OnStreams`)
MANY_MODES = ("vmap", "grouped", "streams")


@dataclass
class FitConfig:
    """Optimisation settings. Defaults are the paper's denoising settings."""

    iterations: int = 3000
    lr: float = 0.01
    reg_noise_std: float = 1.0 / 30  # σ_p, the input perturbation
    input_noise_scale: float = 0.1  # z ~ U(0, input_noise_scale)
    exp_weight: float | None = None  # output averaging β; None = off
    backtrack: bool = False
    backtrack_drop_db: float = 5.0  # a loss jump of this many dB counts as divergence
    early_stop: bool = False
    es_window: int = 100
    es_patience: int = 1000
    seed: int = 0
    # "fp32"; "bf16" = autocast on CUDA (ignored on the CPU); "fp64" = float64 weights and data,
    # slow, for exactness checks (rounding no longer steers Adam's trajectory)
    precision: str = "fp32"
    input: str = "noise"  # the code z: noise | meshgrid | image (dip.inputs.make_input)
    tv_weight: float = 0.0  # λ of the added λ·TV(x) term (dip.priors.tv); 0 = none
    # --- execution options (EXECUTION_FIELDS): how the iterations run, not what they compute ---
    graph: bool | None = None  # capture each iteration as a CUDA graph; None = on for CUDA (eager elsewhere)
    compile: bool = False  # torch.compile the network (Inductor), compiled before the graph is captured
    compile_cache: str = ""  # file of torch.compile's caches: loaded before compiling, rewritten after the fit
    # NHWC end to end (layout-keeping pad, cuDNN's NHWC batch norm); None = on the CPU only (measured
    # faster there; docs/speed.md), off elsewhere until measured
    channels_last: bool | None = None
    drop_inert_bias: bool = True  # skip the conv biases a batch norm cancels (dip.network.inert_biases)
    many: str = "vmap"  # a group of fits: vmap | grouped (one widened network) | streams (one graph per fit)
    check_every: int = 100  # host check for a NaN/Inf loss every this many iterations

    def validate(self) -> "FitConfig":
        if self.iterations < 1:
            raise ValueError(f"iterations must be >= 1, got {self.iterations}")
        for name, (low, high, low_open, high_open) in FIT_RANGES.items():
            check_range("lr (the learning rate)" if name == "lr" else name, getattr(self, name), low, high, low_open, high_open)
        if self.exp_weight is not None:
            check_range("exp_weight", self.exp_weight, 0.0, 1.0, high_open=True)
        if self.check_every < 1:
            raise ValueError(f"check_every must be >= 1, got {self.check_every}")
        if self.precision not in ("fp32", "bf16", "fp64"):
            raise ValueError(f"precision must be fp32, bf16 or fp64, got {self.precision!r}")
        if self.input not in INPUT_KINDS:
            raise ValueError(f"input must be one of {', '.join(INPUT_KINDS)}, got {self.input!r}")
        if self.many not in MANY_MODES:
            raise ValueError(f"many must be one of {', '.join(MANY_MODES)}, got {self.many!r}")
        return self

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> "FitConfig":
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(values) - known
        if unknown:
            raise ValueError(f"unknown fitting setting(s): {', '.join(sorted(unknown))}")
        return cls(**values).validate()


#: :class:`FitConfig` fields that change how the iterations run but not their numbers (a float64
#: CPU fit gives equal outputs with any value: tests/test_execution.py); everything else does.
EXECUTION_FIELDS: tuple[str, ...] = ("graph", "compile", "compile_cache", "channels_last", "drop_inert_bias", "many", "check_every")
