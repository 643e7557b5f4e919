"""Settings: ``params.yaml`` read, checked and turned into what each stage and each fit needs — without torch.

Every command reads params.yaml through :func:`load_params`, which checks the whole file against
:func:`params_schema` before anything runs: an unknown key (``engine.thraeds``) is an error naming
the nearest valid one, a value of the wrong type or range (``iterations: ten``, ``seeds: []``,
``lr: -1``) an error naming the key, so that a stage never starts on a setting it would misread.
The groups read into a dataclass take their keys *and types* from it: :class:`dip.config.NetConfig`
(``net``), :class:`dip.config.FitConfig` (``fit.<key>``), :class:`EngineConfig` (``engine``); the
baselines' from :data:`BASELINES`.

* An *experiment* id names a task and its corruption level (``docs/LAYOUT.md``): ``denoise_s25``
  (σ = 25/255), ``denoise_s8.5`` (σ = 8.5/255 = 1/30), ``inpaint_p50`` (50 % of pixels dropped),
  ``sr_x4`` (×4); a *figure* experiment (``fig7_text``, ``flash_cave``, …) is an entry of
  ``figures:``: a task, a fixed image (``set/name``) and its case (a given ``mask``, a Bernoulli
  ``drop``, an SR ``factor``, an ``input`` image for the network, ``ground_truth: false``).
* A *profile* (``paper``, ``quick``, ``smoke``) says which experiments run on which images with
  which network and fitting settings; ``auto`` is ``paper`` on CUDA and ``quick`` otherwise
  (:func:`choose_profile`; the ``resolve`` stage, :mod:`pipeline.stages.resolve`, records it).
  A figure's fitting settings are the profile's ``fit.<id>`` (or ``fit.<id>_<variant>``); a
  ``net:`` inside that entry replaces the profile's ``net`` whole.
* :func:`job_settings` is everything one fit needs besides its files (a :class:`FitSettings`, JSON
  only where hashed, recorded or shipped): what ``dip run`` hashes and ships to an engine, and what
  ``dip restore --preset`` uses (:func:`preset_configs`).

A leaf of the project: it imports only :mod:`dip.config`.
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import math
import re
import reprlib
import types
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Literal, Mapping, Union, get_args, get_origin, get_type_hints

import yaml

from dip.config import FitConfig, NetConfig

DEFAULT_PARAMS = Path("params.yaml")
# The params.yaml installed with the package: pipeline/params.yaml links to the repository's (a wheel
# holds a copy), so `dip restore --preset` reads the pipeline's profiles from any directory.
PACKAGE_PARAMS = Path(__file__).resolve().parent / "params.yaml"
PROFILE_FILE = Path("data/profile.json")
TASKS = ("denoise", "inpaint", "sr")  # dip.operators.TASKS (tests/test_settings.py checks they agree)
_ID = re.compile(r"^(?:denoise_s(?P<sigma>\d+(?:\.\d)?)|inpaint_p(?P<drop>\d{1,2})|sr_x(?P<factor>\d+))$")


# --- experiments ------------------------------------------------------------------------------

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


#: the keys of a ``figures:`` entry and their types (None: may be left empty)
FIGURE_KEYS: dict[str, Any] = {"task": Literal[TASKS], "image": str, "mask": Union[str, None], "drop": Union[float, None],
                               "factor": Union[int, None], "input": Union[str, None], "ground_truth": bool, "about": Union[str, None]}


def parse_figure(exp_id: str, spec: Mapping[str, Any]) -> Experiment:
    """A ``figures:`` entry → :class:`Experiment`; ``ValueError`` (without the key: the caller names it) for a malformed one."""
    unknown = set(spec) - set(FIGURE_KEYS)
    if unknown:
        raise ValueError(f"unknown key(s) {', '.join(sorted(map(str, unknown)))}; allowed: {', '.join(FIGURE_KEYS)}")
    task, image = spec.get("task"), spec.get("image")
    if task not in TASKS or not image or "/" not in str(image):
        raise ValueError("a figure needs task (denoise, inpaint or sr) and image (set/name)")
    if task == "inpaint" and (spec.get("mask") is None) == (spec.get("drop") is None):
        raise ValueError("an inpainting figure needs either mask (set/name) or drop")
    if task == "sr" and not 2 <= int(spec.get("factor") or 0) <= 16:
        raise ValueError("a super-resolution figure needs factor (2 to 16)")
    if spec.get("drop") is not None and not 0 < float(spec["drop"]) < 1:
        raise ValueError(f"drop is the fraction of missing pixels, between 0 and 1 (exclusive); got {spec['drop']!r}")
    return Experiment(
        exp_id, task, drop=float(spec["drop"]) if spec.get("drop") is not None else None,
        factor=int(spec["factor"]) if task == "sr" else None, image=str(image),
        mask=str(spec["mask"]) if spec.get("mask") else None, input=str(spec["input"]) if spec.get("input") else None,
        ground_truth=bool(spec.get("ground_truth", True)),
    )


def parse_experiment(exp_id: str, figures: Mapping[str, Any] | None = None) -> Experiment:
    """``denoise_s25`` → Experiment(task="denoise", sigma=25/255), etc., or the entry of ``figures``
    (params.yaml ``figures:``) of that id; ``ValueError`` otherwise."""
    if figures and exp_id in figures:
        try:
            return parse_figure(exp_id, figures[exp_id] or {})
        except ValueError as err:
            raise ValueError(f"figures.{exp_id}: {err}") from None
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


# --- profiles ---------------------------------------------------------------------------------

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
        """Fitting settings (for :class:`dip.config.FitConfig`) and snapshot iterations of ``exp``."""
        settings = self._fit_entry(exp)
        settings.pop("net", None)
        snapshots = settings.pop("snapshots", self.body.get("snapshots", []))
        return settings, [int(s) for s in snapshots]


def choose_profile(requested: str, profiles: Mapping[str, Any], cuda: bool) -> str:
    """The profile ``requested`` names: itself, or for ``auto`` ``paper`` on CUDA and ``quick`` otherwise."""
    if requested == "auto":
        name = "paper" if cuda else "quick"
    elif requested in profiles:
        name = requested
    else:
        raise ValueError(f"unknown profile {requested!r}; choose auto or one of {', '.join(profiles)}")
    if name not in profiles:
        raise ValueError(f"profile {name!r} (resolved from {requested!r}) is not defined in params.yaml")
    return name


def read_resolution(path: str | Path = PROFILE_FILE) -> dict[str, str]:
    """The record the ``resolve`` stage (``dip profile``) wrote (``data/profile.json``)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no resolved profile; run `dip profile` (the `resolve` stage) first")
    return json.loads(path.read_text())


