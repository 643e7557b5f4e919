"""Execution engines for ``dip run``: where each fit runs (:func:`pipeline.execution.fits.drive`
with :func:`pipeline.execution.job.setup_case`, here or in a Dask task).

Both engines follow the :class:`Engine` protocol: they take a list of :class:`pipeline.execution.keys.Fit`
and yield ``(fit, run.json record)`` as each job's output folder is complete, calling
``progress(job, iteration, loss)`` while fits advance; :func:`pipeline.stages.run.run_experiment`
drives either one (resume, progress bar with ETA). Engines import the job, never the stage.

- :class:`LocalEngine` (``engine.kind: local``): in this process, group by group through the driver,
  which writes each folder atomically.
- :class:`DaskEngine` (``engine.kind: dask``): one Dask task per fit on a ``distributed``
  cluster: ``engine.address`` (a running scheduler, e.g. started by dask-jobqueue on SLURM), or
  with no address a ``LocalCluster`` of process workers bound to 127.0.0.1. The driver ships the
  case's input files to the task as bytes; the task fits in a scratch folder on the worker and
  returns the output files as bytes; the **driver** writes them into the results tree
  atomically. Nothing assumes a shared filesystem, a worker that dies mid-fit leaves nothing
  behind (the scheduler reschedules its task, ``retries`` covers exceptions), and each folder is
  written exactly once, by one process. With a CUDA device every task asks for the worker
  resource ``GPU: 1``, so a worker started with ``--resources GPU=1`` runs one fit at a time.

``dask``/``distributed`` are an optional extra (``pip install 'dip-repro[dask]'``), imported only
when the Dask engine is used.
"""

from __future__ import annotations

import tempfile
import uuid
from functools import partial
from pathlib import Path
from typing import Any, Callable, Iterator, Protocol, Sequence, runtime_checkable

from pipeline.files import atomic_directory
from pipeline.execution.job import setup_case
from pipeline.execution.keys import Fit, settings_hash
from pipeline.execution.fits import drive, key_order, run_one
from pipeline.execution.threads import set_torch_threads
from pipeline.settings import EngineConfig, FitSettings

Progress = Callable[[Fit, int, float], None]
DASK_MISSING = "engine.kind=dask needs Dask: pip install 'dip-repro[dask]' (or: pip install 'dask[distributed]')"
PROGRESS_TOPIC = "dip-fit-progress"


@runtime_checkable
class Engine(Protocol):
    """Where the fits of ``dip run`` run; results are identical whichever engine runs them.
    Use it as a context manager: leaving it calls :meth:`close`."""

    name: str

    def run(self, jobs: Sequence[Fit], progress: Progress) -> Iterator[tuple[Fit, dict[str, Any]]]:
        """Run ``jobs``; yield each with its run.json record once its output folder is written."""
        ...

    def describe(self) -> str:
        """One line for the console: where the fits run."""
        ...

    def close(self) -> None:
        """Release what the engine started (a cluster, a client); idempotent."""
        ...

    def __enter__(self) -> "Engine": ...

    def __exit__(self, *exc: object) -> None: ...


def make_engine(cfg: EngineConfig, device: str) -> Engine:
    """The engine ``cfg`` asks for (use it as a context manager: ``close()`` shuts a cluster down)."""
    return DaskEngine(cfg, device) if cfg.kind == "dask" else LocalEngine(cfg.threads, cfg.group)


class LocalEngine:
    """In-process, one job after another (the default)."""

    name = "local"

    def __init__(self, threads: int = 0, group: str = "1") -> None:
        self.group = group
        set_torch_threads(threads)  # with OMP_WAIT_POLICY=PASSIVE (set by `dip`), 0 is fast on a busy CPU too

    def run(self, jobs: Sequence[Fit], progress: Progress) -> Iterator[tuple[Fit, dict[str, Any]]]:
        """Fit the jobs through :func:`pipeline.execution.fits.drive` (fits of one key together,
        sized by ``engine.group``; each set up only when its turn comes and released once written);
        a fit that fails is raised once its group's other folders are written."""
        def tick(fit: Fit, step: Any) -> None:
            progress(fit, int(step.iteration), float(step.loss))

        for fit, outcome in drive(key_order(jobs), partial(setup_case, extra={"engine": self.name}), self.group, on_step=tick):
            if isinstance(outcome, Exception):
                raise outcome
            yield fit, outcome

    def describe(self) -> str:
        return "in-process"

    def close(self) -> None:
        pass

    def __enter__(self) -> "LocalEngine":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# --- Dask -------------------------------------------------------------------------------------

def read_tree(folder: Path) -> dict[str, bytes]:
    """Every file under ``folder`` by its relative POSIX path."""
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def write_tree(folder: Path, files: dict[str, bytes]) -> None:
    for rel, data in files.items():
        path = folder / rel
        if not path.resolve().is_relative_to(folder.resolve()):
            raise ValueError(f"refusing to write outside {folder}: {rel}")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)


