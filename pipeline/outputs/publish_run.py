"""``dip publish-run``: the prepared GPU run. It fits a profile (the paper's) in the order that
matters to readers, within a time budget, skips what the committed bundle already holds, and
returns the new fits as parts (:mod:`pipeline.outputs.part_writer`) that any checkout merges into
the bundle (docs/gpu-run.md).

1. **Inputs.** The profile is resolved and its images fetched (cache, mirror, URL) and corrupted
   by the pipeline's own stages into a work folder (``data/``, ``results/`` as in docs/LAYOUT.md).
2. **Plan** (:func:`plan`): Table 1 first (``inpaint_p50``, with its gallery images ``peppers``
   and ``man`` first), then SR ×4, colour denoising (σ = 25, then 1/30), SR ×8, then the rest
   (the figures) in params.yaml's order; the first seed of every image of every experiment before
   any further seed.
3. **Resume.** A fit whose :func:`~pipeline.execution.keys.fit_key` the bundle's ``manifest.json``
   holds (``fits[<exp>/<image>/seed_<s>].fit_key``) is skipped; one finished in the work folder by
   an earlier call on the same machine is not fitted again, only returned.
4. **Budget** (:mod:`pipeline.execution.budget`). A fit starts only if its estimate fits in what is
   left: seconds per iteration × iterations + its overhead (building, cuDNN autotuning, graph
   capture, writing) + rewriting its part, each measured in this run. The first fit of a shape
   measures it: its first iterations are the probe (at least one curve interval, up to 200
   iterations), and from then on the fit goes on only while its projected end stays inside the
   budget (checked at each curve point, where the loop reads the device anyway); a fit stopped
   so writes nothing. A shape not yet measured is not even probed when a lower bound from the
   measured ones (:meth:`~pipeline.execution.budget.Costs.lower_bound`) already exceeds what is left.
5. **Parts.** After each finished fit its part is rewritten atomically, so a kill at the time limit
   loses only the fit in flight; ``publish_run.jsonl`` records every planned fit's decision
   (skipped, reused, started, finished, stopped, not started, failed) with its numbers.

The fits run through :func:`pipeline.execution.fits.drive`, the driver of every fit, with
:class:`Budget` as its policy (what starts next, the guard that stops a fit). They run one at a
time by default; ``group`` (the speed step's choice) fits up to N same-shape fits of one
experiment and seed together, grouped and sized as every fit is (:func:`~pipeline.execution.fits.group_size_of`).
"""

from __future__ import annotations

import dataclasses
import json
import os
import platform
import socket
import subprocess
import time
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from dip.fit import FitConfig, canvas_size
from pipeline.files import read_json, save_json
from pipeline.execution.budget import PROBE_ITERATIONS, Clock, Costs, Guard, OutOfTime
from pipeline.execution.fits import Outcome, Restoration, drive
from pipeline.execution.job import setup_case
from pipeline.execution.keys import EXECUTION_FIELDS, Fit, finished, fit_key
from pipeline.execution.threads import set_torch_threads
from pipeline import layout
from pipeline.images.manifest import load_manifest, sha256_bytes
from pipeline.settings import PROFILE_FILE, FitSettings, active_profile, job_settings, load_params
from pipeline.stages.corrupt import corrupt_all
from pipeline.stages.fetch import FetchOptions, fetch_all, mirror_from
from pipeline.stages.resolve import resolve
from pipeline.outputs.part_writer import REL, FinishedFit, PartWriter

PRIORITY = ("inpaint_p50", "sr_x4", "denoise_s25", "denoise_s8.5", "sr_x8")  # then the others, params.yaml's order
GALLERY = {"inpaint_p50": ("peppers", "man")}  # first among their experiment's images; snapshots carried
LOG = "publish_run.jsonl"
PART_LIMIT = 15 * 2**20  # 4 parts and the logs stay under the device tool's 64 MiB, each under its 16 MiB


@dataclass(frozen=True)
class Planned:
    """One fit of the plan: the :class:`~pipeline.execution.keys.Fit` to run (its ``key``: the
    shape, experiment and seed round that may run together) and what the budget and the parts need."""

    fit: Fit
    id: str  # <exp>/<image>/seed_<s>
    exp: str
    round: int  # index of the seed in params.yaml's seeds
    key: str  # fit_key
    shape: str  # what its cost depends on: sizes, task, network and loop settings (not seed, iterations)
    family: str  # the same without the sizes: for the per-pixel lower bound
    pixels: int  # of the network's canvas
    iterations: int
    snapshots: bool