def active_profile(params: dict[str, Any], resolution: dict[str, str]) -> Profile:
    """The :class:`Profile` that ``resolution`` (``data/profile.json``) names, of ``params`` (from :func:`load_params`)."""
    name = resolution["profile"]
    if name not in params["profiles"]:
        raise ValueError(f"{PROFILE_FILE} names profile {name!r}, which params.yaml does not define; run `dvc repro`")
    return Profile(name, params["profiles"][name], dict(params.get("figures") or {}))


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


# --- engine and baselines ---------------------------------------------------------------------

KINDS = ("local", "dask")


@dataclass
class EngineConfig:
    """params.yaml's ``engine:`` group (``device`` is resolved by the ``resolve`` stage)."""

    kind: str = "local"
    threads: int = 1               # torch threads per fit (0 = torch's default, one per core; on Dask workers 0 means 1)
    address: str = ""              # dask: scheduler address; '' = a LocalCluster on 127.0.0.1
    n_workers: int = 2             # LocalCluster: worker processes
    threads_per_worker: int = 1    # LocalCluster: concurrent fits per worker process
    dashboard: str = ""            # LocalCluster: dashboard address, e.g. 127.0.0.1:8787; '' = off
    retries: int = 2               # dask: re-runs of a fit that raised (a killed worker's task is rescheduled anyway)
    group: str | int = "1"         # local: same-size fits run together on CUDA: a number, or auto = from free GPU memory (1 off CUDA)

    @classmethod
    def from_params(cls, engine: Mapping[str, Any] | None) -> "EngineConfig":
        known = {f.name for f in dataclasses.fields(cls)}
        values = {k: ("" if v is None else v) for k, v in (engine or {}).items() if k in known}
        cfg = cls(**values)
        cfg.kind = str(cfg.kind).lower()
        if cfg.kind not in KINDS:
            raise ValueError(f"engine.kind {cfg.kind!r} is not one of {', '.join(KINDS)}")
        for name in ("threads", "n_workers", "threads_per_worker", "retries"):
            setattr(cfg, name, int(getattr(cfg, name)))
        if cfg.n_workers < 1 or cfg.threads_per_worker < 1 or cfg.threads < 0 or cfg.retries < 0:
            raise ValueError("engine.n_workers and engine.threads_per_worker must be ≥ 1, engine.threads and engine.retries ≥ 0")
        cfg.address, cfg.dashboard = str(cfg.address), str(cfg.dashboard)
        cfg.group = str(cfg.group).lower()
        if cfg.group != "auto" and not (cfg.group.isdigit() and int(cfg.group) >= 1):
            raise ValueError(f"engine.group must be 'auto' or a whole number >= 1, got {cfg.group!r}")
        return cfg


