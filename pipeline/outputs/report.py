"""The report: our numbers, the classical baselines and the paper's, side by side.

For each experiment: images × methods with PSNR and SSIM (mean ± standard deviation over seeds),
means, and — only where the settings are the paper's (resolved profile ``paper`` and an
experiment the paper reports) — the paper's numbers, :math:`\\Delta = \\text{ours} - \\text{paper}`
and a *reproduced* flag :math:`|\\Delta| \\le \\varepsilon`. Where DIP trails the best baseline,
the report says by how much and whether DIP's PSNR curve was still rising at the end.

Outputs: ``metrics/report.md`` (readable on GitHub) and ``metrics/report.csv`` (long format for
the dashboard: experiment, image, set, method, psnr, psnr_std, ssim, ssim_std, seeds, seconds,
paper_psnr, delta, reproduced, source).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

from pipeline import layout

REPORT_FIELDS = layout.REPORT_FIELDS
SKIP_METHODS = ("dip_final", "dip_averaged", "dip_early_stopped")  # variants of `dip`, kept in per_image.csv


def load_paper(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: the paper's reported numbers are missing (data/paper.yaml in the repository)")
    return yaml.safe_load(path.read_text()) or {}


def comparability(exp: str, profile: str, paper: dict[str, Any]) -> tuple[bool, str]:
    """Whether ``exp`` under ``profile`` may be compared with the paper, and if not, why."""
    if exp not in paper:
        return False, f"the paper reports no numbers for {exp}"
    if profile != "paper":
        return False, f"profile `{profile}` uses other images and a smaller network than the paper; run the `paper` profile to compare"
    return True, ""


def aggregate(rows: pd.DataFrame) -> pd.DataFrame:
    """Mean and standard deviation over seeds per (experiment, image, set, method)."""
    rows = rows[~rows["method"].isin(SKIP_METHODS)].copy()
    rows["psnr"] = rows["psnr"].astype(float).replace([math.inf], 99.0)
    grouped = rows.groupby(["experiment", "image", "set", "method"], sort=False)
    out = grouped.agg(psnr=("psnr", "mean"), psnr_std=("psnr", "std"), ssim=("ssim", "mean"), ssim_std=("ssim", "std"),
                      seeds=("seed", "nunique"), seconds=("seconds", "mean")).reset_index()
    out[["psnr_std", "ssim_std"]] = out[["psnr_std", "ssim_std"]].fillna(0.0)
    return out


def paper_value(entry: dict[str, Any], paper_method: str, label: str, sets: list[str], images: list[str]) -> float | None:
    """The paper's PSNR of ``paper_method`` for a table cell: an image, ``mean`` or ``mean:<set>``.

    ``sets`` are the sets of the rows the cell covers, ``images`` the experiment's images."""
    if not label.startswith("mean"):
        return entry.get("per_image", {}).get(paper_method, {}).get(label)
    if "mean" in entry:
        return entry["mean"].get(paper_method) if label == "mean" else None
    if "per_set" in entry:
        set_name = label.split(":", 1)[1] if ":" in label else (sets[0] if len(set(sets)) == 1 else None)
        return entry["per_set"].get(set_name, {}).get(paper_method) if set_name else None
    values = [entry.get("per_image", {}).get(paper_method, {}).get(i) for i in images]
    return sum(values) / len(values) if values and None not in values and label == "mean" else None


def with_means(table: pd.DataFrame) -> pd.DataFrame:
    """Append mean rows per experiment and method (``image = "mean"``), and per set where an
    experiment spans several sets (``image = "mean:<set>"``)."""
    extra = []
    for (exp, method), g in table.groupby(["experiment", "method"], sort=False):
        parts = [("mean", "", g)]
        if g["set"].nunique() > 1:
            parts += [(f"mean:{s}", s, gs) for s, gs in g.groupby("set", sort=False)]
        for label, set_name, gs in parts:
            extra.append({"experiment": exp, "image": label, "set": set_name or (gs["set"].iloc[0] if gs["set"].nunique() == 1 else ""),
                          "method": method, "psnr": gs["psnr"].mean(), "psnr_std": gs["psnr_std"].mean(), "ssim": gs["ssim"].mean(),
                          "ssim_std": gs["ssim_std"].mean(), "seeds": int(gs["seeds"].max()), "seconds": gs["seconds"].sum()})
    return pd.concat([table, pd.DataFrame(extra)], ignore_index=True) if extra else table


