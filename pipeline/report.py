"""The report: our numbers, the classical baselines and the paper's, side by side.

For each experiment: images × methods with PSNR and SSIM (mean ± standard deviation over seeds),
means, and — only where the settings are the paper's (resolved profile ``paper`` and an
experiment the paper reports) — the paper's numbers, :math:`\\Delta = \\text{ours} - \\text{paper}`
and a *reproduced* flag :math:`|\\Delta| \\le \\varepsilon`. Where DIP trails the best baseline,
the report says by how much and whether DIP's PSNR curve was still rising at the end.

A run may be partial (a GPU run published in parts, an interrupted ``dvc repro``): each
experiment of the profile has :math:`n` images (``data/corrupted/<exp>/experiment.json``) of which
:math:`k` are fitted (:class:`Progress`). An experiment in progress (:math:`0 < k < n`) is shown
with its means over the :math:`k` fitted images only, labelled "mean over k of n images", beside
the paper's mean over the *same* :math:`k` images (so Δ compares like with like; where the paper
reports only a mean over a whole set, Δ waits until that set is fitted) and the paper's mean over
all :math:`n`; an experiment with :math:`k = 0` is listed as pending.

Outputs: ``metrics/report.md`` (readable on GitHub) and ``metrics/report.csv`` (long format for
the dashboard: experiment, image, set, method, psnr, psnr_std, ssim, ssim_std, seeds, seconds,
paper_psnr, delta, reproduced, source, paper_psnr_all, images_done, images_total, complete).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping

import pandas as pd
import yaml

from pipeline import layout

REPORT_FIELDS = layout.REPORT_FIELDS
SKIP_METHODS = ("dip_final", "dip_averaged", "dip_early_stopped")  # variants of `dip`, kept in per_image.csv
SEEDLESS = ("input",)  # the observation: the same for every seed of DIP (its corruption has its own seed), so no spread


def load_paper(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: the paper's reported numbers are missing (data/paper.yaml in the repository)")
    try:
        paper = yaml.safe_load(path.read_text()) or {}
    except (yaml.YAMLError, RecursionError, UnicodeDecodeError):
        raise ValueError(f"{path}: not a readable YAML file; give the paper's numbers (data/paper.yaml in the repository)") from None
    if not isinstance(paper, dict):
        raise ValueError(f"{path}: a YAML {type(paper).__name__}, not a mapping of experiments; give the paper's numbers (data/paper.yaml)")
    return paper


def comparability(exp: str, profile: str, paper: dict[str, Any]) -> tuple[bool, str]:
    """Whether ``exp`` under ``profile`` may be compared with the paper, and if not, why."""
    if exp not in paper:
        return False, f"the paper reports no numbers for {exp}"
    if profile != "paper":
        return False, f"profile `{profile}` uses other images and a smaller network than the paper; run the `paper` profile to compare"
    return True, ""


# ------------------------------------------------------------------------------------ progress
@dataclass(frozen=True)
class Progress:
    """How far one experiment of the profile has got: its :math:`n` images (``experiment.json``
    order) and the :math:`k` of them with a finished fit; ``sets`` maps an image to its set where
    its ``meta.json`` says so."""

    images: tuple[str, ...]
    done: frozenset[str]
    sets: Mapping[str, str] = field(default_factory=dict)

    @property
    def k(self) -> int:
        return sum(i in self.done for i in self.images)

    @property
    def n(self) -> int:
        return len(self.images)

    @property
    def complete(self) -> bool:
        return self.n > 0 and self.k == self.n

    @property
    def status(self) -> str:
        return "complete" if self.complete else "pending" if self.k == 0 else "in progress"

    @property
    def pending(self) -> list[str]:
        return [i for i in self.images if i not in self.done]

    def set_counts(self, set_name: str) -> tuple[int, int | None]:
        """``(k, n)`` of one set; ``n`` is ``None`` where some image's set is unknown."""
        k = sum(1 for i in self.images if i in self.done and self.sets.get(i) == set_name)
        known = all(i in self.sets for i in self.images)
        return k, (sum(1 for i in self.images if self.sets.get(i) == set_name) if known else None)

    def covers(self, set_name: str | None) -> bool:
        """Whether every image of ``set_name`` (of the whole experiment when ``None``) is fitted: only
        then may a number the paper gives for the whole set (or experiment) be compared with ours."""
        if self.complete or set_name is None:
            return self.complete
        k, n = self.set_counts(set_name)
        return n is not None and k == n > 0

    def as_dict(self) -> dict[str, Any]:
        return {"images_done": self.k, "images_total": self.n, "complete": self.complete, "status": self.status}