#: the classical methods per task and their settings' defaults (params.yaml ``baselines:`` overrides
#: them); the methods themselves are :data:`pipeline.stages.baselines.METHODS`
BASELINES: dict[str, dict[str, dict[str, Any]]] = {
    "inpaint": {"biharmonic": {}},
    "denoise": {"bm3d": {}, "nlm": {"h_factor": 0.8, "patch_size": 5, "patch_distance": 6}, "tv": {"weight_factor": 1.0}},
    "sr": {"bicubic": {}, "lanczos": {}},
}
BASELINE_DEFAULTS: dict[str, dict[str, Any]] = {m: d for methods in BASELINES.values() for m, d in methods.items()}


# --- the schema: keys, types, ranges ----------------------------------------------------------

ANY = "*"  # a mapping whose keys are names (profiles, fit keys, variants), each holding the same schema
Check = Callable[[Any], Union[str, None]]  # a value's extra condition: None if it holds, else what it must be


@dataclass(frozen=True)
class Value:
    """A leaf of the schema: a value of type ``hint`` (``int``, ``list[int]``, ``Literal[...]``, unions)
    for which ``check`` (if any) returns None."""

    hint: Any
    check: Check | None = None


@dataclass(frozen=True)
class Group:
    """A mapping of known keys (or ``{ANY: node}``: names); ``check`` (if any) validates the whole
    mapping once its keys and types are right, raising ``ValueError``."""

    keys: dict[str, "Value | Group"]
    check: Callable[[dict[str, Any]], Any] | None = None


def _at_least(low: float, strict: bool = False) -> Check:
    def check(v: Any) -> str | None:
        values = v if isinstance(v, list) else [v]
        bad = [x for x in values if isinstance(x, (int, float)) and not (x > low if strict else x >= low)]
        return None if not bad else f"{'>' if strict else '≥'} {low:g}" + (" (each)" if isinstance(v, list) else "")
    return check


def _between(low: float, high: float, strict: bool = False) -> Check:
    """A number ≥ ``low`` (> with ``strict``) and ≤ ``high``: a float setting's range that means something."""
    def check(v: Any) -> str | None:
        above = v > low if strict else v >= low
        return None if above and v <= high else f"{'>' if strict else '≥'} {low:g} and ≤ {high:g}"
    return check


