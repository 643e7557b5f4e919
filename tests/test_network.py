"""The paper's network: parameter counts, every mode, odd sizes, n_s = 0."""

from __future__ import annotations

import pytest
import torch

from dip.fit import FitConfig, Fitter, canvas_size
from dip.models import build_model
from dip.network import DOWNSAMPLE_MODES, UPSAMPLE_MODES, NetConfig, SkipNet, count_parameters, describe, drop_inert_biases, inert_biases
from dip.operators import Denoising


@pytest.mark.parametrize("channels, expected", [(3, 2_217_831), (1, 2_217_573)])
def test_paper_parameter_count(channels: int, expected: int) -> None:
    assert count_parameters(SkipNet(NetConfig(), channels)) == expected
    assert describe(NetConfig(), channels)["parameters"] == expected


def test_describe_counts_the_inert_biases() -> None:
    """Every conv of a conv–BN–LeakyReLU block has a bias that its batch norm cancels: 5 levels ×
    (4 skip + 4 × 128 down/up) = 2,580 of the 2,217,831 parameters; the head's 3 are not inert."""
    info = describe(NetConfig(), 3)
    assert info["parameters"] == 2_217_831
    assert info["inert"]["parameters"] == 2_580 and info["inert"]["tensors"] == 25
    assert "batch norm" in info["inert"]["why"]
    assert "head.bias" not in inert_biases(SkipNet(NetConfig(), 3))


@pytest.mark.parametrize("arch, down", [("skip", "stride"), ("skip", "max"), ("skip", "avg"), ("skip", "lanczos2"),
                                        ("unet", "stride"), ("resnet", "stride")])
def test_dropping_the_inert_biases_leaves_the_output_equal(arch: str, down: str) -> None:
    cfg = NetConfig.from_dict(dict(levels=3, width=8, skip=2, input_depth=4, downsample=down, arch=arch,
                                   unet_feature_scale=32, unet_more_layers=0, resnet_blocks=2, resnet_channels=8))
    torch.manual_seed(0)
    net = build_model(cfg, 3).double()
    with torch.no_grad():  # make the biases count: far from their initial values
        for name in inert_biases(net):
            net.get_parameter(name).normal_(0, 3)
    z = torch.rand(1, 4, 32, 32, dtype=torch.float64)
    want = net(z)
    before = count_parameters(net)
    dropped = drop_inert_biases(net)
    assert dropped > 0 and count_parameters(net) == before - dropped and inert_biases(net) == []
    torch.testing.assert_close(net(z), want, atol=1e-12, rtol=0)


@pytest.mark.parametrize("down", DOWNSAMPLE_MODES)
@pytest.mark.parametrize("up", UPSAMPLE_MODES)
def test_every_mode_keeps_shape_and_range(down: str, up: str) -> None:
    cfg = NetConfig.from_dict(dict(levels=3, width=8, skip=2, input_depth=4, downsample=down, upsample=up))
    net = SkipNet(cfg, 3)
    out = net(torch.rand(1, 4, 32, 40))
    assert out.shape == (1, 3, 32, 40)
    assert 0.0 <= out.min() and out.max() <= 1.0  # ends in a sigmoid


def test_zero_skip_channels_at_any_level() -> None:
    cfg = NetConfig(input_depth=4, channels_down=[8, 8, 8], channels_up=[8, 8, 8], channels_skip=[0, 4, 0])
    net = SkipNet(cfg, 1)
    assert net.body.skip is None and net.body.deeper.skip is not None
    assert net(torch.rand(1, 4, 16, 16)).shape == (1, 1, 16, 16)
    no_skips = SkipNet(NetConfig(input_depth=4, channels_down=[8] * 3, channels_up=[8] * 3, channels_skip=[0] * 3), 3)
    assert no_skips(torch.rand(1, 4, 16, 16)).shape == (1, 3, 16, 16)


def test_network_ends_with_full_resolution_conv_and_sigmoid() -> None:
    net = SkipNet(NetConfig.from_dict(dict(levels=2, width=4, input_depth=2)), 3)
    assert isinstance(net.head, torch.nn.Conv2d) and net.head.kernel_size == (1, 1)
    assert net.head.out_channels == 3


def test_batch_norm_uses_the_image_statistics_only() -> None:
    net = SkipNet(NetConfig.from_dict(dict(levels=2, width=4, input_depth=2)), 1)
    bns = [m for m in net.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert bns and all(not m.track_running_stats for m in bns)
    net.eval()  # even in eval mode the output is computed with the batch's statistics
    z = torch.rand(1, 2, 16, 16)
    a = net(z)
    net.train()
    assert torch.allclose(a, net(z))


@pytest.mark.parametrize("size", [(37, 31), (31, 37), (64, 48)])
def test_odd_sizes_through_the_fitter(size: tuple[int, int]) -> None:
    cfg = NetConfig.from_dict(dict(levels=3, width=8, skip=2, input_depth=4))
    y = torch.rand(1, 3, *size)
    fitter = Fitter(cfg, Denoising(), y, FitConfig(iterations=2), device="cpu")
    result = fitter.run()
    assert result.output.shape == (1, 3, *size)
    assert all(c % cfg.multiple == 0 and c >= s for c, s in zip(canvas_size(size, cfg.multiple), size))


def test_too_small_image_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="too small for a 5-level network"):
        Fitter(NetConfig.from_dict(dict(width=4)), Denoising(), torch.rand(1, 1, 20, 40), device="cpu")


@pytest.mark.parametrize(
    "values, message",
    [
        (dict(downsample="bicubic"), "downsample must be one of"),
        (dict(upsample="trilinear"), "upsample must be one of"),
        (dict(channels_skip=[4, 4]), "one entry per level"),
        (dict(channels_skip=[-1] * 5), "skip channels must be >= 0"),
        (dict(colour="blue"), "unknown network setting"),
    ],
)
def test_nonsense_settings_are_rejected(values: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        NetConfig.from_dict(values)


def test_align_corners_option_changes_the_output() -> None:
    z = torch.rand(1, 2, 16, 16)
    outs = []
    for align in (True, False):
        torch.manual_seed(0)
        outs.append(SkipNet(NetConfig.from_dict(dict(levels=2, width=4, input_depth=2, align_corners=align)), 1)(z))
    assert not torch.allclose(outs[0], outs[1])