def _json_object(path: Path) -> dict[str, Any] | None:
    try:
        value = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return value if isinstance(value, dict) else None


def read_progress(corrupted: Path | None, results: Path | None, experiments: Iterable[str],
                  done: Mapping[str, Iterable[str]]) -> dict[str, Progress]:
    """:class:`Progress` of every experiment of the profile among ``experiments``.

    The images of an experiment are those of ``<corrupted>/<exp>/experiment.json`` (else
    ``<results>/<exp>/experiment.json``), plus any fitted image (``done[exp]``) they do not list;
    an experiment that is inactive there, or has neither the file nor a fit, is left out. Sets are
    read from each image's ``meta.json`` where it exists. Unreadable files count as missing."""
    out: dict[str, Progress] = {}
    for exp in experiments:
        fitted = {str(i) for i in done.get(exp, ())}
        info = next((i for i in (_json_object(layout.ExperimentDir(Path(r) / exp).record) for r in (corrupted, results) if r is not None)
                     if i is not None), None)
        if (info is None and not fitted) or (info is not None and info.get("active") is False):
            continue
        listed = info.get("images") if info is not None else None
        images = [str(i) for i in listed] if isinstance(listed, list) else []
        images += sorted(fitted - set(images))
        sets = {}
        for image in images if corrupted is not None else ():
            meta = _json_object(layout.ExperimentDir(Path(corrupted) / exp).case(image).meta)
            if meta is not None and isinstance(meta.get("set"), str):
                sets[image] = meta["set"]
        out[exp] = Progress(tuple(images), frozenset(fitted), sets)
    return out


def counted(progress: Mapping[str, Progress], exp: str, image: str) -> bool:
    """Whether the rows of ``image`` enter ``exp``'s table and means: always in a complete
    experiment (or one without :class:`Progress`), else only when DIP has fitted the image, so
    that every mean of an experiment in progress is over the same images."""
    prog = progress.get(exp)
    return prog is None or prog.complete or str(image) in prog.done


def mean_label(label: str, prog: Progress | None) -> str:
    """How a mean row reads: ``mean`` of a complete experiment, else ``mean over k of n images``
    (``mean:<set> over k of n images``, or ``over its k fitted images`` where the set's size is
    unknown)."""
    if prog is None or prog.complete or not label.startswith("mean"):
        return label
    if label == "mean":
        return f"mean over {prog.k} of {prog.n} images"
    k, n = prog.set_counts(label.split(":", 1)[1])
    return f"{label} over {k} of {n} images" if n is not None else f"{label} over its {k} fitted images"


# ------------------------------------------------------------------------------------- the table
def seed_spread(values: Iterable[float]) -> dict[str, float]:
    """Mean, sample standard deviation, min and max of per-seed values :math:`x_1 … x_S`:
    :math:`\\bar x = \\frac1S\\sum_s x_s`, :math:`s = \\sqrt{\\frac{1}{S-1}\\sum_s (x_s - \\bar x)^2}` (ddof = 1;
    NaN with one seed: no spread), ``n`` = :math:`S`."""
    x = pd.Series([float(v) for v in values], dtype=float).dropna()
    return {"mean": float(x.mean()) if len(x) else math.nan, "std": float(x.std(ddof=1)) if len(x) > 1 else math.nan,
            "min": float(x.min()) if len(x) else math.nan, "max": float(x.max()) if len(x) else math.nan, "n": int(len(x))}