def _seeds(v: list[int]) -> str | None:
    if not v:
        return "a list of at least one seed, e.g. [0]"
    if len(set(v)) != len(v) or min(v) < 0:
        return "a list of different seeds ≥ 0 (each seed is one fit of each image), e.g. [0, 1, 2]"
    return None


def _dataclass_keys(cls: type, **hints: Any) -> dict[str, Value | Group]:
    """The keys of a dataclass with their annotated types (``hints`` replace or add some)."""
    types_of = {**get_type_hints(cls), **hints}
    return {**{f.name: Value(types_of[f.name]) for f in dataclasses.fields(cls)}, **{k: Value(h) for k, h in hints.items()}}


def _net_check(values: dict[str, Any]) -> None:
    NetConfig.from_dict(values)


def _fit_check(values: dict[str, Any]) -> None:
    FitConfig.from_dict({k: v for k, v in values.items() if k not in ("snapshots", "net")})


def _figure_check(values: dict[str, Any]) -> None:
    parse_figure("", values)


def params_schema() -> Group:
    """The schema of params.yaml."""
    ints = int | list[int]
    net = Group({**_dataclass_keys(NetConfig, channels_down=ints, channels_up=ints, channels_skip=ints),  # from_dict's shorthands:
                 "levels": Value(int, _at_least(1)), "width": Value(Union[int, None]), "skip": Value(Union[int, None])}, _net_check)
    snapshots = Value(list[int], _at_least(0))
    fit = Group({**_dataclass_keys(FitConfig), "snapshots": snapshots, "net": net}, _fit_check)  # net: a figure's own network
    profile = Group({
        "experiments": Value(list[str]), "images": Group({t: Value(list[str]) for t in TASKS}),
        "max_side": Value(int, _at_least(0)), "log_every": Value(int, _at_least(1)), "snapshots": snapshots,
        "net": net, "variants": Group({ANY: Value(str)}), "fit": Group({ANY: fit}),
        "figures": Group({ANY: Group({k: Value(hint) for k, hint in FIGURE_KEYS.items()})}),  # keys replacing those of figures: (smoke: offline)
    })
    figure = Group({k: Value(hint) for k, hint in FIGURE_KEYS.items()}, _figure_check)
    baselines = Group({
        "methods": Group({t: Value(list[Literal[tuple(ms)]]) for t, ms in BASELINES.items()}),  # type: ignore[misc]
        **{m: Group({k: Value(type(d)) for k, d in defaults.items()}) for m, defaults in BASELINE_DEFAULTS.items()},
    })
    return Group({
        "profile": Value(str), "seeds": Value(list[int], _seeds), "experiments": Value(list[str]),
        "engine": Group({**_dataclass_keys(EngineConfig, address=Union[str, None], dashboard=Union[str, None]), "device": Value(str)},
                        EngineConfig.from_params),
        "fetch": Group({"mirror": Value(Union[str, None]), "timeout": Value(float, _between(0, 3600, strict=True)), "retries": Value(int, _at_least(0))}),
        "corrupt": Group({"seed": Value(int, _at_least(0))}),
        "baselines": baselines,
        "report": Group({"epsilon": Value(float, _between(0, 10))}),
        "profiles": Group({ANY: profile}),
        "figures": Group({ANY: figure}),
    }, _cross_check)