def compare(table: pd.DataFrame, paper: dict[str, Any], profile: str, epsilon: float) -> pd.DataFrame:
    """Add paper_psnr, delta, reproduced to our rows, and rows for the paper's own methods."""
    table = table.copy()
    table["paper_psnr"], table["delta"], table["reproduced"], table["source"] = math.nan, math.nan, None, "ours"
    paper_rows = []
    for exp in table["experiment"].unique():
        if not comparability(exp, profile, paper)[0]:
            continue
        entry = paper[exp]
        rows = table[table["experiment"] == exp]
        images = [str(i) for i in rows["image"].unique() if not str(i).startswith("mean")]
        for label in rows["image"].astype(str).unique():
            cell = rows[rows["image"].astype(str) == label]
            sets = [str(x) for x in cell["set"]]
            for idx, r in cell.iterrows():
                target = entry.get("compare", {}).get(r["method"])
                value = paper_value(entry, target, label, sets, images) if target else None
                if value is not None:
                    table.loc[idx, ["paper_psnr", "delta"]] = [value, r["psnr"] - value]
                    table.loc[idx, "reproduced"] = bool(abs(r["psnr"] - value) <= epsilon)
            for paper_method, name in entry.get("labels", {}).items():
                value = paper_value(entry, paper_method, label, sets, images)
                if value is not None:
                    paper_rows.append({"experiment": exp, "image": label, "set": sets[0] if sets else "", "method": name, "psnr": value, "source": "paper"})
    if paper_rows:
        table = pd.concat([table, pd.DataFrame(paper_rows)], ignore_index=True)
    return table


def curve_trend(curves: pd.DataFrame, exp: str, tail: float = 0.2) -> float | None:
    """Mean PSNR gain (dB) over the last ``tail`` fraction of iterations, over images and seeds."""
    if curves.empty or "psnr_gt" not in curves:
        return None
    c = curves[curves["experiment"] == exp].copy()
    c["iteration"] = pd.to_numeric(c["iteration"], errors="coerce")
    c["psnr_gt"] = pd.to_numeric(c["psnr_gt"], errors="coerce")
    c = c.dropna(subset=["iteration", "psnr_gt"])
    if c.empty:
        return None
    gains = []
    for _, g in c.groupby(["image", "seed"]):
        g = g.sort_values("iteration")
        last = g["iteration"].max()
        before = g[g["iteration"] <= last * (1 - tail)]
        if not before.empty:
            gains.append(float(g["psnr_gt"].iloc[-1]) - float(before["psnr_gt"].iloc[-1]))
    return sum(gains) / len(gains) if gains else None


def _fmt(psnr: float, std: float | None = None, ssim: float | None = None) -> str:
    if psnr is None or (isinstance(psnr, float) and math.isnan(psnr)):
        return "–"
    text = f"{psnr:.2f}"
    if std is not None and not math.isnan(std) and std > 0:
        text += f" ± {std:.2f}"
    if ssim is not None and not (isinstance(ssim, float) and math.isnan(ssim)):
        text += f" ({ssim:.3f})"
    return text


def markdown(table: pd.DataFrame, curves: pd.DataFrame, paper: dict[str, Any], resolution: dict[str, Any], epsilon: float) -> str:
    """The human-readable report."""
    profile = resolution.get("profile", "?")
    lines = [
        "# Deep Image Prior: reproduction report",
        "",
        f"Profile **{profile}** (requested `{resolution.get('requested', profile)}`) on **{resolution.get('device', '?')}**"
        f" ({resolution.get('device_name', '')}). PSNR in dB (SSIM in brackets); ± is the standard deviation over seeds.",
        f"Δ = ours − paper; ✅ when |Δ| ≤ {epsilon} dB.",
        "",
    ]
    if profile != "paper":
        lines += [f"> ⚠️ These are **`{profile}`-profile** numbers (small images, narrow network, few iterations): "
                  "they are not the paper's setting and are not compared with the paper's numbers.", ""]
    for exp in table["experiment"].unique():
        t = table[table["experiment"] == exp]
        ours = t[t["source"] == "ours"]
        ok, reason = comparability(exp, profile, paper)
        dip_time = ours.loc[(ours["method"] == "dip") & ~ours["image"].astype(str).str.startswith("mean"), "seconds"].sum()
        lines += [f"## {exp}", ""]
        if ok:
            lines.append(f"Paper: {paper[exp].get('source', '')}.")
        else:
            lines.append(f"Paper columns left out: {reason}.")
        lines += [f"DIP run time: {dip_time:.0f} s in total.", ""]
        methods = list(dict.fromkeys(ours["method"]))
        paper_methods = list(dict.fromkeys(t.loc[t["source"] == "paper", "method"]))
        header = ["image", *methods, *paper_methods] + (["Δ DIP", "reproduced"] if ok else [])
        lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        for image in t["image"].unique():
            cells = [f"**{image}**" if str(image).startswith("mean") else str(image)]
            for m in methods:
                r = ours[(ours["image"] == image) & (ours["method"] == m)]
                cells.append(_fmt(r["psnr"].iloc[0], r["psnr_std"].iloc[0], r["ssim"].iloc[0]) if not r.empty else "–")
            for m in paper_methods:
                r = t[(t["image"] == image) & (t["method"] == m)]
                cells.append(_fmt(r["psnr"].iloc[0]) if not r.empty else "–")
            if ok:
                r = ours[(ours["image"] == image) & (ours["method"] == "dip")]
                delta = r["delta"].iloc[0] if not r.empty else math.nan
                cells += ["–" if math.isnan(delta) else f"{delta:+.2f}", "–" if math.isnan(delta) else ("✅" if abs(delta) <= epsilon else "❌")]
            lines.append("| " + " | ".join(cells) + " |")
        lines.append("")
        means = ours[ours["image"] == "mean"].set_index("method")["psnr"]
        baselines = means.drop(labels=[m for m in ("dip", "input") if m in means.index])
        if "dip" in means.index and not baselines.empty:
            best = baselines.idxmax()
            gap = means["dip"] - baselines[best]
            trend = curve_trend(curves, exp)
            if gap < 0:
                rising = "" if trend is None else (
                    f" DIP's PSNR was still rising at the end (+{trend:.2f} dB over the last 20 % of iterations), so more iterations would narrow the gap."
                    if trend > 0.05 else f" DIP's PSNR curve had flattened ({trend:+.2f} dB over the last 20 % of iterations).")
                lines += [f"DIP trails the best baseline ({best}) by {-gap:.2f} dB on average.{rising}", ""]
            else:
                lines += [f"DIP beats the best baseline ({best}) by {gap:.2f} dB on average.", ""]
    return "\n".join(lines) + "\n"