def fit_task(case_files: dict[str, bytes], settings: dict[str, Any], threads: int, job_key: str) -> dict[str, Any]:
    """The Dask task: one fit from the case's files and its settings' JSON form
    (:meth:`pipeline.settings.FitSettings.to_json`: plain data on the wire), in a scratch folder on the worker.

    Returns ``{"record": run.json's content, "files": {relative path: bytes}}``; writes nothing
    that outlives the task. Reports progress as worker events on :data:`PROGRESS_TOPIC`.
    """
    set_torch_threads(max(1, threads))  # never torch's default: several workers share the cores
    try:
        from distributed import get_worker

        worker = get_worker()
        scratch = worker.local_directory
    except (ImportError, ValueError):  # called outside a worker (tests, debugging)
        worker, scratch = None, None

    def tick(_fit: Fit, step: Any) -> None:
        if worker is not None:
            worker.log_event(PROGRESS_TOPIC, {"job": job_key, "iteration": int(step.iteration), "loss": float(step.loss)})

    with tempfile.TemporaryDirectory(prefix="dip-fit-", dir=scratch) as tmp:
        case, out = Path(tmp) / "case", Path(tmp) / "out"
        case.mkdir()
        write_tree(case, case_files)
        fit_settings = FitSettings.from_json(settings)
        record = run_one(Fit(case, out, fit_settings, fit_settings.seed), partial(setup_case, extra={"engine": "dask"}), on_step=tick)
        return {"record": record, "files": read_tree(out)}


class DaskEngine:
    """One Dask task per fit; the driver writes the results (see the module's docstring)."""

    name = "dask"

    def __init__(self, cfg: EngineConfig, device: str) -> None:
        try:
            import distributed  # noqa: F401
        except ImportError:
            raise ValueError(DASK_MISSING) from None
        self.cfg, self.device = cfg, device
        self.gpu = str(device).startswith("cuda")
        self.client: Any = None
        self.cluster: Any = None

    def start(self) -> Any:
        """Connect (or start the LocalCluster) on first use: a fully resumed run starts nothing."""
        if self.client is not None:
            return self.client
        from distributed import Client, LocalCluster

        if self.cfg.address:
            self.client = Client(self.cfg.address, timeout="60s")
        else:
            self.cluster = LocalCluster(
                n_workers=self.cfg.n_workers, threads_per_worker=self.cfg.threads_per_worker, processes=True,
                host="127.0.0.1", dashboard_address=self.cfg.dashboard or None,
                resources={"GPU": 1} if self.gpu else None,
            )
            self.client = Client(self.cluster)
        if self.gpu:
            workers = self.client.scheduler_info().get("workers", {}).values()
            if workers and not any(w.get("resources", {}).get("GPU") for w in workers):
                raise ValueError("the device is CUDA but no Dask worker has the resource GPU; start workers with `dask worker ADDRESS --nthreads 1 --resources GPU=1`")
        return self.client

    def describe(self) -> str:
        if self.client is None:
            return "dask (not started)"
        n = len(self.client.scheduler_info().get("workers", {}))
        return f"dask {self.cfg.address or 'LocalCluster'} ({n} workers)"

    def run(self, jobs: Sequence[Fit], progress: Progress) -> Iterator[tuple[Fit, dict[str, Any]]]:
        """One Dask task per job; the driver checks each result's hash and writes its folder."""
        from distributed import as_completed

        if not jobs:
            return
        client = self.start()
        by_key: dict[str, Fit] = {}
        finished: set[str] = set()

        def on_event(event: tuple[float, dict[str, Any]]) -> None:
            msg = event[1]
            job = by_key.get(msg.get("job", ""))
            if job is not None and msg["job"] not in finished:
                progress(job, int(msg["iteration"]), float(msg["loss"]))

        client.subscribe_topic(PROGRESS_TOPIC, on_event)
        futures = {}
        try:
            for job in jobs:
                key = f"dip-fit-{job.source.parent.name}-{job.image}-seed{job.seed}-{uuid.uuid4().hex[:8]}"  # type: ignore[union-attr]
                by_key[key] = job
                fut = client.submit(
                    fit_task, read_tree(job.source),  # type: ignore[arg-type]
                    job.settings.to_json(), self.cfg.threads, key,  # type: ignore[union-attr]
                    key=key, pure=False, retries=self.cfg.retries, resources={"GPU": 1} if self.gpu else None,
                )
                futures[fut] = key
            for fut in as_completed(list(futures)):
                key = futures[fut]
                job = by_key[key]
                result = fut.result()  # raises the task's error once its retries are spent
                finished.add(key)
                record, files = result["record"], result["files"]
                if record.get("settings_hash") != settings_hash(job.source, job.settings):  # type: ignore[arg-type]
                    raise RuntimeError(f"a worker ran different code for {job.out_dir} (settings_hash differs): install the same dip-repro on the workers")
                with atomic_directory(job.out_dir, overwrite=True) as tmp:
                    write_tree(tmp, files)
                fut.release()
                yield job, record
        finally:
            for fut in futures:
                if not fut.done():
                    fut.cancel()
            try:
                client.unsubscribe_topic(PROGRESS_TOPIC)
            except Exception:  # noqa: BLE001 - the client may already be closing
                pass

    def close(self) -> None:
        if self.client is not None:
            self.client.close()
        if self.cluster is not None:
            self.cluster.close()
        self.client = self.cluster = None

    def __enter__(self) -> "DaskEngine":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
