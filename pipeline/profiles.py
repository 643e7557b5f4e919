"""Settings from ``params.yaml``: experiment ids, profiles and their resolution.

An experiment id names a task and its corruption level (``docs/LAYOUT.md``):
``denoise_s25`` (σ = 25/255), ``denoise_s8.5`` (σ = 8.5/255 = 1/30), ``inpaint_p50`` (50 % of
pixels dropped), ``sr_x4`` (×4). A *profile* (``paper``, ``quick``, ``smoke``) says which
experiments run on which images with which network and fitting settings; ``auto`` resolves to
``paper`` where CUDA is available and to ``quick`` otherwise.
"""

from __future__ import annotations

import platform
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

DEFAULT_PARAMS = Path("params.yaml")
PROFILE_FILE = Path("data/profile.json")
_ID = re.compile(r"^(?:denoise_s(?P<sigma>\d+(?:\.\d)?)|inpaint_p(?P<drop>\d{1,2})|sr_x(?P<factor>\d+))$")


@dataclass(frozen=True)
class Experiment:
    """A parsed experiment id."""

    id: str
    task: str
    sigma: float | None = None  # denoise: noise std on [0, 1] images
    drop: float | None = None  # inpaint: probability that a pixel is missing
    factor: int | None = None  # sr: scale factor

    @property
    def fit_key(self) -> str:
        """Key of the fitting settings in a profile: ``denoise``, ``inpaint``, ``sr_x4``, …"""
        return self.id if self.task == "sr" else self.task

    def corruption(self) -> dict[str, Any]:
        return {"sigma": self.sigma} if self.task == "denoise" else {"drop": self.drop} if self.task == "inpaint" else {"factor": self.factor}


def parse_experiment(exp_id: str) -> Experiment:
    """``denoise_s25`` → Experiment(task="denoise", sigma=25/255), etc.; ``ValueError`` otherwise."""
    m = _ID.match(exp_id)
    if not m:
        raise ValueError(f"bad experiment id {exp_id!r}; expected denoise_s<σ·255>, inpaint_p<percent> or sr_x<factor>")
    if m["sigma"] is not None:
        return Experiment(exp_id, "denoise", sigma=float(m["sigma"]) / 255.0)
    if m["drop"] is not None:
        return Experiment(exp_id, "inpaint", drop=int(m["drop"]) / 100.0)
    factor = int(m["factor"])
    if not 2 <= factor <= 16:
        raise ValueError(f"bad experiment id {exp_id!r}: factor must be between 2 and 16")
    return Experiment(exp_id, "sr", factor=factor)


def load_params(path: str | Path = DEFAULT_PARAMS) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such params file")
    params = yaml.safe_load(path.read_text()) or {}
    from pipeline.schema import check_params

    check_params(params, str(path))  # a misspelt key is an error, not a silent default
    for key in ("profile", "profiles", "experiments"):
        if key not in params:
            raise ValueError(f"{path}: missing top-level key {key!r}")
    return params


def resolve(requested: str, profiles: dict[str, Any], device: str = "auto") -> dict[str, str]:
    """The record of ``data/profile.json``: requested and resolved profile, device and its name."""
    import torch

    from dip.device import pick_device

    dev = pick_device(device)
    if requested == "auto":
        name = "paper" if dev.type == "cuda" else "quick"
    elif requested in profiles:
        name = requested
    else:
        raise ValueError(f"unknown profile {requested!r}; choose auto or one of {', '.join(profiles)}")
    if name not in profiles:
        raise ValueError(f"profile {name!r} (resolved from {requested!r}) is not defined in params.yaml")
    device_name = torch.cuda.get_device_name(dev) if dev.type == "cuda" else platform.processor() or platform.machine()
    return {"requested": requested, "profile": name, "device": str(dev), "device_name": device_name}


@dataclass
class Profile:
    """The settings of one resolved profile."""

    name: str
    body: dict[str, Any]

    @property
    def experiments(self) -> list[Experiment]:
        return [parse_experiment(e) for e in self.body.get("experiments", [])]

    def is_active(self, exp_id: str) -> bool:
        return exp_id in self.body.get("experiments", [])

    def image_specs(self, task: str) -> list[str]:
        images = self.body.get("images", {})
        if task not in images:
            raise KeyError(f"profile {self.name!r} lists no images for task {task!r} (profiles.{self.name}.images.{task})")
        return [str(s) for s in images[task]]

    @property
    def max_side(self) -> int:
        return int(self.body.get("max_side", 0) or 0)

    @property
    def log_every(self) -> int:
        return int(self.body.get("log_every", 50))

    def net(self) -> dict[str, Any]:
        return dict(self.body.get("net", {}))

    def fit(self, exp: Experiment) -> tuple[dict[str, Any], list[int]]:
        """Fitting settings (for :class:`dip.fit.FitConfig`) and snapshot iterations of ``exp``."""
        key = exp.fit_key
        variant = (self.body.get("variants") or {}).get(key)
        if variant:
            key = f"{key}_{variant}"
        fits = self.body.get("fit", {})
        if key not in fits:
            raise KeyError(f"profile {self.name!r} has no fitting settings {key!r} (profiles.{self.name}.fit.{key})")
        settings = dict(fits[key])
        snapshots = settings.pop("snapshots", self.body.get("snapshots", []))
        return settings, [int(s) for s in snapshots]


def active_profile(params: dict[str, Any], resolution: dict[str, str]) -> Profile:
    name = resolution["profile"]
    if name not in params["profiles"]:
        raise ValueError(f"data/profile.json names profile {name!r}, which params.yaml does not define; run `dvc repro`")
    return Profile(name, params["profiles"][name])
