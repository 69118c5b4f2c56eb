"""Drift of a scoring input against a model's training snapshot, from the stored profile.

The training profile (`feature_pipeline.profile_of`, kept in every model's manifest)
holds, per numeric feature, its decile edges, the rows between them, null count, mean,
standard deviation and a KLL sketch; per categorical feature, rows per level. From the
sketch come each feature's fine bins (`grids`): its deciles and its 99 percentiles, with
the training CDF at every edge (two tiny local queries, no data read). The input is read
once (`input_profile`): each partition's Arrow batches are counted in place, every
numeric column on its fine bins (numpy's searchsorted + bincount, with sums for the
means), every categorical column by level, and the few rows per partition are summed by
one small `groupBy`. No pass over the training data.

Figures: PSI over the training deciles (the fine counts summed up to them) or the levels,
the two-sample Kolmogorov-Smirnov statistic max |F_train - F_input| over the fine edges
(the training side from the sketch, whose rank error is about 1.3%; the input side exact
at those points), Jensen-Shannon divergence of level frequencies (base 2, in [0, 1]),
null-rate change, mean shift in training standard deviations, and unseen levels
(counted, the top 5 named).
"""

from __future__ import annotations

import base64
import bisect
import itertools
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T

from batchml.lib.platform.sqltext import identifier

EPSILON = 1e-6  # proportion floor: a bin empty on one side would make PSI infinite
NULL_BUCKET = -1
FINE_POINTS = [k / 100 for k in range(1, 100)]  # the training sketch's percentiles: fine bins


@dataclass
class ColumnSummary:
    """One input column, summarised: counts per bin (numeric) or level (categorical)."""

    rows: int = 0
    nulls: int = 0
    counts: dict[Any, int] = field(default_factory=dict)  # bin index or level -> rows
    total: float = 0.0  # numeric: the sum of the values (for the mean)
    edges: list[float] = field(default_factory=list)  # numeric: the bins' edges


@dataclass
class Grid:
    """The fine bins of one numeric feature: its training deciles and its training
    sketch's percentiles, sorted and distinct, with the training CDF at each edge."""

    edges: list[float]
    train_cdf: list[float]


def grids(spark: SparkSession, profiles: dict[str, dict[str, Any]]) -> dict[str, Grid]:
    """The fine grid of every numeric feature, read off the stored training sketches in
    two small local queries (percentiles, then the ranks of every edge) for all features
    together; no data is read. A feature without a sketch keeps its deciles, its CDF
    from the stored decile counts."""
    out: dict[str, Grid] = {}
    sketched = {c: p for c, p in profiles.items() if p.get("kll_sketch") and p.get("count")}
    for column, profile in profiles.items():
        if column not in sketched:
            deciles = profile["deciles"]
            cumulative = list(itertools.accumulate(profile.get("decile_counts") or []))
            total = cumulative[-1] if cumulative else 0
            cut = _distinct_edges(deciles)
            # rows <= e: the counts up to the last decile equal to e
            cdf = [cumulative[bisect.bisect_right(deciles, e) - 1] / total for e in cut]
            out[column] = Grid(cut, cdf if total else [])
    if not sketched:
        return out
    names = list(sketched)
    schema = T.StructType([T.StructField(f"k{i}", T.BinaryType()) for i in range(len(names))])
    one = spark.createDataFrame(
        [tuple(base64.b64decode(sketched[c]["kll_sketch"]) for c in names)], schema
    )
    found = one.select(
        *[
            F.expr(f"kll_sketch_get_quantile_double(k{i}, {_doubles(FINE_POINTS)})").alias(c)
            for i, c in enumerate(names)
        ]
    ).collect()[0]
    edges = {c: _distinct_edges([*sketched[c]["deciles"], *(found[c] or [])]) for c in names}
    ranked = one.select(
        *[
            F.expr(f"kll_sketch_get_rank_double(k{i}, {_doubles(edges[c])})").alias(c)
            for i, c in enumerate(names)
            if edges[c]
        ]
    ).collect()[0]
    for column in names:
        out[column] = Grid(edges[column], list(ranked[column]) if edges[column] else [])
    return out


