"""The Dask engine on a real LocalCluster on loopback: same results as the local engine, a killed
worker's fit is retried without losing or duplicating results, and `dvc exp run -S
engine.kind=dask` reproduces the local metrics of the smoke profile exactly (in the same run, an
architecture changed by a parameter refits its experiment alone)."""

from __future__ import annotations

import csv
import json
import os
import shutil
import signal
import sys
import threading
import time
from pathlib import Path

import pytest
import yaml

from conftest import run_in, tiny_profile
from pipeline.stages.corrupt import corrupt_all
from pipeline.execution.engines import DASK_MISSING, DaskEngine, LocalEngine, make_engine
from pipeline.images.manifest import ImageEntry
from pipeline.settings import EngineConfig, Profile
from pipeline.stages.run import run_experiment

import distributed  # noqa: E402 - the dev extra: missing is a failure, not a skip

TINY = tiny_profile(6)


@pytest.fixture(scope="module")
def cluster() -> "distributed.LocalCluster":
    """Two one-thread process workers on 127.0.0.1, no dashboard (shut down after the module)."""
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1", dashboard_address=None) as c:
        yield c


@pytest.fixture
def corrupted(tmp_path: Path, tiny_images: tuple[Path, list[ImageEntry]]) -> Path:
    root, entries = tiny_images
    out = tmp_path / "corrupted"
    corrupt_all(["denoise_s25", "inpaint_p50"], Profile("t", TINY), {"denoise": entries, "inpaint": entries}, root, out, seed=0)
    return out


def files(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file() and p.name != "run.json"}


def records(root: Path) -> dict[str, dict]:
    drop = ("started", "wall_seconds", "engine")
    return {p.relative_to(root).as_posix(): {k: v for k, v in json.loads(p.read_text()).items() if k not in drop} for p in sorted(root.rglob("run.json"))}


@pytest.mark.integration
def test_dask_equals_local(tmp_path: Path, corrupted: Path, cluster: "distributed.LocalCluster") -> None:
    """Same seeds → byte-identical images, curves and snapshots, equal run.json (minus timings)."""
    prof, seeds = Profile("t", TINY), [0, 1]
    engine = make_engine(EngineConfig(kind="dask", address=cluster.scheduler_address), "cpu")
    with engine:
        for exp in TINY["experiments"]:
            log: list[tuple[str, str]] = []
            stats = run_experiment(exp, corrupted / exp, tmp_path / "dask" / exp, prof, seeds, "cpu", lambda j, s: log.append((j.out_dir.as_posix(), s)), engine=engine)
            assert stats == {"run": 4, "reused": 0} and len(set(log)) == 4
            run_experiment(exp, corrupted / exp, tmp_path / "local" / exp, prof, seeds, "cpu", engine=LocalEngine(1))
        # resuming on the Dask engine reuses what is finished and submits nothing
        assert run_experiment("inpaint_p50", corrupted / "inpaint_p50", tmp_path / "dask/inpaint_p50", prof, seeds, "cpu", engine=engine) == {"run": 0, "reused": 4}
    dask_files, local_files = files(tmp_path / "dask"), files(tmp_path / "local")
    assert sorted(dask_files) == sorted(local_files) and len([f for f in dask_files if f.endswith("restored.png")]) == 8
    assert dask_files == local_files
    assert records(tmp_path / "dask") == records(tmp_path / "local")
    run = json.loads((tmp_path / "dask/denoise_s25/a/seed_1/run.json").read_text())
    assert run["engine"] == "dask" and run["seed"] == 1 and run["metrics"]["restored"]["psnr"] > 0
    assert not list((tmp_path / "dask").rglob("*.tmp"))  # the driver's atomic writes left nothing behind


