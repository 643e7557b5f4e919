"""What names a fit and tells whether it is done, without torch: the :class:`Fit` value, its
``settings_hash`` (settings, input files and code: a finished job is reused only while all three
are unchanged) and its ``fit_key`` (what its numbers depend on, the same on every machine).

Torch-free, so that ``dip run`` on an experiment whose fits are all finished decides so in a
fraction of a second (DVC re-runs every fit stage whose params changed); the fitting itself is
:mod:`pipeline.execution.fits`'s (:func:`~pipeline.execution.fits.drive`).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from PIL import Image

import dip
from dip.config import EXECUTION_FIELDS  # FitConfig fields that change how an iteration runs, not its numbers
from pipeline import layout
from pipeline.files import read_json
from pipeline.layout import CaseDir, RunDir

if TYPE_CHECKING:  # hints only: the hashes read the settings' JSON form (FitSettings.to_json), nothing else of the module
    from pipeline.settings import FitSettings

# Case files that identify a fit's inputs by their decoded pixels (exact 8-bit images, the same on
# every machine); observation.png only where there is no ground truth (a real photograph as is).
IDENTITY_FILES = (layout.GROUND_TRUTH, layout.MASK, layout.INPUT_PNG)

# Besides every module of dip/, the files whose code shapes a fit's output (tests/test_structure.py
# checks that this covers every project module the job imports).
CODE_FILES = ("pipeline/execution/job.py", "pipeline/execution/keys.py", "pipeline/layout.py", "pipeline/execution/fits.py", "pipeline/files.py")


@dataclass(frozen=True)
class Fit:
    """One fit to run, for every caller (`dip run`, `dip restore`, `dip demo`, the publishing run):
    what it reads, its settings, seed and where it is written. A plain value: it ships to a Dask
    worker and decides "already done" without torch; :func:`pipeline.execution.fits.drive` runs it."""

    source: Path | None  # what it reads: a case folder of `dip corrupt`, an image file; None: the caller's arrays (the demo)
    out_dir: Path  # where it is written (atomically)
    settings: FitSettings | None = None  # what shapes its output (job_settings, a request's); None: the caller's (the demo)
    seed: int = 0
    image: str = ""  # its name in progress lines and logs
    key: str = ""  # fits of one key may run together (:func:`group_key`); "" runs alone
    mask: Path | None = None  # a second input read with ``source`` (`dip restore`'s mask)
    extra: dict[str, Any] = field(default_factory=dict)  # run.json provenance outside the hashes (preset, input, ...)

    def __post_init__(self) -> None:
        if self.settings is not None and self.seed != self.settings.seed:
            raise ValueError(f"a fit's seed {self.seed} is not its settings' seed {self.settings.seed}")

    @property
    def together(self) -> str:
        """Its group key; a fit without one is alone (its output folder)."""
        return self.key or str(self.out_dir)


def group_key(observation_shape: tuple[int, ...] | list[int], task: str, settings: Any) -> str:
    """Fits with equal keys may run together (:mod:`dip.group`): one observation shape, task and
    settings (``settings`` without the seed: the network, the fitting settings, the device)."""
    return json.dumps([list(observation_shape), task, settings], sort_keys=True, default=str)


def case_key(case_dir: Path, settings: FitSettings) -> str:
    """The :func:`group_key` of a case of `dip corrupt` (its size from meta.json, not its pixels)
    and settings but the seed; an unreadable meta.json gives "" (alone: its error comes at set-up)."""
    try:
        meta = read_json(CaseDir(case_dir).meta)
        size = [int(n) for n in meta["size"]]
    except (OSError, ValueError, KeyError, TypeError, ArithmeticError):
        return ""
    rest = {k: v for k, v in settings.to_json().items() if k != "seed"}
    rest["fit"] = {k: v for k, v in rest["fit"].items() if k != "seed"}
    return group_key(tuple(size), f"{meta.get('task')}/{meta.get('factor')}", rest)


@lru_cache(maxsize=1)
def code_hash() -> str:
    """sha256 over the sources of ``dip/`` and :data:`CODE_FILES`: results depend on them."""
    root = Path(dip.__file__).resolve().parent
    h = hashlib.sha256()
    for path in sorted(root.glob("*.py")) + [root.parent / p for p in CODE_FILES]:
        if path.is_file():
            h.update(path.name.encode() + path.read_bytes())
    return h.hexdigest()


def files_hash(folder: Path) -> str:
    """sha256 over the names and bytes of the files directly in ``folder``."""
    h = hashlib.sha256()
    for path in sorted(p for p in folder.iterdir() if p.is_file()):
        h.update(path.name.encode() + path.read_bytes())
    return h.hexdigest()


def settings_hash(case_dir: Path, settings: FitSettings) -> str:
    """What a finished job must match to be reused: settings (their JSON form), input files and code."""
    blob = json.dumps({"settings": settings.to_json(), "inputs": files_hash(case_dir), "code": code_hash()}, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()


def pixels_sha256(path: Path) -> str:
    """sha256 of an image file's decoded pixel array (``pipeline.images.manifest``'s pixel hash):
    independent of how the PNG was compressed."""
    with Image.open(path) as im:
        return hashlib.sha256(np.ascontiguousarray(np.asarray(im)).tobytes()).hexdigest()


def fit_key(case_dir: Path, settings: FitSettings) -> str:
    """sha256 naming what a fit's numbers depend on, the same on every machine and for every code
    version that computes the same iteration:

    * the settings (their JSON form, :meth:`~pipeline.settings.FitSettings.to_json`) without the device and without execution options (:data:`EXECUTION_FIELDS`:
      CUDA graph, compile, memory format, check interval): ``fit``, ``net``, ``seed``,
      ``log_every``, ``snapshots``, ``profile``;
    * the inputs' identity: ``meta.json`` (experiment, image, set, corruption, its seed, size) and the
      pixel sha256 of the case's exact images (:data:`IDENTITY_FILES`; ``observation.png`` where
      there is no ground truth), never the float bytes of ``observation.npy``;
    * :data:`dip.NUMERICS`, bumped whenever the code changes a fit's numbers (``tests/test_numerics.py``).
    """
    case_dir = Path(case_dir)
    drop, values = set(EXECUTION_FIELDS), settings.to_json()
    numbers = {
        "fit": {k: v for k, v in values["fit"].items() if k not in drop},
        "net": {k: v for k, v in values["net"].items() if k not in drop},
        **{k: values.get(k) for k in ("seed", "log_every", "snapshots", "profile")},
    }
    case = CaseDir(case_dir)
    names = [n for n in IDENTITY_FILES if (case_dir / n).is_file()]
    if not case.ground_truth.is_file():
        names.append(case.observation_png.name)
    inputs = {"meta": json.loads(case.meta.read_text()), "pixels": {n: pixels_sha256(case_dir / n) for n in names}}
    blob = json.dumps({"numbers": numbers, "inputs": inputs, "numerics": dip.NUMERICS}, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(blob.encode()).hexdigest()


def finished(out_dir: Path, key: str, digest: str) -> bool:
    """Whether ``out_dir`` holds a finished restoration whose run.json records ``key: digest``
    (``batch_hash`` for `dip restore`, ``settings_hash`` for `dip run`); a damaged run.json (not
    JSON, not a mapping, nested too deeply) is simply not finished: the fit runs again."""
    run = RunDir(Path(out_dir))
    try:
        record = read_json(run.run_json)
    except (OSError, ValueError):
        return False
    return isinstance(record, dict) and record.get(key) == digest and run.restored.is_file()


def is_done(case_dir: Path, out_dir: Path, settings: FitSettings) -> bool:
    """True if ``out_dir`` holds a finished run of exactly these settings and inputs."""
    return finished(out_dir, "settings_hash", settings_hash(case_dir, settings))
