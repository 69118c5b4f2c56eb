"""Evaluation of scored rows over a whole table: every figure from one aggregation over
equal-count score bins, bootstrap intervals without another pass, and slices.

How it works, for a binary classifier:
1. Bin edges from a sketch of the scores: a bounded random sample of them (at most
   `SAMPLE_ROWS`, whatever the table's size) cut into `FINE_BINS` bins of equal count. The
   model's thresholds (as the next double above each: a row is positive when its score is
   above the threshold) and the calibration deciles are edges too, so the counts at a
   threshold and the calibration table are exact.
2. One aggregation (grouping sets): per fine bin the rows, positives, the sums of the
   probability, log loss and squared error by label; per value of each slice column and
   coarse bin the same. Only these tables (a few thousand rows) reach the driver, as Arrow.
3. On the driver: ROC / PR AUC by trapezoids over the bins (scores within a bin count as
   tied) with the worst-case error of that binning beside each, log loss, Brier score,
   the confusion matrix at each threshold, the F1-best threshold, calibration and the
   score distribution per class.

Bootstrap: a Poisson bootstrap gives each row a Poisson(1) weight per replicate. The sum
of the weights of the rows of one cell (bin x label) is then Poisson(rows of the cell),
independently across cells: a replicate's bin counts are drawn on the driver from the
counts of the aggregation (seeded), with the same distribution as weights hashed from
each row's key, and without a pass over rows per replicate. (Hashed row weights were
measured first: 4M rows x 200 replicates took 39 s as an exploded aggregation and 120 s as
400 sums; drawing from the cells takes milliseconds.) Sums within a cell (log loss, squared
errors) scale with the drawn weight at the cell's mean: fine bins keep their spread small.
Paired replicates of two models (promotion) draw on the joint cells of both models' bins.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from batchml.lib.errors import InputError

FINE_BINS = 20_000
SLICE_BINS = 100  # coarse bins per slice value (a slice's AUC)
PAIRED_BINS = 100  # coarse bins per model in the joint cells of a paired bootstrap
SAMPLE_ROWS = 200_000  # scores sampled for the bin edges (bounded: a sketch)
CALIBRATION_BINS = 10
HISTOGRAM_BINS = 50
EPSILON = 1e-15  # log loss clips probabilities to [EPSILON, 1 - EPSILON]
DEFAULT_REPLICATES = 200
LEVEL = 0.95
OTHER = "other"
NULL_VALUE = "(null)"
RESIDUAL_BINS = 2_000
BOOTSTRAP_BINS = 2_000  # merged bins the replicates are drawn on
LOWER_IS_BETTER = {"rmse", "mae", "mape", "log_loss", "brier"}

BIN, COARSE, SLICE_VALUE = "__bin", "__cbin", "__slice"


@dataclass(frozen=True)
class EvalSpec:
    """What to compute: thresholds, slice columns, bootstrap replicates."""

    thresholds: tuple[float, ...] = (0.5,)  # the first is the model's
    slices: tuple[str, ...] = ()
    min_slice_rows: int = 100
    replicates: int = DEFAULT_REPLICATES
    seed: int = 42
    key: str | None = None  # a row key: the edges' sample is chosen by its hash


def check_thresholds(thresholds: tuple[float, ...]) -> None:
    bad = [t for t in thresholds if not (isinstance(t, (int, float)) and 0.0 <= t <= 1.0)]
    if bad:
        raise InputError(f"threshold {bad[0]} is outside [0, 1]")


def check_columns(frame: DataFrame, needed: dict[str, str], where: str) -> None:
    """Every needed column (column -> why) is in `frame`; one error lists the missing."""
    missing = [f"{c} ({why})" for c, why in needed.items() if c not in frame.columns]
    if missing:
        raise InputError(f"{where}: missing columns {', '.join(missing)}")


# ------------------------------------------------------------------ bin edges
def sample_edges(
    frame: DataFrame,
    column: F.Column,
    bins: int,
    *,
    rows_hint: int | None,
    seed: int,
    key: str | None = None,
) -> np.ndarray:
    """Edges cutting `column` into about `bins` bins of equal count, from a bounded random
    sample of it: at most about SAMPLE_ROWS values reach the driver, whatever the size.

    With a `key` column the sample is chosen by a hash of the key and the value, so the
    same rows give the same edges (and figures) on any master and partitioning, and a
    repeated key (all null, say) is not sampled all or nothing; without one, Spark's
    seeded sampling, which depends on the partitioning. Rows of unknown count are
    counted first (one small job).
    """
    value = F.col("__v")
    source = frame.select(
        column.cast("double").alias("__v"), *([F.col(f"`{key}`")] if key else [])
    ).filter(value.isNotNull() & ~F.isnan(value))
    rows = rows_hint if rows_hint is not None else source.count()
    if rows > SAMPLE_ROWS:
        share = SAMPLE_ROWS / rows
        if key:
            # the key and the value: rows repeating one key (a null key, a customer's
            # snapshots) are drawn apart unless they are the same row twice
            draw = F.pmod(F.xxhash64(F.lit(seed), F.col(f"`{key}`"), value), F.lit(1 << 30))
            source = source.filter(draw < F.lit(int(share * (1 << 30))))
        else:
            source = source.sample(share, seed=seed)
    sample = source.select(value).toArrow().column("__v").to_numpy(zero_copy_only=False)
    if sample.size == 0:
        return np.asarray([], dtype=float)
    cuts = np.quantile(
        np.sort(sample.astype(float)), np.arange(1, bins) / bins, method="inverted_cdf"
    )
    return np.unique(cuts)


def splits_from(edges: np.ndarray, extra: list[float]) -> list[float]:
    """Bucketizer splits: -inf, the sorted distinct edges and extra cuts, +inf."""
    cuts = np.unique(np.concatenate([edges, np.asarray(extra, dtype=float)]))
    cuts = cuts[np.isfinite(cuts)]
    if cuts.size == 0:  # no values at all (Bucketizer needs one cut)
        cuts = np.asarray([0.0])
    return [-math.inf, *cuts.tolist(), math.inf]


def bucketed(frame: DataFrame, column: str, splits: list[float], output: str) -> DataFrame:
    """`frame` with `output`, the index of the split interval `column` falls in (MLlib's
    Bucketizer: a binary search in the JVM; NaN gets the last index).

    The splits go to the JVM as one byte array: the Python wrapper sends a list element
    by element through Py4J, 1.5 s for 10,000 splits, more than the aggregation itself.
    """
    from pyspark.ml.feature import Bucketizer

    try:
        jvm = frame.sparkSession._jvm
        data = bytearray(np.asarray(splits, dtype=">f8").tobytes())
        values = frame.sparkSession.sparkContext._gateway.new_array(jvm.double, len(splits))
        jvm.java.nio.ByteBuffer.wrap(data).asDoubleBuffer().get(values)
        stage = jvm.org.apache.spark.ml.feature.Bucketizer()
        stage.setInputCol(column).setOutputCol(output).setHandleInvalid("keep")
        stage.setSplits(values)
        return DataFrame(stage.transform(frame._jdf), frame.sparkSession)
    except AttributeError:  # no JVM at hand (Spark Connect): the wrapper's way
        return Bucketizer(
            splits=splits, inputCol=column, outputCol=output, handleInvalid="keep"
        ).transform(frame)


# ------------------------------------------------------------------ curves
def curves(pos: np.ndarray, neg: np.ndarray) -> dict[str, np.ndarray]:
    """ROC AUC, PR AUC and their binning error bounds from per-bin counts ordered by
    ascending score; the last axis is the bins (replicates may add a leading axis)."""
    p, q = pos[..., ::-1].astype(float), neg[..., ::-1].astype(float)  # highest first
    tp, fp = np.cumsum(p, axis=-1), np.cumsum(q, axis=-1)
    positives, negatives = tp[..., -1:], fp[..., -1:]
    with np.errstate(divide="ignore", invalid="ignore"):
        roc = np.sum(q * (2 * tp - p), axis=-1) / 2 / (positives * negatives)[..., 0]
        precision = np.where(tp + fp > 0, tp / (tp + fp), np.nan)
        before = np.concatenate([precision[..., :1], precision[..., :-1]], axis=-1)
        before = np.where(np.isnan(before), precision, before)
        pr_terms = np.where(p > 0, p * (before + precision) / 2, 0.0)
        pr = np.sum(pr_terms, axis=-1) / positives[..., 0]
        roc_bound = np.sum(p * q, axis=-1) / 2 / (positives * negatives)[..., 0]
        tp0, fp0 = tp - p, fp - q
        low = np.where(tp0 + fp > 0, tp0 / (tp0 + fp), 0.0)
        high = np.where(tp + fp0 > 0, tp / (tp + fp0), 0.0)
        pr_bound = np.sum(p * (high - low), axis=-1) / positives[..., 0]
    return {"roc": roc, "pr": pr, "roc_bound": roc_bound, "pr_bound": pr_bound}


def at_threshold(cut: float, rows: int, positives: int, predicted: int, tp: int) -> dict:
    fp, fn = predicted - tp, positives - tp
    tn = rows - predicted - fn
    return {
        "threshold": cut,
        "accuracy": (tp + tn) / rows if rows else math.nan,
        "precision": tp / predicted if predicted else 0.0,
        "recall": tp / positives if positives else 0.0,
        "f1": 2 * tp / (2 * tp + fp + fn) if tp else 0.0,
        "confusion": {"tp": tp, "fp": fp, "fn": fn, "tn": tn},
    }


def interval(values: np.ndarray) -> list[float] | None:
    finite = values[np.isfinite(values)]
    if finite.size < 2:
        return None
    tail = (1 - LEVEL) / 2 * 100
    low, high = np.percentile(finite, [tail, 100 - tail])
    return [float(low), float(high)]


def bootstrap_summary(spec: EvalSpec, values: dict[str, Any]) -> dict[str, Any]:
    """The 95% percentile interval of each metric's replicate values, with the settings."""
    return {
        "replicates": spec.replicates,
        "seed": spec.seed,
        "level": LEVEL,
        "intervals": {k: interval(np.asarray(v, dtype=float)) for k, v in values.items()},
    }


