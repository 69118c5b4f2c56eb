"""A regressor's figures from one aggregation over residual bins, and its bootstrap."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from batchml.lib.evaluation.bins import (
    BIN,
    NULL_VALUE,
    RESIDUAL_BINS,
    SLICE_VALUE,
    EvalSpec,
    bootstrap_summary,
    bucketed,
    draw,
    grouped,
    sample_edges,
    slice_tables,
    splits_from,
)
from batchml.lib.platform.errors import InputError


def _regression_sums(y: F.Column, predicted: F.Column) -> list[F.Column]:
    residual = predicted - y
    return [
        F.count(F.lit(1)).alias("n"),
        F.sum(residual).alias("r"),
        F.sum(residual * residual).alias("r2"),
        F.sum(F.abs(residual)).alias("abs"),
        F.min(residual).alias("r_min"),
        F.max(residual).alias("r_max"),
        F.sum(y).alias("y"),
        F.sum(y * y).alias("y2"),
        F.sum(predicted).alias("pred"),
        F.sum(F.when(y != 0.0, F.abs(residual / y))).alias("ape"),
        F.sum((y != 0.0).cast("long")).alias("nonzero"),
    ]


def _regression_point(s: dict[str, Any]) -> dict[str, float]:
    rows = s["n"]
    total = s["y2"] - s["y"] * s["y"] / rows
    return {
        "rmse": math.sqrt(s["r2"] / rows),
        "mae": s["abs"] / rows,
        "r2": 1.0 - s["r2"] / total if total > 0 else math.nan,
    }


def evaluate_regression(
    frame: DataFrame,
    label: str,
    prediction: str,
    spec: EvalSpec,
    *,
    rows_hint: int | None = None,
) -> dict[str, Any]:
    """RMSE, MAE, R², MAPE (rows with label 0 left out, and counted), residual quantiles
    and plots' tables, bootstrap intervals and slices, from one aggregation over residual
    bins."""
    y, predicted = F.col(label).cast("double"), F.col(prediction).cast("double")
    usable = frame.filter(y.isNotNull() & predicted.isNotNull() & ~F.isnan(predicted))
    usable = usable.withColumn("__r", predicted - y).withColumn("__pred", predicted)
    edges = sample_edges(
        usable, F.col("__r"), RESIDUAL_BINS, rows_hint=rows_hint, seed=spec.seed, key=spec.key
    )
    binned = bucketed(usable, "__r", splits_from(edges, []), BIN)
    binned = binned.withColumn(BIN, F.col(BIN).cast("int"))
    sets, columns = [[BIN]], [BIN]
    for i, column in enumerate(spec.slices):
        name = f"{SLICE_VALUE}{i}"
        binned = binned.withColumn(
            name, F.coalesce(F.col(f"`{column}`").cast("string"), F.lit(NULL_VALUE))
        )
        sets.append([name])
        columns.append(name)
    groups = grouped(binned, sets, columns, _regression_sums(y, F.col("__pred")))
    main = groups[0]
    order = np.argsort(main[BIN])
    bins = {k: v[order] for k, v in main.items()}
    totals = {k: float(np.nansum(v)) for k, v in bins.items() if k != BIN}
    rows = int(totals["n"])
    if not rows:
        raise InputError(f"no rows with both {label} and a prediction to evaluate")
    figures: dict[str, Any] = {"task": "regression", "rows": rows, **_regression_point(totals)}
    figures["mape"] = totals["ape"] / totals["nonzero"] if totals["nonzero"] else math.nan
    figures["mape_rows_left_out"] = rows - int(totals["nonzero"])
    figures["residual_quantiles"] = _bin_quantiles(bins, (0.01, 0.05, 0.25, 0.5, 0.75, 0.95, 0.99))
    figures["residual_histogram"] = {
        "mean": (bins["r"] / bins["n"]).tolist(),
        "rows": bins["n"].astype(int).tolist(),
    }
    figures["bins"] = len(bins["n"])
    if spec.replicates:
        rng = np.random.default_rng(spec.seed)
        values = regression_replicates(bins, draw(bins["n"], spec.replicates, rng))
        figures["bootstrap"] = bootstrap_summary(spec, values)
    figures["slices"] = slice_tables(groups, spec, _regression_slice)
    return figures


def _regression_slice(group: dict[str, np.ndarray], hit: np.ndarray) -> dict[str, Any]:
    sums = {k: float(np.nansum(group[k][hit])) for k in ("n", "r2", "abs", "y", "y2")}
    return {"rows": int(sums["n"]), **_regression_point(sums)}


def regression_replicates(
    bins: dict[str, np.ndarray], weights: np.ndarray
) -> dict[str, np.ndarray]:
    """RMSE, MAE and R² of replicates whose cell weights are `weights` (replicates, bins)."""
    n = bins["n"]
    rows = weights.sum(axis=1)
    mean = {k: np.nan_to_num(bins[k]) / n for k in ("r2", "abs", "y", "y2")}
    with np.errstate(divide="ignore", invalid="ignore"):
        squares = weights @ mean["r2"]
        ys, y2 = weights @ mean["y"], weights @ mean["y2"]
        total = y2 - ys * ys / rows
        return {
            "rmse": np.sqrt(squares / rows),
            "mae": (weights @ mean["abs"]) / rows,
            "r2": np.where(total > 0, 1.0 - squares / total, np.nan),
        }


def _bin_quantiles(bins: dict[str, np.ndarray], levels: tuple[float, ...]) -> dict[str, float]:
    """Quantiles of the residual from its bins: exact counts, linear within a bin between
    its smallest and largest residual."""
    n = bins["n"]
    cumulative = np.cumsum(n)
    total = cumulative[-1]
    out = {}
    for level in levels:
        target = level * total
        i = int(np.searchsorted(cumulative, target))
        i = min(i, len(n) - 1)
        start = cumulative[i] - n[i]
        share = (target - start) / n[i] if n[i] else 0.0
        out[str(level)] = float(bins["r_min"][i] + share * (bins["r_max"][i] - bins["r_min"][i]))
    return out
