"""Generators (skip, U-Net, ResNet, the image itself), input codes and the TV prior (issue 14)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from dip.fit import FitConfig, Fitter, canvas_size
from dip.inputs import make_input
from dip.io import to_tensor
from dip.models import ImageParameter, ResNet, UNet, build_model
from dip.network import NetConfig, SkipNet, count_parameters
from dip.operators import Denoising, SuperResolution
from dip.priors import tv

LIBRARY = [16, 32, 64, 128, 128, 128]


def library_skip(depth: int) -> NetConfig:
    """Fig. 8's skip network of ``depth`` levels (authors' inpainting notebook, library)."""
    return NetConfig(input_depth=1, channels_down=LIBRARY[:depth], channels_up=LIBRARY[:depth], channels_skip=[0] * depth,
                     kernel_down=5, kernel_up=3, upsample="nearest", conv1x1_up=False)


# Counts checked against the authors' models/{skip,unet,resnet}.py at the same settings.
@pytest.mark.parametrize(
    ("cfg", "expected"),
    [
        (library_skip(6), 2_996_467),
        (library_skip(4), 1_060_339),
        (library_skip(2), 59_635),
        (NetConfig(arch="unet", input_depth=1), 1_616_315),
        (NetConfig(arch="resnet", input_depth=1), 158_979),
    ],
    ids=["skip_depth6", "skip_depth4", "skip_depth2", "unet", "resnet"],
)
def test_fig8_parameter_counts(cfg: NetConfig, expected: int) -> None:
    assert count_parameters(build_model(cfg, 3)) == expected


def test_each_generator_keeps_the_canvas_size() -> None:
    z = torch.rand(1, 1, 64, 96)
    for net in (UNet(1, 3), ResNet(1, 3, blocks=2, channels=8), SkipNet(library_skip(3), 3)):
        out = net(z)
        assert out.shape == (1, 3, 64, 96) and 0 <= out.min() and out.max() <= 1
    assert ImageParameter(3, (64, 96))(z).shape == (1, 3, 64, 96)


def test_canvas_multiple_per_arch() -> None:
    assert NetConfig(arch="unet").multiple == 32 and NetConfig(arch="unet", unet_more_layers=2).multiple == 64
    assert NetConfig(arch="resnet").multiple == 1 and NetConfig(arch="image").multiple == 1
    assert library_skip(6).multiple == 64
    with pytest.raises(ValueError, match="arch"):
        NetConfig(arch="vgg").validate()


def test_per_level_upsampling() -> None:
    cfg = NetConfig.from_dict(dict(levels=5, width=8, skip=4, upsample=["nearest", "nearest", "bilinear", "bilinear", "bilinear"]))
    net = SkipNet(cfg, 3)
    modes, level = [], net.body
    while level is not None:
        modes.append(level.upsample.mode)
        level = level.deeper
    assert modes == ["nearest", "nearest", "bilinear", "bilinear", "bilinear"]
    with pytest.raises(ValueError, match="5 levels"):
        NetConfig.from_dict(dict(levels=5, width=8, upsample=["nearest", "bilinear"]))
    with pytest.raises(ValueError, match="upsample"):
        NetConfig.from_dict(dict(levels=2, width=8, upsample=["nearest", "cubic"]))


def test_input_codes() -> None:
    gen = torch.Generator().manual_seed(3)
    noise = make_input("noise", 4, (30, 40), (32, 48), gen, 0.1)
    assert torch.equal(noise, torch.rand((1, 4, 32, 48), generator=torch.Generator().manual_seed(3)) * 0.1)
    grid = make_input("meshgrid", 2, (5, 9), (8, 16), gen)
    assert grid.shape == (1, 2, 8, 16)
    assert grid[0, 0, 0, 8] == 1 and grid[0, 1, 4, 0] == 1 and grid[0, 0, 3, 0] == 0 and grid[0, 1, 0, 5] == 0
    with pytest.raises(ValueError, match="2 channels"):
        make_input("meshgrid", 3, (5, 9), (8, 16), gen)
    image = torch.rand(3, 5, 9)
    code = make_input("image", 3, (5, 9), (8, 16), gen, image=image)
    assert torch.equal(code[0, :, :5, :9], image) and torch.equal(code[0, :, 7, 15], image[:, 4, 8])
    with pytest.raises(ValueError, match="input_depth: 3"):
        make_input("image", 32, (5, 9), (8, 16), gen, image=image)


def test_tv_matches_the_definition_and_has_finite_gradients() -> None:
    x = torch.rand(1, 2, 4, 5, dtype=torch.float64)
    expected = sum(
        float(((x[0, c, i, j + 1] - x[0, c, i, j]) ** 2 + (x[0, c, i + 1, j] - x[0, c, i, j]) ** 2 + 1e-8) ** 0.5)
        for c in range(2) for i in range(3) for j in range(4)
    )
    assert float(tv(x)) == pytest.approx(expected)
    flat = torch.full((1, 1, 4, 4), 0.5, requires_grad=True)
    tv(flat).backward()
    assert torch.isfinite(flat.grad).all()


def test_no_prior_fits_the_pixels_and_tv_smooths(astronaut64: np.ndarray) -> None:
    """arch 'image' optimises x itself; a TV weight makes the result smoother."""
    from dip.metrics import to_uint8

    y = to_tensor(SuperResolution.corrupt(to_uint8(astronaut64), 4).astype(np.float32) / 255)
    results = {}
    for weight in (0.0, 1e-3):
        fitter = Fitter(NetConfig(arch="image", input_depth=3), SuperResolution(4), y,
                        FitConfig(iterations=150, lr=0.01, reg_noise_std=0.0, tv_weight=weight), device="cpu")
        nets: list = []
        fitter.add_callback(lambda step: nets.append(step.state.net), at=[0])
        results[weight] = fitter.run().output
        assert isinstance(nets[0], ImageParameter)
    loss = torch.mean((SuperResolution(4)(results[0.0]) - y[None]) ** 2)
    assert loss < 1e-3
    assert tv(results[1e-3]) < tv(results[0.0])


def test_image_input_and_validation(astronaut64: np.ndarray) -> None:
    """The flash/no-flash case: the network's input is a given image."""
    target = to_tensor(astronaut64)
    flash = torch.flip(target, dims=[-1])
    cfg = FitConfig(iterations=3, input="image", reg_noise_std=0.0)
    net_cfg = NetConfig.from_dict(dict(levels=3, width=8, skip=2, input_depth=3))
    fitter = Fitter(net_cfg, Denoising(), target, cfg, device="cpu", input_image=flash)
    codes: list[torch.Tensor] = []
    fitter.add_callback(lambda step: codes.append(step.state.z), at=[0])
    fitter.run()
    assert torch.equal(codes[0][..., :64, :64].reshape(flash.shape), flash)
    with pytest.raises(ValueError, match="input_image"):
        Fitter(net_cfg, Denoising(), target, cfg, device="cpu")
    with pytest.raises(ValueError, match="input must be"):
        FitConfig(input="video").validate()
    with pytest.raises(ValueError, match="tv_weight"):
        FitConfig(tv_weight=-1).validate()


@pytest.mark.parametrize("arch", ["unet", "resnet"])
def test_other_generators_fit(arch: str, camera64: np.ndarray) -> None:
    y = to_tensor(camera64)
    cfg = NetConfig(arch=arch, input_depth=1, unet_feature_scale=16, resnet_blocks=2, resnet_channels=8)
    fitter = Fitter(cfg, Denoising(), y, FitConfig(iterations=30, lr=0.01, reg_noise_std=0.0), device="cpu")
    losses: list[float] = []
    fitter.add_callback(lambda step: losses.append(float(step.loss)), every=1)
    codes: list[torch.Tensor] = []
    fitter.add_callback(lambda step: codes.append(step.state.z), at=[0])
    fitter.run()
    assert losses[-1] < losses[0] and codes[0].shape[-2:] == canvas_size((64, 64), cfg.multiple)