def ordered(exp_ids: list[str]) -> list[str]:
    """The experiments in priority order: :data:`PRIORITY`, then the rest as given."""
    return [e for e in PRIORITY if e in exp_ids] + [e for e in exp_ids if e not in PRIORITY]


def ordered_images(exp_id: str, images: list[str]) -> list[str]:
    """An experiment's images, its gallery images (:data:`GALLERY`) first."""
    first = [i for i in GALLERY.get(exp_id, ()) if i in images]
    return first + [i for i in images if i not in first]


def _shape(case_dir: Path, settings: FitSettings) -> tuple[str, str, int]:
    """(shape, family, canvas pixels) of a fit: what its cost per iteration depends on."""
    case = layout.CaseDir(case_dir)
    meta = json.loads(case.meta.read_text())
    observation = np.load(case.observation_npy, mmap_mode="r").shape
    fit = {k: v for k, v in dataclasses.asdict(settings.fit).items() if k not in ("seed", "iterations")}
    family = json.dumps({"task": meta["task"], "channels": observation[2] if len(observation) == 3 else 1, "net": settings.net.to_dict(),
                         "fit": fit, "log_every": settings.log_every, "device": settings.device}, sort_keys=True, default=str)
    shape = json.dumps({"family": family, "observation": list(observation), "size": meta["size"]}, sort_keys=True)
    h, w = canvas_size(tuple(meta["size"]), settings.net.multiple)  # type: ignore[arg-type]
    return shape, family, h * w


def plan(profile: Any, corrupted: Path, results: Path, seeds: list[int], device: str, execution: dict[str, Any]) -> list[Planned]:
    """Every fit of ``profile``'s active experiments in priority order (module docstring), with
    ``execution`` (FitConfig execution options) applied on top of each fit's settings."""
    jobs: list[Planned] = []
    exp_ids = ordered([e.id for e in profile.experiments])
    for r, seed in enumerate(seeds):
        for exp_id in exp_ids:
            exp = profile.experiment(exp_id)
            cases = layout.ExperimentDir(corrupted / exp_id)
            info = json.loads(cases.record.read_text())
            for image in ordered_images(exp_id, list(info["images"])):
                settings = job_settings(exp, profile, int(seed), device).with_fit(**execution)
                case = cases.case(image).path
                shape, family, pixels = _shape(case, settings)
                fit = Fit(case, layout.ExperimentDir(results / exp_id).run(image, seed).path, settings, int(seed), image,
                          key=json.dumps([shape, exp_id, r]))  # fits of one shape, experiment and seed round run together
                jobs.append(Planned(fit, layout.fit_id(exp_id, image, seed), exp_id, r, fit_key(case, settings), shape, family, pixels,
                                    settings.fit.iterations, snapshots=exp.is_figure or image in GALLERY.get(exp_id, ())))
    return jobs


def published_keys(bundle: Path | None) -> dict[str, str]:
    """``{fit id: fit_key}`` of a bundle's ``manifest.json`` (nothing if the bundle or its manifest
    does not exist yet, or an older bundle lists no ``fits``)."""
    path = layout.Tree(Path(bundle)).manifest if bundle is not None else None
    if path is None or not path.is_file():
        return {}
    try:
        info = read_json(path)  # nesting too deep for Python is a ValueError too
    except ValueError:
        raise ValueError(f"{path}: not a JSON file; restore it from git (git checkout -- {path})") from None
    fits = info.get("fits", {}) if isinstance(info, dict) else None
    if not isinstance(fits, dict):
        raise ValueError(f"{path}: 'fits' is not a mapping of fit ids; restore the bundle from git or pass another --bundle")
    return {str(k): str(v["fit_key"]) for k, v in fits.items() if isinstance(v, dict) and isinstance(v.get("fit_key"), str)}


