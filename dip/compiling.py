"""``torch.compile`` for the fitting loop, and its caches carried to a later process or machine.

Inductor fuses the small elementwise kernels of the network (batch norm, LeakyReLU, padding)
and picks the memory format itself for static shapes. Compiling costs seconds to minutes per
canvas size (once per process; much less where its caches are warm), which pays for itself
only over enough iterations: ``benchmarks/gpu_speed.py`` counts both. Each fit's network is
compiled for static shapes (``dynamic=False``: one graph per canvas size, the fastest kernels),
with room for many sizes in one process (the SR sets have one size per image).

The caches of a process — Inductor's compiled graphs, Triton kernels, autotuning — are written
to one file by :func:`save_cache` (``torch.compiler.save_cache_artifacts``) and put back by
:func:`load_cache` in a fresh process, on the same torch, Triton and GPU, so that a later command
(another ``dip`` call, another machine) skips most of the compile time
(``FitConfig.compile_cache``).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Callable

import torch

from dip.group import Lone, Model

#: canvas sizes one process may compile before torch.compile falls back to eager for more
MAX_SHAPES = 64
_loaded: set[str] = set()


def compile_model(model: Model, cache: str = "") -> Callable[[torch.Tensor], torch.Tensor]:
    """``model`` compiled by Inductor for static shapes, after loading ``cache`` (if given and present)."""
    if cache:
        load_cache(cache)
    torch._dynamo.config.recompile_limit = max(torch._dynamo.config.recompile_limit, MAX_SHAPES)
    target = model.net if isinstance(model, Lone) else model  # a module compiles once for all its instances
    return torch.compile(target, dynamic=False)


def load_cache(path: str | Path) -> bool:
    """Put the caches saved in ``path`` back (once per process); False if there is no such file."""
    key = str(Path(path).resolve())
    if key in _loaded or not Path(path).is_file():
        return False
    torch.compiler.load_cache_artifacts(Path(path).read_bytes())
    _loaded.add(key)
    return True


def save_cache(path: str | Path) -> int:
    """Write every compile cache entry of this process to ``path`` (atomically); returns its bytes."""
    artifacts = torch.compiler.save_cache_artifacts()
    if artifacts is None:
        return 0
    data = artifacts[0]
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.part")
    tmp.write_bytes(data)
    os.replace(tmp, path)
    _loaded.add(str(path.resolve()))
    return len(data)
