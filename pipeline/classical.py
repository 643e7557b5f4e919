"""The classical methods the ``baselines`` stage runs (:mod:`pipeline.stages.baselines`), on exactly the
corrupted inputs DIP sees.

* inpaint — biharmonic inpainting (scikit-image ``inpaint_biharmonic``);
* denoise — BM3D (``bm3d``; CBM3D for colour) with the true σ, as in the paper's comparison;
  non-local means (``denoise_nl_means``, ``h = h_factor·σ``, fast mode) and total variation
  (Chambolle, ``weight = weight_factor·σ``);
* sr — bicubic and Lanczos interpolation of the 8-bit low-resolution image (PIL), as the
  authors' ``sr_utils`` makes its bicubic baseline.

Each method is ``f(observation, meta, params) -> estimate``; :data:`DEFAULTS` holds its settings
(params.yaml ``baselines:`` overrides them; :mod:`pipeline.schema` checks the keys against it).
"""

from __future__ import annotations

import time
from typing import Any, Callable

import numpy as np
from PIL import Image

from dip.metrics import to_uint8

Baseline = Callable[[np.ndarray, dict[str, Any], dict[str, Any]], np.ndarray]
DEFAULTS: dict[str, dict[str, Any]] = {
    "biharmonic": {},
    "bm3d": {},
    "nlm": {"h_factor": 0.8, "patch_size": 5, "patch_distance": 6},
    "tv": {"weight_factor": 1.0},
    "bicubic": {},
    "lanczos": {},
}


def _channel_axis(image: np.ndarray) -> int | None:
    return -1 if image.ndim == 3 else None


def biharmonic(obs: np.ndarray, meta: dict[str, Any], params: dict[str, Any]) -> np.ndarray:
    from skimage.restoration import inpaint_biharmonic

    missing = meta["mask"] < 0.5
    return inpaint_biharmonic(obs, missing, channel_axis=_channel_axis(obs))


def bm3d_denoise(obs: np.ndarray, meta: dict[str, Any], params: dict[str, Any]) -> np.ndarray:
    import bm3d

    sigma = float(meta["sigma"])
    if obs.ndim == 3:
        return bm3d.bm3d_rgb(obs, sigma_psd=sigma)  # CBM3D
    return bm3d.bm3d(obs, sigma_psd=sigma)


def nlm(obs: np.ndarray, meta: dict[str, Any], params: dict[str, Any]) -> np.ndarray:
    from skimage.restoration import denoise_nl_means

    sigma = float(meta["sigma"])
    return denoise_nl_means(
        obs, h=params["h_factor"] * sigma, sigma=sigma, fast_mode=True,
        patch_size=int(params["patch_size"]), patch_distance=int(params["patch_distance"]), channel_axis=_channel_axis(obs),
    )


def tv(obs: np.ndarray, meta: dict[str, Any], params: dict[str, Any]) -> np.ndarray:
    from skimage.restoration import denoise_tv_chambolle

    return denoise_tv_chambolle(obs, weight=params["weight_factor"] * float(meta["sigma"]), channel_axis=_channel_axis(obs))


def _resize(obs: np.ndarray, meta: dict[str, Any], method: Image.Resampling) -> np.ndarray:
    factor = int(meta["factor"])
    h, w = obs.shape[:2]
    up = Image.fromarray(to_uint8(obs)).resize((w * factor, h * factor), method)
    return np.asarray(up).astype(np.float32) / 255.0


def bicubic(obs: np.ndarray, meta: dict[str, Any], params: dict[str, Any]) -> np.ndarray:
    return _resize(obs, meta, Image.Resampling.BICUBIC)


def lanczos(obs: np.ndarray, meta: dict[str, Any], params: dict[str, Any]) -> np.ndarray:
    return _resize(obs, meta, Image.Resampling.LANCZOS)


METHODS: dict[str, dict[str, Baseline]] = {
    "inpaint": {"biharmonic": biharmonic},
    "denoise": {"bm3d": bm3d_denoise, "nlm": nlm, "tv": tv},
    "sr": {"bicubic": bicubic, "lanczos": lanczos},
}


def method_params(method: str, config: dict[str, Any]) -> dict[str, Any]:
    """Defaults of ``method`` overridden by ``config[method]`` (params.yaml ``baselines``)."""
    given = dict(config.get(method) or {})
    unknown = set(given) - set(DEFAULTS[method])
    if unknown:
        raise ValueError(f"unknown {method} setting(s) in params.yaml baselines: {', '.join(sorted(unknown))}")
    return {**DEFAULTS[method], **given}


def methods_for(task: str, config: dict[str, Any], info: dict[str, Any] | None = None) -> list[str]:
    """The baselines params.yaml asks for on ``task`` (default: all of the task's methods); none
    for an experiment without ground truth (``info`` = its experiment.json: a real photograph
    has nothing to score a baseline against, and no known σ to give BM3D)."""
    if info is not None and info.get("ground_truth") is False:
        return []
    methods = [str(m) for m in (config.get("methods") or {}).get(task, list(METHODS[task]))]
    for m in methods:
        if m not in METHODS[task]:
            raise ValueError(f"params.yaml baselines.methods.{task}: unknown method {m!r}; choose from {', '.join(METHODS[task])}")
    return methods


def run_baseline(task: str, method: str, obs: np.ndarray, meta: dict[str, Any], params: dict[str, Any]) -> tuple[np.ndarray, float]:
    """Apply one baseline; returns (estimate clipped to [0, 1], seconds)."""
    if method not in METHODS.get(task, {}):
        raise ValueError(f"no baseline {method!r} for task {task!r}; choose from {', '.join(METHODS.get(task, {}))}")
    start = time.perf_counter()
    estimate = METHODS[task][method](obs, meta, params)
    return np.clip(np.asarray(estimate, dtype=np.float32), 0.0, 1.0), time.perf_counter() - start