def load_choice(path: Path | None) -> tuple[dict[str, Any], str, list[str]]:
    """The speed step's choice file → (execution options for FitConfig, engine group, notes on
    what was ignored). Only FitConfig fields of ``dip.fit.EXECUTION_FIELDS`` are applied: they
    change how fast a fit runs, never its numbers (nor its fit key)."""
    if path is None:
        return {}, "1", []
    try:
        choice = read_json(path)
    except (OSError, ValueError) as err:
        raise ValueError(f"--choice {path}: not a readable JSON file ({err.__class__.__name__}); drop --choice or fix the file") from None
    if not isinstance(choice, dict):
        raise ValueError(f"--choice {path}: expected a JSON object with 'fit' and 'group'")
    notes: list[str] = []
    fields = set(FitConfig.__dataclass_fields__)
    fit: dict[str, Any] = {}
    if not isinstance(choice.get("fit") or {}, dict):
        raise ValueError(f"--choice {path}: 'fit' must be an object of FitConfig execution options")
    for name, value in (choice.get("fit") or {}).items():
        if name in EXECUTION_FIELDS and name in fields:
            fit[name] = value
        else:
            notes.append(f"choice fit.{name} ignored: not an execution option of this checkout's FitConfig")
    group = str(choice.get("group", "1")).lower()
    if group != "auto" and not (group.isdigit() and int(group) >= 1):
        raise ValueError(f"--choice {path}: group must be 'auto' or a whole number >= 1, got {choice.get('group')!r}")
    many = choice.get("many")
    if isinstance(many, dict) and many.get("mode") and "many" not in fit:  # how a group runs (dip.fit's `many`, where it has one)
        if "many" in EXECUTION_FIELDS and "many" in fields:
            fit["many"] = many["mode"]
        else:
            notes.append(f"choice many.mode {many['mode']!r} ignored: this checkout's FitConfig has no execution option 'many'")
    try:
        FitConfig.from_dict(fit)  # a bad value is an error now, not in the first fit
    except (TypeError, ValueError) as err:
        raise ValueError(f"--choice {path}: {err}") from None
    return fit, group, notes


def git_commit() -> str | None:
    """``$DIP_COMMIT``, else this checkout's ``git rev-parse HEAD``, else ``None`` (a copy without .git)."""
    if os.environ.get("DIP_COMMIT"):
        return os.environ["DIP_COMMIT"]
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.SubprocessError):
        return None
    return head.stdout.strip() or None if head.returncode == 0 else None


def machine(resolution: dict[str, str]) -> dict[str, Any]:
    return {"device": resolution["device"], "device_name": resolution["device_name"], "torch": torch.__version__,
            "cuda": torch.version.cuda, "hostname": socket.gethostname(), "python": platform.python_version(), "cpu": cpu_name()}


def cpu_name() -> str:
    """The host CPU as provenance: its model name (``/proc/cpuinfo`` where there is one) and core count."""
    model = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text(errors="replace").splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{model}, {os.cpu_count() or '?'} cores"