# ------------------------------------------------------------------ binary
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


def _grouped(
    frame: DataFrame, sets: list[list[str]], columns: list[str], sums: list[F.Column]
) -> dict[int, dict[str, np.ndarray]]:
    """One aggregation over grouping sets; per set (by position) its columns as arrays."""
    names = [F.col(c) for c in columns]
    grouped = frame.groupingSets([[F.col(c) for c in s] for s in sets], *names)
    table = grouped.agg(*sums, F.grouping_id().alias("__gid")).toArrow()
    out: dict[int, dict[str, np.ndarray]] = {}
    gids = table.column("__gid").to_numpy(zero_copy_only=False)
    for index, grouping in enumerate(sets):
        gid = sum(1 << (len(columns) - 1 - i) for i, c in enumerate(columns) if c not in grouping)
        rows = table.filter(gids == gid)
        out[index] = {
            name: _array(rows.column(name))
            for name in rows.column_names
            if name != "__gid" and (name in grouping or name not in columns)
        }
    return out


def _array(column: Any) -> np.ndarray:
    values = column.to_pylist()
    if values and isinstance(next((v for v in values if v is not None), 0), str):
        return np.asarray(values, dtype=object)
    return np.asarray([math.nan if v is None else v for v in values], dtype=float)


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
    groups = _grouped(binned, sets, columns, _binary_sums(y, F.col("__p"), spec.thresholds[0]))
    main = groups[0]
    order = np.argsort(main[BIN])
    bins = {k: v[order] for k, v in main.items()}
    figures = binary_figures(bins, splits, spec.thresholds)
    figures["bins"] = len(bins["n"])
    if spec.replicates:
        figures["bootstrap"] = binary_bootstrap(bins, splits, spec)
    figures["slices"] = {
        column: _binary_slices(groups[i + 1], f"{SLICE_VALUE}{i}", spec.min_slice_rows)
        for i, column in enumerate(spec.slices)
    }
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


