"""Model metrics computed in one aggregation over scored rows: only per-bin counts and
sums reach the driver, never rows.

`holdout_metrics` is what training reports (and registers) for its splits. The fuller
sets of the evaluation job (intervals, slices, thresholds, calibration, error bounds)
are in the rest of `lib/evaluation/`.
"""

from __future__ import annotations

import math

import numpy as np
from pyspark.ml.functions import vector_to_array
from pyspark.sql import DataFrame
from pyspark.sql import functions as F
from pyspark.sql import types as T

from batchml.lib.evaluation.bins import curves

SCORE_BINS = 10_000  # resolution of the ROC / PR curves of holdout_metrics


def holdout_metrics(
    scored: DataFrame, task: str, label: str, *, binary: bool = True
) -> tuple[int, dict[str, float]]:
    """Rows and metrics of scored rows, in one aggregation over them: RMSE, MAE and R²;
    or accuracy, plus ROC and PR AUC for two classes.

    MLlib's evaluators take a pass (and a sort) per metric. Here the positive-class
    probability is cut into 10,000 equal bins and one aggregate counts rows, positives
    and correct predictions per bin; the curves are integrated (trapezoids) over the
    bins on the driver. Within a bin scores count as tied, as MLlib does when it
    down-samples its curves; the AUCs agree with MLlib's to about 1e-4.
    """
    y, predicted = F.col(label).cast("double"), F.col("prediction").cast("double")
    if task == "regression":
        row = scored.agg(
            F.count(F.lit(1)),
            F.sum((y - predicted) * (y - predicted)),
            F.sum(F.abs(y - predicted)),
            F.var_pop(y),
        ).collect()[0]
        rows, squares, absolute, variance = row[0], row[1], row[2], row[3]
        if not rows:
            return 0, {}
        total = variance * rows
        return rows, {
            "rmse": math.sqrt(squares / rows),
            "mae": absolute / rows,
            "r2": 1.0 - squares / total if total else math.nan,
        }
    correct = F.sum((y == predicted).cast("long"))
    if not binary:
        row = scored.agg(F.count(F.lit(1)), correct).collect()[0]
        return row[0], ({"accuracy": row[1] / row[0]} if row[0] else {})
    probability = F.col("probability")  # a double from the booster scorer, else a vector
    if not isinstance(scored.schema["probability"].dataType, T.DoubleType):
        probability = vector_to_array(probability)[1]
    score_bin = F.least(F.floor(probability * SCORE_BINS).cast("int"), F.lit(SCORE_BINS - 1))
    bins = (
        scored.groupBy(score_bin.alias("bin"))
        .agg(
            F.count(F.lit(1)).alias("n"),
            F.sum((y == 1.0).cast("long")).alias("pos"),
            correct.alias("correct"),
        )
        .collect()
    )
    rows = sum(b["n"] for b in bins)
    if not rows:
        return 0, {}
    metrics = {"accuracy": sum(b["correct"] for b in bins) / rows}
    positives = sum(b["pos"] for b in bins)
    negatives = rows - positives
    if positives and negatives:
        ordered = sorted(bins, key=lambda b: b["bin"])
        pos = np.asarray([b["pos"] for b in ordered], dtype=float)
        neg = np.asarray([b["n"] - b["pos"] for b in ordered], dtype=float)
        found = curves(pos, neg)
        metrics.update(areaUnderROC=float(found["roc"]), areaUnderPR=float(found["pr"]))
    return rows, metrics