def seed_means(rows: pd.DataFrame, metric: str) -> pd.Series:
    """Per seed :math:`s`, the mean over the images fitted with it: :math:`m_s = \\frac{1}{|I_s|}\\sum_{i \\in I_s} x_{i,s}`
    (a method without seeds, a baseline, counts as one)."""
    seeds = rows["seed"].astype(str).replace({"nan": ""})
    return rows.assign(seed=seeds).groupby("seed", sort=True)[metric].mean()


def aggregate(rows: pd.DataFrame) -> pd.DataFrame:
    """Per (experiment, image, set, method), over seeds: mean, sample std (ddof = 1; empty with
    one seed), min and max of the PSNR, mean and std of the SSIM, the number of seeds."""
    rows = rows[~rows["method"].isin(SKIP_METHODS)].copy()
    rows["psnr"] = rows["psnr"].astype(float).replace([math.inf], 99.0)
    grouped = rows.groupby(["experiment", "image", "set", "method"], sort=False)
    out = grouped.agg(psnr=("psnr", "mean"), psnr_std=("psnr", "std"), psnr_min=("psnr", "min"), psnr_max=("psnr", "max"),
                      ssim=("ssim", "mean"), ssim_std=("ssim", "std"), seeds=("seed", "nunique"), seconds=("seconds", "mean")).reset_index()
    out["seeds"] = out["seeds"].clip(lower=1)
    out.loc[out["method"].isin(SEEDLESS), ["psnr_std", "ssim_std"]] = math.nan
    return out


def paper_value(entry: dict[str, Any], paper_method: str, label: str, sets: list[str], images: list[str],
                whole: bool = True) -> float | None:
    """The paper's PSNR of ``paper_method`` for a table cell: an image, ``mean`` or ``mean:<set>``.

    ``sets`` are the sets of the rows the cell covers, ``images`` the images the mean is over. A
    mean the paper gives per image is averaged over ``images``; one it gives only for a whole set
    (or experiment) is returned only when ``whole`` (every image of it is in ours)."""
    if not label.startswith("mean"):
        return entry.get("per_image", {}).get(paper_method, {}).get(label)
    if "mean" in entry:
        return entry["mean"].get(paper_method) if label == "mean" and whole else None
    if "per_set" in entry:
        set_name = label.split(":", 1)[1] if ":" in label else (sets[0] if len(set(sets)) == 1 else None)
        return entry["per_set"].get(set_name, {}).get(paper_method) if set_name and whole else None
    values = [entry.get("per_image", {}).get(paper_method, {}).get(i) for i in images]
    return sum(values) / len(values) if values and None not in values and label == "mean" else None


def with_means(table: pd.DataFrame, rows: pd.DataFrame | None = None) -> pd.DataFrame:
    """Append mean rows per experiment and method (``image = "mean"``), and per set where an
    experiment spans several sets (``image = "mean:<set>"``).

    A mean row's ``psnr`` / ``ssim`` is the mean over images of the per-image means; its spread
    (``psnr_std``, ``psnr_min``, ``psnr_max``, ``ssim_std``) is that of the per-seed means
    :math:`m_s` (:func:`seed_means`) of the per-image ``rows`` it covers (:func:`seed_spread`): how much
    the experiment's mean moves from one seed to the next. Without ``rows``, or with one seed, none."""
    extra = []
    if rows is not None and len(rows):
        rows = rows[~rows["method"].isin(SKIP_METHODS)].copy()
        rows["psnr"] = rows["psnr"].astype(float).replace([math.inf], 99.0)
    for (exp, method), g in table.groupby(["experiment", "method"], sort=False):
        parts = [("mean", "", g)]
        if g["set"].nunique() > 1:
            parts += [(f"mean:{s}", s, gs) for s, gs in g.groupby("set", sort=False)]
        for label, set_name, gs in parts:
            mine = rows[(rows["experiment"] == exp) & (rows["method"] == method) & rows["image"].isin(gs["image"])] if rows is not None and len(rows) else None
            psnr = seed_spread(seed_means(mine, "psnr")) if mine is not None and len(mine) else {"std": math.nan, "min": math.nan, "max": math.nan}
            ssim = seed_spread(seed_means(mine, "ssim")) if mine is not None and len(mine) else {"std": math.nan}
            if method in SEEDLESS:
                psnr["std"] = ssim["std"] = math.nan
            extra.append({"experiment": exp, "image": label, "set": set_name or (gs["set"].iloc[0] if gs["set"].nunique() == 1 else ""),
                          "method": method, "psnr": gs["psnr"].mean(), "psnr_std": psnr["std"], "psnr_min": psnr["min"], "psnr_max": psnr["max"],
                          "ssim": gs["ssim"].mean(), "ssim_std": ssim["std"], "seeds": int(gs["seeds"].max()), "seconds": gs["seconds"].sum()})
    return pd.concat([table, pd.DataFrame(extra)], ignore_index=True) if extra else table


