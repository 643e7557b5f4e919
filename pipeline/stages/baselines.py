"""The ``baselines`` stage (``dip baselines EXP``): the classical methods of
:mod:`pipeline.classical` on exactly the corrupted inputs DIP sees.

It writes ``baselines/<exp>/<image>/<method>.png`` and ``<method>.json``
(``{"method", "params", "seconds"}``); PSNR/SSIM are computed by ``dip evaluate`` like DIP's.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable

from dip.io import atomic_directory, save_image, save_json
from pipeline.classical import method_params, methods_for, run_baseline
from pipeline.layout import load_case


def run_experiment_baselines(
    corrupted: Path, out_dir: Path, config: dict[str, Any], progress: Callable[[str], None] | None = None
) -> dict[str, int]:
    """Every configured baseline on every image of one experiment; rebuilds ``out_dir`` atomically."""
    info = json.loads((corrupted / "experiment.json").read_text())
    task = info["task"]
    methods = methods_for(task, config, info)
    done = 0
    with atomic_directory(out_dir, overwrite=True) as tmp:
        for name in info["images"]:
            case = load_case(corrupted / name)
            obs, meta = case.observation, case.meta
            if case.mask is not None:
                meta["mask"] = case.mask
            for method in methods:
                params = method_params(method, config)
                estimate, seconds = run_baseline(task, method, obs, meta, params)
                save_image(tmp / name / f"{method}.png", estimate)
                save_json(tmp / name / f"{method}.json", {"method": method, "params": params, "seconds": round(seconds, 3)})
                done += 1
                if progress:
                    progress(f"{name}/{method}")
        save_json(tmp / "baselines.json", {"experiment": info["experiment"], "task": task, "methods": methods, "images": info["images"]})
    return {"runs": done, "images": len(info["images"])}


def stage(experiment: str, params_path: Path, corrupted: Path, out_root: Path) -> dict[str, int]:
    """The ``baselines`` stage (``dip baselines EXPERIMENT``): the classical methods of params.yaml's
    ``baselines:`` for the experiment's task, on its corrupted inputs, with one progress bar."""
    from pipeline.profiles import load_params, parse_experiment
    from pipeline.execution.progress import make_progress

    p = load_params(params_path)
    parse_experiment(experiment, p.get("figures"))
    if not (corrupted / experiment / "experiment.json").is_file():
        raise FileNotFoundError(f"{corrupted / experiment}: no corrupted inputs; run `dip corrupt` (the corrupt stage) first")
    config = p.get("baselines") or {}
    with make_progress() as progress:
        info = json.loads((corrupted / experiment / "experiment.json").read_text())
        methods = methods_for(info["task"], config, info)
        bar = progress.add_task(f"baselines {experiment}", total=len(info["images"]) * len(methods), status="")
        return run_experiment_baselines(corrupted / experiment, out_root / experiment, config,
                                        progress=lambda what: progress.update(bar, advance=1, status=what))