def _cross_check(params: dict[str, Any]) -> None:
    """What no single key can say: the required keys, the chosen profile, experiment ids, the
    images and fitting settings of each profile's experiments (a misspelt variant)."""
    missing = [k for k in ("profile", "profiles", "experiments") if k not in params]
    if missing:
        raise ValueError(f"missing top-level key(s) {', '.join(missing)}")
    profiles, figures = params["profiles"] or {}, params.get("figures") or {}
    if params["profile"] != "auto" and params["profile"] not in profiles:
        raise ValueError(f"profile {params['profile']!r} is not auto or one of profiles: {', '.join(profiles)}")
    for exp_id in params["experiments"] or []:
        parse_experiment(exp_id, figures)
    for name, body in profiles.items():
        for exp_id in (body or {}).get("experiments") or []:
            if exp_id not in params["experiments"]:
                raise ValueError(f"profiles.{name}.experiments: {exp_id!r} is not in experiments (dvc.yaml has a stage only for those)")
        unknown = sorted(set((body or {}).get("figures") or {}) - set(figures))
        if unknown:
            raise ValueError(f"profiles.{name}.figures: {', '.join(unknown)} not defined in figures:")
        profile = Profile(name, body or {}, figures)
        for exp in profile.experiments:  # each active experiment has its images and fitting settings
            try:
                profile.specs(exp), profile.fit(exp)
            except KeyError as err:
                raise ValueError(err.args[0]) from None


_short = reprlib.Repr()
_short.maxlevel, _short.maxstring, _short.maxother, _short.maxlist, _short.maxdict = 2, 40, 40, 4, 4


def _show(value: Any) -> str:
    """A short repr of a value of any size or depth (a message line, never a RecursionError)."""
    return _short.repr(value)


def _is(value: Any, hint: Any) -> bool:
    """Whether ``value`` (as YAML gives it) has type ``hint``; bools are not numbers."""
    origin = get_origin(hint)
    if hint is Any:
        return True
    if hint is type(None):
        return value is None
    if hint is bool:
        return isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if hint is float:  # .inf and .nan are never a setting
        return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if hint is str:
        return isinstance(value, str)
    if origin is Literal:
        return isinstance(value, str) and value in get_args(hint)
    if origin in (Union, types.UnionType):
        return any(_is(value, a) for a in get_args(hint))
    if origin is list:
        return isinstance(value, list) and all(_is(v, get_args(hint)[0]) for v in value)
    raise TypeError(f"the params schema cannot check values of type {hint!r}")


def _what(hint: Any) -> str:
    """``hint`` in words: ``a whole number``, ``a list of whole numbers``, ``one of stride, max``."""
    origin = get_origin(hint)
    if origin is Literal:
        return "one of " + ", ".join(map(str, get_args(hint)))
    if origin in (Union, types.UnionType):
        return " or ".join(_what(a) for a in get_args(hint))
    if origin is list:
        return "a list (each " + _what(get_args(hint)[0]) + ")"
    return {int: "a whole number", float: "a finite number", bool: "true or false", str: "text", type(None): "empty (null)"}.get(hint, str(hint))


def _text_hint(value: Any, hint: Any) -> str:
    """For a number YAML read as text (``1e12``, ``1.0e-5``): how to write it."""
    if not isinstance(value, str):
        return ""
    try:
        number = float(value)
    except ValueError:
        return ""
    whole = number.is_integer() and abs(number) < 1e18 and _is(int(number), hint)
    return f" (YAML reads {value} as text: write {int(number) if whole else format(number, '.6e')})"


def problems(value: Any, node: Value | Group, path: str = "") -> list[str]:
    """One message per unknown key, value of the wrong type or out of range in ``value`` (``path``
    names where it is); a group's ``check`` runs only once its own keys are right."""
    if isinstance(node, Value):
        if not _is(value, node.hint):
            return [f"{path} must be {_what(node.hint)}, got {_show(value)}{_text_hint(value, node.hint)}"]
        wrong = node.check(value) if node.check else None
        return [f"{path} must be {wrong}, got {_show(value)}"] if wrong else []
    if value is None:
        return []  # an empty group: its defaults
    if not isinstance(value, dict):
        return [f"{path or 'the file'} must be a mapping of keys, not {type(value).__name__} {_show(value)}"]
    out: list[str] = []
    for key, sub in value.items():
        where = f"{path}.{key}" if path else str(key)
        child = node.keys.get(ANY) or node.keys.get(key) if isinstance(key, str) else None
        if child is None:
            near = difflib.get_close_matches(str(key), list(node.keys), n=1)
            hint = f"did you mean '{path + '.' if path else ''}{near[0]}'?" if near else "valid: " + ", ".join(node.keys)
            out.append(f"unknown key '{where}' ({hint})")
        else:
            out += problems(sub, child, where)
    if not out and node.check is not None:
        try:
            node.check(value)
        except (ValueError, TypeError) as err:
            message = " ".join(str(err).split())
            out.append(f"{path}: {message}" if path and not message.startswith(path) else message)
    return out


