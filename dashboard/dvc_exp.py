"""The Ablations page's data: ``dvc exp show --json`` of the results root, flattened to a table."""

from __future__ import annotations

import json
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import streamlit as st

from dashboard.load import file_mtime
from pipeline import layout

SUMMARY = f"{layout.METRICS}/{layout.SUMMARY_JSON}"  # the metrics file of dvc.yaml, as `dvc exp show` names it


def dvc_experiments(root: Path, timeout: float = 60) -> tuple[pd.DataFrame | None, str]:
    """DVC experiments of the workspace at ``root`` as a table (params and metrics flattened).

    Returns ``(table, message)``; ``table`` is ``None`` with a human-readable reason when there
    is no DVC repository, no experiment, or ``dvc`` fails.
    """
    if not (root / ".dvc").is_dir():
        return None, f"{root} is not a DVC repository (no .dvc/ directory), so there are no DVC experiments to show."
    sig = file_mtime(root / ".git" / "refs" / "exps") if (root / ".git").is_dir() else 0.0
    return _dvc_exp_show(str(root), sig, timeout)


def exp_show(root: Path, timeout: float = 60) -> tuple[Any, str]:
    """``dvc exp show --json`` of the workspace at ``root`` as parsed JSON, or ``(None, reason)``."""
    if not (root / ".dvc").is_dir():
        return None, f"{root} is not a DVC repository (no .dvc/ directory), so there are no DVC experiments to show."
    sig = file_mtime(root / ".git" / "refs" / "exps") if (root / ".git").is_dir() else 0.0
    return _exp_show_json(str(root), sig, timeout)


@st.cache_data(show_spinner="Reading DVC experiments…", ttl=30)
def _dvc_exp_show(root: str, signature: float, timeout: float) -> tuple[pd.DataFrame | None, str]:
    data, message = _exp_show_json(root, signature, timeout)
    if data is None:
        return None, message
    table = parse_exp_show(data)
    return table, "" if len(table) else "No DVC experiments yet."


@st.cache_data(show_spinner="Reading DVC experiments…", ttl=30)
def _exp_show_json(root: str, signature: float, timeout: float) -> tuple[Any, str]:
    try:
        proc = subprocess.run(
            ["dvc", "exp", "show", "--json"],
            cwd=root, capture_output=True, text=True, timeout=timeout,
        )
    except FileNotFoundError:
        return None, "The `dvc` command is not installed."
    except subprocess.TimeoutExpired:
        return None, f"`dvc exp show --json` took longer than {timeout:.0f} s."
    if proc.returncode != 0:
        msg = (proc.stderr or proc.stdout).strip().splitlines()
        return None, "`dvc exp show --json` failed: " + (msg[-1] if msg else f"exit code {proc.returncode}")
    try:
        return json.loads(proc.stdout or "[]"), ""
    except json.JSONDecodeError:
        return None, "`dvc exp show --json` printed something that is not JSON."


def _flatten(prefix: str, value: Any, out: dict[str, Any]) -> None:
    if isinstance(value, dict):
        for k, v in value.items():
            _flatten(f"{prefix}.{k}" if prefix else str(k), v, out)
    elif isinstance(value, list):
        out[prefix] = json.dumps(value)
    else:
        out[prefix] = value


def _row(entry: dict[str, Any], kind: str, baseline: str) -> dict[str, Any]:
    data = entry.get("data") or {}
    row: dict[str, Any] = {
        "experiment": "workspace" if entry.get("rev") == "workspace" else entry.get("name") or (entry.get("rev") or data.get("rev") or "")[:7],
        "kind": kind,
        "baseline": baseline,
        "rev": (entry.get("rev") or data.get("rev") or "")[:9],
        "created": data.get("timestamp"),
        "status": data.get("status") or ("Success" if not entry.get("error") else "Failed"),
    }
    for section, label in (("params", "param"), ("metrics", "metric")):
        for file, content in (data.get(section) or {}).items():
            flat: dict[str, Any] = {}
            _flatten("", (content or {}).get("data") or {}, flat)
            for k, v in flat.items():
                row[f"{label}:{k}" if file in ("params.yaml", SUMMARY) else f"{label}:{file}:{k}"] = v
    return row


def parse_exp_show(data: Any) -> pd.DataFrame:
    """Flatten ``dvc exp show --json`` (DVC 3: a list of baselines, each with ``experiments``)."""
    rows: list[dict[str, Any]] = []
    for base in data if isinstance(data, list) else []:
        if not isinstance(base, dict):
            continue
        bname = base.get("name") or (base.get("rev") or "")[:7]
        rows.append(_row(base, "workspace" if base.get("rev") == "workspace" else "baseline", bname))
        for exp in base.get("experiments") or []:
            for rev in exp.get("revs") or []:
                rows.append(_row({**rev, "name": rev.get("name") or exp.get("name")}, "experiment", bname))
    return pd.DataFrame(rows)


def changed_columns(table: pd.DataFrame) -> list[str]:
    """The ``param:``/``metric:`` columns whose values differ between rows."""
    out = []
    for col in table.columns:
        if col.startswith(("param:", "metric:")):
            values = table[col].astype(str).fillna("")
            if values.nunique(dropna=False) > 1:
                out.append(col)
    return out


# --- a baseline against variants (the Ablations page's comparison) -----------------------------

@dataclass
class Run:
    """One row of ``dvc exp show --json`` (the workspace, a commit or an experiment): its params
    (flattened, lists as JSON) and the ``experiments`` of its metrics/summary.json (``{}`` where
    the file is missing or unreadable: an experiment still queued, running or failed)."""

    label: str
    kind: str  # workspace | commit | experiment
    rev: str
    params: dict[str, Any]
    summary: dict[str, Any]

    @property
    def seeds(self) -> int:
        """How many seeds the params ask for (``seeds``); 1 where they do not say."""
        try:
            return max(1, len(json.loads(str(self.params.get("seeds", "[0]")))))
        except (TypeError, ValueError):
            return 1