@pytest.mark.integration
def test_killed_worker_is_retried(tmp_path: Path, corrupted: Path, cluster: "distributed.LocalCluster") -> None:
    """SIGKILL a worker process while it fits: the scheduler reschedules the killed fit, the nanny
    restarts the worker, the killed fit is run again to completion, and every output folder is
    written exactly once and complete."""
    long = {**TINY, "fit": {"inpaint": {**TINY["fit"]["inpaint"], "iterations": 150, "snapshots": [0, 150]}}}
    prof, seeds, exp = Profile("t", long), [0, 1], "inpaint_p50"
    client = distributed.Client(cluster)
    killed: list[int] = []
    killed_keys: list[str] = []  # the tasks that were fitting on the killed worker

    def kill_a_fitting_worker() -> None:
        deadline = time.time() + 60
        while time.time() < deadline and not killed:
            running = client.run(lambda dask_worker: len(dask_worker.state.executing))
            busy = [addr for addr, n in running.items() if n]
            if busy:
                time.sleep(0.5)  # well inside a fit of 150 iterations
                pid = client.run(os.getpid, workers=[busy[0]])[busy[0]]
                keys = client.run(lambda dask_worker: [str(ts.key) for ts in dask_worker.state.executing], workers=[busy[0]])[busy[0]]
                os.kill(pid, signal.SIGKILL)
                killed.append(pid)
                killed_keys.extend(keys)
            time.sleep(0.1)

    log: list[tuple[str, str]] = []
    killer = threading.Thread(target=kill_a_fitting_worker, daemon=True)
    with make_engine(EngineConfig(kind="dask", address=cluster.scheduler_address, retries=1), "cpu") as engine:
        engine.start()
        killer.start()
        stats = run_experiment(exp, corrupted / exp, tmp_path / "dask" / exp, prof, seeds, "cpu", lambda j, s: log.append((j.out_dir.as_posix(), s)), engine=engine)
    killer.join(5)
    stories = {key: client.run_on_scheduler(lambda dask_scheduler, key=key: [tuple(t[1:3]) for t in dask_scheduler.story(key)]) for key in killed_keys}
    client.close()
    assert killed and killed_keys, "no worker was seen fitting"
    redone: list[tuple[str, int]] = []
    for key, story in stories.items():  # (start, finish) transitions of the killed fit's task
        assert [s for s in story if s[1] == "processing"][1:], f"{key} was not rescheduled after the kill: {story}"
        assert ("processing", "memory") in story, f"{key} never completed: {story}"
        image, seed = key.rsplit("-", 3)[1:3]  # dip-fit-<exp>-<image>-seed<s>-<uuid>
        redone.append((image, int(seed.removeprefix("seed"))))
        assert (out_dir := tmp_path / "dask" / exp / image / f"seed_{redone[-1][1]}").is_dir()
        assert (out_dir.as_posix(), "run") in log and json.loads((out_dir / "run.json").read_text())["iterations_run"] == 150
    assert stats == {"run": 4, "reused": 0} and len(log) == 4 and len(set(log)) == 4  # each job once
    out = tmp_path / "dask" / exp
    dirs = sorted(p.relative_to(out).as_posix() for p in out.glob("*/*") if p.is_dir())
    assert dirs == ["a/seed_0", "a/seed_1", "b/seed_0", "b/seed_1"]  # no temp or duplicate folders
    for d in dirs:
        names = {p.relative_to(out / d).as_posix() for p in (out / d).rglob("*") if p.is_file()}
        assert {"restored.png", "curve.csv", "run.json", "snapshots/iter_00000.png", "snapshots/iter_00150.png"} <= names
        assert json.loads((out / d / "run.json").read_text())["iterations_run"] == 150
    # the killed worker's fit, redone elsewhere, equals the same fit run in-process
    run_experiment(exp, corrupted / exp, tmp_path / "local" / exp, prof, sorted({s for _, s in redone}), "cpu", engine=LocalEngine(1))
    for image, seed in redone:
        assert files(tmp_path / "local" / exp / image / f"seed_{seed}") == files(out / image / f"seed_{seed}")


@pytest.mark.integration
def test_gpu_needs_gpu_workers(cluster: "distributed.LocalCluster") -> None:
    with DaskEngine(EngineConfig(kind="dask", address=cluster.scheduler_address), "cuda") as engine:
        with pytest.raises(ValueError, match="resources GPU=1"):
            engine.start()


