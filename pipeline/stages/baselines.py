"""The ``baselines`` stage (``dip baselines EXP``): classical methods on exactly the corrupted
inputs DIP sees.

* inpaint — biharmonic inpainting (scikit-image ``inpaint_biharmonic``);
* denoise — BM3D (``bm3d``; CBM3D for colour) with the true σ, as in the paper's comparison;
  non-local means (``denoise_nl_means``, ``h = h_factor·σ``, fast mode) and total variation
  (Chambolle, ``weight = weight_factor·σ``);
* sr — bicubic and Lanczos interpolation of the 8-bit low-resolution image (PIL), as the
  authors' ``sr_utils`` makes its bicubic baseline.

Each method is ``f(observation, meta, params) -> estimate``; its settings' defaults are
:data:`pipeline.settings.BASELINES` (params.yaml ``baselines:`` overrides them). The stage writes
``baselines/<exp>/<image>/<method>.png`` and ``<method>.json`` (``{"method", "params", "seconds"}``);
PSNR/SSIM are computed by ``dip evaluate`` like DIP's.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np
from PIL import Image

from pipeline.files import atomic_directory, save_image, save_json
from dip.metrics import to_uint8
from pipeline.execution.progress import make_progress
from pipeline.layout import BaselinesDir, ExperimentDir, load_case
from pipeline.settings import BASELINE_DEFAULTS, load_params, parse_experiment

Baseline = Callable[[np.ndarray, dict[str, Any], dict[str, Any]], np.ndarray]


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


#: the methods of each task (their names and settings' defaults: :data:`pipeline.settings.BASELINES`)
METHODS: dict[str, dict[str, Baseline]] = {
    "inpaint": {"biharmonic": biharmonic},
    "denoise": {"bm3d": bm3d_denoise, "nlm": nlm, "tv": tv},
    "sr": {"bicubic": bicubic, "lanczos": lanczos},
}


def method_params(method: str, config: dict[str, Any]) -> dict[str, Any]:
    """Defaults of ``method`` overridden by ``config[method]`` (params.yaml ``baselines``)."""
    given = dict(config.get(method) or {})
    unknown = set(given) - set(BASELINE_DEFAULTS[method])
    if unknown:
        raise ValueError(f"unknown {method} setting(s) in params.yaml baselines: {', '.join(sorted(unknown))}")
    return {**BASELINE_DEFAULTS[method], **given}


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


def run_experiment_baselines(
    corrupted: Path, out_dir: Path, config: dict[str, Any], progress: Callable[[str], None] | None = None
) -> dict[str, int]:
    """Every configured baseline on every image of one experiment; rebuilds ``out_dir`` atomically."""
    cases = ExperimentDir(corrupted)
    info = json.loads(cases.record.read_text())
    task = info["task"]
    methods = methods_for(task, config, info)
    done = 0
    with atomic_directory(out_dir, overwrite=True) as tmp:
        out = BaselinesDir(tmp)
        for name in info["images"]:
            case = load_case(cases.case(name).path)
            obs, meta = case.observation, case.meta
            if case.mask is not None:
                meta["mask"] = case.mask
            for method in methods:
                params = method_params(method, config)
                estimate, seconds = run_baseline(task, method, obs, meta, params)
                save_image(out.png(name, method), estimate)
                save_json(out.record(name, method), {"method": method, "params": params, "seconds": round(seconds, 3)})
                done += 1
                if progress:
                    progress(f"{name}/{method}")
        save_json(out.summary, {"experiment": info["experiment"], "task": task, "methods": methods, "images": info["images"]})
    return {"runs": done, "images": len(info["images"])}


def stage(experiment: str, params_path: Path, corrupted: Path, out_root: Path) -> dict[str, int]:
    """The ``baselines`` stage (``dip baselines EXPERIMENT``): the classical methods of params.yaml's
    ``baselines:`` for the experiment's task, on its corrupted inputs, with one progress bar."""
    p = load_params(params_path)
    parse_experiment(experiment, p.get("figures"))
    record = ExperimentDir(corrupted / experiment).record
    if not record.is_file():
        raise FileNotFoundError(f"{corrupted / experiment}: no corrupted inputs; run `dip corrupt` (the corrupt stage) first")
    config = p.get("baselines") or {}
    with make_progress() as progress:
        info = json.loads(record.read_text())
        methods = methods_for(info["task"], config, info)
        bar = progress.add_task(f"baselines {experiment}", total=len(info["images"]) * len(methods), status="")
        return run_experiment_baselines(corrupted / experiment, out_root / experiment, config,
                                        progress=lambda what: progress.update(bar, advance=1, status=what))