def paper_summary(table: pd.DataFrame, paper: dict[str, Any], profile: str) -> dict[str, Any]:
    """Per experiment: comparable?, why not, mean Δ of DIP to the paper, images reproduced."""
    out: dict[str, Any] = {}
    for exp in table["experiment"].unique():
        ok, reason = comparability(exp, profile, paper)
        entry: dict[str, Any] = {"comparable": ok}
        if ok:
            d = table[(table["experiment"] == exp) & (table["method"] == "dip") & table["delta"].notna()]
            per_image = d[~d["image"].astype(str).str.startswith("mean")]
            mean_row = d[d["image"] == "mean"]
            entry["mean_delta_dip"] = round(float(mean_row["delta"].iloc[0]), 3) if not mean_row.empty else None
            entry["reproduced"] = int(per_image["reproduced"].sum()) if not per_image.empty else int(mean_row["reproduced"].sum())
            entry["compared"] = int(len(per_image)) if not per_image.empty else int(len(mean_row))
        else:
            entry["reason"] = reason
        out[exp] = entry
    return out


def build(rows: pd.DataFrame, curves: pd.DataFrame, paper: dict[str, Any], resolution: dict[str, Any], epsilon: float) -> tuple[pd.DataFrame, str, dict[str, Any]]:
    """(report table, markdown, paper summary) from per-image rows (with a ``set`` column)."""
    table = compare(with_means(aggregate(rows)), paper, resolution.get("profile", ""), epsilon)
    table = table.reindex(columns=list(REPORT_FIELDS))
    return table, markdown(table, curves, paper, resolution, epsilon), paper_summary(table, paper, resolution.get("profile", ""))


NO_TRUTH = "no ground truth (a real photograph): no PSNR can be computed"


def without_truth_summary(blind: list[dict[str, Any]]) -> dict[str, Any]:
    """``summary.json``'s ``no_ground_truth``: per experiment the mean final loss and PSNR to
    the observation over its runs, and why there is no PSNR."""
    out: dict[str, Any] = {}
    for exp in dict.fromkeys(b["experiment"] for b in blind):
        runs = [b for b in blind if b["experiment"] == exp]
        mean = lambda key: round(sum(r[key] for r in runs) / len(runs), 6)  # noqa: E731
        out[exp] = {"images": len({r["image"] for r in runs}), "loss": mean("loss"), "psnr_obs": round(mean("psnr_obs"), 3), "note": NO_TRUTH}
    return out


def figures_section(about: dict[str, str], experiments: dict[str, Any], blind: list[dict[str, Any]]) -> str:
    """The report's list of the figure experiments that ran: what each one is, and either its
    DIP PSNR (table above) or, without a ground truth, its final loss and the plain statement
    that there is no PSNR."""
    ran = [e for e in about if e in experiments or any(b["experiment"] == e for b in blind)]
    if not ran:
        return ""
    lines = ["## Figures", "", "The paper's other figures (params.yaml `figures:`; results in the dashboard's Gallery and Compare pages).", "",
             "| experiment | what | result |", "|---|---|---|"]
    for exp in ran:
        if exp in experiments and "dip" in experiments[exp]:
            result = f"PSNR {_fmt(experiments[exp]['dip']['psnr'])} dB (method `dip` in its table above: the fitted result)"
        else:
            runs = [b for b in blind if b["experiment"] == exp]
            losses = ", ".join(f"{r['image']}: loss {r['loss']:.3g} after {r['iterations']} it. (PSNR to the observation {r['psnr_obs']:.2f} dB)" for r in runs)
            result = f"{NO_TRUTH}; {losses}"
        lines.append(f"| `{exp}` | {about[exp]} | {result} |")
    return "\n".join(lines) + "\n"