def _whole(prog: Progress | None, label: str, sets: list[str]) -> bool:
    """Whether a mean cell covers every image the paper's mean for it covers (see :meth:`Progress.covers`)."""
    if prog is None or prog.complete:
        return True
    set_name = label.split(":", 1)[1] if ":" in label else (sets[0] if len(set(sets)) == 1 and sets[0] else None)
    return prog.covers(set_name)


def compare(table: pd.DataFrame, paper: dict[str, Any], profile: str, epsilon: float,
            progress: Mapping[str, Progress] | None = None) -> pd.DataFrame:
    """Add paper_psnr (over the same images as ours), delta, reproduced and, on mean rows,
    paper_psnr_all (the paper's mean over all the experiment's images) to our rows, and rows for
    the paper's own methods."""
    progress = progress or {}
    table = table.copy()
    table["paper_psnr"], table["delta"], table["reproduced"], table["source"] = math.nan, math.nan, None, "ours"
    table["paper_psnr_all"] = math.nan
    paper_rows = []
    for exp in table["experiment"].unique():
        if not comparability(exp, profile, paper)[0]:
            continue
        entry, prog = paper[exp], progress.get(exp)
        rows = table[table["experiment"] == exp]
        images = [str(i) for i in rows["image"].unique() if not str(i).startswith("mean")]
        everything = list(prog.images) if prog is not None else images
        for label in rows["image"].astype(str).unique():
            cell = rows[rows["image"].astype(str) == label]
            sets = [str(x) for x in cell["set"]]
            whole, is_mean = _whole(prog, label, sets), label.startswith("mean")

            # the sets all n images span (for a mean the paper gives per set); unknown: none
            all_sets = sets if prog is None or prog.complete or label != "mean" else (
                [] if any(i not in prog.sets for i in prog.images) else [prog.sets[i] for i in prog.images])

            def values(method: str) -> tuple[float | None, float | None]:
                same = paper_value(entry, method, label, sets, images, whole)
                return same, paper_value(entry, method, label, all_sets, everything) if is_mean else None

            for idx, r in cell.iterrows():
                target = entry.get("compare", {}).get(r["method"])
                value, full = values(target) if target else (None, None)
                if value is not None:
                    table.loc[idx, ["paper_psnr", "delta"]] = [value, r["psnr"] - value]
                    table.loc[idx, "reproduced"] = bool(abs(r["psnr"] - value) <= epsilon)
                if full is not None:
                    table.loc[idx, "paper_psnr_all"] = full
            for paper_method, name in entry.get("labels", {}).items():
                value, full = values(paper_method)
                if value is not None or full is not None:
                    paper_rows.append({"experiment": exp, "image": label, "set": sets[0] if sets else "", "method": name,
                                       "psnr": math.nan if value is None else value, "paper_psnr_all": math.nan if full is None else full,
                                       "source": "paper"})
    if paper_rows:
        table = pd.concat([table, pd.DataFrame(paper_rows)], ignore_index=True)
    return table


