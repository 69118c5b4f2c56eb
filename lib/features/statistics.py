"""The statistics a feature pipeline is fitted from, gathered in one pass: per numeric
column counts, moments and sketched deciles (one aggregate, or observed on the pass that
trains: `NumericPass`), per categorical column its levels' counts (one count over the
columns stacked), and the training profile drift is later measured against.
"""

from __future__ import annotations

import base64
import itertools
import math
import uuid
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from pyspark.sql import DataFrame
from pyspark.sql import functions as F
from pyspark.sql import types as T

from batchml.lib.ingest.contracts import NUMERIC_TYPES
from batchml.lib.platform.errors import InputError
from batchml.lib.platform.logs import get_logger
from batchml.lib.platform.settings import FeaturePipelineSpec
from batchml.lib.platform.sqltext import identifier as _q
from batchml.lib.spark.jvm import observation_done

if TYPE_CHECKING:  # pyspark.ml is loaded only where a pipeline is built
    from pyspark.ml import PipelineModel
    from pyspark.sql import Observation

log = get_logger(__name__)
DECILES = [k / 10 for k in range(1, 10)]
CATEGORICAL_TYPES = (
    T.StringType,
    T.BooleanType,
    T.ByteType,
    T.ShortType,
    T.IntegerType,
    T.LongType,
)


@dataclass(frozen=True)
class NumericStats:
    """One numeric column: non-missing count, mean, sample variance, and median if asked."""

    count: int
    mean: float | None
    variance: float | None
    median: float | None = None
    quantiles: tuple[float, ...] = ()  # bucket edges inside (min, max), when bucketing


@dataclass
class FeatureStats:
    """Everything the fitted stages are built from."""

    rows: int
    labelled: int = 0
    numeric: dict[str, NumericStats] = field(default_factory=dict)
    categorical: dict[str, list[tuple[str, int]]] = field(default_factory=dict)
    # column -> (KLL sketch, decile edges, their ranks), when a profile was asked for
    sketches: dict[str, tuple] = field(default_factory=dict)
    # label value -> rows, when asked for (a classifier's classes)
    labels: dict[object, int] | None = None
    # collect_stats' `extra` values: name -> level -> rows
    extra: dict[str, dict] = field(default_factory=dict)


@dataclass
class FittedFeatures:
    """The fitted feature pipeline, its statistics and the Spark jobs the fit launched."""

    model: PipelineModel
    stats: FeatureStats
    spark_jobs: int
    slot_names: list[str]
    # native encoding: the feature columns (slot_names) and their xgboost types, "q" for a
    # number, "c" for a category code; None: one assembled vector (spec.output)
    feature_types: list[str] | None = None

    @property
    def columns(self) -> list[str]:
        """What the estimator reads: the native feature columns, else the vector column."""
        return list(self.slot_names) if self.feature_types is not None else [self.output]

    output: str = "features"
    # the numeric aggregate, when left to the training pass (`fit_features(defer_numeric)`)
    pending: NumericPass | None = None


def check_spec(name: str, spec: FeaturePipelineSpec, schema: T.StructType) -> None:
    """Name every problem of the spec before Spark runs anything.

    Raises:
        InputError: an unknown column, a column in two groups, or a transform that does
            not fit the column's type.
    """
    where = f"feature pipeline {name}"
    columns = {f.name: f.dataType for f in schema}
    groups: dict[str, dict[str, Any]] = {
        "numeric": spec.numeric,
        "categorical": spec.categorical,
        "hashed": spec.hashed,
    }
    seen: dict[str, str] = {}
    for group, entries in groups.items():
        for column in entries:
            if column not in columns:
                raise InputError(
                    f"{where}: {group} column {column} is not in view {spec.view} "
                    f"(columns: {', '.join(columns)})"
                )
            if column in seen:
                raise InputError(f"{where}: column {column} is both {seen[column]} and {group}")
            seen[column] = group
    for column in spec.numeric:
        if not isinstance(columns[column], NUMERIC_TYPES):
            raise InputError(
                f"{where}: numeric transforms need a number, but {column} is "
                f"{columns[column].simpleString()} (make it categorical or hashed)"
            )
    for column in spec.categorical:
        if not isinstance(columns[column], CATEGORICAL_TYPES):
            raise InputError(
                f"{where}: categorical column {column} is {columns[column].simpleString()}"
            )
    if spec.label not in columns:
        raise InputError(f"{where}: label column {spec.label} is not in view {spec.view}")
    if spec.label in seen:
        raise InputError(f"{where}: label column {spec.label} is also a feature")
    if not seen:
        raise InputError(f"{where}: declares no feature columns")
    for pair in spec.interactions:
        unknown = [c for c in pair if c not in spec.numeric]
        if unknown:
            raise InputError(
                f"{where}: interaction {pair[0]} x {pair[1]} needs numeric features, "
                f"not {', '.join(unknown)}"
            )


