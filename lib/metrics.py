"""Model metrics computed in one aggregation over scored rows: only per-bin counts and
sums reach the driver, never rows.

`holdout_metrics` is what training reports for its splits; `binary_metrics` is the
fuller set for a binary classifier (the evaluation job's): ROC and PR AUC, log loss,
Brier score, accuracy / precision / recall / F1 at thresholds, the F1-best threshold,
the confusion matrix and a calibration table, all from one group-by over score bins.
"""

from __future__ import annotations

import math
from typing import Any

from pyspark.ml.functions import vector_to_array
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from batchml.lib.errors import InputError

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
    probability = vector_to_array(F.col("probability"))[1]
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
        curves = _curves(sorted(bins, key=lambda b: -b["bin"]), positives, negatives)
        metrics.update(areaUnderROC=curves["areaUnderROC"], areaUnderPR=curves["areaUnderPR"])
    return rows, metrics


CALIBRATION_BINS = 10
EPSILON = 1e-15  # log loss clips probabilities to [EPSILON, 1 - EPSILON]


def binary_metrics(
    scored: DataFrame,
    label: str,
    probability: F.Column,
    *,
    threshold: float = 0.5,
    thresholds: tuple[float, ...] = (),
) -> dict[str, Any]:
    """Every figure of a binary classifier, from one aggregation over score bins.

    `probability` is the positive class's probability as a double column; a row is
    predicted positive when it is above a threshold (as MLlib's classifiers decide).
    Counts at `threshold` and at each of `thresholds` are exact (conditional sums in the
    same aggregation); the curves, the F1-best threshold and the calibration table are
    read from the 10,000 equal-width bins (within a bin scores count as tied).

    Raises:
        InputError: a threshold outside [0, 1].
    """
    cuts = tuple(dict.fromkeys((float(threshold), *map(float, thresholds))))
    outside = [t for t in cuts if not 0.0 <= t <= 1.0]
    if outside:
        raise InputError(f"threshold {outside[0]} is outside [0, 1]")
    y = F.col(label).cast("double")
    p = probability.cast("double")
    clipped = F.least(F.greatest(p, F.lit(EPSILON)), F.lit(1.0 - EPSILON))
    loss = -(y * F.log(clipped) + (1.0 - y) * F.log(1.0 - clipped))
    score_bin = F.least(F.floor(p * SCORE_BINS).cast("int"), F.lit(SCORE_BINS - 1))
    sums = [
        F.count(F.lit(1)).alias("n"),
        F.sum((y == 1.0).cast("long")).alias("pos"),
        F.sum(p).alias("p"),
        F.sum(loss).alias("loss"),
        F.sum((p - y) * (p - y)).alias("brier"),
    ]
    for i, cut in enumerate(cuts):
        above = p > F.lit(cut)
        sums.append(F.sum(above.cast("long")).alias(f"pp{i}"))
        sums.append(F.sum((above & (y == 1.0)).cast("long")).alias(f"tp{i}"))
    bins = scored.groupBy(score_bin.alias("bin")).agg(*sums).collect()
    rows = sum(b["n"] for b in bins)
    if not rows:
        raise InputError("no scored rows to evaluate")
    positives = sum(b["pos"] for b in bins)
    negatives = rows - positives
    figures: dict[str, Any] = {
        "rows": rows,
        "positives": positives,
        "log_loss": sum(b["loss"] for b in bins) / rows,
        "brier": sum(b["brier"] for b in bins) / rows,
    }
    at = []
    for i, cut in enumerate(cuts):
        predicted = sum(b[f"pp{i}"] for b in bins)
        tp = sum(b[f"tp{i}"] for b in bins)
        at.append(_at_threshold(cut, rows, positives, predicted, tp))
    figures.update({k: v for k, v in at[0].items() if k != "threshold"})
    figures["threshold"] = cuts[0]
    figures["thresholds"] = at
    ordered = sorted(bins, key=lambda b: -b["bin"])  # highest scores first
    if positives and negatives:
        figures.update(_curves(ordered, positives, negatives))
    figures["calibration"] = _calibration(bins)
    return figures