def pending_rows(progress: Mapping[str, Progress], paper: dict[str, Any], profile: str) -> list[dict[str, Any]]:
    """One row per experiment with no fit yet (``source = pending``, method ``dip``, no PSNR), with
    the paper's mean over all its images where the paper gives one for it."""
    out = []
    for exp, prog in progress.items():
        if prog.k:
            continue
        full = None
        if comparability(exp, profile, paper)[0]:
            target = paper[exp].get("compare", {}).get("dip")
            full = paper_value(paper[exp], target, "mean", [], list(prog.images)) if target else None
        out.append({"experiment": exp, "image": "mean", "set": "", "method": "dip", "psnr": math.nan,
                    "paper_psnr_all": math.nan if full is None else full, "source": "pending"})
    return out


def results_table(rows: pd.DataFrame, paper: dict[str, Any], profile: str, epsilon: float,
                  progress: Mapping[str, Progress] | None = None) -> pd.DataFrame:
    """``report.csv``'s table from per-image rows (with a ``set`` column): the rows of the fitted
    images only (an experiment in progress keeps no baseline row of an image DIP has not fitted),
    means over them, the paper's numbers (:func:`compare`), each experiment's ``images_done``,
    ``images_total`` and ``complete``, and a ``pending`` row per experiment with no fit yet.
    Experiments without a :class:`Progress` count as complete with the images they have."""
    progress = progress or {}
    if len(rows):
        rows = rows[[counted(progress, e, i) for e, i in zip(rows["experiment"], rows["image"])]]
    table = compare(with_means(aggregate(rows), rows), paper, profile, epsilon, progress) if len(rows) else pd.DataFrame(columns=list(REPORT_FIELDS))
    pending = pending_rows(progress, paper, profile)
    if pending:
        table = pd.concat([table, pd.DataFrame(pending)], ignore_index=True) if len(table) else pd.DataFrame(pending)
    counts = {}
    for exp in table["experiment"].unique():
        prog = progress.get(exp)
        k = prog.k if prog is not None else table.loc[(table["experiment"] == exp) & ~table["image"].astype(str).str.startswith("mean"), "image"].nunique()
        counts[exp] = (k, prog.n if prog is not None else k, prog.complete if prog is not None else k > 0)
    table = table.reindex(columns=list(REPORT_FIELDS))
    for i, column in enumerate(("images_done", "images_total", "complete")):
        table[column] = pd.Series([counts[e][i] for e in table["experiment"]], index=table.index, dtype="Int64" if i < 2 else object)
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


def _missing(x: Any) -> bool:
    return x is None or (isinstance(x, float) and math.isnan(x))


def _fmt(psnr: float, std: float | None = None, ssim: float | None = None, low: float | None = None, high: float | None = None) -> str:
    """``mean ± std [min–max] (ssim)``; the spread only where there is one (two seeds or more)."""
    if _missing(psnr):
        return "–"
    text = f"{psnr:.2f}"
    if not _missing(std):
        text += f" ± {std:.2f}"
        if not _missing(low) and not _missing(high):
            text += f" [{low:.2f}–{high:.2f}]"
    if not _missing(ssim):
        text += f" ({ssim:.3f})"
    return text


def seeds_note(ours: pd.DataFrame) -> str:
    """How many seeds DIP's numbers of one experiment are over: "3 seeds", or "1 seed (no spread)"."""
    dip = pd.to_numeric(ours.loc[ours["method"] == "dip", "seeds"], errors="coerce").dropna()
    if dip.empty:
        return ""
    n = int(dip.max())
    return f"DIP: {n} seeds." if n > 1 else "DIP: 1 seed (no spread over seeds)."


def spread_legend(span: str = "[min–max]") -> str:
    """What ± and the range (written ``span``) mean, in the report and wherever its numbers are shown."""
    return (f"± is the sample standard deviation (ddof = 1) over seeds and {span} the range over seeds; in a mean row the "
            f"value is the mean over images of the per-image means, and ± and {span} are the spread over seeds of the "
            "per-seed means over images. A number without ± is of one seed (1 seed), or of a deterministic baseline.")


def _ids(exps: Iterable[str]) -> str:
    return ", ".join(f"`{e}`" for e in exps)