def runs(data: Any) -> list[Run]:
    """The rows of ``dvc exp show --json`` in its order, each with a unique label (its name, the
    short rev where it has none or the name repeats)."""
    found: list[Run] = []
    for base in data if isinstance(data, list) else []:
        if not isinstance(base, dict):
            continue
        kind = "workspace" if base.get("rev") == "workspace" else "commit"
        found.append(_run(base, kind))
        for exp in base.get("experiments") or []:
            for rev in (exp.get("revs") or []) if isinstance(exp, dict) else []:
                if isinstance(rev, dict):
                    found.append(_run({**rev, "name": rev.get("name") or exp.get("name")}, "experiment"))
    seen: dict[str, int] = {}
    for r in found:
        seen[r.label] = seen.get(r.label, 0) + 1
    for r in found:
        if seen[r.label] > 1 and r.kind != "workspace":
            r.label = f"{r.label} ({r.rev[:7]})"
    return found


def _run(entry: dict[str, Any], kind: str) -> Run:
    data = entry.get("data") if isinstance(entry.get("data"), dict) else {}
    rev = str(entry.get("rev") or data.get("rev") or "")
    label = "workspace" if kind == "workspace" else str(entry.get("name") or rev[:7] or "?")
    params: dict[str, Any] = {}
    _flatten("", ((data.get("params") or {}).get("params.yaml") or {}).get("data") or {}, params)
    summary = ((data.get("metrics") or {}).get(SUMMARY) or {}).get("data") or {}
    experiments = summary.get("experiments") if isinstance(summary, dict) else None
    return Run(label, kind, rev, params, experiments if isinstance(experiments, dict) else {})


def changed_params(selected: list[Run]) -> pd.DataFrame:
    """The params whose values differ between ``selected``: one row per key, one column per run."""
    keys = sorted({k for r in selected for k in r.params})
    rows = [{"parameter": k, **{r.label: _text(r.params.get(k)) for r in selected}} for k in keys
            if len({_text(r.params.get(k)) for r in selected}) > 1]
    return pd.DataFrame(rows, columns=["parameter", *[r.label for r in selected]])


def _text(value: Any) -> str:
    return "–" if value is None else str(value)


def spread(run: Run, experiment: str, method: str, metric: str = "psnr") -> str:
    """How many seeds a number is over and its spread over them: ``± std [min–max], 3 seeds``
    where summary.json records the spread (``seeds``, ``<metric>_std``, ``_min``, ``_max``);
    ``1 seed`` for a single seed (or a deterministic baseline); ``the same for all 3 seeds`` where
    min = max without a std (the corrupted input); ``3 seeds (no spread recorded)`` where the params
    ask for several seeds and summary.json gives only the mean."""
    entry = (run.summary.get(experiment) or {}).get(method)
    if not isinstance(entry, dict) or not entry:
        return ""
    n = entry.get("seeds")
    if not isinstance(n, int) or isinstance(n, bool):
        n = run.seeds if method.startswith("dip") else 1
    std, low, high = (entry.get(f"{metric}_{k}") for k in ("std", "min", "max"))
    if n <= 1:
        return "1 seed"
    if not isinstance(std, (int, float)):
        if isinstance(low, (int, float)) and low == high:  # the corrupted input: one observation for every seed
            return f"the same for all {n} seeds"
        return f"{n} seeds (no spread recorded)"
    text = f"± {std:.3f}"
    if isinstance(low, (int, float)) and isinstance(high, (int, float)):
        text += f" [{low:.3f}–{high:.3f}]"
    return f"{text}, {n} seeds"


def _value(run: Run, experiment: str, method: str, metric: str) -> float | None:
    entry = (run.summary.get(experiment) or {}).get(method)
    value = entry.get(metric) if isinstance(entry, dict) else None
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def metrics_of(selected: list[Run]) -> list[str]:
    """The numeric metrics (psnr, ssim, …) the selected runs' summaries give, psnr first."""
    names = {m for r in selected for methods in r.summary.values() if isinstance(methods, dict)
             for entry in methods.values() if isinstance(entry, dict)
             for m, v in entry.items() if isinstance(v, (int, float)) and not isinstance(v, bool)
             and m not in ("images", "seeds") and not m.endswith(("_std", "_min", "_max"))}
    return sorted(names, key=lambda m: (m != "psnr", m != "ssim", m))


def comparison(baseline: Run, variants: list[Run], metric: str = "psnr") -> pd.DataFrame:
    """Per experiment (denoise_s25, …) and method: the baseline's ``metric`` and its spread, then
    for each variant its ``metric``, ``Δ`` = variant − baseline and its spread."""
    keys: list[tuple[str, str]] = []
    for r in (baseline, *variants):
        for exp, methods in r.summary.items():
            for method in methods if isinstance(methods, dict) else {}:
                if (exp, method) not in keys and _value(r, exp, method, metric) is not None:
                    keys.append((exp, method))
    rows = []
    for exp, method in keys:
        base = _value(baseline, exp, method, metric)
        row: dict[str, Any] = {"experiment": exp, "method": method, baseline.label: base,
                               f"{baseline.label} seeds": spread(baseline, exp, method, metric)}
        for v in variants:
            value = _value(v, exp, method, metric)
            row[v.label] = value
            row[f"Δ {v.label}"] = None if value is None or base is None else round(value - base, 4)
            row[f"{v.label} seeds"] = spread(v, exp, method, metric)
        rows.append(row)
    return pd.DataFrame(rows)
