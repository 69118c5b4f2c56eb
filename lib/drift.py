"""Drift of a scoring input against a model's training snapshot, from the stored profile.

The training profile (`feature_pipeline.profile_of`, kept in every model's manifest)
holds, per numeric feature, its decile edges, the rows between them, null count, mean,
standard deviation and a KLL sketch; per categorical feature, rows per level. The input
is summarised by `input_profile`: every numeric column is bucketed on its own training
edges and every categorical column keeps its level, all stacked into one long frame and
counted by one `groupBy` (with sums and sums of squares); the numeric columns' KLL
sketches come from one global aggregate beside it (two reads of the input: a sketch
kept per group costs ten times more). No pass over the training data.

Figures: PSI over the training deciles (numeric) or levels (categorical), the
two-sample Kolmogorov-Smirnov statistic between the training and the input sketches
(evaluated at both sketches' percentiles), Jensen-Shannon divergence of level
frequencies (base 2, in [0, 1]), null-rate change, mean shift in training standard
deviations, and unseen levels (counted, the top 5 named).
"""

from __future__ import annotations

import base64
import math
from dataclasses import dataclass, field
from typing import Any

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T

from batchml.lib.sqltext import identifier

EPSILON = 1e-6  # proportion floor: a bin empty on one side would make PSI infinite
NULL_BUCKET = -1
KS_POINTS = [k / 100 for k in range(1, 100)]  # percentiles of each sketch: where KS looks


@dataclass
class ColumnSummary:
    """One input column, summarised: counts per training bin (numeric) or level."""

    rows: int = 0
    nulls: int = 0
    counts: dict[Any, int] = field(default_factory=dict)  # bin index or level -> rows
    total: float = 0.0
    total_squares: float = 0.0
    sketch: bytes | None = None


def input_profile(
    df: DataFrame, numeric_edges: dict[str, list[float]], categorical: list[str]
) -> dict[str, ColumnSummary]:
    """Every column's summary in one pass over `df` (see the module doc)."""
    names = [*numeric_edges, *categorical]
    triples = []
    for i, column in enumerate(numeric_edges):
        cleaned = _cleaned(column)
        triples.append(f"{i}, {cleaned}, {_bucket_sql(cleaned, numeric_edges[column])}, NULL")
    for i, column in enumerate(categorical, start=len(numeric_edges)):
        level = f"CAST({identifier(column)} AS STRING)"
        triples.append(f"{i}, NULL, IF({level} IS NULL, {NULL_BUCKET}, 0), {level}")
    if not triples:
        return {}
    stacked = df.select(
        F.expr(
            f"stack({len(triples)}, {', '.join(triples)}) AS (__column, __value, __bucket, __level)"
        )
    )
    rows = (
        stacked.groupBy("__column", "__bucket", "__level")
        .agg(
            F.count(F.lit(1)).alias("rows"),
            F.sum("__value").alias("total"),
            F.sum(F.col("__value") * F.col("__value")).alias("squares"),
        )
        .collect()
    )
    # The KLL sketches in a global aggregate of their own: kept per group in the
    # aggregation above they cost 10x (171 s against 8 s at 4M rows x 20 columns; see
    # benchmarks/RESULTS.md), so the input is read twice until the sketches give way to
    # fine bins (the one pass)
    sketches = {}
    if numeric_edges:
        sketched = df.agg(
            *[
                F.expr(f"kll_sketch_agg_double({_cleaned(column)})").alias(f"k{i}")
                for i, column in enumerate(numeric_edges)
            ]
        ).collect()[0]
        sketches = {
            column: bytes(sketched[f"k{i}"]) if sketched[f"k{i}"] is not None else None
            for i, column in enumerate(numeric_edges)
        }
    summaries = {name: ColumnSummary() for name in names}
    for name, sketch in sketches.items():
        summaries[name].sketch = sketch
    for row in rows:
        name = names[row["__column"]]
        summary = summaries[name]
        summary.rows += row["rows"]
        if row["__bucket"] == NULL_BUCKET:
            summary.nulls += row["rows"]
            continue
        key = row["__level"] if name in categorical else row["__bucket"]
        summary.counts[key] = summary.counts.get(key, 0) + row["rows"]
        if name in numeric_edges:
            summary.total += row["total"] or 0.0
            summary.total_squares += row["squares"] or 0.0
    return summaries


def _cleaned(column: str) -> str:
    """A numeric column as a double, NaN as null."""
    value = f"CAST({identifier(column)} AS DOUBLE)"
    return f"CASE WHEN isnan({value}) THEN NULL ELSE {value} END"


def _bucket_sql(value: str, edges: list[float]) -> str:
    """The training bin of a value: 0 up to the first edge … len(edges) above the last;
    NULL_BUCKET for a null. A value on an edge belongs to the bin below it, as in the
    training counts (the sketch's inclusive rank of each edge): with tied edges (a
    feature that is often 0) the tied mass stays in one bin on both sides."""
    cases = " ".join(f"WHEN {value} <= {edge!r}D THEN {i}" for i, edge in enumerate(edges))
    return f"CASE WHEN {value} IS NULL THEN {NULL_BUCKET} {cases} ELSE {len(edges)} END"


def psi(expected: list[float], actual: list[float]) -> float:
    """Population stability index of two count vectors over the same bins."""
    e_total, a_total = sum(expected), sum(actual)
    if not e_total or not a_total:
        return 0.0
    value = 0.0
    for e, a in zip(expected, actual, strict=True):
        p, q = max(e / e_total, EPSILON), max(a / a_total, EPSILON)
        value += (q - p) * math.log(q / p)
    return value