def check_params(params: Any, source: str = "params.yaml") -> None:
    """Raise ``ValueError`` naming every unknown key and bad value of ``params`` at once."""
    found = problems(params, params_schema())
    if found:
        raise ValueError(f"{source}: " + "; ".join(found))


_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml's where PyYAML has it: 7× faster
MAX_DEPTH = 32  # lists and mappings in one another; params.yaml needs 5


def _depth(value: Any, limit: int = MAX_DEPTH + 1) -> int:
    """How deep lists and mappings nest in ``value``, counted up to ``limit`` (no deeper recursion)."""
    if limit <= 0 or not isinstance(value, (list, dict)):
        return 0
    children = value.values() if isinstance(value, dict) else value
    return 1 + max((_depth(c, limit - 1) for c in children), default=0)


def _check_depth(text: str, path: Path) -> None:
    """Refuse YAML nested deeper than :data:`MAX_DEPTH` before it is built into Python objects.

    PyYAML's own parser reads event by event without recursion or a limit of its own, so the depth
    is counted the same whichever build is installed: libyaml's reader stops near 1,000 levels with
    its own parse error, and PyYAML's composer recurses once per level. It runs where it is needed:
    before PyYAML's composer, and to explain an error of libyaml's."""
    depth = 0
    for event in yaml.parse(text, Loader=yaml.SafeLoader):
        if isinstance(event, (yaml.SequenceStartEvent, yaml.MappingStartEvent)):
            depth += 1
            if depth > MAX_DEPTH:
                raise ValueError(f"{path}: lists or mappings nested more than {MAX_DEPTH} deep, too deep to be a params file; "
                                 "give params.yaml or a copy of it")
        elif isinstance(event, (yaml.SequenceEndEvent, yaml.MappingEndEvent)):
            depth -= 1


