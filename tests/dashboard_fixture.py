"""A tiny but real results tree in the layout of ``docs/LAYOUT.md``, for the dashboard's tests.

Every image, curve and metric comes from real computation: corruptions by :mod:`dip.operators`,
real DIP fits through :func:`pipeline.restore.restore` (a 3-level, 8-channel network, 20
iterations on 48×48 images: a few seconds in all), real classical baselines (scikit-image / PIL)
and PSNR/SSIM by :mod:`dip.metrics`. The paper's numbers are the repository's ``data/paper.yaml``
(the fixture's ``cameraman`` meets Table 1's C.man).

TODO: once ``dvc.yaml`` has a working ``smoke`` profile, build this with
``dvc exp run -S profile=smoke`` in a temporary clone instead (issue 3).

Run ``python tests/dashboard_fixture.py DIR`` to write a tree you can open with
``dip dashboard --results DIR``.
"""

from __future__ import annotations

import csv
import json
import shutil
import sys
import time
from pathlib import Path

import numpy as np
import torch

SIZE = 48
ITERATIONS = 20
SNAPSHOTS = (0, 5, 10, 19)
PROFILE = "smoke"
EXPERIMENTS = {
    "denoise_s25": {"task": "denoise", "sigma": 25 / 255},
    "inpaint_p50": {"task": "inpaint", "drop": 0.5},
    "sr_x4": {"task": "sr", "factor": 4},
}
IMAGES = ("cameraman", "astronaut")  # scikit-image's camera and astronaut
PAPER_YAML = Path(__file__).resolve().parents[1] / "data" / "paper.yaml"  # the paper's numbers, as the repository has them


def _clean(name: str) -> np.ndarray:
    from skimage import data, transform

    img = getattr(data, {"cameraman": "camera"}.get(name, name))()
    return transform.resize(img, (SIZE, SIZE), anti_aliasing=True).astype(np.float32)


def _baselines(task: str, obs: np.ndarray, mask: np.ndarray | None, factor: int, sigma: float) -> dict[str, tuple[np.ndarray, dict]]:
    from PIL import Image
    from skimage import restoration

    from dip.metrics import to_uint8

    channel_axis = -1 if obs.ndim == 3 else None
    if task == "denoise":
        return {
            "tv": (restoration.denoise_tv_chambolle(obs, weight=0.1, channel_axis=channel_axis), {"weight": 0.1}),
            "nlm": (restoration.denoise_nl_means(obs, h=0.8 * sigma, sigma=sigma, fast_mode=True, channel_axis=channel_axis), {"h": 0.8 * sigma}),
        }
    if task == "inpaint":
        assert mask is not None
        return {"biharmonic": (restoration.inpaint_biharmonic(obs, 1 - mask, channel_axis=channel_axis), {})}
    h, w = obs.shape[:2]
    out = {}
    for name, rs in (("bicubic", Image.Resampling.BICUBIC), ("lanczos", Image.Resampling.LANCZOS)):
        out[name] = (np.asarray(Image.fromarray(to_uint8(obs)).resize((w * factor, h * factor), rs)).astype(np.float32) / 255, {"factor": factor})
    return out


