"""Shared fixtures: tiny images and narrow networks so that the suite runs on a 2-core CPU."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

# One thread: tiny images gain nothing from more, and OpenMP spin-waiting makes a busy machine
# (CI beside other jobs, several test processes) many times slower with two.
torch.set_num_threads(1)

ROOT = Path(__file__).resolve().parents[1]


def mirror_dir() -> Path | None:
    """The offline image mirror (``$DIP_MIRROR`` or ``../shared/images``), if present."""
    env = os.environ.get("DIP_MIRROR")
    for candidate in ([Path(env)] if env else []) + [ROOT.parent / "shared" / "images"]:
        if (candidate / "MANIFEST.tsv").is_file():
            return candidate
    return None


@pytest.fixture
def camera64() -> np.ndarray:
    """scikit-image's cameraman, 64×64 float32 in [0, 1]."""
    from skimage import data, transform

    return transform.resize(data.camera(), (64, 64), anti_aliasing=True).astype(np.float32)


@pytest.fixture
def astronaut64() -> np.ndarray:
    """scikit-image's astronaut, 64×64×3 float32 in [0, 1]."""
    from skimage import data, transform

    return transform.resize(data.astronaut(), (64, 64), anti_aliasing=True).astype(np.float32)


# --- a tiny profile for `dip run` without DVC ---------------------------------------------------

def tiny_profile(iterations: int = 4) -> dict[str, Any]:
    """Settings of a profile that fits two 24×20 images (:func:`tiny_images`) in a fraction of a
    second: a two-level, four-channel network, ``iterations`` steps, snapshots at both ends."""
    ends = {"iterations": iterations, "lr": 0.01, "reg_noise_std": 0.03, "snapshots": [0, iterations]}
    return {
        "experiments": ["denoise_s25", "inpaint_p50"],
        "images": {"inpaint": ["t/a", "t/b"], "denoise": ["t/a", "t/b"]},
        "max_side": 0,
        "log_every": 2,
        "net": {"levels": 2, "width": 4, "skip": 1},
        "fit": {"denoise": {**ends, "exp_weight": 0.99, "backtrack": True}, "inpaint": ends},
    }


@pytest.fixture
def tiny_images(tmp_path: Path, camera64: np.ndarray) -> tuple[Path, list["ImageEntry"]]:  # noqa: F821
    """Two 24×20 crops of the cameraman, set ``t``, names ``a`` and ``b``: ``(root, entries)``."""
    from pipeline.files import save_image
    from pipeline.images.manifest import ImageEntry

    root = tmp_path / "images"
    entries = []
    for i, name in enumerate(("a", "b")):
        save_image(root / "t" / f"{name}.png", np.rot90(camera64[:24, :20], i))
        entries.append(ImageEntry(set="t", name=name, pixel_sha256="-"))
    return root, entries


# --- docs/LAYOUT.md, the output contract -------------------------------------------------------

def layout_doc() -> dict[str, Any]:
    """What docs/LAYOUT.md documents: ``paths`` (``{path template: description}``, files under a
    folder joined to it; ``a / b`` and ``a, b?`` give one entry per name, ``?`` = optional),
    ``columns`` (``{file name: [column, …]}`` of every CSV whose description lists them),
    ``curve`` (curve.csv's columns, the bracketed ones optional) and ``run_json`` (run.json's keys)."""
    import re

    text = (ROOT / "docs" / "LAYOUT.md").read_text()
    block = re.search(r"```\n(.*?)```", text, re.S)
    assert block, "docs/LAYOUT.md has no layout block"
    paths: dict[str, str] = {}
    folder, last = "", ""
    for line in block.group(1).splitlines():
        indent = len(line) - len(line.lstrip())
        name, _, description = line.strip().partition("  ")
        if indent > 4:  # a description's continuation
            paths[last] += " " + line.strip()
            continue
        names = [n.strip() for n in re.split(r" / |, ", name)] if indent else [name]
        for n in names:
            last = (folder if indent else "") + n
            paths[last] = description.strip()
        if not indent:
            folder = name if name.endswith("/") else ""
    columns = {}
    for path, description in paths.items():
        if path.endswith(".csv") and "," in description:
            flat = re.sub(r"\([^()]*\)", "", description)
            columns[path.rsplit("/", 1)[-1]] = [c.strip() for c in flat.split(",") if c.strip()]
    curve = re.search(r"`curve\.csv` columns: `([^`]*)`", text)
    keys = re.search(r"`run\.json` keys: (.*?)\n\(", text, re.S)
    assert curve and keys, "docs/LAYOUT.md no longer documents curve.csv's columns or run.json's keys"
    return {"paths": paths, "columns": columns, "curve": [c.strip(" []") for c in curve.group(1).split(",")],
            "run_json": [k.strip() for k in keys.group(1).replace("\n", " ").split(",")]}


