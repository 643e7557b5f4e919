"""The keys params.yaml may hold: a typo is an error naming the key and the nearest valid one.

Without this check a misspelt key (``max_sid``, ``engine.thraeds``) was silently ignored and its
default used. Where a group is read into a dataclass (:class:`dip.network.NetConfig`,
:class:`dip.fit.FitConfig`, :class:`pipeline.execution.engines.EngineConfig`) or a table
(:data:`pipeline.classical.DEFAULTS`, :data:`dip.operators.TASKS`), its keys come from there, so
a new setting is valid as soon as the code reads it.
"""

from __future__ import annotations

import dataclasses
import difflib
from typing import Any, Union

ANY = "*"  # a mapping whose keys are names (profiles, fit keys, variants), each holding the same schema
Schema = Union[dict[str, "Schema"], None]  # None: a value (not checked here); a dict: a mapping of known keys


def _fields(cls: type, *extra: str) -> dict[str, Schema]:
    return {**{f.name: None for f in dataclasses.fields(cls)}, **{k: None for k in extra}}


def params_schema() -> dict[str, Schema]:
    """The schema of params.yaml (imports the modules whose dataclasses define the groups)."""
    from dip.fit import FitConfig
    from dip.network import NetConfig
    from dip.operators import TASKS
    from pipeline.classical import DEFAULTS, METHODS
    from pipeline.execution.engines import EngineConfig

    net = _fields(NetConfig, "levels", "width", "skip")  # NetConfig.from_dict's shorthands
    profile: dict[str, Schema] = {
        "experiments": None, "images": {t: None for t in TASKS}, "max_side": None, "log_every": None, "snapshots": None,
        "net": net,
        "variants": {ANY: None},
        "fit": {ANY: {**_fields(FitConfig, "snapshots"), "net": net}},  # a figure's own network
        "figures": {ANY: None},  # keys replacing those of the top-level figures: (checked by parse_figure)
    }
    return {
        "profile": None, "seeds": None, "experiments": None,
        "engine": _fields(EngineConfig, "device"),
        "fetch": {"mirror": None, "timeout": None, "retries": None},   # what `dip fetch` reads
        "corrupt": {"seed": None},
        "baselines": {"methods": {t: None for t in METHODS}, **{m: {k: None for k in d} for m, d in DEFAULTS.items()}},
        "report": {"epsilon": None},
        "profiles": {ANY: profile},
        "figures": {ANY: None},  # each entry's keys are checked by pipeline.profiles.parse_figure
    }


def unknown_keys(value: Any, schema: Schema, prefix: str = "") -> list[str]:
    """One message per key of ``value`` that ``schema`` does not allow (or mapping that is not one)."""
    if schema is None or value is None:
        return []
    if not isinstance(value, dict):
        return [f"{prefix or 'the file'} must be a mapping of keys, not {type(value).__name__} {value!r}"]
    out: list[str] = []
    for key, sub in value.items():
        path = f"{prefix}.{key}" if prefix else str(key)
        if ANY in schema:
            out += unknown_keys(sub, schema[ANY], path)
        elif key in schema:
            out += unknown_keys(sub, schema[key], path)
        else:
            near = difflib.get_close_matches(str(key), list(schema), n=1)
            hint = f"did you mean '{prefix + '.' if prefix else ''}{near[0]}'?" if near else "valid: " + ", ".join(schema)
            out.append(f"unknown key '{path}' ({hint})")
    return out


def check_params(params: Any, source: str = "params.yaml") -> None:
    """Raise ``ValueError`` naming every unknown key of ``params`` (with the nearest valid one)."""
    problems = unknown_keys(params, params_schema())
    if problems:
        raise ValueError(f"{source}: " + "; ".join(problems))