def progress_note(progress: Mapping[str, Progress]) -> list[str]:
    """The report's first lines on a partial run: what is complete, in progress, pending."""
    if not progress or all(p.complete for p in progress.values()):
        return []
    by = {s: [e for e, p in progress.items() if p.status == s] for s in ("complete", "in progress", "pending")}
    parts = [f"Complete: {_ids(by['complete'])}." if by["complete"] else "No experiment is complete yet."]
    if by["in progress"]:
        parts.append("In progress: " + ", ".join(f"`{e}` ({progress[e].k} of {progress[e].n} images)" for e in by["in progress"]) + ".")
    if by["pending"]:
        parts.append(f"Pending (no image fitted yet): {_ids(by['pending'])}.")
    return ["**Partial results.** " + " ".join(parts) + " The means of an experiment in progress are over its fitted images only.", ""]


def _images(k: int) -> str:
    return f"{k} image" + ("" if k == 1 else "s")


def partial_note(t: pd.DataFrame, prog: Progress, comparable: bool) -> str:
    """What an experiment in progress shows: k of n, means over the fitted images, the paper's
    means over all images, and the images not fitted yet."""
    text = f"**In progress: {prog.k} of {_images(prog.n)} fitted.** Every mean below is over {'this' if prog.k == 1 else 'these'} {_images(prog.k)} only"
    if comparable:
        means = t["image"].astype(str).str.startswith("mean")
        if t.loc[(t["source"] == "ours") & means, "paper_psnr"].notna().any():
            text += "; the paper's columns give its numbers for the same images, so Δ compares like with like"
        if t.loc[(t["source"] == "ours") & means & t["paper_psnr"].isna(), "paper_psnr_all"].notna().any():
            text += "; where the paper gives only a mean over a whole set of images, Δ waits until that set is fitted"
        alls = []
        for label, g in t[(t["source"] == "paper") & means & t["paper_psnr_all"].notna()].groupby("image", sort=False):
            where = f"over all {prog.n} images" if label == "mean" else f"over all of {str(label).split(':', 1)[1]}"
            alls.append(f"{where}: " + ", ".join(f"{m} {v:.2f}" for m, v in zip(g["method"], g["paper_psnr_all"])))
        if alls:
            text += ". The paper's mean " + "; ".join(alls) + " dB"
    return text + f". Not fitted yet ({len(prog.pending)}): {', '.join(prog.pending)}."


def pending_section(table: pd.DataFrame, progress: Mapping[str, Progress]) -> list[str]:
    """The report's list of the experiments with no fitted image yet."""
    pending = table[table["source"] == "pending"]
    if pending.empty:
        return []
    lines = ["## Pending", "", "Experiments of the profile with no fitted image yet.", "",
             "| experiment | images fitted | the paper's DIP mean over all its images |", "|---|---|---|"]
    for r in pending.itertuples():
        prog = progress.get(r.experiment)
        lines.append(f"| `{r.experiment}` | 0 of {prog.n if prog else '?'} | {_fmt(r.paper_psnr_all)} |")
    return lines + [""]


def markdown(table: pd.DataFrame, curves: pd.DataFrame, paper: dict[str, Any], resolution: dict[str, Any], epsilon: float,
             progress: Mapping[str, Progress] | None = None) -> str:
    """The human-readable report: a header, one section per experiment scored, the pending ones."""
    progress = progress or {}
    profile = resolution.get("profile", "?")
    lines = [
        "# Deep Image Prior: reproduction report",
        "",
        f"Profile **{profile}** (requested `{resolution.get('requested', profile)}`) on **{resolution.get('device', '?')}**"
        f" ({resolution.get('device_name', '')}). PSNR in dB (SSIM in parentheses).",
        spread_legend(),
        f"Δ = ours − paper; ✅ when |Δ| ≤ {epsilon} dB.",
        "",
    ]
    if profile != "paper":
        lines += [f"> ⚠️ These are **`{profile}`-profile** numbers (small images, narrow network, few iterations): "
                  "they are not the paper's setting and are not compared with the paper's numbers.", ""]
    lines += progress_note(progress)
    scored = table[table["source"] != "pending"]
    for exp in scored["experiment"].unique():
        lines += _experiment_section(exp, scored[scored["experiment"] == exp], curves, paper, profile, epsilon, progress.get(exp))
    lines += pending_section(table, progress)
    return "\n".join(lines) + "\n"


