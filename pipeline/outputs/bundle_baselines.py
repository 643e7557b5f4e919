"""``dip publish-baselines BUNDLE``: the classical baselines (BM3D, NLM, TV, biharmonic, bicubic,
Lanczos) on the CPU for a bundle's images, on exactly the inputs its fits used.

The GPU run returns no corrupted inputs, only their sha256 (``inputs`` of each fit in the
manifest). So the cases are made again here by the pipeline's own ``fetch`` and ``corrupt``
(the bundle's profile, the checkout's params.yaml and data/manifest.yaml, each case's
``base_seed``), every file is compared with the sha256 its fit recorded, and only if all agree
do the baselines run (:func:`pipeline.stages.baselines.run_experiment_baselines`). Their results
become a part (fits: none, ``baselines``: the images with the inputs they ran on) that
:func:`pipeline.outputs.publish.publish` merges: numbers into ``metrics/``, the PNGs where the
bundle's policy keeps them.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Any, Callable, Sequence

from pipeline import layout
from pipeline.images.manifest import load_manifest
from pipeline.settings import active_profile, load_params
from pipeline.stages.baselines import methods_for, run_experiment_baselines
from pipeline.stages.corrupt import corrupt_all
from pipeline.stages.fetch import FetchOptions, fetch_all, mirror_from
from pipeline.outputs.part_writer import assemble, case_inputs, git_commit
from pipeline.outputs.parts import PROFILE, REL
from pipeline.outputs.publish import check_target, must_pass, publish
from pipeline.outputs.safe import load_json


def pending(bundle: Path, config: dict[str, Any], experiments: Sequence[str] | None = None) -> dict[str, dict[str, Any]]:
    """``{"exp/image": {"inputs", "methods"}}`` of the bundle's images (first seed's inputs) that
    have a ground truth and lack some of the baselines params.yaml asks for."""
    manifest = check_target(Path(bundle))
    if manifest is None:
        raise ValueError(f"{bundle}: no such bundle; publish some fits into it first")
    todo: dict[str, dict[str, Any]] = {}
    for fid, entry in sorted(manifest["fits"].items(), key=lambda kv: int(kv[0].rsplit("_", 1)[1]), reverse=True):
        exp, image, _ = fid.split("/")
        if experiments and exp not in experiments:
            continue
        info = load_json(bundle, str(REL.corrupted_of(exp).record))
        meta = load_json(bundle, str(REL.case(exp, image).meta))
        methods = methods_for(str(meta["task"]), config, info) if meta.get("ground_truth", True) is not False else []
        have = (manifest.get("baselines") or {}).get(f"{exp}/{image}", {}).get("methods", [])
        if methods and set(methods) - set(have):
            todo[f"{exp}/{image}"] = {"inputs": entry["inputs"], "methods": methods, "meta": meta}
    return todo


def add_baselines(
    bundle: Path,
    *,
    params: Path = Path("params.yaml"),
    images_manifest: Path = Path("data/manifest.yaml"),
    paper: Path = Path("data/paper.yaml"),
    mirror: str | None = None,
    experiments: Sequence[str] | None = None,
    progress: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Run the missing baselines of ``bundle`` (all experiments, or ``experiments``) and merge
    them; returns :func:`~pipeline.outputs.publish.publish`'s result (``ran``: the images).
    ``ValueError`` (one line, nothing added) when a regenerated input differs from its fit's."""
    bundle = Path(bundle)
    p = load_params(params)
    if check_target(bundle) is None:
        raise ValueError(f"{bundle}: no such bundle; publish some fits into it first")
    must_pass(bundle, f"{bundle} does not pass `dip check-bundle`", "restore it before adding baselines")
    todo = pending(bundle, p.get("baselines") or {}, experiments)
    if not todo:
        return {"ran": [], "changed": False}
    resolution = load_json(bundle, PROFILE)
    prof = active_profile(p, resolution)
    by_exp: dict[str, list[str]] = {}
    for key in todo:
        by_exp.setdefault(key.split("/")[0], []).append(key.split("/")[1])
    scratch = Path(tempfile.mkdtemp(prefix="dip-publish-baselines-"))
    try:
        _make_cases(bundle, p, prof, load_manifest(images_manifest), mirror, todo, by_exp, scratch)
        _check_inputs(bundle, prof.name, todo, scratch)
        sources: dict[str, Path] = {PROFILE: bundle / PROFILE}
        part_baselines = {key: {"inputs": job["inputs"], "methods": job["methods"]} for key, job in todo.items()}
        for exp_id, names in by_exp.items():
            sources.update(_run(exp_id, names, todo, scratch, p.get("baselines") or {}, progress))
        assemble(scratch / "baselines-part", {
            "commit": git_commit(Path.cwd()), "machine": {"device": "cpu", "device_name": None, "torch": None, "cuda": None, "hostname": None},
            "profile": resolution["profile"], "params_sha256": None, "experiments": {}, "fits": {}, "baselines": part_baselines,
        }, sources)
        result = publish([scratch / "baselines-part"], bundle, params=params, paper=paper)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return {**result, "ran": sorted(todo)}


