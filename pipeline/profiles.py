"""Settings from ``params.yaml``: experiment ids, profiles and their resolution.

An experiment id names a task and its corruption level (``docs/LAYOUT.md``):
``denoise_s25`` (σ = 25/255), ``denoise_s8.5`` (σ = 8.5/255 = 1/30), ``inpaint_p50`` (50 % of
pixels dropped), ``sr_x4`` (×4). A *profile* (``paper``, ``quick``, ``smoke``) says which
experiments run on which images with which network and fitting settings; ``auto`` resolves to
``paper`` where CUDA is available and to ``quick`` otherwise.

A *figure* experiment (issue 14: ``fig7_text``, ``flash_cave``, …) is any id defined in the
top-level ``figures:`` section of ``params.yaml``: a task, a fixed image (``set/name``) and its
case (a given ``mask``, a Bernoulli ``drop``, an SR ``factor``, an ``input`` image for the
network, ``ground_truth: false`` for a real photograph with nothing to compare against). Its
fitting settings are the profile's ``fit.<id>`` (or ``fit.<id>_<variant>``); a ``net:`` inside
that entry is the experiment's own network and replaces the profile's ``net`` whole.
"""

from __future__ import annotations

import json
import platform
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

DEFAULT_PARAMS = Path("params.yaml")
# The params.yaml installed with the package (pipeline/params.yaml links to the repository's, so a clone
# installed with `pip install -e .` reads it; a wheel holds a copy): `dip restore --preset` reads its profiles anywhere.
PACKAGE_PARAMS = Path(__file__).resolve().parent / "params.yaml"  # a link to the repository's params.yaml; a copy in a wheel
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
    image: str | None = None  # figures: the one image (set/name)
    mask: str | None = None  # figures: a given inpainting mask (set/name; white = known)
    input: str | None = None  # figures: an image fed to the network as its input code
    ground_truth: bool = True  # figures: False for a real photograph (no PSNR possible)

    @property
    def is_figure(self) -> bool:
        return self.image is not None

    @property
    def fit_key(self) -> str:
        """Key of the fitting settings in a profile: ``denoise``, ``inpaint``, ``sr_x4``, a figure's id, …"""
        return self.id if self.task == "sr" or self.is_figure else self.task

    def corruption(self) -> dict[str, Any]:
        if self.is_figure:
            extra = {k: getattr(self, k) for k in ("sigma", "drop", "factor", "mask", "input") if getattr(self, k) is not None}
            return {**extra, "ground_truth": self.ground_truth}
        return {"sigma": self.sigma} if self.task == "denoise" else {"drop": self.drop} if self.task == "inpaint" else {"factor": self.factor}


FIGURE_KEYS = {"task", "image", "mask", "drop", "factor", "input", "ground_truth", "about"}


def parse_figure(exp_id: str, spec: dict[str, Any]) -> Experiment:
    """A ``figures:`` entry → :class:`Experiment`; ``ValueError`` for a malformed one."""
    unknown = set(spec) - FIGURE_KEYS
    if unknown:
        raise ValueError(f"figures.{exp_id}: unknown key(s) {', '.join(sorted(unknown))}; allowed: {', '.join(sorted(FIGURE_KEYS))}")
    task, image = spec.get("task"), spec.get("image")
    if task not in ("denoise", "inpaint", "sr") or not image or "/" not in str(image):
        raise ValueError(f"figures.{exp_id} needs task (denoise, inpaint or sr) and image (set/name)")
    if task == "inpaint" and (spec.get("mask") is None) == (spec.get("drop") is None):
        raise ValueError(f"figures.{exp_id}: an inpainting figure needs either mask (set/name) or drop")
    if task == "sr" and not 2 <= int(spec.get("factor") or 0) <= 16:
        raise ValueError(f"figures.{exp_id}: a super-resolution figure needs factor (2 to 16)")
    return Experiment(
        exp_id, task, sigma=None, drop=float(spec["drop"]) if spec.get("drop") is not None else None,
        factor=int(spec["factor"]) if task == "sr" else None, image=str(image),
        mask=str(spec["mask"]) if spec.get("mask") else None, input=str(spec["input"]) if spec.get("input") else None,
        ground_truth=bool(spec.get("ground_truth", True)),
    )


