"""Performance per period (monitoring): the headline metric of each period with its interval."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from batchml.lib.evaluation.bins import DEFAULT_REPLICATES, curves, draw, interval

PERIOD_BINS = 1_000  # equal-width score bins per period (for the AUC interval)


def by_period(
    frame: DataFrame,
    label: str,
    score: str,
    period: str,
    *,
    task: str | None,
    replicates: int = DEFAULT_REPLICATES,
    seed: int = 42,
) -> list[dict[str, Any]]:
    """The headline metric of scored, labelled rows per value of `period`, with its 95%
    interval, from one aggregation. A binary classifier (`score`: class 1's probability):
    ROC AUC per period, its interval from Poisson replicates drawn on PERIOD_BINS
    equal-width score bins per period as the
    evaluation module does. A regressor: RMSE from per-period sums of squared errors,
    the interval the normal one of the mean squared error, square-rooted.

    The AUC itself is exact (ties counted half, as scikit-learn does): positives and
    negatives per distinct score, a running count of the positives above each score
    over a window per period, summed (`_exact_auc`). The bins give only the interval:
    their replicates' deviations from the binned point, added to the exact one."""
    y, p = F.col(label).cast("double"), F.col(score).cast("double")
    usable = frame.filter(y.isNotNull() & p.isNotNull() & ~F.isnan(p))
    key = F.col(period).cast("string").alias("period")
    if task == "regression":
        return [_rmse_entry(r) for r in _period_errors(usable, key, p - y)]
    cell = F.least(F.floor(p * PERIOD_BINS).cast("int"), F.lit(PERIOD_BINS - 1))
    cells = (
        usable.groupBy(key, cell.alias("bin"))
        .agg(F.count(F.lit(1)).alias("n"), F.sum((y == 1.0).cast("long")).alias("pos"))
        .collect()
    )
    grouped: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for r in cells:
        n, pos = grouped.setdefault(r["period"], (np.zeros(PERIOD_BINS), np.zeros(PERIOD_BINS)))
        n[r["bin"]] += r["n"]
        pos[r["bin"]] += r["pos"]
    exact = _exact_auc(usable, key, y, p)
    rng = np.random.default_rng(seed)
    out: list[dict[str, Any]] = []
    for name in sorted(grouped, key=str):
        n, pos = grouped[name]
        neg = n - pos
        entry: dict[str, Any] = {
            "period": name,
            "rows": int(n.sum()),
            "positives": int(pos.sum()),
            "metric": "areaUnderROC",
            "value": None,
            "interval": None,
        }
        if pos.sum() and neg.sum():
            binned = float(curves(pos, neg)["roc"])
            entry["value"] = exact.get(name, binned)
            if replicates:
                drawn = curves(draw(pos, replicates, rng), draw(neg, replicates, rng))
                shifted = np.asarray(drawn["roc"], dtype=float) - binned + entry["value"]
                entry["interval"] = interval(np.clip(shifted, 0.0, 1.0))
        out.append(entry)
    return out


def _exact_auc(frame: DataFrame, period: F.Column, y: F.Column, p: F.Column) -> dict[str, float]:
    """ROC AUC per period without binning: per distinct score its positives and
    negatives, the positives scored higher from a running sum over a window per period
    (one task per period, spilling as Spark's windows do), then
    sum(negatives x (positives above + positives tied / 2)) / (P x N)."""
    from pyspark.sql import Window

    per_score = frame.groupBy(period, p.alias("__p")).agg(
        F.sum((y == 1.0).cast("double")).alias("__pos"),
        F.sum((y != 1.0).cast("double")).alias("__neg"),
    )
    above = (
        Window.partitionBy("period")
        .orderBy(F.col("__p").desc())
        .rowsBetween(Window.unboundedPreceding, -1)
    )
    ranked = per_score.withColumn("__above", F.coalesce(F.sum("__pos").over(above), F.lit(0.0)))
    sums = (
        ranked.groupBy("period")
        .agg(
            F.sum(F.col("__neg") * (F.col("__above") + F.col("__pos") / 2)).alias("wins"),
            F.sum("__pos").alias("positives"),
            F.sum("__neg").alias("negatives"),
        )
        .collect()
    )
    return {
        r["period"]: r["wins"] / (r["positives"] * r["negatives"])
        for r in sums
        if r["positives"] and r["negatives"]
    }


def _period_errors(frame: DataFrame, key: F.Column, residual: F.Column) -> list[Any]:
    squared = residual * residual
    return (
        frame.groupBy(key)
        .agg(
            F.count(F.lit(1)).alias("n"),
            F.sum(squared).alias("se"),
            F.sum(squared * squared).alias("se2"),
        )
        .orderBy("period")
        .collect()
    )


def _rmse_entry(row: Any) -> dict[str, Any]:
    n, mean = row["n"], row["se"] / row["n"]
    bounds = None
    if n > 1:
        spread = math.sqrt(max(row["se2"] / n - mean * mean, 0.0) / n)
        bounds = [math.sqrt(max(mean - 1.96 * spread, 0.0)), math.sqrt(mean + 1.96 * spread)]
    return {
        "period": row["period"],
        "rows": n,
        "metric": "rmse",
        "value": math.sqrt(mean),
        "interval": bounds,
    }