def _make_cases(bundle: Path, p: dict[str, Any], prof: Any, images: Any, mirror: str | None, todo: dict[str, dict[str, Any]],
                by_exp: dict[str, list[str]], scratch: Path) -> None:
    """Fetch the images and corrupt them again, as the bundle's fits were, into ``scratch/cases/<exp>``."""
    fetch_cfg = p.get("fetch") or {}
    opts = FetchOptions(mirror=mirror_from(mirror or fetch_cfg.get("mirror")), timeout=float(fetch_cfg.get("timeout", 30)),
                        retries=int(fetch_cfg.get("retries", 3)))
    specs: dict[str, list[str]] = {}  # experiment → the images it needs (set/name)
    for exp_id, names in by_exp.items():
        exp = prof.experiment(exp_id)
        metas = [todo[f"{exp_id}/{n}"]["meta"] for n in names]
        specs[exp_id] = prof.specs(exp) if exp.is_figure else [f"{m['set']}/{m['image']}" for m in metas]
    fetch_all(images, list(dict.fromkeys(s for v in specs.values() for s in v)), scratch / "images", opts, clean=False)
    for exp_id, names in by_exp.items():
        exp = prof.experiment(exp_id)
        entries = images.select([exp.image] if exp.is_figure else specs[exp_id])
        seeds = {int(todo[f"{exp_id}/{n}"]["meta"]["base_seed"]) for n in names}
        if len(seeds) != 1:
            raise ValueError(f"{bundle}: the images of {exp_id} were corrupted with different seeds {sorted(seeds)}")
        corrupt_all([exp_id], prof, {exp.id if exp.is_figure else exp.task: entries}, scratch / "images",
                    scratch / "cases" / exp_id, seeds.pop())


def _check_inputs(bundle: Path, profile: str, todo: dict[str, dict[str, Any]], scratch: Path) -> None:
    """Every case made here is, file for file, the one its fit recorded (``inputs``)."""
    for key, job in sorted(todo.items()):
        exp_id, image = key.split("/")
        case = layout.ExperimentDir(scratch / "cases" / exp_id / exp_id).case(image).path
        if not case.is_dir():
            raise ValueError(f"{key}: the checkout's params.yaml does not make this case for profile {profile!r}; nothing was added")
        made, recorded = case_inputs(case), job["inputs"]
        if layout.OBSERVATION_NPY not in recorded:
            raise ValueError(f"{layout.Tree(bundle).manifest}: fits of {key} record no {layout.OBSERVATION_NPY} in inputs; nothing to verify the baselines against")
        for name, digest in sorted(recorded.items()):
            if made.get(name) != digest:
                raise ValueError(f"{key}: {name} made here differs from the one its fit used (sha256 {str(made.get(name))[:12]} ≠ "
                                 f"{digest[:12]}); the baselines would not run on the bundle's inputs: nothing was added")


def _run(exp_id: str, names: list[str], todo: dict[str, dict[str, Any]], scratch: Path, config: dict[str, Any],
         progress: Callable[[str], None] | None) -> dict[str, Path]:
    """Run the baselines of one experiment's cases; returns the part's files of them (``{path in the part: file}``)."""
    cases, made_here = layout.ExperimentDir(scratch / "cases" / exp_id / exp_id), layout.BaselinesDir(scratch / "baselines" / exp_id)
    run_experiment_baselines(cases.path, made_here.path, config, progress=progress)
    sources: dict[str, Path] = {}
    for name in names:
        case, part_case = cases.case(name), REL.case(exp_id, name)
        sources[str(part_case.meta)], sources[str(part_case.ground_truth)] = case.meta, case.ground_truth
        for method in todo[f"{exp_id}/{name}"]["methods"]:
            sources[str(REL.baselines_of(exp_id).png(name, method))] = made_here.png(name, method)
            sources[str(REL.baselines_of(exp_id).record(name, method))] = made_here.record(name, method)
    return sources