def build(root: Path, *, with_metrics: bool = True, seeds: tuple[int, ...] = (0,)) -> Path:
    """Write ``data/``, ``results/``, ``baselines/`` and (unless told not to) ``metrics/`` under ``root``."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny tensors: one thread is fastest, and robust on a busy machine
    try:
        return _build(Path(root), with_metrics, seeds)
    finally:
        torch.set_num_threads(threads)


def _build(root: Path, with_metrics: bool, seeds: tuple[int, ...]) -> Path:
    from dip.fit import FitConfig
    from dip.io import load_image, save_array, save_image, save_json
    from dip.metrics import quality, to_uint8
    from dip.network import NetConfig
    from dip.operators import Denoising, Inpainting, SuperResolution, make_operator
    from pipeline.restore import restore, write_curve

    if PAPER_YAML.is_file():
        (root / "data").mkdir(parents=True, exist_ok=True)
        shutil.copyfile(PAPER_YAML, root / "data" / "paper.yaml")
    save_json(root / "data" / "profile.json", {"requested": PROFILE, "profile": PROFILE, "device": "cpu", "device_name": "test CPU"})
    per_image: list[dict] = []
    curves: list[dict] = []
    for exp, spec in EXPERIMENTS.items():
        task = spec["task"]
        factor = int(spec.get("factor", 1))
        protocol, shave = ("sr", factor) if task == "sr" else ("rgb", 0)
        for k, name in enumerate(IMAGES):
            gt = _clean(name)
            gen = torch.Generator().manual_seed(k)
            corr = root / "data" / "corrupted" / exp / name
            mask = None
            if task == "denoise":
                obs = Denoising.corrupt(torch.from_numpy(gt), spec["sigma"], gen).numpy()
            elif task == "inpaint":
                mask = Inpainting.random_mask(gt.shape[:2], spec["drop"], gen).numpy()
                obs = gt * (mask[..., None] if gt.ndim == 3 else mask)
                save_image(corr / "mask.png", mask)
            else:
                obs = SuperResolution.corrupt(to_uint8(gt), factor).astype(np.float32) / 255
            save_image(corr / "ground_truth.png", gt)
            save_array(corr / "observation.npy", obs.astype(np.float32))
            save_image(corr / "observation.png", obs)
            level = {k2: v for k2, v in spec.items() if k2 != "task"}
            save_json(corr / "meta.json", {"experiment": exp, "task": task, "image": name, "set": "embedded", **level, "seed": k, "size": list(gt.shape[:2])})
            gt8 = load_image(corr / "ground_truth.png")
            op = make_operator(task, mask=torch.from_numpy(mask) if mask is not None else None, factor=factor)
            naive = op.naive_estimate(torch.from_numpy(obs[None, None] if obs.ndim == 2 else obs.transpose(2, 0, 1)[None].copy()))
            from dip.io import to_numpy

            q_in = quality(gt8, to_numpy(naive), protocol, shave)
            for seed in seeds:
                per_image.append({"experiment": exp, "image": name, "method": "input", "seed": seed, **q_in, "seconds": 0.0})
                net = NetConfig.from_dict({"levels": 3, "width": 8, "skip": 2, "input_depth": 8})
                fit = FitConfig(iterations=ITERATIONS, lr=0.01, reg_noise_std=1 / 30, seed=seed)
                if task == "denoise":
                    fit.exp_weight, fit.early_stop, fit.es_window, fit.es_patience = 0.9, True, 4, 4
                run_dir = root / "results" / exp / name / f"seed_{seed}"
                record = restore(
                    op, obs, run_dir, net, fit, ground_truth=gt8, protocol=protocol, shave=shave, device="cpu",
                    log_every=2, snapshots=SNAPSHOTS, overwrite=True,
                    extra={"profile": PROFILE, "experiment": exp, "image": name},
                )
                q = quality(gt8, load_image(run_dir / "restored.png"), protocol, shave)
                per_image.append({"experiment": exp, "image": name, "method": "dip", "seed": seed, **q, "seconds": record["wall_seconds"]})
                with open(run_dir / "curve.csv") as fh:
                    for row in csv.DictReader(fh):
                        curves.append({"experiment": exp, "image": name, "seed": seed, **row})
            for method, (est, params) in _baselines(task, obs, mask, factor, float(spec.get("sigma", 0))).items():
                t0 = time.perf_counter()
                path = root / "baselines" / exp / name / f"{method}.png"
                save_image(path, np.clip(est, 0, 1))
                save_json(path.with_suffix(".json"), {"method": method, "params": params, "seconds": round(time.perf_counter() - t0, 4)})
                q = quality(gt8, load_image(path), protocol, shave)
                per_image.append({"experiment": exp, "image": name, "method": method, "seed": 0, **q, "seconds": 0.0})
    if with_metrics:
        _write_metrics(root, per_image, curves)
    return root


def _write_metrics(root: Path, per_image: list[dict], curves: list[dict]) -> None:
    import pandas as pd

    m = root / "metrics"
    m.mkdir(parents=True, exist_ok=True)
    df = pd.DataFrame(per_image).assign(profile=PROFILE, device="cpu")
    df[["experiment", "image", "method", "seed", "psnr", "ssim", "seconds", "profile", "device"]].to_csv(m / "per_image.csv", index=False)
    cols = ["experiment", "image", "seed", "iteration", "loss", "psnr_obs", "psnr_gt", "ssim_gt"]
    pd.DataFrame(curves).reindex(columns=cols).to_csv(m / "curves.csv", index=False)
    means = df.groupby(["experiment", "method"])[["psnr", "ssim"]].mean().round(4)
    summary: dict = {}
    for (exp, method), row in means.iterrows():
        summary.setdefault(exp, {})[method] = {"psnr": row["psnr"], "ssim": row["ssim"]}
    (m / "summary.json").write_text(json.dumps({"profile": PROFILE, "experiments": summary}, indent=2))
    lines = [f"# Report (profile {PROFILE})", "", "Paper columns left out: profile `smoke` is not the paper's setting.", ""]
    for exp, methods in summary.items():
        lines.append(f"## {exp}\n\n| method | PSNR | SSIM |\n|---|---|---|")
        lines += [f"| {k} | {v['psnr']:.2f} | {v['ssim']:.3f} |" for k, v in methods.items()]
        lines.append("")
    (m / "report.md").write_text("\n".join(lines))


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    print(build(Path(sys.argv[1] if len(sys.argv) > 1 else "dashboard-fixture")))
