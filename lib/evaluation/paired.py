"""Two models on the same rows (promotion): the paired bootstrap of the improvement."""

from __future__ import annotations

from typing import Any

import numpy as np
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from batchml.lib.evaluation.bins import (
    LEVEL,
    PAIRED_BINS,
    as_array,
    bucketed,
    curves,
    draw,
    higher_is_better,
    interval,
    sample_edges,
    splits_from,
)
from batchml.lib.evaluation.regression import regression_replicates
from batchml.lib.platform.errors import InputError


def paired_difference(
    frame: DataFrame,
    label: str,
    columns: tuple[str, str],
    task: str,
    metric: str,
    point: tuple[float, float],
    *,
    replicates: int,
    seed: int,
    rows_hint: int | None = None,
    key: str | None = None,
) -> dict[str, Any]:
    """The bootstrap interval of (challenger - champion) in the direction of improvement,
    both models weighted alike in every replicate: one aggregation over the joint cells
    of their coarse bins (and label), replicate weights drawn per cell.

    `columns` = (champion's score, challenger's score): class 1's probability, or the
    prediction of a regressor; `point` = their full-resolution estimates.
    """
    y = F.col(label).cast("double")
    usable = frame.filter(y.isNotNull())
    for c in columns:
        usable = usable.filter(F.col(c).isNotNull() & ~F.isnan(F.col(c)))
    keys, sums = [], [F.count(F.lit(1)).alias("n")]
    splits_of = []
    for i, c in enumerate(columns):
        value = F.col(c) if task == "binary" else F.col(c).cast("double") - y
        usable = usable.withColumn(f"__v{i}", value)
        edges = sample_edges(
            usable, F.col(f"__v{i}"), PAIRED_BINS, rows_hint=rows_hint, seed=seed, key=key
        )
        splits = splits_from(edges, [])
        splits_of.append(splits)
        usable = bucketed(usable, f"__v{i}", splits, f"__b{i}")
        keys.append(f"__b{i}")
        if task == "regression":
            r = F.col(f"__v{i}")
            sums += [F.sum(r * r).alias(f"r2_{i}"), F.sum(F.abs(r)).alias(f"abs_{i}")]
    if task == "binary":
        keys.append("__y")
        usable = usable.withColumn("__y", y)
    else:
        sums += [F.sum(y).alias("y"), F.sum(y * y).alias("y2")]
    table = usable.groupBy(*keys).agg(*sums).toArrow()
    cells = {name: as_array(table.column(name)) for name in table.column_names}
    rng = np.random.default_rng(seed)
    weights = draw(cells["n"], replicates, rng)  # (replicates, cells)
    values = []
    for i in range(2):
        index = cells[f"__b{i}"].astype(int)
        size = len(splits_of[i]) - 1
        if task == "binary":
            positive = cells["__y"] == 1.0
            pos_r = np.zeros((replicates, size))
            neg_r = np.zeros((replicates, size))
            np.add.at(pos_r.T, index[positive], weights[:, positive].T)
            np.add.at(neg_r.T, index[~positive], weights[:, ~positive].T)
            pos_0 = np.bincount(index[positive], weights=cells["n"][positive], minlength=size)
            neg_0 = np.bincount(index[~positive], weights=cells["n"][~positive], minlength=size)
            key = {"areaUnderROC": "roc", "areaUnderPR": "pr"}.get(metric)
            if key is None:
                raise InputError(f"promotion metric {metric!r} has no paired bootstrap")
            values.append(curves(pos_r, neg_r)[key] - float(curves(pos_0, neg_0)[key]))
        else:
            fake = {
                "n": cells["n"],
                "r2": cells[f"r2_{i}"],
                "abs": cells[f"abs_{i}"],
                "y": cells["y"],
                "y2": cells["y2"],
            }
            drawn = regression_replicates(fake, weights)[metric]
            base = regression_replicates(fake, cells["n"][None, :])[metric][0]
            values.append(drawn - base)
    # replicate deviations from the coarse estimate, added to the full-resolution ones
    sign = 1.0 if higher_is_better(metric) else -1.0
    difference = sign * ((point[1] + values[1]) - (point[0] + values[0]))
    return {
        "replicates": replicates,
        "seed": seed,
        "level": LEVEL,
        "improvement": sign * (point[1] - point[0]),
        "interval": interval(difference),
        "cells": len(cells["n"]),
    }