def load_params(path: str | Path = DEFAULT_PARAMS) -> dict[str, Any]:
    """params.yaml, checked (:func:`check_params`); ``FileNotFoundError`` / ``ValueError`` naming the file."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such params file; run the command in the project's folder or give --params FILE")
    try:
        text = path.read_text()
        if _LOADER is yaml.SafeLoader:
            _check_depth(text, path)
        try:
            params = yaml.load(text, Loader=_LOADER) or {}
        except yaml.YAMLError:
            _check_depth(text, path)  # libyaml's own error: say so if it is the depth
            raise
        if _depth(params) > MAX_DEPTH:
            _check_depth(text, path)
    except (yaml.YAMLError, UnicodeDecodeError) as err:
        where = getattr(err, "problem_mark", None)
        at = f" (line {where.line + 1}, column {where.column + 1})" if where is not None else ""
        raise ValueError(f"{path}: not a readable YAML params file{at}; give params.yaml or a copy of it") from None
    except RecursionError:
        raise ValueError(f"{path}: lists or mappings nested too deeply to be a params file; give params.yaml or a copy of it") from None
    if not isinstance(params, dict):
        raise ValueError(f"{path}: a params file is a YAML mapping (key: value), not a {type(params).__name__}")
    check_params(params, str(path))
    return params


# --- the settings of one fit ------------------------------------------------------------------

@dataclass(frozen=True)
class FitSettings:
    """Everything one fit needs besides its files, built once from params.yaml (:func:`job_settings`)
    and passed as this object to the loop; the seed is ``fit.seed``. Its JSON form
    (:meth:`to_json`) is used only at three edges: the hashes (:mod:`pipeline.execution.keys`),
    run.json's provenance and the Dask task's wire (:func:`pipeline.execution.engines.fit_task`)."""

    net: NetConfig  # validated, every field explicit
    fit: FitConfig  # validated; its seed is the fit's seed
    device: str = "cpu"
    log_every: int = 50  # the curve's interval
    snapshots: tuple[int, ...] = ()  # iterations whose image is kept
    profile: str = ""  # the profile it came from (part of the fit's identity)

    @property
    def seed(self) -> int:
        return self.fit.seed

    def to_json(self) -> dict[str, Any]:
        """The JSON form: key for key and value for value the mapping that the hashes have always
        read (the seed both at the top and in ``fit``), so that every ``fit_key`` and
        ``settings_hash`` stays what it was (``tests/test_settings.py`` pins it)."""
        return {"net": self.net.to_dict(), "fit": dataclasses.asdict(self.fit), "seed": self.fit.seed, "device": self.device,
                "log_every": self.log_every, "snapshots": list(self.snapshots), "profile": self.profile}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> "FitSettings":
        """The settings of :meth:`to_json`'s form, checked (``ValueError`` for unknown or bad values)."""
        fit = FitConfig.from_dict(dict(data["fit"]))
        if "seed" in data and int(data["seed"]) != fit.seed:
            raise ValueError(f"seed {data['seed']!r} differs from fit.seed {fit.seed!r}")
        return cls(NetConfig.from_dict(dict(data["net"])), fit, str(data["device"]), int(data["log_every"]),
                   tuple(int(s) for s in data["snapshots"]), str(data["profile"]))

    def with_fit(self, **changes: Any) -> "FitSettings":
        """These settings with ``changes`` to the fitting settings (checked), e.g. execution options."""
        return dataclasses.replace(self, fit=FitConfig.from_dict({**dataclasses.asdict(self.fit), **changes}))


def job_settings(exp: Experiment, profile: Profile, seed: int, device: str) -> FitSettings:
    """Everything one fit of ``exp`` needs besides its files: what ``dip run`` hashes and ships to
    an engine (a :class:`pipeline.execution.keys.Fit`'s ``settings``)."""
    fit, snapshots = profile.fit(exp)
    return FitSettings(NetConfig.from_dict(profile.net(exp)), FitConfig.from_dict({**fit, "seed": seed}), device,
                       profile.log_every, tuple(snapshots), profile.name)


def preset_configs(preset: str, task: str, factor: int = 4, *, seed: int = 0, device: str = "cpu",
                   params: str | Path | None = None) -> tuple[str, NetConfig, FitConfig]:
    """``(profile name, network, fitting settings)`` of ``dip restore --preset`` (a profile of
    ``params``, default :data:`PACKAGE_PARAMS`; or ``auto``: paper on a CUDA ``device``, else
    quick) for ``task``: exactly what ``dip run`` builds for the matching experiment
    (:func:`user_experiment`). ``device`` is a resolved one (``cpu``, ``cuda:0``; see
    :func:`dip.device.pick_device`) where the preset is ``auto``."""
    if params is None and not PACKAGE_PARAMS.is_file():
        raise FileNotFoundError(f"{PACKAGE_PARAMS}: no params.yaml beside the installed package (install the repository "
                                "with `pip install -e .`); give the presets' table with --params FILE")
    path = PACKAGE_PARAMS if params is None else Path(params)
    p = load_params(path)
    if preset != "auto" and preset not in p["profiles"]:
        raise ValueError(f"unknown preset {preset!r}; choose auto or a profile of {path}: {', '.join(p['profiles'])}")
    if preset == "auto" and device == "auto":
        raise ValueError("--preset auto needs a resolved device (cpu, cuda, …), not auto")
    name = choose_profile(preset, p["profiles"], cuda=str(device).startswith("cuda"))
    profile = Profile(name, p["profiles"][name], dict(p.get("figures") or {}))
    settings = job_settings(user_experiment(profile, task, factor), profile, seed, device)
    return name, settings.net, settings.fit