class Log:
    """``publish_run.jsonl``: one JSON object per line, flushed at once (a kill keeps every line)."""

    def __init__(self, path: Path, echo: Callable[[dict[str, Any]], None] | None = None) -> None:
        self.path, self.echo = path, echo
        path.write_text("")

    def __call__(self, event: str, **fields: Any) -> None:
        line = {"event": event, "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), **fields}
        with open(self.path, "a") as fh:
            fh.write(json.dumps(line, default=str) + "\n")
        if self.echo:
            self.echo(line)


def prepare_inputs(params_path: Path, profile_name: str, work: Path, mirror: str | None, manifest: Path) -> tuple[dict[str, Any], Any, dict[str, str]]:
    """Resolve ``profile_name`` (whatever params.yaml's ``profile`` says), fetch and corrupt its
    images into ``work/data`` with the pipeline's stages; returns (params, profile, resolution)."""
    params = load_params(params_path)
    resolution = resolve(profile_name, params["profiles"], str((params.get("engine") or {}).get("device", "auto")))
    save_json(work / PROFILE_FILE, resolution)
    profile = active_profile(params, resolution)
    images, cfg, m = layout.Tree(work).images, params.get("fetch") or {}, load_manifest(manifest)
    # what the fetch and corrupt stages do (pipeline/stages/fetch.py, corrupt.py: stage), params and manifest read once
    options = FetchOptions(mirror=mirror_from(mirror or cfg.get("mirror")), timeout=float(cfg.get("timeout", 30)), retries=int(cfg.get("retries", 3)))
    fetch_all(m, list(dict.fromkeys(s for e in profile.experiments for s in profile.specs(e))), images, options)
    by_task = {e.id if e.is_figure else e.task: m.select([e.image] if e.is_figure else profile.image_specs(e.task)) for e in profile.experiments}
    corrupt_all([str(e) for e in params["experiments"]], profile, by_task, images, layout.Tree(work).corrupted, int((params.get("corrupt") or {}).get("seed", 0)))
    return params, profile, resolution


def run(
    *, params_path: Path, out: Path, budget: float, bundle: Path | None = None, profile_name: str = "paper", mirror: str | None = None,
    choice: Path | None = None, work: Path = Path(".gpu-results"), manifest: Path = Path("data/manifest.yaml"), commit: str | None = None,
    margin: float = 10.0, part_limit: int = PART_LIMIT, max_parts: int = 4, clock: Clock = time.monotonic,
    echo: Callable[[dict[str, Any]], None] | None = None, seeds: list[int] | None = None,
) -> dict[str, Any]:
    """The publishing run (module docstring): returns ``{"decisions": {decision: count}, "parts": [...],
    "seconds": ...}``. ``budget`` seconds count from the call; ``margin`` of them are kept for the end;
    ``seeds`` replaces params.yaml's ``seeds``."""
    start = clock()
    deadline = start + budget - margin
    out, work = Path(out), Path(work)
    execution, group, notes = load_choice(choice)  # bad input stops the run before it writes anything
    published = published_keys(bundle)
    out.mkdir(parents=True, exist_ok=True)
    log = Log(out / LOG, echo)
    log("start", profile=profile_name, budget_s=budget, margin_s=margin, bundle=str(bundle) if bundle else None,
        published=len(published), execution=execution, group=group, notes=notes)
    params, profile, resolution = prepare_inputs(Path(params_path), profile_name, work, mirror, Path(manifest))
    set_torch_threads(int((params.get("engine") or {}).get("threads", 0)))
    seeds = [int(s) for s in (seeds if seeds is not None else params.get("seeds", [0]))]
    tree = layout.Tree(work)
    jobs = plan(profile, tree.corrupted, tree.results, seeds, resolution["device"], execution)
    writer = part_writer(out, work, profile, resolution, Path(params_path), commit, {"fit": execution, "group": group}, part_limit, max_parts)
    policy = Budget(Costs(), clock, deadline, log, writer)
    log("inputs", device=resolution["device"], device_name=resolution["device_name"], commit=writer.header["commit"], planned=len(jobs),
        seconds=round(clock() - start, 1), left_s=round(deadline - clock(), 1))
    queue = policy.resume(jobs, published)
    try:
        for fit, outcome in drive([p.fit for p in queue], partial(setup_case, extra={"engine": "publish-run"}), group, policy=policy):
            policy.set_up_failed(fit, outcome)
    except KeyboardInterrupt:
        running = [f.id for f in jobs if policy.decisions.get(f.id) == "started"]
        for f in jobs:
            policy.decisions[f.id] = {"started": "interrupted"}.get(policy.decisions.get(f.id, ""), policy.decisions.get(f.id, ""))
        log("interrupted", running=running, note="stopped from outside (a signal or Ctrl+C); every finished fit is in the parts")
        raise
    finally:
        counts: dict[str, int] = {}
        for f in jobs:
            decision = policy.decisions.get(f.id) or "not started"
            counts[decision] = counts.get(decision, 0) + 1
        parts = [{"part": f"{p.name}.tar.gz", "fits": len(p.fits), "bytes": (out / f"{p.name}.tar.gz").stat().st_size} for p in writer.parts]
        summary = {"decisions": counts, "parts": parts, "seconds": round(clock() - start, 1)}
        log("end", **summary, costs=[{"fit": c.first, "group": n, "ms_per_it": round(1e3 * c.rate, 3), "overhead_s": round(c.overhead, 2)}
                                     for (_shape, n), c in policy.costs.known.items()])
    return summary


def part_writer(out: Path, work: Path, profile: Any, resolution: dict[str, str], params_path: Path, commit: str | None,
                execution: dict[str, Any], part_limit: int, max_parts: int) -> PartWriter:
    """The writer of this run's parts, with their header (commit, machine, profile, experiments, execution)."""
    tree = layout.Tree(work)
    experiments = {e: json.loads(tree.corrupted_of(e).record.read_text()) for e in ordered([x.id for x in profile.experiments])}
    header = {"commit": commit or git_commit(), "machine": machine(resolution), "profile": profile.name,
              "params_sha256": _sha256(params_path),
              "experiments": {e: {"task": info["task"], "images": list(info["images"])} for e, info in experiments.items()},
              "execution": execution}
    common = {PROFILE_FILE.as_posix(): work / PROFILE_FILE, **{str(REL.corrupted_of(e).record): tree.corrupted_of(e).record for e in experiments}}
    return PartWriter(out, "part-" + time.strftime("%Y%m%dT%H%M%SZ", time.gmtime()), header, common, part_limit, max_parts)


class Budget:
    """The publishing run's :class:`~pipeline.execution.fits.Policy`: a group starts only if its
    estimate fits in what is left (else fewer together, else its head is not started); a
    :class:`~pipeline.execution.budget.Guard` stops it once its end would pass the deadline;
    each finished fit goes into its part; every decision is logged (module docstring)."""

    stops = (OutOfTime, ValueError, RuntimeError)  # out of time; e.g. out of GPU memory: the next fits may still run

    def __init__(self, costs: Costs, clock: Clock, deadline: float, log: Log, writer: PartWriter) -> None:
        self.costs, self.clock, self.deadline, self.log, self.writer = costs, clock, deadline, log, writer
        self.decisions: dict[str, str] = {}  # fit id → its decision
        self.plan: dict[Path, Planned] = {}  # out folder → the plan's entry
        self.guard: Guard | None = None
        self.t0, self.estimate = 0.0, None  # of the running group

    def resume(self, jobs: list[Planned], published: dict[str, str]) -> list[Planned]:
        """The fits to run: not those the bundle holds (skipped), nor those the work folder holds (returned)."""
        queue = []
        for fit in jobs:
            self.plan[fit.fit.out_dir] = fit
            if published.get(fit.id) == fit.key:
                self.decisions[fit.id] = "skipped"
                self.log("skipped", fit=fit.id, fit_key=fit.key, note="the bundle holds this fit with the same key")
            elif finished(fit.fit.out_dir, "fit_key", fit.key):
                self.decisions[fit.id] = "reused"
                where = self.pack(fit, json.loads(layout.RunDir(fit.fit.out_dir).run_json.read_text()))
                self.log("reused", fit=fit.id, fit_key=fit.key, part=where["part"], note="finished earlier in the work folder: returned, not refitted")
            else:
                queue.append(fit)
        return queue

    def pack(self, fit: Planned, record: dict[str, Any]) -> dict[str, Any]:
        """Add a finished fit to its part; the part's rewriting time is part of what a fit costs."""
        done = FinishedFit(fit.id, fit.exp, fit.fit.image, fit.key, float(record.get("wall_seconds", 0.0)),
                           int(record.get("iterations_run", fit.iterations)), fit.fit.source, fit.fit.out_dir, fit.snapshots)  # type: ignore[arg-type]
        t0 = self.clock()
        where = self.writer.add(done)
        self.costs.pack_s = max(self.costs.pack_s, self.clock() - t0)
        if where["part"] is None:
            self.log("too large", fit=fit.id, note="no part has room for it: it stays in the work folder, and a later run on this machine returns it")
        elif where["kept"] != "all":
            self.log("part full", fit=fit.id, part=where["part"], kept=where["kept"], note="the parts' size limit: its snapshots and final.png are left out")
        return where

    def admit(self, chunk: list[Fit]) -> int:
        """As many of ``chunk`` as fit in the time left (halving the group), or 0: not started."""
        fit, n = self.plan[chunk[0].out_dir], len(chunk)
        while True:
            left = self.deadline - self.clock()
            estimate = self.costs.estimate(fit, n)
            needed = estimate if estimate is not None else self.costs.lower_bound(fit, n)
            if needed <= left and left > 0:
                self.estimate = estimate
                return n
            if n == 1:
                self.decisions[fit.id] = "not started"
                self.log("not started", fit=fit.id, fit_key=fit.key, needs_s=round(needed, 1), left_s=round(left, 1),
                         note=f"needs {'' if estimate is not None else 'at least '}{needed:.1f} s, {max(left, 0):.1f} s left")
                return 0
            n //= 2  # try fewer together

    def start(self, chunk: list[Fit], ready: list[Restoration]) -> None:
        """Watch the group's first fit (the probe of a new shape) with a guard; log each start."""
        fit, n, estimate = self.plan[chunk[0].out_dir], len(chunk), self.estimate
        every = fit.fit.settings.log_every  # type: ignore[union-attr]
        probe = max(every, min(PROBE_ITERATIONS, fit.iterations // 10))
        self.guard = Guard(fit.iterations, self.clock, self.deadline, lambda: self.costs.write_s + self.costs.pack_s, probe)
        ready[0].fitter.add_callback(self.guard, every=every)
        for f in (self.plan[c.out_dir] for c in chunk):
            self.decisions[f.id] = "started"
            self.log("started", fit=f.id, fit_key=f.key, group=n, estimate_s=None if estimate is None else round(estimate, 1),
                     left_s=round(self.deadline - self.clock(), 1), probe=estimate is None)
        self.t0 = self.clock()

    def end(self, chunk: list[Fit], outcomes: list[Outcome], failure: BaseException | None) -> None:
        """Record what the group cost; log and pack each fit (stopped, failed or finished)."""
        planned = [self.plan[c.out_dir] for c in chunk]
        if isinstance(failure, OutOfTime):
            self._stopped(planned, failure)
        elif failure is not None:
            error = " ".join(f"{failure.__class__.__name__}: {failure}".split())[:500]
            for f in planned:
                self.decisions[f.id] = "failed"
                self.log("failed", fit=f.id, error=error)
        else:
            self._finished(planned, outcomes)

    def set_up_failed(self, fit: Fit, outcome: Outcome) -> None:
        """A fit that :func:`drive` could not set up (its inputs): failed."""
        planned = self.plan[fit.out_dir]
        if planned.id not in self.decisions:
            self.decisions[planned.id] = "failed"
            self.log("failed", fit=planned.id, error=str(outcome))

    def _stopped(self, planned: list[Planned], stop: OutOfTime) -> None:
        fit, n, guard = planned[0], len(planned), self.guard
        if stop.rate is not None and guard is not None and guard.marks:
            self.costs.record(fit, n, stop.rate, (guard.marks[0][1] - self.t0) + self.costs.write_s)
        for f in planned:
            self.decisions[f.id] = "stopped"
            self.log("stopped", fit=f.id, needs_s=round(stop.needed, 1), left_s=round(stop.left, 1),
                     ms_per_it=None if stop.rate is None else round(1e3 * stop.rate, 3), note=f"would not finish: {stop}; nothing written")

    def _finished(self, planned: list[Planned], outcomes: list[Outcome]) -> None:
        fit, n, guard, estimate, t0 = planned[0], len(planned), self.guard, self.estimate, self.t0
        seconds = self.clock() - t0
        rate = guard.rate() if guard is not None else None
        if rate is not None and guard is not None:
            self.costs.write_s = max(self.costs.write_s, t0 + seconds - guard.marks[-1][1])
            self.costs.record(fit, n, rate, seconds - fit.iterations * rate)
        for f, outcome in zip(planned, outcomes):
            if isinstance(outcome, Exception):
                self.decisions[f.id] = "failed"
                self.log("failed", fit=f.id, error=str(outcome))
                continue
            where = self.pack(f, outcome)
            self.decisions[f.id] = "finished"
            self.log("finished", fit=f.id, fit_key=f.key, seconds=round(seconds, 2), wall_seconds=outcome.get("wall_seconds"),
                     ms_per_it=None if rate is None else round(1e3 * rate, 3),
                     overhead_s=None if rate is None else round(seconds - fit.iterations * rate, 2),
                     estimate_s=None if estimate is None else round(estimate, 1), part=where["part"], kept=where["kept"],
                     pack_s=where["seconds"], left_s=round(self.deadline - self.clock(), 1))


def _sha256(path: Path) -> str:
    return sha256_bytes(path.read_bytes())