# --- the reproduction pipeline (issue 3) ----------------------------------------------------

GIT_ENV = {"GIT_AUTHOR_NAME": "dip-tests", "GIT_AUTHOR_EMAIL": "tests@localhost",
           "GIT_COMMITTER_NAME": "dip-tests", "GIT_COMMITTER_EMAIL": "tests@localhost"}


def pipeline_env() -> dict[str, str]:
    """Environment for `dvc`/`dip` subprocesses: git identity, the mirror if there is one."""
    env = {**os.environ, **GIT_ENV}
    mirror = mirror_dir()
    if mirror is not None:
        env["DIP_MIRROR"] = str(mirror)
    return env


def open_app(root: Path, monkeypatch: pytest.MonkeyPatch, page: str = "overview") -> "AppTest":  # noqa: F821
    """The dashboard (Streamlit's AppTest) on the results in ``root``, switched to ``page``
    (views/PAGE.py); fails the test on an exception in the page."""
    from streamlit.testing.v1 import AppTest

    monkeypatch.setenv("DIP_RESULTS", str(root))
    at = AppTest.from_file(str(ROOT / "dashboard" / "app.py"), default_timeout=60).run()
    if page != "overview":
        at.switch_page(f"views/{page}.py").run()
    assert not at.exception, [e.message for e in at.exception]
    return at


