"""Named settings per task: ``paper`` (the paper / authors' notebooks) and ``quick`` (CPU).

``paper``:
  * denoise — LR 0.01, 3000 iterations, σ_p = 1/30, output averaging 0.99, backtracking;
  * inpaint — Table 1: LR 0.001, 11000 iterations, σ_p = 0.03 (authors' camera-ready notebook);
  * sr      — LR 0.01; ×4: 2000 iterations, σ_p = 0.03; ×8: 4000 iterations, σ_p = 0.05;
  all with the 5-level 128/128/4 network, bilinear upsampling, strided downsampling.

``quick`` keeps every method choice but narrows the network (32 channels) and cuts iterations
so that one 256² image takes minutes on a 2-core CPU.
"""

from __future__ import annotations

from typing import Any

from dip.fit import FitConfig
from dip.network import NetConfig

PRESETS = ("paper", "quick")

_FIT: dict[str, dict[str, dict[str, Any]]] = {
    "paper": {
        "denoise": dict(iterations=3000, lr=0.01, reg_noise_std=1 / 30, exp_weight=0.99, backtrack=True),
        "inpaint": dict(iterations=11000, lr=0.001, reg_noise_std=0.03),
        "sr4": dict(iterations=2000, lr=0.01, reg_noise_std=0.03),
        "sr8": dict(iterations=4000, lr=0.01, reg_noise_std=0.05),
    },
    "quick": {
        "denoise": dict(iterations=600, lr=0.01, reg_noise_std=1 / 30, exp_weight=0.99, backtrack=True),
        "inpaint": dict(iterations=1000, lr=0.01, reg_noise_std=0.03),
        "sr4": dict(iterations=600, lr=0.01, reg_noise_std=0.03),
        "sr8": dict(iterations=800, lr=0.01, reg_noise_std=0.05),
    },
}
_NET: dict[str, dict[str, Any]] = {
    "paper": dict(levels=5, width=128, skip=4),
    "quick": dict(levels=5, width=32, skip=4),
}


def preset(name: str, task: str, factor: int = 4) -> tuple[NetConfig, FitConfig]:
    """Network and fitting settings of preset ``name`` for ``task``."""
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; choose one of {', '.join(PRESETS)}")
    key = ("sr8" if factor > 4 else "sr4") if task == "sr" else task  # other factors: nearest setting
    if key not in _FIT[name]:
        raise ValueError(f"no {name!r} settings for task {task!r} (factor {factor}); tasks: denoise, inpaint, sr ×4/×8")
    return NetConfig.from_dict(_NET[name]), FitConfig.from_dict(_FIT[name][key])
