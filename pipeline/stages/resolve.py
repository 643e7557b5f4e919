"""The ``resolve`` stage (``dip profile``): which profile runs, on which device.

params.yaml's ``profile`` may be ``auto``: ``paper`` where CUDA is available, ``quick`` otherwise
(:func:`pipeline.settings.choose_profile`). The answer, with the device and its name, is written
to ``data/profile.json``; every later stage reads it (:func:`pipeline.settings.read_resolution`),
so a change of answer re-runs what depends on it and nothing else. The record also holds a copy
of the chosen profile's settings and of ``figures``: the stages that use them depend on this one
small file instead of on all of params.yaml's ``profiles`` (DVC re-runs them when the chosen
profile changes, not when another one does, and ``dvc.lock`` keeps one copy of ``profiles``,
not one per stage: DVC reads and rewrites that file around every stage it runs).
"""

from __future__ import annotations

import platform
from pathlib import Path
from typing import Any, Mapping

from pipeline.files import save_json
from pipeline.settings import DEFAULT_PARAMS, PROFILE_FILE, choose_profile, load_params


def resolve(requested: str, profiles: Mapping[str, Any], device: str = "auto") -> dict[str, str]:
    """Requested and resolved profile, device and its name."""
    import torch

    from dip.device import pick_device

    dev = pick_device(device)
    name = choose_profile(requested, profiles, cuda=dev.type == "cuda")
    device_name = torch.cuda.get_device_name(dev) if dev.type == "cuda" else platform.processor() or platform.machine()
    return {"requested": requested, "profile": name, "device": str(dev), "device_name": device_name}


def stage(params_path: str | Path = DEFAULT_PARAMS, out: str | Path = PROFILE_FILE) -> dict[str, Any]:
    """Resolve params.yaml's ``profile`` and ``engine.device`` and write the record, with the
    chosen profile's settings and ``figures``, to ``out`` (byte-identical while they are the same,
    so downstream stages stay cached); returns it."""
    p = load_params(params_path)
    record: dict[str, Any] = dict(resolve(str(p["profile"]), p["profiles"], str((p.get("engine") or {}).get("device", "auto"))))
    record["settings"] = {"profile": p["profiles"][record["profile"]], "figures": p.get("figures") or {}}
    save_json(Path(out), record)
    return record