def _experiment_section(exp: str, t: pd.DataFrame, curves: pd.DataFrame, paper: dict[str, Any], profile: str, epsilon: float,
                        prog: Progress | None) -> list[str]:
    """One experiment's section of :func:`markdown`: where the paper's numbers come from, the run
    time, its table, how DIP compares with the best baseline."""
    ours = t[t["source"] == "ours"]
    ok, reason = comparability(exp, profile, paper)
    partial = prog is not None and not prog.complete
    fits = ours[(ours["method"] == "dip") & ~ours["image"].astype(str).str.startswith("mean")]
    dip_time = (fits["seconds"] * pd.to_numeric(fits["seeds"], errors="coerce").fillna(1)).sum()  # the mean per seed × the seeds
    lines = [f"## {exp}" + (f" — in progress: {prog.k} of {prog.n} images" if partial else ""), ""]  # type: ignore[union-attr]
    lines.append(f"Paper: {paper[exp].get('source', '')}." if ok else f"Paper columns left out: {reason}.")
    lines += [f"DIP run time: {dip_time:.0f} s in total. {seeds_note(ours)}".rstrip(), ""]
    if partial:
        lines += [partial_note(t, prog, ok), ""]
    lines += _experiment_table(t, ours, prog, ok, epsilon) + [""]
    return lines + _verdict(exp, ours, curves, f" (over the {prog.k} fitted images)" if partial else "")  # type: ignore[union-attr]


def _experiment_table(t: pd.DataFrame, ours: pd.DataFrame, prog: Progress | None, ok: bool, epsilon: float) -> list[str]:
    """An experiment's table: a row per image (and mean), our methods, the paper's, Δ DIP where comparable."""
    methods = list(dict.fromkeys(ours["method"]))
    paper_methods = list(dict.fromkeys(t.loc[t["source"] == "paper", "method"]))
    header = ["image", *methods, *paper_methods] + (["Δ DIP", "reproduced"] if ok else [])
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for image in t["image"].unique():
        cells = [f"**{mean_label(str(image), prog)}**" if str(image).startswith("mean") else str(image)]
        for m in methods:
            r = ours[(ours["image"] == image) & (ours["method"] == m)]
            cells.append(_fmt(*(r[c].iloc[0] for c in ("psnr", "psnr_std", "ssim", "psnr_min", "psnr_max"))) if not r.empty else "–")
        for m in paper_methods:
            r = t[(t["image"] == image) & (t["method"] == m)]
            cells.append(_fmt(r["psnr"].iloc[0]) if not r.empty else "–")
        if ok:
            r = ours[(ours["image"] == image) & (ours["method"] == "dip")]
            delta = r["delta"].iloc[0] if not r.empty else math.nan
            cells += ["–" if math.isnan(delta) else f"{delta:+.2f}", "–" if math.isnan(delta) else ("✅" if abs(delta) <= epsilon else "❌")]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def _verdict(exp: str, ours: pd.DataFrame, curves: pd.DataFrame, over: str) -> list[str]:
    """How DIP's mean compares with the best baseline's (and whether its PSNR was still rising)."""
    means = ours[ours["image"] == "mean"].set_index("method")["psnr"]
    baselines = means.drop(labels=[m for m in ("dip", "input") if m in means.index])
    if "dip" not in means.index or baselines.empty:
        return []
    best = baselines.idxmax()
    gap = means["dip"] - baselines[best]
    if not gap < 0:  # a NaN gap too
        return [f"DIP beats the best baseline ({best}) by {gap:.2f} dB on average{over}.", ""]
    trend = curve_trend(curves, exp)
    rising = "" if trend is None else (
        f" DIP's PSNR was still rising at the end (+{trend:.2f} dB over the last 20 % of iterations), so more iterations would narrow the gap."
        if trend > 0.05 else f" DIP's PSNR curve had flattened ({trend:+.2f} dB over the last 20 % of iterations).")
    return [f"DIP trails the best baseline ({best}) by {-gap:.2f} dB on average{over}.{rising}", ""]


