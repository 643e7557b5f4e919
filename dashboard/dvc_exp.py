"""The Ablations page's data: ``dvc exp show --json`` of the results root, flattened to a table."""

from __future__ import annotations

import json
import subprocess
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


@st.cache_data(show_spinner="Reading DVC experiments…", ttl=30)
def _dvc_exp_show(root: str, signature: float, timeout: float) -> tuple[pd.DataFrame | None, str]:
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
        data = json.loads(proc.stdout or "[]")
    except json.JSONDecodeError:
        return None, "`dvc exp show --json` printed something that is not JSON."
    table = parse_exp_show(data)
    return table, "" if len(table) else "No DVC experiments yet."


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