def _clean(column: str) -> F.Column:
    """The value as a double, with NaN counted as missing (as MLlib's Imputer does)."""
    value = F.col(_q(column)).cast("double")
    return F.when(~F.isnan(value), value)


def _shifted_moments(
    count: int, shifted_sum: float | None, shifted_squares: float | None, centre: float
) -> tuple[float | None, float | None]:
    """Mean and sample variance from sums of (x - centre) and (x - centre)^2."""
    if count == 0:
        return None, None
    assert shifted_sum is not None and shifted_squares is not None  # sums of `count` values
    offset = shifted_sum / count
    variance = None
    if count > 1:
        variance = max(shifted_squares - shifted_sum * offset, 0.0) / (count - 1)
    return centre + offset, variance


def collect_stats(
    df: DataFrame,
    spec: FeaturePipelineSpec,
    centres: dict[str, float] | None = None,
    *,
    profile: bool = False,
    label_counts: bool = False,
    numeric: bool = True,
    where: F.Column | None = None,
    extra: dict[str, F.Column] | None = None,
) -> FeatureStats:
    """Every statistic of the spec: one aggregate, plus one count over stacked categories
    (and the label's values, with `label_counts`: a classifier's classes, same pass).

    `centres` (rough centres of numeric columns, e.g. from the Delta log's min/max
    statistics) make the variance a pair of plain sums; without one a column falls back
    to Spark's `var_samp`. With `profile`, the same aggregate also keeps a KLL sketch of
    every numeric column, and the stats carry the training profile (`profile_of`).

    `where`: the rows of `df` the statistics describe (all when None). `extra`: more
    values counted per level in the stacked pass, over every row of `df`
    (`stats.extra[name]`: level -> rows). `numeric=False` leaves the numeric aggregate
    out (`stats.numeric` stays empty until a `NumericPass` completes it): the stacked pass
    then counts the rows too, and is the one pass.
    """
    stats = FeatureStats(0)
    if numeric:
        pending = NumericPass(spec, centres, profile=profile, where=where)
        aggregates, derived = pending.aggregates(), pending.derived()
        # the quantiles are read off the sketches on top of the aggregate: still one job
        pending.complete(stats, df.agg(*aggregates).select("*", *derived).collect()[0], df)
    stacked = [(str(i), c) for i, c in enumerate(spec.categorical)]
    if label_counts or not numeric:
        stacked.append(("label", spec.label))
    if stacked or extra:
        _count_levels(df, spec, stats, stacked, label_counts, numeric, where, extra or {})
    return stats