def number(value: Any, digits: int = 3) -> float | None:
    """A finite number rounded for JSON, else ``None``."""
    try:
        value = float(value)
    except (TypeError, ValueError):
        return None
    return round(value, digits) if math.isfinite(value) else None


def paper_summary(table: pd.DataFrame, paper: dict[str, Any], profile: str) -> dict[str, Any]:
    """Per experiment: comparable?, why not, mean Δ of DIP to the paper over the same images,
    images reproduced, and the paper's DIP mean over the same images as ours (``paper_mean``)
    and over all the experiment's images (``paper_mean_all``)."""
    out: dict[str, Any] = {}
    for exp in table["experiment"].unique():
        ok, reason = comparability(exp, profile, paper)
        entry: dict[str, Any] = {"comparable": ok}
        if ok:
            dip = table[(table["experiment"] == exp) & (table["method"] == "dip") & (table["source"] != "paper")]
            d = dip[dip["delta"].notna()]
            per_image = d[~d["image"].astype(str).str.startswith("mean")]
            mean_row = d[d["image"] == "mean"]
            mean_any = dip[dip["image"] == "mean"]
            entry["mean_delta_dip"] = number(mean_row["delta"].iloc[0]) if not mean_row.empty else None
            entry["reproduced"] = int(per_image["reproduced"].astype(bool).sum()) if not per_image.empty else int(mean_row["reproduced"].astype(bool).sum())
            entry["compared"] = int(len(per_image)) if not per_image.empty else int(len(mean_row))
            entry["paper_mean"] = number(mean_any["paper_psnr"].iloc[0]) if not mean_any.empty else None
            entry["paper_mean_all"] = number(mean_any["paper_psnr_all"].iloc[0]) if not mean_any.empty else None
        else:
            entry["reason"] = reason
        out[exp] = entry
    return out


def build(rows: pd.DataFrame, curves: pd.DataFrame, paper: dict[str, Any], resolution: dict[str, Any], epsilon: float,
          progress: Mapping[str, Progress] | None = None) -> tuple[pd.DataFrame, str, dict[str, Any]]:
    """(report table, markdown, paper summary) from per-image rows (with a ``set`` column) and the
    experiments' :class:`Progress` (none: every experiment counts as complete)."""
    profile = resolution.get("profile", "")
    table = results_table(rows, paper, profile, epsilon, progress)
    return table, markdown(table, curves, paper, resolution, epsilon, progress), paper_summary(table, paper, profile)


# ------------------------------------------------------------------------------ provenance
def provenance(manifest: dict[str, Any]) -> str:
    """The machine(s) and code of a bundle's fits: GPU (or device), the CPU where a part records it
    (``machine.cpu``), torch, CUDA, commit(s)."""
    fits = [f for f in (manifest.get("fits") or {}).values() if isinstance(f, dict)] if isinstance(manifest.get("fits"), dict) else []

    def values(key: str, fallback: Any) -> list[str]:
        found = sorted({str(f[key]) for f in fits if f.get(key)})
        return found or ([str(v) for v in fallback] if isinstance(fallback, list) else [str(fallback)] if fallback else [])

    names = values("device_name", manifest.get("device_names") or manifest.get("device_name"))
    torch, cuda = values("torch", manifest.get("torch")), values("cuda", manifest.get("cuda"))
    commits = [c[:10] for c in values("commit", manifest.get("commit"))]
    cpus = sorted({str(m["cpu"]) for m in (p.get("machine") for p in manifest.get("parts") or [] if isinstance(p, dict))
                   if isinstance(m, dict) and m.get("cpu")}) if isinstance(manifest.get("parts"), list) else []
    parts = [", ".join(names) or str(manifest.get("device") or "?")]
    parts += [f"CPU {'; '.join(cpus)}"] if cpus else []
    parts += [f"torch {', '.join(torch)}"] if torch else []
    parts += [f"CUDA {', '.join(cuda)}"] if cuda else []
    parts += [f"commit{'s' if len(commits) > 1 else ''} {', '.join(commits)}"] if commits else []
    return "; ".join(parts)


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
