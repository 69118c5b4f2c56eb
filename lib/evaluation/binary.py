"""A binary classifier's figures from one aggregation over fine score bins, its
bootstrap and its slices."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from batchml.lib.evaluation.bins import (
    BIN,
    BOOTSTRAP_BINS,
    CALIBRATION_BINS,
    COARSE,
    EPSILON,
    FINE_BINS,
    HISTOGRAM_BINS,
    NULL_VALUE,
    SLICE_BINS,
    SLICE_VALUE,
    EvalSpec,
    at_threshold,
    bootstrap_summary,
    bucketed,
    check_thresholds,
    curves,
    draw,
    grouped,
    sample_edges,
    slice_tables,
    splits_from,
)
from batchml.lib.platform.errors import InputError


def _binary_sums(y: F.Column, p: F.Column, threshold: float) -> list[F.Column]:
    clipped = F.least(F.greatest(p, F.lit(EPSILON)), F.lit(1.0 - EPSILON))
    positive = y == 1.0
    loss = F.when(positive, -F.log(clipped)).otherwise(-F.log(1.0 - clipped))
    square = (p - y) * (p - y)
    return [
        F.count(F.lit(1)).alias("n"),
        F.sum(positive.cast("long")).alias("pos"),
        F.sum(p).alias("p"),
        F.sum(F.when(positive, loss)).alias("loss1"),
        F.sum(F.when(~positive, loss)).alias("loss0"),
        F.sum(F.when(positive, square)).alias("sq1"),
        F.sum(F.when(~positive, square)).alias("sq0"),
        F.sum(((p > F.lit(threshold)) == positive).cast("long")).alias("correct"),
    ]


def evaluate_binary(
    frame: DataFrame,
    label: str,
    score: str,
    spec: EvalSpec,
    *,
    rows_hint: int | None = None,
) -> dict[str, Any]:
    """Every figure of a binary classifier over `frame` (`score`: class 1's probability)."""
    check_thresholds(spec.thresholds)
    y, p = F.col(label).cast("double"), F.col(score).cast("double")
    usable = frame.filter(y.isNotNull() & p.isNotNull() & ~F.isnan(p))
    edges = sample_edges(usable, p, FINE_BINS, rows_hint=rows_hint, seed=spec.seed, key=spec.key)
    cuts = [math.nextafter(float(t), math.inf) for t in spec.thresholds]
    splits = splits_from(edges, [*cuts, *(i / CALIBRATION_BINS for i in range(1, 10))])
    fine = len(splits) - 1
    binned = bucketed(usable.withColumn("__p", p), "__p", splits, BIN)
    binned = binned.withColumn(BIN, F.col(BIN).cast("int"))
    binned = binned.withColumn(COARSE, (F.col(BIN) * SLICE_BINS / fine).cast("int"))
    sets, columns = [[BIN]], [BIN, COARSE]
    for i, column in enumerate(spec.slices):
        name = f"{SLICE_VALUE}{i}"
        binned = binned.withColumn(
            name, F.coalesce(F.col(f"`{column}`").cast("string"), F.lit(NULL_VALUE))
        )
        sets.append([name, COARSE])
        columns.append(name)
    groups = grouped(binned, sets, columns, _binary_sums(y, F.col("__p"), spec.thresholds[0]))
    main = groups[0]
    order = np.argsort(main[BIN])
    bins = {k: v[order] for k, v in main.items()}
    figures = binary_figures(bins, splits, spec.thresholds)
    figures["bins"] = len(bins["n"])
    if spec.replicates:
        figures["bootstrap"] = binary_bootstrap(bins, splits, spec)
    figures["slices"] = slice_tables(groups, spec, _binary_slice)
    return figures


def binary_figures(
    bins: dict[str, np.ndarray], splits: list[float], thresholds: tuple[float, ...]
) -> dict[str, Any]:
    n, pos = bins["n"], bins["pos"]
    neg = n - pos
    rows, positives = int(n.sum()), int(pos.sum())
    if not rows:
        raise InputError("no labelled, scored rows to evaluate")
    lower = np.asarray([splits[int(b)] for b in bins[BIN]])
    figures: dict[str, Any] = {
        "task": "binary",
        "rows": rows,
        "positives": positives,
        "log_loss": float((np.nansum(bins["loss1"]) + np.nansum(bins["loss0"])) / rows),
        "brier": float((np.nansum(bins["sq1"]) + np.nansum(bins["sq0"])) / rows),
    }
    at = []
    for t in thresholds:
        above = lower >= math.nextafter(float(t), math.inf)
        at.append(
            at_threshold(float(t), rows, positives, int(n[above].sum()), int(pos[above].sum()))
        )
    figures.update({k: v for k, v in at[0].items() if k != "threshold"})
    figures["threshold"] = float(thresholds[0])
    figures["thresholds"] = at
    if positives and rows - positives:
        c = curves(pos, neg)
        figures.update(
            areaUnderROC=float(c["roc"]),
            areaUnderROC_error_bound=float(c["roc_bound"]),
            areaUnderPR=float(c["pr"]),
            areaUnderPR_error_bound=float(c["pr_bound"]),
        )
        # F1 when every bin from i up is predicted positive (score >= its lower edge)
        tp = np.cumsum(pos[::-1])[::-1]
        predicted = np.cumsum(n[::-1])[::-1]
        f1 = 2 * tp / (predicted + positives)
        best = int(np.argmax(f1))
        figures["best_f1"] = float(f1[best])
        figures["best_f1_threshold"] = float(max(lower[best], 0.0))
        figures["roc_curve"], figures["pr_curve"] = _curve_points(pos, neg)
    figures["calibration"] = _calibration(bins, lower)
    figures["score_histogram"] = _histogram(bins)
    return figures


def _curve_points(pos: np.ndarray, neg: np.ndarray, points: int = 400) -> tuple[dict, dict]:
    """Down-sampled ROC and PR curves for plots (fpr, tpr) and (recall, precision)."""
    tp, fp = np.cumsum(pos[::-1]), np.cumsum(neg[::-1])
    positives, negatives = tp[-1], fp[-1]
    keep = np.unique(np.linspace(0, len(tp) - 1, min(points, len(tp))).astype(int))
    tpr = np.concatenate([[0.0], tp[keep] / positives])
    fpr = np.concatenate([[0.0], fp[keep] / negatives])
    precision = tp[keep] / np.maximum(tp[keep] + fp[keep], 1)
    return (
        {"fpr": fpr.tolist(), "tpr": tpr.tolist()},
        {"recall": (tp[keep] / positives).tolist(), "precision": precision.tolist()},
    )


def _calibration(bins: dict[str, np.ndarray], lower: np.ndarray) -> list[dict[str, float]]:
    """Mean predicted vs observed rate in the ten probability deciles (edges of the bins:
    exact)."""
    group = np.clip(np.floor(np.maximum(lower, 0.0) * CALIBRATION_BINS + 1e-9), 0, 9).astype(int)
    table = []
    for g in range(CALIBRATION_BINS):
        hit = group == g
        rows = int(bins["n"][hit].sum())
        if rows:
            table.append(
                {
                    "from": g / CALIBRATION_BINS,
                    "to": (g + 1) / CALIBRATION_BINS,
                    "rows": rows,
                    "mean_predicted": float(bins["p"][hit].sum() / rows),
                    "observed_rate": float(bins["pos"][hit].sum() / rows),
                }
            )
    return table


def _histogram(bins: dict[str, np.ndarray]) -> dict[str, list]:
    """Rows per class in 50 equal-width score intervals (from each bin's mean score)."""
    mean = bins["p"] / bins["n"]
    group = np.clip((mean * HISTOGRAM_BINS).astype(int), 0, HISTOGRAM_BINS - 1)
    positive = np.bincount(group, weights=bins["pos"], minlength=HISTOGRAM_BINS)
    total = np.bincount(group, weights=bins["n"], minlength=HISTOGRAM_BINS)
    return {
        "edges": (np.arange(HISTOGRAM_BINS + 1) / HISTOGRAM_BINS).tolist(),
        "positive": positive.astype(int).tolist(),
        "negative": (total - positive).astype(int).tolist(),
    }


def binary_replicates(
    bins: dict[str, np.ndarray], splits: list[float], threshold: float, draws: tuple
) -> dict[str, np.ndarray]:
    """Headline metrics of drawn replicates: `draws` = (positives, negatives) per bin,
    each of shape (replicates, bins)."""
    pos_r, neg_r = draws
    pos, neg = bins["pos"], bins["n"] - bins["pos"]
    with np.errstate(divide="ignore", invalid="ignore"):
        loss1 = np.where(pos > 0, np.nan_to_num(bins["loss1"]) / np.maximum(pos, 1), 0.0)
        loss0 = np.where(neg > 0, np.nan_to_num(bins["loss0"]) / np.maximum(neg, 1), 0.0)
        sq1 = np.where(pos > 0, np.nan_to_num(bins["sq1"]) / np.maximum(pos, 1), 0.0)
        sq0 = np.where(neg > 0, np.nan_to_num(bins["sq0"]) / np.maximum(neg, 1), 0.0)
        rows = pos_r.sum(axis=1) + neg_r.sum(axis=1)
        lower = np.asarray([splits[int(b)] for b in bins[BIN]])
        above = lower >= math.nextafter(float(threshold), math.inf)
        correct = pos_r[:, above].sum(axis=1) + neg_r[:, ~above].sum(axis=1)
        c = curves(pos_r, neg_r)
        return {
            "areaUnderROC": c["roc"],
            "areaUnderPR": c["pr"],
            "log_loss": (pos_r @ loss1 + neg_r @ loss0) / rows,
            "brier": (pos_r @ sq1 + neg_r @ sq0) / rows,
            "accuracy": correct / rows,
        }


def merged_bins(
    bins: dict[str, np.ndarray], splits: list[float], cuts: list[float], size: int
) -> dict[str, np.ndarray]:
    """Consecutive fine bins summed into about `size` bins, never across a cut (so the
    counts at a threshold stay exact); a merged bin keeps its first bin's index."""
    lower = np.asarray([splits[int(b)] for b in bins[BIN]])
    step = max(1, -(-len(lower) // size))
    starts = (np.arange(len(lower)) % step == 0) | np.isin(lower, np.asarray(cuts, dtype=float))
    first = np.flatnonzero(starts)
    merged = {k: np.add.reduceat(np.nan_to_num(v), first) for k, v in bins.items() if k != BIN}
    merged[BIN] = bins[BIN][first]
    return merged


def binary_bootstrap(
    bins: dict[str, np.ndarray], splits: list[float], spec: EvalSpec
) -> dict[str, Any]:
    """Intervals from replicates drawn on ~BOOTSTRAP_BINS merged bins (an interval needs
    no finer curve), shifted by the fine estimate minus the merged one."""
    rng = np.random.default_rng(spec.seed)
    cut = math.nextafter(float(spec.thresholds[0]), math.inf)
    coarse = merged_bins(bins, splits, [cut], BOOTSTRAP_BINS)
    pos, neg = coarse["pos"], coarse["n"] - coarse["pos"]
    draws = (draw(pos, spec.replicates, rng), draw(neg, spec.replicates, rng))
    values = binary_replicates(coarse, splits, spec.thresholds[0], draws)
    at_fine = binary_replicates(
        bins, splits, spec.thresholds[0], (bins["pos"][None, :], (bins["n"] - bins["pos"])[None, :])
    )
    at_coarse = binary_replicates(coarse, splits, spec.thresholds[0], (pos[None, :], neg[None, :]))
    values = {k: v + (at_fine[k][0] - at_coarse[k][0]) for k, v in values.items()}
    return bootstrap_summary(spec, values)


def _binary_slice(group: dict[str, np.ndarray], hit: np.ndarray) -> dict[str, Any]:
    """A slice value's rows, positives, accuracy, log loss and AUC from its coarse bins."""
    coarse = group[COARSE][hit].astype(int)
    n = np.bincount(coarse, weights=group["n"][hit], minlength=SLICE_BINS)
    pos = np.bincount(coarse, weights=group["pos"][hit], minlength=SLICE_BINS)
    rows, positives = int(n.sum()), int(pos.sum())
    loss = np.nansum(group["loss1"][hit]) + np.nansum(group["loss0"][hit])
    return {
        "rows": rows,
        "positives": positives,
        "accuracy": float(group["correct"][hit].sum() / rows),
        "log_loss": float(loss / rows),
        "areaUnderROC": (
            float(curves(pos, n - pos)["roc"]) if positives and rows - positives else None
        ),
    }