def _count_levels(
    df: DataFrame,
    spec: FeaturePipelineSpec,
    stats: FeatureStats,
    stacked: list[tuple[str, str]],
    label_counts: bool,
    numeric: bool,
    where: F.Column | None,
    extra: dict[str, F.Column],
) -> None:
    """The stacked pass: rows per level of each categorical column (and of the label, and
    of every `extra` value), one group-by over (column, level) for all of them."""
    inside = F.lit(True) if where is None else F.coalesce(where, F.lit(False))
    pairs = [
        F.struct(F.lit(k).alias("c"), F.col(_q(c)).cast("string").alias("v"), inside.alias("w"))
        for k, c in stacked
    ]
    pairs += [
        F.struct(
            F.lit(f"x:{name}").alias("c"), value.cast("string").alias("v"), F.lit(True).alias("w")
        )
        for name, value in extra.items()
    ]
    rows = df.select(F.inline(F.array(*pairs)))
    counts = (
        rows.filter(F.col("w") & (F.col("v").isNotNull() | F.lit(not numeric)))
        .groupBy("c", "v")
        .count()
        .collect()
    )
    levels: dict[str, list[tuple]] = {}
    for r in counts:
        levels.setdefault(r["c"], []).append((r["v"], int(r["count"])))
    if not numeric:  # the label is stacked with its nulls: every described row once
        label_levels = levels.get("label", [])
        stats.rows = sum(n for _, n in label_levels)
        stats.labelled = sum(n for v, n in label_levels if v is not None)
    for i, column in enumerate(spec.categorical):
        found = [(v, n) for v, n in levels.get(str(i), []) if v is not None]
        stats.categorical[column] = sorted(found, key=lambda lc: (-lc[1], lc[0]))
    if label_counts:
        typed = _from_text(df.schema[spec.label].dataType)
        stats.labels = {typed(v): n for v, n in levels.get("label", []) if v is not None}
    stats.extra = {name: dict(levels.get(f"x:{name}", [])) for name in extra}


