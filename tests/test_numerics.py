"""``dip.NUMERICS`` pins the numbers of a fit: a published fit is refitted only when they change.

A fit's key (:func:`pipeline.execution.keys.fit_key`) holds ``dip.NUMERICS`` instead of a hash of
the code, so a refactoring that computes the same iteration keeps every published fit. This test
is what makes that safe: four tiny float64 fits on the CPU (each task; output averaging,
backtracking, a TV term, a meshgrid input, a U-Net, nearest and bilinear upsampling, strided and
average-pooling downsampling) must equal a stored reference to 1e-9 relative. When a change alters them on purpose, bump ``dip.NUMERICS`` in ``dip/__init__.py``
and update the reference: ``python tests/test_numerics.py --update`` (it records the new value's
digest below, in ``DIGESTS``, which you then paste in).
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

import dip
from dip.fit import FitConfig, fit
from dip.network import NetConfig
from dip.operators import Denoising, Inpainting, SuperResolution

REFERENCE = Path(__file__).resolve().parent / "data" / "numerics_reference.json"
TOLERANCE = 1e-9
# dip.NUMERICS → digest of its reference (values to 8 significant digits): a reference regenerated
# without bumping dip.NUMERICS fails here.
DIGESTS = {1: "51a679b81b8df43c8c72e7d30b9a68d4f0be9e16402ebea029a7bde8d458996c"}
BUMP = "the iteration's numbers changed: bump dip.NUMERICS and update this reference (python tests/test_numerics.py --update)"


def _image(h: int, w: int, channels: int) -> torch.Tensor:
    """A smooth test image in [0, 1], (C, H, W), float64."""
    y, x = np.mgrid[0:h, 0:w] / max(h, w)
    planes = [0.5 + 0.4 * np.sin(3 * x + 2 * y + c) * np.cos(2 * x - y * (c + 1)) for c in range(channels)]
    return torch.from_numpy(np.stack(planes)).double()


def cases() -> dict[str, tuple[Any, torch.Tensor, NetConfig, FitConfig]]:
    """Tiny fits that between them run each task and most options of the paper profile's networks and loop."""
    gen = torch.Generator().manual_seed(7)
    gray, rgb = _image(12, 12, 1), _image(12, 12, 3)
    mask = Inpainting.random_mask((12, 12), 0.5, gen)
    fp64 = dict(iterations=8, lr=0.01, precision="fp64")
    return {
        "inpaint": (Inpainting(mask), Inpainting.corrupt(gray, mask),
                    NetConfig.from_dict(dict(levels=2, width=4, skip=1)), FitConfig(**fp64, reg_noise_std=0.03, seed=3)),
        "denoise": (Denoising(), (rgb + 0.1 * torch.randn(rgb.shape, generator=gen, dtype=torch.float64)).clamp(0, 1),
                    NetConfig.from_dict(dict(levels=2, width=4, skip=2, upsample="nearest")),
                    FitConfig(**fp64, reg_noise_std=1 / 30, exp_weight=0.9, backtrack=True, seed=1)),
        "sr": (SuperResolution(2), _image(6, 6, 3), NetConfig.from_dict(dict(levels=2, width=4, skip=1, downsample="avg")),
               FitConfig(**fp64, reg_noise_std=0.03, tv_weight=1e-4, seed=2)),
        "unet": (Denoising(), _image(16, 16, 1), NetConfig.from_dict(dict(arch="unet", input_depth=2, unet_feature_scale=32, unet_more_layers=0)),
                 FitConfig(**fp64, reg_noise_std=0.0, input="meshgrid", seed=4)),
    }


def numbers() -> dict[str, list[float]]:
    """Each case's final output f_θ(z) (and averaged output, where on), flattened."""
    torch.set_num_threads(1)
    out: dict[str, list[float]] = {}
    for name, (operator, y, net, cfg) in cases().items():
        result = fit(operator, y, net, cfg, device="cpu")
        out[name] = [float(f"{v:.13e}") for v in result.output.flatten().tolist()]
        if result.averaged is not None:
            out[f"{name}/averaged"] = [float(f"{v:.13e}") for v in result.averaged.flatten().tolist()]
    return out


def digest(values: dict[str, list[float]]) -> str:
    text = json.dumps({k: [f"{v:.8e}" for v in vs] for k, vs in sorted(values.items())})
    return hashlib.sha256(text.encode()).hexdigest()


def test_a_fit_computes_the_pinned_numbers() -> None:
    reference = json.loads(REFERENCE.read_text())
    assert reference["numerics"] == dip.NUMERICS, f"{REFERENCE.name} was made for dip.NUMERICS {reference['numerics']}, not {dip.NUMERICS}: {BUMP}"
    assert DIGESTS.get(dip.NUMERICS) == digest(reference["values"]), f"{REFERENCE.name} changed but dip.NUMERICS did not: {BUMP}"
    got = numbers()
    assert sorted(got) == sorted(reference["values"]), BUMP
    for name, want in reference["values"].items():
        a, b = np.asarray(got[name]), np.asarray(want)
        assert a.shape == b.shape, f"{name}: {BUMP}"
        rel = float(np.linalg.norm(a - b) / np.linalg.norm(b))
        assert rel <= TOLERANCE, f"{name}: relative difference {rel:.2e} > {TOLERANCE:g}: {BUMP}"


def test_the_pin_can_fail() -> None:
    """The comparison sees a change of one Adam step: the same fits one iteration longer differ."""
    operator, y, net, cfg = cases()["inpaint"]
    a = fit(operator, y, net, cfg, device="cpu").output
    cfg.iterations += 1
    b = fit(operator, y, net, cfg, device="cpu").output
    assert float((a - b).norm() / b.norm()) > 1e3 * TOLERANCE


@pytest.mark.parametrize("field", ["lr", "reg_noise_std"])
def test_numbers_depend_on_the_settings_the_key_holds(field: str) -> None:
    operator, y, net, cfg = cases()["inpaint"]
    a = fit(operator, y, net, cfg, device="cpu").output
    setattr(cfg, field, getattr(cfg, field) * 1.5)
    b = fit(operator, y, net, cfg, device="cpu").output
    assert not torch.allclose(a, b, rtol=0, atol=1e-12)


if __name__ == "__main__" and "--update" in sys.argv:
    values = numbers()
    REFERENCE.parent.mkdir(parents=True, exist_ok=True)
    REFERENCE.write_text(json.dumps({"numerics": dip.NUMERICS, "values": values}) + "\n")
    print(f"wrote {REFERENCE} for dip.NUMERICS = {dip.NUMERICS}; set DIGESTS[{dip.NUMERICS}] = {digest(values)!r} in {Path(__file__).name}")