def _at_threshold(cut: float, rows: int, positives: int, predicted: int, tp: int) -> dict:
    fp = predicted - tp
    fn = positives - tp
    tn = rows - predicted - fn
    precision = tp / predicted if predicted else 0.0
    recall = tp / positives if positives else 0.0
    f1 = 2 * tp / (2 * tp + fp + fn) if tp else 0.0
    return {
        "threshold": cut,
        "accuracy": (tp + tn) / rows,
        "precision": precision,
        "recall": recall,
        "f1": f1,
        "confusion": {"tp": tp, "fp": fp, "fn": fn, "tn": tn},
    }


def _curves(ordered: list[Any], positives: int, negatives: int) -> dict[str, float]:
    """ROC and PR AUC (trapezoids over the bins) and the F1-best bin edge."""
    roc = pr = 0.0
    tp = fp = 0
    precision_before = None
    best_f1, best_threshold = -1.0, 1.0
    for b in ordered:
        new_tp, new_fp = tp + b["pos"], fp + b["n"] - b["pos"]
        roc += (new_fp - fp) / negatives * (tp + new_tp) / 2 / positives
        precision = new_tp / (new_tp + new_fp)
        if precision_before is None:
            precision_before = precision  # the curve starts at recall 0 (as MLlib's)
        pr += (new_tp - tp) / positives * (precision_before + precision) / 2
        tp, fp, precision_before = new_tp, new_fp, precision
        f1 = 2 * tp / (2 * tp + fp + (positives - tp)) if tp else 0.0
        if f1 > best_f1:
            # rows of this bin and above predicted positive: scores >= its lower edge
            best_f1, best_threshold = f1, b["bin"] / SCORE_BINS
    return {
        "areaUnderROC": roc,
        "areaUnderPR": pr,
        "best_f1": best_f1,
        "best_f1_threshold": best_threshold,
    }


def _calibration(bins: list[Any]) -> list[dict[str, float]]:
    """Mean predicted probability vs observed positive rate, in 10 equal-width bins."""
    groups: dict[int, list[float]] = {}
    for b in bins:
        group = min(b["bin"] * CALIBRATION_BINS // SCORE_BINS, CALIBRATION_BINS - 1)
        n, pos, p = groups.setdefault(group, [0, 0, 0.0])
        groups[group] = [n + b["n"], pos + b["pos"], p + b["p"]]
    return [
        {
            "from": g / CALIBRATION_BINS,
            "to": (g + 1) / CALIBRATION_BINS,
            "rows": n,
            "mean_predicted": p / n,
            "observed_rate": pos / n,
        }
        for g, (n, pos, p) in sorted(groups.items())
    ]


RESIDUAL_QUANTILES = (0.01, 0.05, 0.25, 0.5, 0.75, 0.95, 0.99)


def regression_metrics(scored: DataFrame, label: str, prediction: str = "prediction") -> dict:
    """RMSE, MAE, R², MAPE (over the rows whose label is not 0, with how many were left
    out) and residual (prediction - label) quantiles, in one aggregation; the quantiles
    from Spark's KLL sketch (relative rank error ≤ 1/10,000).

    Raises:
        InputError: no rows with both a label and a prediction.
    """
    y, predicted = F.col(label).cast("double"), F.col(prediction).cast("double")
    residual = predicted - y
    row = (
        scored.filter(y.isNotNull() & predicted.isNotNull())
        .agg(
            F.count(F.lit(1)).alias("n"),
            F.sum(residual * residual).alias("squares"),
            F.sum(F.abs(residual)).alias("absolute"),
            F.var_pop(y).alias("variance"),
            F.sum(F.when(y != 0.0, F.abs(residual / y))).alias("ape"),
            F.sum((y != 0.0).cast("long")).alias("nonzero"),
            F.percentile_approx(residual, list(RESIDUAL_QUANTILES), 10_000).alias("q"),
        )
        .collect()[0]
    )
    rows = row["n"]
    if not rows:
        raise InputError(f"no rows with both {label} and {prediction} to evaluate")
    total = row["variance"] * rows
    return {
        "rows": rows,
        "rmse": math.sqrt(row["squares"] / rows),
        "mae": row["absolute"] / rows,
        "r2": 1.0 - row["squares"] / total if total else math.nan,
        "mape": row["ape"] / row["nonzero"] if row["nonzero"] else math.nan,
        "mape_rows_left_out": rows - row["nonzero"],
        "residual_quantiles": dict(zip(RESIDUAL_QUANTILES, row["q"], strict=True)),
    }