def jensen_shannon(expected: list[float], actual: list[float]) -> float:
    """Jensen-Shannon divergence (base 2, 0 … 1) of two count vectors."""
    e_total, a_total = sum(expected), sum(actual)
    if not e_total or not a_total:
        return 0.0
    value = 0.0
    for e, a in zip(expected, actual, strict=True):
        p, q = e / e_total, a / a_total
        m = (p + q) / 2
        if p:
            value += 0.5 * p * math.log2(p / m)
        if q:
            value += 0.5 * q * math.log2(q / m)
    return value


def ks_statistics(spark: SparkSession, pairs: dict[str, tuple[bytes, bytes]]) -> dict[str, float]:
    """max |F_train(x) - F_input(x)| per feature, over both sketches' percentiles: two
    small local queries on the sketches of every feature at once (KLL's rank error,
    about 1.3%, bounds the precision)."""
    if not pairs:
        return {}
    names = list(pairs)
    schema = T.StructType(
        [T.StructField(f"{side}{i}", T.BinaryType()) for i in range(len(names)) for side in "ab"]
    )
    one = spark.createDataFrame([tuple(part for name in names for part in pairs[name])], schema)
    ranks = ", ".join(f"{r!r}D" for r in KS_POINTS)
    found = one.select(
        *[
            F.expr(
                f"array_sort(array_distinct(filter(concat("
                f"kll_sketch_get_quantile_double(a{i}, array({ranks})), "
                f"kll_sketch_get_quantile_double(b{i}, array({ranks}))), x -> x IS NOT NULL)))"
            ).alias(f"x{i}")
            for i in range(len(names))
        ]
    ).collect()[0]
    points = {i: found[f"x{i}"] or [] for i in range(len(names))}
    columns = []
    for i, xs in points.items():
        if xs:
            grid = ", ".join(f"{p!r}D" for p in xs)
            columns += [
                F.expr(f"kll_sketch_get_rank_double(a{i}, array({grid}))").alias(f"ra{i}"),
                F.expr(f"kll_sketch_get_rank_double(b{i}, array({grid}))").alias(f"rb{i}"),
            ]
    row = one.select(*columns).collect()[0] if columns else None
    out = {}
    for i, name in enumerate(names):
        if not points[i] or row is None:
            out[name] = 0.0
            continue
        pairs_of_ranks = zip(row[f"ra{i}"], row[f"rb{i}"], strict=True)
        out[name] = max(abs(a - b) for a, b in pairs_of_ranks)
    return out


def numeric_drift(
    profile: dict[str, Any], summary: ColumnSummary, ks: float | None
) -> dict[str, float | None]:
    """PSI, KS (from `ks_statistics`), null-rate change and mean shift of one numeric
    feature."""
    bins = len(profile["deciles"]) + 1
    actual = [summary.counts.get(i, 0) for i in range(bins)]
    train_rows = profile["count"] + profile["nulls"]
    train_null_rate = profile["nulls"] / train_rows if train_rows else 0.0
    null_rate = summary.nulls / summary.rows if summary.rows else 0.0
    present = summary.rows - summary.nulls
    mean = summary.total / present if present else None
    shift = None
    if mean is not None and profile.get("stddev") and profile.get("mean") is not None:
        shift = (mean - profile["mean"]) / profile["stddev"]
    return {
        "psi": psi(profile["decile_counts"], actual),
        "ks": ks,
        "null_rate": null_rate,
        "null_rate_change": null_rate - train_null_rate,
        "mean_shift_sd": shift,
    }


def numeric_drifts(
    spark: SparkSession, profiles: dict[str, dict[str, Any]], summaries: dict[str, ColumnSummary]
) -> dict[str, dict[str, float | None]]:
    """`numeric_drift` of every feature in `profiles`, their KS statistics computed together."""
    pairs = {
        column: (base64.b64decode(profile["kll_sketch"]), summaries[column].sketch)
        for column, profile in profiles.items()
        if profile.get("kll_sketch") and summaries[column].sketch
    }
    ks = ks_statistics(spark, pairs)  # type: ignore[arg-type]
    return {
        column: numeric_drift(profile, summaries[column], ks.get(column))
        for column, profile in profiles.items()
    }


def categorical_drift(profile: dict[str, Any], summary: ColumnSummary) -> dict[str, Any]:
    """PSI and Jensen-Shannon over the levels, and the levels training never saw."""
    trained: dict[str, int] = profile["levels"]
    levels = sorted(set(trained) | set(summary.counts))
    expected = [trained.get(level, 0) for level in levels]
    actual = [summary.counts.get(level, 0) for level in levels]
    unseen = sorted(
        ((level, n) for level, n in summary.counts.items() if level not in trained),
        key=lambda ln: (-ln[1], ln[0]),
    )
    train_rows = sum(trained.values()) + profile.get("nulls", 0)
    return {
        "psi": psi(expected, actual),
        "js": jensen_shannon(expected, actual),
        "unseen_rows": sum(n for _, n in unseen),
        "unseen_levels": [level for level, _ in unseen[:5]],
        "null_rate_change": (summary.nulls / summary.rows if summary.rows else 0.0)
        - (profile.get("nulls", 0) / train_rows if train_rows else 0.0),
    }