def _draw(counts: np.ndarray, replicates: int, rng: np.random.Generator) -> np.ndarray:
    return rng.poisson(np.broadcast_to(counts, (replicates, *counts.shape)).astype(float))


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
    draws = (_draw(pos, spec.replicates, rng), _draw(neg, spec.replicates, rng))
    values = binary_replicates(coarse, splits, spec.thresholds[0], draws)
    at_fine = binary_replicates(
        bins, splits, spec.thresholds[0], (bins["pos"][None, :], (bins["n"] - bins["pos"])[None, :])
    )
    at_coarse = binary_replicates(coarse, splits, spec.thresholds[0], (pos[None, :], neg[None, :]))
    values = {k: v + (at_fine[k][0] - at_coarse[k][0]) for k, v in values.items()}
    return bootstrap_summary(spec, values)


def _pool(values: np.ndarray, n: np.ndarray, min_rows: int) -> np.ndarray:
    """Slice values, with those under `min_rows` rows in all renamed `other`."""
    totals: dict[Any, float] = {}
    for value, count in zip(values, n, strict=True):
        totals[value] = totals.get(value, 0) + count
    small = {v for v, count in totals.items() if count < min_rows}
    return np.asarray([OTHER if v in small else v for v in values], dtype=object)


def _binary_slices(group: dict[str, np.ndarray], column: str, min_rows: int) -> list[dict]:
    values = _pool(group[column], group["n"], min_rows)
    table = []
    for value in sorted(set(values), key=lambda v: (v == OTHER, str(v))):
        hit = values == value
        n = np.bincount(
            group[COARSE][hit].astype(int), weights=group["n"][hit], minlength=SLICE_BINS
        )
        pos = np.bincount(
            group[COARSE][hit].astype(int), weights=group["pos"][hit], minlength=SLICE_BINS
        )
        rows, positives = int(n.sum()), int(pos.sum())
        entry: dict[str, Any] = {
            "value": str(value),
            "rows": rows,
            "positives": positives,
            "accuracy": float(group["correct"][hit].sum() / rows),
            "log_loss": float(
                (np.nansum(group["loss1"][hit]) + np.nansum(group["loss0"][hit])) / rows
            ),
            "areaUnderROC": None,
        }
        if positives and rows - positives:
            entry["areaUnderROC"] = float(curves(pos, n - pos)["roc"])
        table.append(entry)
    return sorted(table, key=lambda e: (e["value"] == OTHER, -e["rows"]))