class NumericPass:
    """The numeric columns' aggregate (counts, moments, KLL sketches), run as a query of
    its own (`collect_stats`) or observed on a pass that reads the rows anyway
    (`observe` / `finish`: the training job's, for a booster whose stages need no
    numeric statistic). `where`: the rows it describes."""

    def __init__(
        self,
        spec: FeaturePipelineSpec,
        centres: dict[str, float] | None = None,
        *,
        profile: bool = False,
        where: F.Column | None = None,
    ) -> None:
        self.spec, self.centres, self.profile, self.where = spec, centres or {}, profile, where
        self.observation: Observation | None = None

    def _only(self, value: F.Column) -> F.Column:
        return value if self.where is None else F.when(self.where, value)

    def aggregates(self, quantiles: bool = True) -> list[F.Column]:
        """The aggregate columns; with `quantiles`, also the ranks a column's stages need
        (its median, its bucket edges) as `q{i}`."""
        aggregates = [
            F.count(self._only(F.lit(1))).alias("__rows"),
            F.count(self._only(F.col(_q(self.spec.label)))).alias("__labelled"),
        ]
        for i, (column, numeric) in enumerate(self.spec.numeric.items()):
            value = self._only(_clean(column))
            if self.centres.get(column) is not None:
                # Sums of values shifted by a rough centre: as cheap as plain sums, and
                # exact enough however large the mean is next to the spread (var_samp is
                # ~4x slower).
                shifted = value - F.lit(float(self.centres[column]))
                aggregates += [
                    F.count(value).alias(f"n{i}"),
                    F.sum(shifted).alias(f"s{i}"),
                    F.sum(shifted * shifted).alias(f"ss{i}"),
                ]
            else:
                aggregates += [
                    F.count(value).alias(f"n{i}"),
                    F.avg(value).alias(f"mean{i}"),
                    F.var_samp(value).alias(f"var{i}"),
                ]
            if _ranks(numeric) and quantiles:
                # what the stages are built from must not change from run to run: Spark's
                # KLL sketch compacts at random (two runs, two medians); percentile_approx
                # is deterministic (accuracy 10,000; tested: same edges, near the exact)
                ranks = F.array(*[F.lit(float(r)) for r in _ranks(numeric)])
                aggregates.append(F.percentile_approx(value, ranks, 10_000).alias(f"q{i}"))
            if self.profile:
                # the profile's quantiles from a KLL sketch: a few KB per column, one pass,
                # mergeable (what monitor compares); it skips nulls and NaNs itself (tested)
                raw = self._only(F.col(_q(column)).cast("double"))
                aggregates.append(F.call_function("kll_sketch_agg_double", raw).alias(f"k{i}"))
        return aggregates

    def derived(self) -> list[F.Column]:
        """The profile's deciles read off the sketches, on top of the aggregate's row."""
        if not self.profile:
            return []
        # an empty sketch (no rows, or only nulls) is not one Spark reads quantiles of
        deciles = "kll_sketch_get_quantile_double(k{0}, " + _doubles(DECILES) + ")"
        return [
            F.expr(f"CASE WHEN n{i} > 0 THEN {deciles.format(i)} END").alias(f"d{i}")
            for i in range(len(self.spec.numeric))
        ]

    def observe(self, df: DataFrame) -> DataFrame:
        """`df` with the aggregate observed: computed by the first action that reads it
        (no quantiles: `finish` reads them off the sketches)."""
        from pyspark.sql import Observation

        if any(bucket_ranks(n) for n in self.spec.numeric.values()):
            raise ValueError("bucket edges are needed before the pass: run collect_stats")
        self.observation = Observation(f"batchml-numeric-{uuid.uuid4().hex[:8]}")
        return df.observe(self.observation, *self.aggregates(quantiles=False))

    def finish(self, stats: FeatureStats, df: DataFrame) -> str:
        """Fill the numeric part of `stats` from the observation when the pass it rode
        on completed and saw exactly `stats.rows` rows (a stage re-run would count some
        twice); else from a query of its own over `df`. Returns which one it was."""
        observed = self.observation
        row: dict[str, Any] | None = None
        # `get` would wait for an action that may never come (the fit failed, or read
        # the data some other way): ask the JVM's future whether it is done
        if observed is not None and observation_done(observed):
            row = observed.get
        if row is not None and row.get("__rows") == stats.rows:
            self.complete(stats, row, df, observed=True)
            return "observed"
        result = df.agg(*self.aggregates()).select("*", *self.derived()).collect()[0]
        self.complete(stats, result.asDict(), df)
        return "queried"

    def complete(self, stats: FeatureStats, row, df: DataFrame, observed: bool = False) -> None:
        """The numeric statistics from the aggregate's row (a Row or a dict). An observed
        row holds no quantiles: the deciles are read off its sketches here, and a median
        (which the native encoding does not use: missing values stay missing) is left out."""
        stats.rows, stats.labelled = int(row["__rows"]), int(row["__labelled"])
        for i, (column, numeric) in enumerate(self.spec.numeric.items()):
            quantiles = row[f"q{i}"] if _ranks(numeric) and not observed else None
            found = dict(zip(_ranks(numeric), quantiles or [], strict=False))
            edges = sorted({found[r] for r in bucket_ranks(numeric) if r in found})
            count = int(row[f"n{i}"])
            if self.centres.get(column) is not None:
                mean, variance = _shifted_moments(
                    count, row[f"s{i}"], row[f"ss{i}"], self.centres[column]
                )
            else:
                mean, variance = row[f"mean{i}"], row[f"var{i}"]
            stats.numeric[column] = NumericStats(
                count,
                mean,
                variance,
                found.get(0.5) if numeric.impute == "median" else None,
                tuple(edges),
            )
            if self.profile:
                stats.sketches[column] = (row[f"k{i}"], None if observed else row[f"d{i}"], None)
        if self.profile:
            if observed:
                _sketch_deciles(df.sparkSession, stats)
            _sketch_ranks(df.sparkSession, stats)


def _from_text(kind: T.DataType):
    """Turns a value cast to a string back into the Python value Spark returns for `kind`
    (a label counted among the stacked categories)."""
    if isinstance(kind, T.BooleanType):
        return lambda text: text == "true"
    if isinstance(kind, T.ByteType | T.ShortType | T.IntegerType | T.LongType):
        return int
    if isinstance(kind, T.FloatType):  # the shortest text of a float32: back to it
        import numpy as np

        return lambda text: float(np.float32(text))
    if isinstance(kind, T.DoubleType):
        return float
    if isinstance(kind, T.DecimalType):
        from decimal import Decimal

        return Decimal
    return str


