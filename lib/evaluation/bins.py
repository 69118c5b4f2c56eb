"""Score bins and what every evaluation shares: the bin edges from a bounded sample,
bucketing, curves from bin counts, intervals, the bootstrap's draws, slice pooling, the
evaluation spec, its checks and its constants."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from batchml.lib.platform.errors import InputError
from batchml.lib.spark.jvm import bucketize

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

    done = bucketize(frame, column, splits, output)
    if done is None:  # no JVM at hand (Spark Connect): the wrapper's way
        return Bucketizer(
            splits=splits, inputCol=column, outputCol=output, handleInvalid="keep"
        ).transform(frame)
    return done


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


def grouped(
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
            name: as_array(rows.column(name))
            for name in rows.column_names
            if name != "__gid" and (name in grouping or name not in columns)
        }
    return out


def as_array(column: Any) -> np.ndarray:
    values = column.to_pylist()
    if values and isinstance(next((v for v in values if v is not None), 0), str):
        return np.asarray(values, dtype=object)
    return np.asarray([math.nan if v is None else v for v in values], dtype=float)


def draw(counts: np.ndarray, replicates: int, rng: np.random.Generator) -> np.ndarray:
    return rng.poisson(np.broadcast_to(counts, (replicates, *counts.shape)).astype(float))


def pool(values: np.ndarray, n: np.ndarray, min_rows: int) -> np.ndarray:
    """Slice values, with those under `min_rows` rows in all renamed `other`."""
    totals: dict[Any, float] = {}
    for value, count in zip(values, n, strict=True):
        totals[value] = totals.get(value, 0) + count
    small = {v for v, count in totals.items() if count < min_rows}
    return np.asarray([OTHER if v in small else v for v in values], dtype=object)


def slice_tables(
    groups: dict[int, dict[str, np.ndarray]],
    spec: EvalSpec,
    figures: Callable[[dict[str, np.ndarray], np.ndarray], dict[str, Any]],
) -> dict[str, list[dict[str, Any]]]:
    """Per slice column of `spec`, one entry per value (values under `min_slice_rows`
    rows pooled as `other`): `figures(group, hit)` of the value's cells (`group`: the
    column's grouped cells, `groups[i + 1]`; `hit`: a mask over them), with `value`;
    `other` last, then by rows, most first."""
    tables = {}
    for i, column in enumerate(spec.slices):
        group = groups[i + 1]
        values = pool(group[f"{SLICE_VALUE}{i}"], group["n"], spec.min_slice_rows)
        table = [
            {"value": str(value), **figures(group, values == value)}
            for value in sorted(set(values), key=lambda v: (v == OTHER, str(v)))
        ]
        tables[column] = sorted(table, key=lambda e: (e["value"] == OTHER, -e["rows"]))
    return tables


def higher_is_better(metric: str) -> bool:
    return metric not in LOWER_IS_BETTER