def test_config_and_missing_dask(monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = EngineConfig.from_params({"kind": "Dask", "device": "auto", "threads": 1, "address": None, "n_workers": "3"})
    assert (cfg.kind, cfg.address, cfg.n_workers) == ("dask", "", 3)
    with pytest.raises(ValueError, match="not one of local, dask"):
        EngineConfig.from_params({"kind": "ray"})
    monkeypatch.setitem(sys.modules, "distributed", None)  # as if not installed
    with pytest.raises(ValueError, match=r"pip install 'dip-repro\[dask\]'") as err:
        make_engine(cfg, "cpu")
    assert str(err.value) == DASK_MISSING and "\n" not in DASK_MISSING


def test_dvc_exp_run_on_dask_reproduces_local_metrics_and_changes_an_architecture(smoke_project: Path, tmp_path: Path) -> None:
    """The headline checks, in one `dvc exp run` on a copy of the smoke run (each is a minute of DVC):

    - `-S engine.kind=dask`: three experiments (a table's, a figure's and a blind one) are forgotten
      and fitted again on Dask; their metrics and PNGs equal the local run's exactly. The other
      fits, finished, start no engine (each fit stage of DVC re-runs: its params changed).
    - `-S profiles.smoke.variants.fig8_library=resnet`: Fig. 8's architectures are variants;
      fig8_library alone is fitted again, with the ResNet and its own settings, and
      `dvc params diff` / `dvc exp show` name the change."""
    project = tmp_path / "project"
    shutil.copytree(smoke_project, project, symlinks=True)
    refit, arch = ["inpaint_p50", "fig6_vase", "real_snail"], "fig8_library"
    # Forget those fits: without their folders and dvc.lock entries DVC has nothing to check
    # out, so their fit stages fit again (a kept results/ would be, rightly, reused by `dip run`).
    for exp in refit:
        shutil.rmtree(project / "results" / exp)
    lock = yaml.safe_load((project / "dvc.lock").read_text())
    lock["stages"] = {k: v for k, v in lock["stages"].items() if k not in {f"fit@{e}" for e in refit}}
    (project / "dvc.lock").write_text(yaml.safe_dump(lock, sort_keys=False))
    out = run_in(project, "dvc", "exp", "run", "-S", "engine.kind=dask", "-S", f"profiles.smoke.variants.{arch}=resnet").stdout
    stages = yaml.safe_load((project / "params.yaml").read_text())["experiments"]  # one fit stage each, active or not
    assert out.count("[dask LocalCluster (2 workers)]") == len(refit) + 1 and f"{arch} (active): 1 run" in out, out
    assert out.count("[no engine started]") == len(stages) - len(refit) - 1, out

    def rows(root: Path) -> list[dict[str, str]]:
        return sorted(({k: v for k, v in r.items() if k != "seconds"} for r in csv.DictReader(open(root / "metrics/per_image.csv"))
                       if r["experiment"] != arch), key=lambda r: json.dumps(r, sort_keys=True))

    assert rows(project) == rows(smoke_project) and rows(project)
    local = json.loads((smoke_project / "metrics/summary.json").read_text())["experiments"]
    ours = json.loads((project / "metrics/summary.json").read_text())["experiments"]
    assert {k: v for k, v in ours.items() if k != arch} == {k: v for k, v in local.items() if k != arch} and ours[arch] != local[arch]
    for restored in (smoke_project / "results").rglob("restored.png"):
        twin, exp = project / restored.relative_to(smoke_project), restored.relative_to(smoke_project).parts[1]
        run = json.loads((twin.parent / "run.json").read_text())
        assert (twin.read_bytes() == restored.read_bytes()) == (exp != arch), restored
        assert (run.get("engine") == "dask") == (exp in refit or exp == arch), (restored, run.get("engine"))
    run = json.loads(next((project / "results" / arch).glob("*/seed_0/run.json")).read_text())
    assert run["net"]["arch"] == "resnet" and run["fit"]["lr"] == 0.001
    diff = json.loads(run_in(project, "dvc", "params", "diff", "--json").stdout)["params.yaml"]
    assert diff[f"profiles.smoke.variants.{arch}"]["new"] == "resnet" and diff["engine.kind"]["new"] == "dask", diff
    assert arch in run_in(project, "dvc", "exp", "show", "--json").stdout
