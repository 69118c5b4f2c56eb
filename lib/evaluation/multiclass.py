"""A multiclass classifier's figures from its confusion matrix (one aggregation)."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from batchml.lib.evaluation.bins import (
    EPSILON,
    NULL_VALUE,
    SLICE_VALUE,
    EvalSpec,
    bootstrap_summary,
    draw,
    grouped,
    slice_tables,
)
from batchml.lib.platform.errors import InputError


def evaluate_multiclass(
    frame: DataFrame,
    label: str,
    prediction: str,
    probabilities: str | None,
    classes: int,
    spec: EvalSpec,
) -> dict[str, Any]:
    """Accuracy, per-class precision / recall / F1, macro and weighted figures, log loss
    and the confusion matrix, from one aggregation over (label, prediction) cells."""
    y, predicted = F.col(label).cast("double"), F.col(prediction).cast("double")
    usable = frame.filter(y.isNotNull() & predicted.isNotNull())
    sums = [F.count(F.lit(1)).alias("n")]
    if probabilities:
        chosen = F.element_at(F.col(probabilities), (y + 1).cast("int"))
        clipped = F.least(F.greatest(chosen, F.lit(EPSILON)), F.lit(1.0 - EPSILON))
        sums.append(F.sum(-F.log(clipped)).alias("loss"))
    sets, columns = [["__y", "__pred"]], ["__y", "__pred"]
    usable = usable.withColumn("__y", y.cast("int")).withColumn("__pred", predicted.cast("int"))
    for i, column in enumerate(spec.slices):
        name = f"{SLICE_VALUE}{i}"
        usable = usable.withColumn(
            name, F.coalesce(F.col(f"`{column}`").cast("string"), F.lit(NULL_VALUE))
        )
        sets.append([name, "__y", "__pred"])
        columns.append(name)
    groups = grouped(usable, sets, columns, sums)
    cells = groups[0]
    labels = sorted({int(v) for v in cells["__y"]} | {int(v) for v in cells["__pred"]})
    size = max(classes, (max(labels) + 1) if labels else 0)
    matrix = np.zeros((size, size))
    np.add.at(matrix, (cells["__y"].astype(int), cells["__pred"].astype(int)), cells["n"])
    rows = int(matrix.sum())
    if not rows:
        raise InputError("no labelled, scored rows to evaluate")
    figures: dict[str, Any] = {"task": "multiclass", "rows": rows, "classes": size}
    figures.update(multiclass_point(matrix))
    if probabilities:
        figures["log_loss"] = float(np.nansum(cells["loss"]) / rows)
    figures["confusion_matrix"] = matrix.astype(int).tolist()
    if spec.replicates:
        rng = np.random.default_rng(spec.seed)
        drawn = draw(matrix, spec.replicates, rng)
        values: dict[str, list[Any]] = {k: [] for k in ("accuracy", "macro_f1", "weighted_f1")}
        for replicate in drawn:
            point = multiclass_point(replicate)
            for k in values:
                values[k].append(point[k])
        figures["bootstrap"] = bootstrap_summary(spec, values)

    def multiclass_slice(group: dict[str, np.ndarray], hit: np.ndarray) -> dict[str, Any]:
        n = float(group["n"][hit].sum())
        right = float(group["n"][hit & (group["__y"] == group["__pred"])].sum())
        entry: dict[str, Any] = {"rows": int(n), "accuracy": right / n}
        if probabilities:
            entry["log_loss"] = float(np.nansum(group["loss"][hit]) / n)
        return entry

    figures["slices"] = slice_tables(groups, spec, multiclass_slice)
    return figures


def multiclass_point(matrix: np.ndarray) -> dict[str, Any]:
    """Accuracy, per-class and macro / weighted precision, recall and F1 of a confusion
    matrix (rows: label, columns: prediction)."""
    total = matrix.sum()
    right = np.diag(matrix)
    actual, predicted = matrix.sum(axis=1), matrix.sum(axis=0)
    with np.errstate(divide="ignore", invalid="ignore"):
        precision = np.where(predicted > 0, right / predicted, 0.0)
        recall = np.where(actual > 0, right / actual, 0.0)
        f1 = np.where(precision + recall > 0, 2 * precision * recall / (precision + recall), 0.0)
    present = actual > 0
    weights = actual / total if total else actual
    return {
        "accuracy": float(right.sum() / total) if total else math.nan,
        "macro_precision": float(precision[present].mean()) if present.any() else math.nan,
        "macro_recall": float(recall[present].mean()) if present.any() else math.nan,
        "macro_f1": float(f1[present].mean()) if present.any() else math.nan,
        "weighted_precision": float((precision * weights).sum()),
        "weighted_recall": float((recall * weights).sum()),
        "weighted_f1": float((f1 * weights).sum()),
        "per_class": [
            {
                "class": k,
                "rows": int(actual[k]),
                "precision": float(precision[k]),
                "recall": float(recall[k]),
                "f1": float(f1[k]),
            }
            for k in range(len(actual))
        ],
    }
