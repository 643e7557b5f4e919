"""``dip run``, the stage: plan an experiment's jobs, prune stale results, run the rest, resumable.

The jobs are :class:`pipeline.execution.keys.Fit` values (their hashes: :mod:`pipeline.execution.keys`; how
one is set up: :mod:`pipeline.execution.job`); where they run is an
engine of :mod:`pipeline.execution.engines` (in-process or Dask). :func:`run_experiment` skips jobs whose
``run.json`` ``settings_hash`` is unchanged (:func:`pipeline.execution.keys.is_done`), so an interrupted run
resumes where it stopped.

One process at a time writes an experiment's results: a second ``dip run`` of the same experiment
into the same folder stops at once with one line naming the first (:func:`pipeline.files.output_lock`;
the operating system releases the lock of a killed run). Temporary folders of killed runs are
removed by the next run (:func:`pipeline.files.clean_leftovers`); a running process's never are.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Callable

from pipeline import layout
from pipeline.execution.keys import Fit, case_key, is_done
from pipeline.execution.progress import fits_bar
from pipeline.files import clean_leftovers, output_lock, read_json, remove_output, save_json
from pipeline.settings import EngineConfig, Profile, active_profile, job_settings, load_params, parse_experiment, read_resolution

if TYPE_CHECKING:
    from pipeline.execution.engines import Engine


def plan(exp_id: str, corrupted: Path, out_root: Path, profile: Profile, seeds: list[int], device: str) -> list[Fit]:
    """The jobs of an experiment: every image of ``corrupted/<exp>`` × every seed."""
    exp = profile.experiment(exp_id)
    cases, runs = layout.ExperimentDir(corrupted), layout.ExperimentDir(out_root)
    record = cases.record
    info = read_json(record)
    if not isinstance(info, dict) or not isinstance(info.get("images"), list):
        raise ValueError(f"{record}: not an experiment record of `dip corrupt`; run `dvc repro` (or `dip corrupt`) again")
    for image in info["images"]:  # a name becomes a folder of results/: never a path
        if not isinstance(image, str) or Path(image).name != image or image.startswith("."):
            raise ValueError(f"{record}: image {image!r} is not a plain name; run `dvc repro` (or `dip corrupt`) again")
    if info.get("profile") != profile.name:
        raise ValueError(f"{corrupted} was made for profile {info.get('profile')!r}, not {profile.name!r}; run `dvc repro`")
    jobs = []
    for image in info["images"]:
        for seed in seeds:
            case, settings = cases.case(image).path, job_settings(exp, profile, int(seed), device)
            jobs.append(Fit(case, runs.run(image, seed).path, settings, int(seed), image, case_key(case, settings)))
    return jobs


def prune(out_root: Path, jobs: list[Fit]) -> None:
    """Remove result folders (images, seeds) that the plan does not contain, and what killed runs
    left (:func:`pipeline.files.clean_leftovers`); only folders that dip wrote are removed, never other
    files, and never a temporary folder (hidden) of a process that is still running."""
    wanted = {j.out_dir for j in jobs}
    images = {j.out_dir.parent for j in jobs}
    if not out_root.is_dir():
        return
    clean_leftovers(out_root)
    for image_dir in out_root.iterdir():
        if not image_dir.is_dir() or image_dir.is_symlink() or image_dir.name.startswith("."):
            continue
        clean_leftovers(image_dir)
        for seed_dir in image_dir.iterdir():
            if seed_dir not in wanted and not seed_dir.name.startswith("."):
                remove_output(seed_dir)
        if image_dir not in images and not any(image_dir.iterdir()):
            image_dir.rmdir()


def run_experiment(exp_id: str, corrupted: Path, out_root: Path, profile: Profile, seeds: list[int], device: str,
                   on_job: Callable[[Fit, str], None] | None = None, engine: Engine | None = None) -> dict[str, int]:
    """Run (or resume) every job of ``exp_id`` on ``engine`` (default: in-process), with one
    progress bar and ETA over the iterations of all jobs.

    Returns ``{"run": n, "reused": m}``. Results are identical whichever engine runs them. Torch is
    loaded only when a job has to run (the engines import it).
    """
    jobs = plan(exp_id, corrupted, out_root, profile, seeds, device) if profile.is_active(exp_id) else []
    out_root.mkdir(parents=True, exist_ok=True)
    with output_lock(out_root, inside=True):
        stats = _run_locked(exp_id, out_root, profile, jobs, on_job, engine)
    return stats


def _run_locked(exp_id: str, out_root: Path, profile: Profile, jobs: list[Fit], on_job: Callable[[Fit, str], None] | None,
                engine: Engine | None) -> dict[str, int]:
    prune(out_root, jobs)
    todo = [j for j in jobs if not is_done(j.source, j.out_dir, j.settings)]
    if todo and engine is None:
        from pipeline.execution.engines import LocalEngine

        engine = LocalEngine()
    for job in jobs:
        if job not in todo and on_job:
            on_job(job, "reused")
    total = sum(j.settings.fit.iterations for j in jobs)
    done = total - sum(j.settings.fit.iterations for j in todo)
    with fits_bar(f"{exp_id} ({profile.name})", total, done, status=f"{len(jobs) - len(todo)} reused") as bar:

        def advance(job: Fit, iteration: int, loss: float) -> None:
            bar.tick(job.out_dir, iteration, loss, name=f"{job.image} seed {job.seed}")

        for job, _record in (engine.run(todo, advance) if engine is not None else ()):
            bar.finish(job.out_dir, job.settings.fit.iterations)
            if on_job:
                on_job(job, "run")
    save_json(layout.ExperimentDir(out_root).record, layout.results_experiment(
        exp_id, profile.name, profile.is_active(exp_id), [j.image for j in jobs], [j.seed for j in jobs]))
    return {"run": len(todo), "reused": len(jobs) - len(todo)}


def stage(exp_id: str, params_path: Path, profile_file: Path, corrupted: Path, out_root: Path) -> dict[str, object]:
    """The ``fit`` stage (``dip run EXPERIMENT``): :func:`run_experiment` on params.yaml's
    seeds and engine for the resolved profile. Returns its counts (``run``, ``reused``), the
    engine's description (``engine``), the profile's name and whether ``exp_id`` is active in it.
    An experiment whose fits are all finished starts no engine and loads no torch."""
    p = load_params(params_path)
    parse_experiment(exp_id, p.get("figures"))
    res = read_resolution(profile_file)
    cfg = EngineConfig.from_params(p.get("engine"))
    prof = active_profile(p, res)
    seeds = [int(s) for s in p.get("seeds", [0])]
    jobs = plan(exp_id, corrupted / exp_id, out_root / exp_id, prof, seeds, res["device"]) if prof.is_active(exp_id) else []
    if all(is_done(j.source, j.out_dir, j.settings) for j in jobs):
        stats = run_experiment(exp_id, corrupted / exp_id, out_root / exp_id, prof, seeds, res["device"])
        return {**stats, "engine": "no engine started", "profile": prof.name, "active": prof.is_active(exp_id)}
    from pipeline.execution.engines import make_engine

    with make_engine(cfg, res["device"]) as engine:
        stats = run_experiment(exp_id, corrupted / exp_id, out_root / exp_id, prof, seeds, res["device"], engine=engine)
        where = engine.describe()
    return {**stats, "engine": where, "profile": prof.name, "active": prof.is_active(exp_id)}