def copy_settings(dest: Path) -> Path:
    """``dest`` holding this checkout's settings files (params.yaml, data/paper.yaml,
    data/manifest.yaml): what `dip readme` reads of a repository. Returns ``dest``."""
    import shutil

    for name in ("params.yaml", "data/paper.yaml", "data/manifest.yaml"):
        (dest / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(ROOT / name, dest / name)
    return dest


def copy_project(dest: Path, profile: str = "smoke", threads: int = 1) -> Path:
    """A fresh git repository at ``dest`` holding this checkout's files (tracked and untracked,
    not ignored: what a clone of the working tree would hold), with ``profile`` selected in
    params.yaml, committed. Returns ``dest``."""
    import re
    import shutil
    import subprocess

    files = subprocess.run(["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=ROOT, check=True, capture_output=True).stdout
    for rel in filter(None, files.decode().split("\0")):
        src = ROOT / rel
        if src.is_file():
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / rel)
    params = dest / "params.yaml"
    text = re.sub(r"(?m)^profile: \S+", f"profile: {profile}", params.read_text())
    params.write_text(re.sub(r"(?m)^(  threads:) \d+", rf"\1 {threads}", text))
    env = pipeline_env()
    for cmd in (["git", "init", "-q"], ["git", "add", "-A"], ["git", "commit", "-qm", "test copy"]):
        subprocess.run(cmd, cwd=dest, check=True, env=env, capture_output=True)
    return dest


def run_in(project: Path, *cmd: str, check: bool = True) -> "subprocess.CompletedProcess[str]":  # noqa: F821
    """Run a command in ``project`` with :func:`pipeline_env`; fails the test with its output."""
    import subprocess

    proc = subprocess.run(list(cmd), cwd=project, env=pipeline_env(), capture_output=True, text=True, timeout=600)
    if check and proc.returncode != 0:
        pytest.fail(f"{' '.join(cmd)} exited {proc.returncode}\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return proc


@pytest.fixture(autouse=True, scope="session")
def _streamlit_components_scanned_once() -> None:
    """Every ``AppTest`` scans all installed distributions for Streamlit components (0.6 s each time
    on a machine with a thousand packages); the answer cannot change during a test session, so
    scan once per process."""
    try:
        from streamlit.components.v2 import manifest_scanner
    except ImportError:  # an older Streamlit without v2 components: nothing to scan
        return
    scan = manifest_scanner.scan_component_manifests
    found: list[Any] = []

    def scan_once(*args: Any, **kwargs: Any) -> Any:
        if not found:
            found.append(scan(*args, **kwargs))
        return found[0]

    manifest_scanner.scan_component_manifests = scan_once  # type: ignore[assignment]


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """A test that needs the ``smoke_project`` (a full ``dvc repro``) is an integration test; one
    that needs only the ``smoke_outputs`` (the same fits in-process, a few seconds, on bundled
    images: no network, no mirror) is a unit test, wherever it runs."""
    for item in items:
        if "smoke_project" in set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.integration)


def build_outputs(root: Path, profile: str = "smoke", seeds: list[int] | None = None) -> Path:
    """The pipeline's output tree (data/, results/, baselines/, metrics/) of ``profile`` under
    ``root``, made by the stages' own functions in this process, in dvc.yaml's order, with this
    checkout's params.yaml, data/manifest.yaml and data/paper.yaml: what ``dvc repro`` writes,
    without git, DVC or a subprocess (one torch thread, as :func:`copy_project` sets); ``seeds``
    replaces params.yaml's (several seeds: a run with a spread over seeds)."""
    from pipeline.files import save_json
    from pipeline.stages.baselines import run_experiment_baselines
    from pipeline.stages.corrupt import corrupt_all
    from pipeline.execution.engines import make_engine
    from pipeline.stages.evaluate import evaluate
    from pipeline.stages.fetch import FetchOptions, fetch_all, mirror_from
    from pipeline.images.manifest import load_manifest
    from pipeline.settings import EngineConfig, active_profile, load_params
    from pipeline.stages.resolve import resolve
    from pipeline.report import load_paper
    from pipeline.stages.run import run_experiment

    p = load_params(ROOT / "params.yaml")
    engine = {**(p.get("engine") or {}), "threads": 1}
    res = resolve(profile, p["profiles"], str(engine.get("device", "auto")))  # resolve
    save_json(root / "data" / "profile.json", res)
    prof = active_profile(p, res)
    manifest = load_manifest(ROOT / "data" / "manifest.yaml")
    cfg = p.get("fetch") or {}
    specs = list(dict.fromkeys(s for e in prof.experiments for s in prof.specs(e)))  # fetch
    mirror = mirror_dir()
    opts = FetchOptions(mirror=mirror_from(mirror or cfg.get("mirror")), timeout=float(cfg.get("timeout", 30)), retries=int(cfg.get("retries", 3)))
    fetch_all(manifest, specs, root / "data" / "images", opts)
    by_task = {e.id if e.is_figure else e.task: manifest.select([e.image] if e.is_figure else prof.image_specs(e.task))  # corrupt
               for e in prof.experiments}
    experiments = [str(e) for e in p["experiments"]]
    corrupted = root / "data" / "corrupted"
    corrupt_all(experiments, prof, by_task, root / "data" / "images", corrupted, int((p.get("corrupt") or {}).get("seed", 0)))
    seeds = [int(s) for s in (p.get("seeds", [0]) if seeds is None else seeds)]
    with make_engine(EngineConfig.from_params(engine), res["device"]) as eng:  # restore
        for exp in experiments:
            run_experiment(exp, corrupted / exp, root / "results" / exp, prof, seeds, res["device"], engine=eng)
    for exp in experiments:  # baselines
        run_experiment_baselines(corrupted / exp, root / "baselines" / exp, p.get("baselines") or {})
    evaluate(root / "results", experiments, res, root / "metrics", baselines=root / "baselines", corrupted=corrupted,  # evaluate
             paper=load_paper(ROOT / "data" / "paper.yaml"), epsilon=float((p.get("report") or {}).get("epsilon", 0.5)),
             about={k: str((v or {}).get("about", k)) for k, v in (p.get("figures") or {}).items()})
    return root


@pytest.fixture(scope="session")
def smoke_outputs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The ``smoke`` profile's output tree (:func:`build_outputs`, once per test session; tests
    must not modify it): for tests that read the pipeline's files and need no git or DVC."""
    return build_outputs(tmp_path_factory.mktemp("smoke_outputs"))


@pytest.fixture(scope="session")
def smoke_project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the project in which `dvc repro` has run the ``smoke`` profile end to end
    (once per test session; tests must not modify it)."""
    project = copy_project(tmp_path_factory.mktemp("smoke") / "project")
    run_in(project, "dvc", "repro")
    return project
