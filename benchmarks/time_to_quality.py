"""Time to quality: what ES-WMV early stopping saves and costs on quick-style runs.

One run per task on a scikit-image bundled image at 128×128 with the ``quick`` profile's
settings (``profiles.quick`` of params.yaml: 32-channel network, its iterations), run to the end. A callback records the
PSNR of every output against the ground truth and feeds the same :class:`WindowedVariance`
ES-WMV uses; the stopping rule (stop once the windowed variance has not reached a new minimum for
``patience`` iterations, return the output at the minimum) is then applied to that history for a
few patiences — exactly what ``FitConfig(early_stop=True)`` would have returned, without one run
per patience. The paper-scale patience (1000) exceeds the quick runs' length, so shorter ones
are shown.

Run: ``flock /tmp/dip-heavy.lock python benchmarks/time_to_quality.py [--size 128] [--json out.json]``
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch
from skimage import data, transform

from dip import Denoising, Fitter, Inpainting, SuperResolution
from dip.early_stopping import WindowedVariance
from dip.io import to_numpy
from dip.metrics import psnr
from pipeline.settings import preset_configs


def tasks(size: int) -> dict:
    gen = torch.Generator().manual_seed(0)
    camera = transform.resize(data.camera(), (size, size), anti_aliasing=True).astype(np.float32)
    astronaut = transform.resize(data.astronaut(), (size, size), anti_aliasing=True).astype(np.float32)
    cam_t = torch.from_numpy(camera)[None, None]
    noisy = Denoising.corrupt(cam_t, 25 / 255, gen)
    mask = Inpainting.random_mask((size, size), 0.5, gen)
    holes = Inpainting.corrupt(cam_t, mask)
    sr_gt = astronaut
    low = SuperResolution.corrupt((sr_gt * 255).round().astype(np.uint8), 4)
    low_t = torch.from_numpy(low.astype(np.float32) / 255).permute(2, 0, 1)[None]
    return {
        "denoise σ=25": ("denoise", Denoising(), noisy, camera, "rgb", 0),
        "inpaint 50%": ("inpaint", Inpainting(mask), holes, camera, "rgb", 0),
        "sr ×4": ("sr", SuperResolution(4), low_t, sr_gt, "sr", 4),
    }


def es_rule(seen: list[int], history: list[float], window: int, patience: int, iterations: int) -> tuple[int, int]:
    """Replay of ``FitConfig(early_stop=True)``: (iteration at the variance minimum, iterations
    run). ``seen`` are the iterations whose output the tracker got (backtracked iterations are
    skipped by the loop, as here); ``history[k]`` is the VAR after ``seen[k + window - 1]``."""
    best, best_i = float("inf"), -1
    for k, i in enumerate(seen):
        if k >= window - 1:
            var = history[k - window + 1]
            if var < best:
                best, best_i = var, i
        if best_i >= 0 and (i + 1) % window == 0 and i - best_i >= patience:
            return best_i, i + 1
    return best_i, iterations


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--window", type=int, default=50)
    ap.add_argument("--patience", type=int, nargs="+", default=[100, 200, 400])
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    torch.set_num_threads(2)
    rows = []
    for name, (task, op, y, gt, protocol, shave) in tasks(args.size).items():
        _, net_cfg, cfg = preset_configs("quick", task, device="cpu")
        psnrs: dict[int, float] = {}
        seen: list[int] = []
        es = WindowedVariance(args.window, 10**9)

        def watch(step, psnrs=psnrs, seen=seen, es=es, gt=gt, protocol=protocol, shave=shave, n=cfg.iterations) -> None:
            if step.iteration >= n:  # the final notification (f(z) without input noise)
                return
            psnrs[step.iteration] = psnr(gt, to_numpy(step.output), protocol, shave)
            seen.append(step.iteration)
            es.update(step.iteration, step.output)
            es.record()

        fitter = Fitter(net_cfg, op, y, cfg, device="cpu")
        fitter.add_callback(watch, every=1)
        t0 = time.perf_counter()
        result = fitter.run()
        seconds = time.perf_counter() - t0
        es.should_stop(cfg.iterations)
        # What a full run returns (FitResult.best without ES: the average if enabled, else f(z)).
        end = psnr(gt, to_numpy(result.best), protocol, shave)
        peak_i = max(psnrs, key=psnrs.get)
        for patience in args.patience:
            best_i, ran = es_rule(seen, es.history, args.window, patience, cfg.iterations)
            es_psnr = psnrs[best_i] if best_i >= 0 else None
            rows.append(
                {
                    "task": name,
                    "iterations": cfg.iterations,
                    "window": args.window,
                    "patience": patience,
                    "es_iteration": best_i,
                    "iterations_run": ran,
                    "saved_pct": round(100 * (1 - ran / cfg.iterations), 1),
                    "psnr_end": round(end, 2),
                    "psnr_es": round(es_psnr, 2) if es_psnr is not None else None,
                    "delta_db": round(es_psnr - end, 2) if es_psnr is not None else None,
                    "psnr_peak": round(psnrs[peak_i], 2),
                    "peak_iteration": peak_i,
                    "backtracks": result.backtracks,
                    "seconds_full_run": round(seconds, 1),
                }
            )
        print(f"{name}: {cfg.iterations} iterations in {seconds:.0f} s ({torch.get_num_threads()} threads), "
              f"end {end:.2f} dB, peak {psnrs[peak_i]:.2f} dB at {peak_i}, {result.backtracks} backtracks", flush=True)
    print("\n| task | iterations | ES window / patience | ES stops after | iterations saved | PSNR of full run's result | PSNR of ES result (its iteration) | Δ dB | best PSNR seen (iteration) |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        delta = f"{r['delta_db']:+.2f}" if r["delta_db"] is not None else "–"
        print(f"| {r['task']} | {r['iterations']} | {r['window']} / {r['patience']} | {r['iterations_run']} | "
              f"{r['saved_pct']} % | {r['psnr_end']} | {r['psnr_es']} (it. {r['es_iteration']}) | "
              f"{delta} | {r['psnr_peak']} ({r['peak_iteration']}) |")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(rows, fh, indent=2)


if __name__ == "__main__":
    main()
