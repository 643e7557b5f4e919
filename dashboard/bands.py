"""The Curves page's band over seeds and its time axis, from the runs' ``curve.csv`` and ``run.json``.

``curve.csv`` logs no time: the x axis in seconds is an estimate, linear in the iteration,
:math:`t_j = j \\cdot T / J` with :math:`T` the run's ``wall_seconds`` and :math:`J` its ``iterations_run``.
The band is over seeds, as the report's spread: per iteration the mean over seeds of the curves,
and their minimum and maximum (per experiment, each seed's curve is first the mean over its images).
"""

from __future__ import annotations

import pandas as pd

SECONDS = "seconds"
SECONDS_NOTE = "seconds (estimated: iteration × the run's wall time / its iterations; curve.csv logs no time)"


def with_seconds(curves: pd.DataFrame, runs: pd.DataFrame) -> pd.DataFrame:
    """``curves`` with a ``seconds`` column, :math:`t = j \\cdot T / J` of each row's run (empty where the
    run's ``wall_seconds`` or ``iterations_run`` is unknown)."""
    keys = ["experiment", "image", "seed"]
    rate = runs.assign(rate=pd.to_numeric(runs["wall_seconds"], errors="coerce") / pd.to_numeric(runs["iterations_run"], errors="coerce"))
    rate = rate[keys + ["rate"]].astype({k: str for k in keys}).drop_duplicates(keys)
    out = curves.astype({k: str for k in keys}).merge(rate, on=keys, how="left")
    out[SECONDS] = out["iteration"] * out["rate"]
    return out.drop(columns="rate").astype({"seed": curves["seed"].dtype}, errors="ignore")


def seed_band(curves: pd.DataFrame, y: str, per: str) -> pd.DataFrame:
    """Mean, min and max over seeds of ``y`` at each iteration: one line per ``(experiment, image)``
    (``per = "image"``), or per experiment (``per = "experiment"``: each seed's curve is first the mean
    over the experiment's images). Columns: experiment[, image], iteration, ``y`` (the mean), ``y_min``,
    ``y_max``, seeds, and ``seconds`` (the mean over seeds) where ``curves`` has it."""
    timed = SECONDS in curves.columns
    cols = {y: "mean"} | ({SECONDS: "mean"} if timed else {})
    keys = ["experiment", "image"] if per == "image" else ["experiment"]
    per_seed = curves.groupby(keys + ["seed", "iteration"], as_index=False).agg(cols)
    grouped = per_seed.groupby(keys + ["iteration"], as_index=False)
    band = grouped.agg(**{y: (y, "mean"), f"{y}_min": (y, "min"), f"{y}_max": (y, "max"), "seeds": ("seed", "nunique")}
                       | ({SECONDS: (SECONDS, "mean")} if timed else {}))
    return band.sort_values(keys + ["iteration"]).reset_index(drop=True)
