"""How large the published bundle of a complete paper profile would be under the bundle policy
(``Policy`` of pipeline/outputs/policy.py): the count behind docs/publishing.md.

It corrupts the paper profile's images (from the mirror, as ``dip corrupt`` does), writes a
stand-in workspace in which every fit's ``restored.png`` and every snapshot is its ground truth's
PNG (the observation's where there is none), every baseline PNG too, and ``run.json`` /
``curve.csv`` have the paper's settings and the right number of rows; then ``dip publish`` merges
it with the real code and the size of each kind of file is reported. DIP's outputs are smoother
than the ground truths, so their PNGs are smaller: the count is an upper bound.

    DIP_MIRROR=../shared/images python benchmarks/bundle_size.py [--seeds 3] [--out FILE.json]
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import math
import os
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def stand_in_workspace(root: Path, seeds: int) -> None:
    """The paper profile's corrupted cases, and stand-in fits and baselines (see the module's docstring)."""
    from pipeline import layout
    from pipeline.files import read_json, save_json
    from pipeline.stages.baselines import methods_for
    from pipeline.execution.fits import write_curve
    from pipeline.images.manifest import DEFAULT_MANIFEST, load_manifest
    from pipeline.settings import DEFAULT_PARAMS, PROFILE_FILE, active_profile, job_settings, load_params
    from pipeline.stages.corrupt import corrupt_all
    from pipeline.stages.fetch import FetchOptions, fetch_all, mirror_from

    tree = layout.Tree(root)
    p = load_params(REPO / DEFAULT_PARAMS)
    res = {"requested": "paper", "profile": "paper", "device": "cuda", "device_name": "stand-in"}
    save_json(root / PROFILE_FILE, res)
    prof = active_profile(p, res)
    manifest = load_manifest(REPO / DEFAULT_MANIFEST)
    specs = list(dict.fromkeys(s for e in prof.experiments for s in prof.specs(e)))
    fetch_all(manifest, specs, tree.images, FetchOptions(mirror=mirror_from(os.environ.get("DIP_MIRROR")), timeout=30, retries=1))
    by_task = {e.id if e.is_figure else e.task: manifest.select([e.image] if e.is_figure else prof.image_specs(e.task)) for e in prof.experiments}
    corrupt_all([str(e) for e in p["experiments"]], prof, by_task, tree.images, tree.corrupted, 0)
    for exp in prof.experiments:
        info = read_json(tree.corrupted_of(exp.id).record)
        for image in info["images"]:
            case = tree.case(exp.id, image)
            scored = case.ground_truth.is_file()
            picture = case.ground_truth if scored else case.observation_png
            for seed in range(seeds):
                settings = job_settings(exp, prof, seed, "cuda")
                out = tree.run(exp.id, image, seed)
                out.snapshots.mkdir(parents=True)
                out.restored.write_bytes(picture.read_bytes())
                for i in settings.snapshots:
                    out.snapshot(i).write_bytes(picture.read_bytes())
                n = settings.fit.iterations
                rows = [{"iteration": i, "loss": 1e-3 * math.exp(-i / n) + 1.234567e-4, "psnr_obs": 28.123456 + i / n,
                         **({"psnr_gt": 27.654321 + i / n, "ssim_gt": 0.8123456} if scored else {})}
                        for i in range(0, n + 1, prof.log_every)]
                write_curve(out.curve, rows)
                perfect = {"psnr": math.inf, "ssim": 1.0}
                record = {"task": exp.task, "net": settings.net.to_dict(), "fit": dataclasses.asdict(settings.fit), "seed": seed, "device": "cuda",
                          "device_name": "stand-in", "versions": {"dip": "0", "torch": "2.5.1+cu124", "numpy": "2", "python": "3.11"},
                          "started": "2026-01-01T00:00:00Z", "wall_seconds": 123.456, "iterations_run": n, "early_stop_iteration": None,
                          "backtracks": 0, "image_size": read_json(case.meta)["size"], "loop": "graph",
                          "estimate": "averaged" if exp.task == "denoise" else "final", "engine": "local", "group_size": 1,
                          "experiment": exp.id, "image": image, "set": "", "profile": "paper", "settings_hash": "0" * 64,
                          "fit_key": hashlib.sha256(json.dumps([exp.id, image, seed]).encode()).hexdigest()}
                if scored:
                    record["metrics"] = {"input": {"psnr": 20.123456789, "ssim": 0.512345678}, "final": perfect, "restored": perfect,
                                         **({"averaged": perfect} if exp.task == "denoise" else {})}
                save_json(out.run_json, record)
            for method in methods_for(exp.task, p.get("baselines") or {}, info) if scored else []:
                baselines = tree.baselines_of(exp.id)
                baselines.png(image, method).parent.mkdir(parents=True, exist_ok=True)
                baselines.png(image, method).write_bytes(picture.read_bytes())
                save_json(baselines.record(image, method), {"method": method, "params": {}, "seconds": 12.345})


def main() -> None:
    from pipeline import layout
    from pipeline.outputs.publish import size_category, publish
    from pipeline.settings import DEFAULT_PARAMS

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, default=1, help="seeds per image (further seeds keep only their numbers)")
    parser.add_argument("--out", type=Path, help="also write the count as JSON here")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        ws = Path(tmp) / "workspace"
        stand_in_workspace(ws, args.seeds)
        m = publish([ws], Path(tmp) / layout.PUBLISHED / "paper-count", max_bytes=10**10,
                    params=REPO / DEFAULT_PARAMS, paper=REPO / "data" / "paper.yaml")["manifest"]
    kinds: dict[str, list[int]] = {}
    for rel, e in m["files"].items():
        k = kinds.setdefault(size_category(rel), [0, 0])
        k[0], k[1] = k[0] + 1, k[1] + e["bytes"]
    kinds[layout.BUNDLE_MANIFEST] = [1, m["total_bytes"] - sum(e["bytes"] for e in m["files"].values())]
    print(f"paper profile, {len(m['fits'])} fits ({args.seeds} seed(s) per image), policy {json.dumps(m['policy'])}")
    for kind, (n, size) in sorted(kinds.items(), key=lambda kv: -kv[1][1]):
        print(f"  {kind:42s} {n:5d} files {size / 1e6:7.2f} MB")
    print(f"  {'total':42s} {len(m['files']) + 1:5d} files {m['total_bytes'] / 1e6:7.2f} MB (limit 15 MB)")
    if args.out:
        import PIL

        args.out.write_text(json.dumps({"command": f"python benchmarks/bundle_size.py --seeds {args.seeds}", "pillow": PIL.__version__, "seeds": args.seeds, "fits": len(m["fits"]), "policy": m["policy"], "total_bytes": m["total_bytes"],
                                        "kinds": {k: {"files": n, "bytes": b} for k, (n, b) in kinds.items()}}, indent=2) + "\n")


if __name__ == "__main__":
    main()