def _doubles(values: list[float]) -> str:
    return "array(" + ", ".join(f"{v!r}D" for v in values) + ")"


def _distinct_edges(values: Iterable[float | None]) -> list[float]:
    return sorted({float(v) for v in values if v is not None and math.isfinite(v)})


def input_profile(
    df: DataFrame, numeric_edges: dict[str, list[float]], categorical: list[str]
) -> dict[str, ColumnSummary]:
    """Every column's summary in one pass over `df` (see the module doc): each numeric
    column counted in the bins its `numeric_edges` cut (sorted, distinct), as (e, e']."""
    names = [*numeric_edges, *categorical]
    if not names:
        return {}
    numeric = list(numeric_edges)
    numeric_edges = {c: _distinct_edges(edges) for c, edges in numeric_edges.items()}
    frame = df.select(
        *[F.expr(_cleaned(c)).alias(f"__v{i}") for i, c in enumerate(numeric)],
        *[F.col(identifier(c)).cast("string").alias(f"__l{i}") for i, c in enumerate(categorical)],
    )
    counted = frame.mapInArrow(
        _partition_counter([numeric_edges[c] for c in numeric], len(categorical)), COUNTS_SCHEMA
    )
    rows = (
        counted.groupBy("column", "bucket", "level")
        .agg(F.sum("rows").alias("rows"), F.sum("total").alias("total"))
        .collect()
    )
    summaries = {name: ColumnSummary() for name in names}
    for name in numeric:
        summaries[name].edges = list(numeric_edges[name])
    for row in rows:
        name = names[row["column"]]
        summary = summaries[name]
        summary.rows += row["rows"]
        if row["bucket"] == NULL_BUCKET:
            summary.nulls += row["rows"]
            continue
        key = row["level"] if name in categorical else row["bucket"]
        summary.counts[key] = summary.counts.get(key, 0) + row["rows"]
        if name in numeric_edges:
            summary.total += row["total"] or 0.0
    return summaries


COUNTS_SCHEMA = "column INT, bucket INT, level STRING, rows LONG, total DOUBLE"


def _partition_counter(edges: list[list[float]], categorical: int):
    """The function `mapInArrow` runs on each partition of the selected frame (numeric
    columns first, then categorical): every column's rows per bin or level, and the sum
    of its values per bin, over all the partition's Arrow batches, as a few rows of
    COUNTS_SCHEMA.

    A Python function on the data, on purpose: the built-in ways measured slower on the
    drift benchmark (4M rows x 23 columns, 2 cores) — a multi-column Bucketizer + stack
    + one groupBy 14 s, a SQL IF tree instead of the Bucketizer 8.6-13.5 s, one-hot +
    Summarizer 40 s — all bound by turning 4M rows into 92M stacked rows; here the rows
    stay in columns: numpy's searchsorted and bincount on each Arrow batch."""

    def count(batches):
        import numpy as np
        import pyarrow as pa
        import pyarrow.compute as pc

        cuts = [np.asarray(e, dtype="float64") for e in edges]
        counts = [np.zeros(len(e) + 1, dtype="int64") for e in edges]
        sums = [np.zeros(len(e) + 1, dtype="float64") for e in edges]
        nulls = [0] * (len(edges) + categorical)
        levels: list[dict[str, int]] = [{} for _ in range(categorical)]
        for batch in batches:
            for i, cut in enumerate(cuts):
                values = batch.column(i)
                nulls[i] += values.null_count
                values = values.drop_null().to_numpy(zero_copy_only=False)
                # bin k holds (edge[k-1], edge[k]]: the edges below a value
                bins = np.searchsorted(cut, values, side="left")
                counts[i] += np.bincount(bins, minlength=len(cut) + 1)
                sums[i] += np.bincount(bins, weights=values, minlength=len(cut) + 1)
            for j in range(categorical):
                values = batch.column(len(cuts) + j)
                nulls[len(cuts) + j] += values.null_count
                for entry in pc.value_counts(values.drop_null()).to_pylist():
                    level = entry["values"]
                    levels[j][level] = levels[j].get(level, 0) + entry["counts"]
        out: dict[str, list] = {"column": [], "bucket": [], "level": [], "rows": [], "total": []}

        def add(column, bucket, level, rows, total):
            for key, value in zip(out, (column, bucket, level, rows, total), strict=True):
                out[key].append(value)

        for i in range(len(cuts)):
            for k in np.flatnonzero(counts[i]):
                add(i, int(k), None, int(counts[i][k]), float(sums[i][k]))
        for j, found in enumerate(levels):
            for level, rows in found.items():
                add(len(cuts) + j, 0, level, rows, None)
        for i, rows in enumerate(nulls):
            if rows:
                add(i, NULL_BUCKET, None, rows, None)
        yield pa.RecordBatch.from_pydict(
            out,
            schema=pa.schema(
                [
                    ("column", pa.int32()),
                    ("bucket", pa.int32()),
                    ("level", pa.string()),
                    ("rows", pa.int64()),
                    ("total", pa.float64()),
                ]
            ),
        )

    return count