# ------------------------------------------------------------------ regression
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
    groups = _grouped(binned, sets, columns, _regression_sums(y, F.col("__pred")))
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
        values = regression_replicates(bins, _draw(bins["n"], spec.replicates, rng))
        figures["bootstrap"] = bootstrap_summary(spec, values)
    slices = {}
    for i, column in enumerate(spec.slices):
        group = groups[i + 1]
        name = f"{SLICE_VALUE}{i}"
        values = _pool(group[name], group["n"], spec.min_slice_rows)
        table = []
        for value in set(values):
            hit = values == value
            sums = {k: float(np.nansum(group[k][hit])) for k in ("n", "r2", "abs", "y", "y2")}
            table.append({"value": str(value), "rows": int(sums["n"]), **_regression_point(sums)})
        slices[column] = sorted(table, key=lambda e: (e["value"] == OTHER, -e["rows"]))
    figures["slices"] = slices
    return figures


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


# ------------------------------------------------------------------ multiclass
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
    groups = _grouped(usable, sets, columns, sums)
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
        drawn = _draw(matrix, spec.replicates, rng)
        values = {k: [] for k in ("accuracy", "macro_f1", "weighted_f1")}
        for replicate in drawn:
            point = multiclass_point(replicate)
            for k in values:
                values[k].append(point[k])
        figures["bootstrap"] = bootstrap_summary(spec, values)
    slices = {}
    for i, column in enumerate(spec.slices):
        group = groups[i + 1]
        name = f"{SLICE_VALUE}{i}"
        values = _pool(group[name], group["n"], spec.min_slice_rows)
        table = []
        for value in set(values):
            hit = values == value
            n = float(group["n"][hit].sum())
            right = float(group["n"][hit & (group["__y"] == group["__pred"])].sum())
            entry = {"value": str(value), "rows": int(n), "accuracy": right / n}
            if probabilities:
                entry["log_loss"] = float(np.nansum(group["loss"][hit]) / n)
            table.append(entry)
        slices[column] = sorted(table, key=lambda e: (e["value"] == OTHER, -e["rows"]))
    figures["slices"] = slices
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


# ------------------------------------------------------------------ paired (promotion)
def higher_is_better(metric: str) -> bool:
    return metric not in LOWER_IS_BETTER


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
    cells = {name: _array(table.column(name)) for name in table.column_names}
    rng = np.random.default_rng(seed)
    weights = _draw(cells["n"], replicates, rng)  # (replicates, cells)
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


# ------------------------------------------------------------------ over time
PERIOD_BINS = 1_000  # equal-width score bins per period (for the AUC interval)


def by_period(
    frame: DataFrame,
    label: str,
    score: str,
    period: str,
    *,
    task: str,
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
                drawn = curves(_draw(pos, replicates, rng), _draw(neg, replicates, rng))
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