def _sketch_deciles(spark, stats: FeatureStats) -> None:
    """The decile edges of every collected sketch, in one small local query (no data is
    read): for sketches observed on another pass, where no query ran on top of them."""
    columns = [c for c, (sketch, _, _) in stats.sketches.items() if stats.numeric[c].count]
    if not columns:
        return
    schema = T.StructType([T.StructField(f"k{i}", T.BinaryType()) for i in range(len(columns))])
    local = spark.createDataFrame([tuple(stats.sketches[c][0] for c in columns)], schema)
    quantiles = f"kll_sketch_get_quantile_double(k{{}}, {_doubles(DECILES)})"
    row = local.select(
        *[F.expr(quantiles.format(i)).alias(c) for i, c in enumerate(columns)]
    ).collect()[0]
    for column in columns:
        sketch, _, ranks = stats.sketches[column]
        stats.sketches[column] = (sketch, row[column], ranks)


def _sketch_ranks(spark, stats: FeatureStats) -> None:
    """The rank of every decile edge in its sketch, read off the collected sketches in one
    small local query (Spark wants the ranked values as constants; no data is read)."""
    columns = [c for c, (sketch, deciles, _) in stats.sketches.items() if sketch and deciles]
    if not columns:
        return
    schema = T.StructType([T.StructField(f"k{i}", T.BinaryType()) for i in range(len(columns))])
    local = spark.createDataFrame([tuple(stats.sketches[c][0] for c in columns)], schema)
    row = local.select(
        *[
            F.expr(f"kll_sketch_get_rank_double(k{i}, {_doubles(stats.sketches[c][1])})").alias(c)
            for i, c in enumerate(columns)
        ]
    ).collect()[0]
    for column in columns:
        sketch, deciles, _ = stats.sketches[column]
        stats.sketches[column] = (sketch, deciles, list(row[column]))


def profile_of(stats: FeatureStats) -> dict[str, Any]:
    """The training profile of every feature, for drift monitoring without re-reading
    the training data: numeric — count, nulls (missing or NaN), mean, standard deviation,
    decile edges, rows in each of the ten bins the edges cut (estimated from the KLL
    sketch, whose rank error is about 1.3%) and the sketch itself (base64); categorical —
    rows per level and the null count."""
    numeric: dict[str, dict] = {}
    for column, (sketch, deciles, ranks) in stats.sketches.items():
        numbers = stats.numeric[column]
        cumulative = [0.0, *(ranks or []), 1.0] if numbers.count else []
        bins = [round((b - a) * numbers.count) for a, b in itertools.pairwise(cumulative)]
        numeric[column] = {
            "count": numbers.count,
            "nulls": stats.rows - numbers.count,
            "mean": numbers.mean,
            "stddev": math.sqrt(numbers.variance) if numbers.variance is not None else None,
            "deciles": list(deciles or []),
            "decile_counts": bins,
            "kll_sketch": base64.b64encode(bytes(sketch)).decode("ascii") if sketch else None,
        }
    categorical = {
        column: {"levels": dict(levels), "nulls": stats.rows - sum(n for _, n in levels)}
        for column, levels in stats.categorical.items()
    }
    return {"rows": stats.rows, "numeric": numeric, "categorical": categorical}


def _doubles(values: list[float]) -> str:
    return "array(" + ", ".join(f"{v!r}D" for v in values) + ")"


def _ranks(numeric) -> list[float]:
    """The quantile ranks a numeric column needs: its median, its bucket edges."""
    ranks = {0.5} if numeric.impute == "median" else set()
    ranks.update(bucket_ranks(numeric))
    return sorted(ranks)


def bucket_ranks(numeric) -> list[float]:
    """The ranks of the inner bucket edges (0.5 among them for an even bucket count)."""
    return [k / numeric.buckets for k in range(1, numeric.buckets)] if numeric.buckets else []


def categorical_labels(
    levels: list[tuple[str, int]], top: int | None, min_frequency: int
) -> list[str]:
    """Levels kept as their own one-hot slot: by frequency (ties alphabetical), the
    rarer than `min_frequency` dropped, at most `top`; the rest share the extra slot."""
    kept = [level for level, count in levels if count >= min_frequency]
    return kept[:top] if top is not None else kept