def _cleaned(column: str) -> str:
    """A numeric column as a double, NaN as null."""
    value = f"CAST({identifier(column)} AS DOUBLE)"
    return f"CASE WHEN isnan({value}) THEN NULL ELSE {value} END"


def coarse_counts(summary: ColumnSummary, edges: list[float]) -> list[int]:
    """A numeric summary's rows in the len(edges) + 1 bins `edges` cut (ties allowed),
    when every edge is one of the summary's own: a fine bin (f, f'] lies in the first
    coarse bin whose upper edge is >= f'."""
    out = [0] * (len(edges) + 1)
    for index, rows in summary.counts.items():
        upper = summary.edges[index] if index < len(summary.edges) else math.inf
        out[bisect.bisect_left(edges, upper)] += rows
    return out


def psi(expected: Sequence[float], actual: Sequence[float]) -> float:
    """Population stability index of two count vectors over the same bins."""
    e_total, a_total = sum(expected), sum(actual)
    if not e_total or not a_total:
        return 0.0
    value = 0.0
    for e, a in zip(expected, actual, strict=True):
        p, q = max(e / e_total, EPSILON), max(a / a_total, EPSILON)
        value += (q - p) * math.log(q / p)
    return value


def jensen_shannon(expected: Sequence[float], actual: Sequence[float]) -> float:
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


def numeric_drift(
    profile: dict[str, Any], summary: ColumnSummary, train_cdf: list[float] | None = None
) -> dict[str, float | None]:
    """PSI over the training deciles, KS over the summary's edges (given the training CDF
    there), null-rate change and mean shift of one numeric feature."""
    actual = coarse_counts(summary, profile["deciles"])
    train_rows = profile["count"] + profile["nulls"]
    train_null_rate = profile["nulls"] / train_rows if train_rows else 0.0
    null_rate = summary.nulls / summary.rows if summary.rows else 0.0
    present = summary.rows - summary.nulls
    mean = summary.total / present if present else None
    shift = None
    if mean is not None and profile.get("stddev") and profile.get("mean") is not None:
        shift = (mean - profile["mean"]) / profile["stddev"]
    ks = None
    if train_cdf and present and len(train_cdf) == len(summary.edges):
        running, ks = 0, 0.0
        for index, train in enumerate(train_cdf):
            running += summary.counts.get(index, 0)
            ks = max(ks, abs(train - running / present))
    return {
        "psi": psi(profile["decile_counts"], actual),
        "ks": ks,
        "null_rate": null_rate,
        "null_rate_change": null_rate - train_null_rate,
        "mean_shift_sd": shift,
    }


def numeric_drifts(
    profiles: dict[str, dict[str, Any]],
    summaries: dict[str, ColumnSummary],
    fine: dict[str, Grid],
) -> dict[str, dict[str, float | None]]:
    """`numeric_drift` of every feature in `profiles`, each summarised on its grid."""
    return {
        column: numeric_drift(profile, summaries[column], fine[column].train_cdf)
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