def parse_experiment(exp_id: str, figures: dict[str, Any] | None = None) -> Experiment:
    """``denoise_s25`` → Experiment(task="denoise", sigma=25/255), etc., or the entry of ``figures``
    (params.yaml ``figures:``) of that id; ``ValueError`` otherwise."""
    if figures and exp_id in figures:
        return parse_figure(exp_id, figures[exp_id] or {})
    m = _ID.match(exp_id)
    if not m:
        raise ValueError(f"bad experiment id {exp_id!r}; expected denoise_s<σ·255>, inpaint_p<percent>, sr_x<factor> or an id of params.yaml figures:")
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
    try:
        params = yaml.safe_load(path.read_text()) or {}
    except (yaml.YAMLError, UnicodeDecodeError) as err:
        where = getattr(err, "problem_mark", None)
        at = f" (line {where.line + 1}, column {where.column + 1})" if where is not None else ""
        raise ValueError(f"{path}: not a readable YAML params file{at}; give params.yaml or a copy of it") from None
    if not isinstance(params, dict):
        raise ValueError(f"{path}: a params file is a YAML mapping (key: value), not a {type(params).__name__}")
    from pipeline.schema import check_params

    check_params(params, str(path))  # a misspelt key is an error, not a silent default
    for key in ("profile", "profiles", "experiments"):
        if key not in params:
            raise ValueError(f"{path}: missing top-level key {key!r}")
    return params


def read_resolution(path: str | Path = PROFILE_FILE) -> dict[str, str]:
    """The record ``dip profile`` wrote (``data/profile.json``)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no resolved profile; run `dip profile` (the `resolve` stage) first")
    return json.loads(path.read_text())


def stage(params_path: str | Path = DEFAULT_PARAMS, out: str | Path = PROFILE_FILE) -> dict[str, str]:
    """The ``resolve`` stage (``dip profile``): resolve params.yaml's ``profile`` (auto → paper
    with CUDA, else quick) and write its record to ``out``; returns the record."""
    from dip.io import save_json

    p = load_params(params_path)
    record = resolve(str(p["profile"]), p["profiles"], str((p.get("engine") or {}).get("device", "auto")))
    save_json(Path(out), record)  # byte-identical while the resolution is: downstream stages stay cached
    return record


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
    figures: dict[str, Any] = field(default_factory=dict)  # params.yaml `figures:`

    def __post_init__(self) -> None:
        """A profile's own ``figures:`` entries replace keys of the top-level ones (the smoke
        profile runs the figure cases on bundled images, offline)."""
        own = self.body.get("figures") or {}
        unknown = sorted(set(own) - set(self.figures))
        if unknown:
            raise ValueError(f"profiles.{self.name}.figures: {', '.join(unknown)} not defined in figures:")
        self.figures = {k: {**(v or {}), **(own.get(k) or {})} for k, v in self.figures.items()}

    def experiment(self, exp_id: str) -> Experiment:
        return parse_experiment(exp_id, self.figures)

    @property
    def experiments(self) -> list[Experiment]:
        return [self.experiment(e) for e in self.body.get("experiments", [])]

    def specs(self, exp: Experiment) -> list[str]:
        """Every image ``exp`` needs (``set`` or ``set/name``): a figure's image, mask and input."""
        if exp.is_figure:
            return [s for s in (exp.image, exp.mask, exp.input) if s]
        return self.image_specs(exp.task)

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

    def net(self, exp: Experiment | None = None) -> dict[str, Any]:
        """The network settings of ``exp``: its fit entry's own ``net`` if it has one (whole, not
        merged), else the profile's ``net``."""
        own = self._fit_entry(exp).get("net") if exp is not None else None
        return dict(own if own else self.body.get("net", {}))

    def _fit_entry(self, exp: Experiment) -> dict[str, Any]:
        key = exp.fit_key
        variant = (self.body.get("variants") or {}).get(key)
        if variant:
            key = f"{key}_{variant}"
        fits = self.body.get("fit", {})
        if key not in fits:
            raise KeyError(f"profile {self.name!r} has no fitting settings {key!r} (profiles.{self.name}.fit.{key})")
        return dict(fits[key])

    def fit(self, exp: Experiment) -> tuple[dict[str, Any], list[int]]:
        """Fitting settings (for :class:`dip.fit.FitConfig`) and snapshot iterations of ``exp``."""
        settings = self._fit_entry(exp)
        settings.pop("net", None)
        snapshots = settings.pop("snapshots", self.body.get("snapshots", []))
        return settings, [int(s) for s in snapshots]


def user_experiment(profile: Profile, task: str, factor: int = 4) -> Experiment:
    """The experiment whose settings ``dip restore --task TASK`` uses on a person's own image:
    ``denoise``, ``inpaint`` (and its variant), ``sr_x<factor>`` where the profile has settings
    for that factor, else ``sr_x8`` above ×4 and ``sr_x4`` otherwise."""
    if task != "sr":
        return Experiment(task, task)
    exact = Experiment(f"sr_x{factor}", "sr", factor=factor)
    try:
        profile.fit(exact)
        return exact
    except KeyError:
        near = 8 if factor > 4 else 4
        return Experiment(f"sr_x{near}", "sr", factor=near)


def active_profile(params: dict[str, Any], resolution: dict[str, str]) -> Profile:
    name = resolution["profile"]
    if name not in params["profiles"]:
        raise ValueError(f"data/profile.json names profile {name!r}, which params.yaml does not define; run `dvc repro`")
    return Profile(name, params["profiles"][name], dict(params.get("figures") or {}))
