"""Declarative MLlib feature pipelines, fitted from statistics gathered in one pass
(`statistics.py`).

Naive MLlib code fits each `Imputer`, `StandardScaler`, `StringIndexer`... with its own
pass over the data. Here every statistic the spec needs comes from two queries — one
aggregate over the numeric columns (counts, means, variances, medians by
`percentile_approx` where imputation asks for them, KLL sketches for the training
profile) and one count over the categorical columns stacked — and the fitted stages are
built from those numbers: a `SQLTransformer` for imputation, missing indicators and
scaling, a `StringIndexerModel.from_arrays_of_labels` and a metadata-only
`OneHotEncoder` fit for the categorical columns, `FeatureHasher`s, and a
`VectorAssembler`. The result is an ordinary `PipelineModel` that plain PySpark saves,
loads and runs.

A booster's native encoding needs no numeric statistic to build its stages: there the
stacked count (with the rows, the label's values and whatever else the caller counts
per row) is the one query, and the numeric aggregate — the training profile's moments
and KLL sketches — is observed on the pass that trains (`NumericPass`), so the training
data is read once less.
"""

from __future__ import annotations

import math
import uuid

from pyspark.ml import PipelineModel, Transformer
from pyspark.ml.feature import (
    Bucketizer,
    FeatureHasher,
    OneHotEncoder,
    SQLTransformer,
    StringIndexerModel,
    VectorAssembler,
)
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from batchml.lib.features.statistics import (
    FeatureStats,
    FittedFeatures,
    NumericPass,
    NumericStats,
    bucket_ranks,
    categorical_labels,
    check_spec,
    collect_stats,
)
from batchml.lib.platform.errors import InputError
from batchml.lib.platform.logs import get_logger
from batchml.lib.platform.settings import FeaturePipelineSpec
from batchml.lib.platform.sqltext import identifier as _q

log = get_logger(__name__)


def build_model(df: DataFrame, spec: FeaturePipelineSpec, stats: FeatureStats) -> PipelineModel:
    """The fitted stages, from the statistics alone (no pass over the data)."""
    if stats.labelled == 0:
        raise InputError(f"label column {spec.label} of view {spec.view} holds only nulls")
    return PipelineModel(stages=_one_hot_stages(df, spec, stats))


NATIVE = "native"
ONE_HOT = "one_hot"


def native_model(
    spec: FeaturePipelineSpec, stats: FeatureStats
) -> tuple[PipelineModel, list[str], list[str]]:
    """The stages for a booster that reads columns, not a vector (`encoding = "native"`):
    numeric columns as they are (no imputation or scaling: missing stays missing, which
    the booster routes itself), interactions as raw products, buckets on the raw value,
    categorical columns as their StringIndexer codes, category codes for the booster
    (unseen and missing levels share the last code), and hashed columns as their bucket
    number. No pass over the data. Returns (model, feature columns, their xgboost
    feature types)."""
    if stats.labelled == 0:
        raise InputError(f"label column {spec.label} of view {spec.view} holds only nulls")
    stages: list[Transformer] = []
    columns: list[str] = []
    types: list[str] = []
    expressions, products = [], []
    for column in spec.numeric:
        raw = f"CAST({_q(column)} AS DOUBLE)"
        value = f"CASE WHEN isnan({raw}) THEN NULL ELSE {raw} END"
        expressions.append(f"{value} AS {_q(column + '__num')}")
        columns.append(f"{column}__num")
        types.append("q")
    for left, right in spec.interactions:
        name = f"{left}__x__{right}"
        products.append(f"{_q(left + '__num')} * {_q(right + '__num')} AS {_q(name)}")
        columns.append(name)
        types.append("q")
    for column, hashed in spec.hashed.items():
        value = _q(column)
        bucket = f"CAST(pmod(hash(CAST({value} AS STRING)), {hashed.buckets}) AS DOUBLE)"
        expressions.append(
            f"CASE WHEN {value} IS NULL THEN NULL ELSE {bucket} END AS {_q(column + '__hashed')}"
        )
        columns.append(f"{column}__hashed")
        # a number, not a category: as a category of its (hundreds of) buckets the trees
        # overfit it (the demo's January: test AUC 0.759, as a number 0.799)
        types.append("q")
    if expressions or products:  # the products read the numeric columns by alias
        selected = ", ".join([*expressions, *products])
        stages.append(SQLTransformer(statement=f"SELECT *, {selected} FROM __THIS__"))
    for bucketizer in _bucketizers(spec, stats):
        stages.append(bucketizer)
        columns.append(bucketizer.getOutputCol())
        types.append("q")
    for column, categorical in spec.categorical.items():
        labels = categorical_labels(
            stats.categorical[column], categorical.top, categorical.min_frequency
        )
        stages.append(
            StringIndexerModel.from_labels(
                labels, inputCol=column, outputCol=f"{column}__index", handleInvalid="keep"
            )
        )
        columns.append(f"{column}__index")
        types.append("c")
    return PipelineModel(stages=stages), columns, types


def _bucketizers(spec: FeaturePipelineSpec, stats: FeatureStats) -> list[Bucketizer]:
    """One Bucketizer per numeric column with `buckets`, on its `__num` column, cut at
    the quantiles the statistics hold."""
    return [
        Bucketizer(
            splits=[-math.inf, *stats.numeric[column].quantiles, math.inf],
            inputCol=f"{column}__num",
            outputCol=f"{column}__bucket",
            handleInvalid="keep",
        )
        for column, numeric in spec.numeric.items()
        if numeric.buckets
    ]


def _one_hot_stages(
    df: DataFrame, spec: FeaturePipelineSpec, stats: FeatureStats
) -> list[Transformer]:
    """The stages of the assembled vector: imputed and scaled numbers, one-hot levels,
    hashed buckets."""
    stages: list[Transformer] = []
    assembled: list[str] = []
    if spec.numeric:
        expressions = []
        for column, numeric in spec.numeric.items():
            expression, outputs = _numeric_sql(column, numeric, stats.numeric[column], stats.rows)
            expressions += expression
            assembled += outputs
        for left, right in spec.interactions:
            name = f"{left}__x__{right}"
            expressions.append(f"{_q(left + '__num')} * {_q(right + '__num')} AS {_q(name)}")
            assembled.append(name)
        stages.append(SQLTransformer(statement=f"SELECT *, {', '.join(expressions)} FROM __THIS__"))
        for bucketizer in _bucketizers(spec, stats):
            stages.append(bucketizer)
            assembled.append(bucketizer.getOutputCol())
    if spec.categorical:
        names = list(spec.categorical)
        labels = [
            categorical_labels(
                stats.categorical[c], spec.categorical[c].top, spec.categorical[c].min_frequency
            )
            for c in names
        ]
        # one model per column: from_arrays_of_labels pads shorter label arrays with nulls
        indexers = [
            StringIndexerModel.from_labels(
                column_labels, inputCol=c, outputCol=f"{c}__index", handleInvalid="keep"
            )
            for c, column_labels in zip(names, labels, strict=True)
        ]
        stages += indexers
        indexed = df.limit(0)
        for indexer in indexers:
            indexed = indexer.transform(indexed)
        encoder = OneHotEncoder(
            inputCols=[f"{c}__index" for c in names],
            outputCols=[f"{c}__onehot" for c in names],
            handleInvalid="keep",
        )
        # The indexers write nominal metadata, so this fit reads no row (no Spark job).
        stages.append(encoder.fit(indexed))
        assembled += [f"{c}__onehot" for c in names]
    for column, hashed in spec.hashed.items():
        stages.append(
            FeatureHasher(
                inputCols=[column], outputCol=f"{column}__hashed", numFeatures=hashed.buckets
            )
        )
        assembled.append(f"{column}__hashed")
    stages.append(VectorAssembler(inputCols=assembled, outputCol=spec.output, handleInvalid="keep"))
    return stages


def _literal(value: float) -> str:
    """A double constant that round-trips exactly (a bare 0.1 in Spark SQL is a DECIMAL)."""
    return f"CAST('{value!r}' AS DOUBLE)"


def _numeric_sql(column: str, spec, stats: NumericStats, rows: int) -> tuple[list[str], list[str]]:
    """SQL expressions for one numeric column, and the columns they add for the assembler."""
    raw = f"CAST({_q(column)} AS DOUBLE)"
    missing = f"({_q(column)} IS NULL OR isnan({raw}))"
    expressions: list[str] = []
    outputs: list[str] = []
    value = raw
    mean, variance, n = stats.mean, stats.variance, stats.count
    if spec.impute is not None:
        fill = stats.median if spec.impute == "median" else stats.mean
        if fill is None:
            raise InputError(f"numeric column {column} has no value to impute from (all missing)")
        value = f"CASE WHEN {missing} THEN {_literal(fill)} ELSE {raw} END"
        assert mean is not None  # a column with a fill value has values
        # what a scaler fitted after imputation sees: every row, the fill value included
        shifted_mean = (n * mean + (rows - n) * fill) / rows
        squares = (variance or 0.0) * (n - 1)
        squares += n * (mean - shifted_mean) ** 2 + (rows - n) * (fill - shifted_mean) ** 2
        mean, n = shifted_mean, rows
        variance = squares / (rows - 1) if rows > 1 else 0.0
    if spec.scale:
        if mean is None:
            raise InputError(f"numeric column {column} has no values to scale by")
        std = math.sqrt(variance) if variance else 0.0
        value = "0.0D" if std == 0.0 else f"(({value}) - {_literal(mean)}) / {_literal(std)}"
    expressions.append(f"{value} AS {_q(column + '__num')}")
    outputs.append(f"{column}__num")
    if spec.indicator:
        expressions.append(f"CAST({missing} AS DOUBLE) AS {_q(column + '__is_missing')}")
        outputs.append(f"{column}__is_missing")
    return expressions, outputs


def fit_features(
    df: DataFrame,
    name: str,
    spec: FeaturePipelineSpec,
    centres: dict[str, float] | None = None,
    *,
    profile: bool = False,
    encoding: str = ONE_HOT,
    label_counts: bool = False,
    defer_numeric: bool = False,
    where: F.Column | None = None,
    extra: dict[str, F.Column] | None = None,
    empty: str | None = None,
) -> FittedFeatures:
    """Check the spec, gather the statistics in one pass, build the fitted pipeline
    (with `profile`, the statistics also hold the training profile: `profile_of`; with
    `label_counts`, the rows of each label value); `encoding` "native": the columns of
    `native_model` instead of one vector.

    `where` and `extra` as in `collect_stats`; `empty`: the error when no row is
    described. With `defer_numeric`, stages that need no numeric statistic (the native
    encoding without buckets) are built from the stacked pass alone, and the numeric
    aggregate is left to `FittedFeatures.pending` (observed on the pass that trains)."""
    check_spec(name, spec, df.schema)
    spark = df.sparkSession
    group = f"batchml-features-{uuid.uuid4().hex[:8]}"
    context = spark.sparkContext
    outer = (
        context.getLocalProperty("spark.jobGroup.id"),
        context.getLocalProperty("spark.job.description"),
    )
    context.setJobGroup(group, f"fit feature pipeline {name}")
    try:
        deferred = (
            defer_numeric
            and encoding == NATIVE
            and not any(bucket_ranks(n) for n in spec.numeric.values())
        )
        stats = collect_stats(
            df,
            spec,
            centres,
            profile=profile,
            label_counts=label_counts,
            numeric=not deferred,
            where=where,
            extra=extra,
        )
        if empty is not None and stats.rows == 0:
            raise InputError(empty)
        if encoding == NATIVE:
            model, columns, types = native_model(spec, stats)
        else:
            model, types = build_model(df, spec, stats), None
    finally:
        # the caller's group back, None when it had none: PySpark types both as str
        context.setJobGroup(*outer)  # type: ignore[arg-type]
    jobs = len(context.statusTracker().getJobIdsForGroup(group))
    log.info(
        "feature pipeline fitted", extra={"pipeline": name, "rows": stats.rows, "spark_jobs": jobs}
    )
    if types is not None:
        pending = NumericPass(spec, centres, profile=profile, where=where) if deferred else None
        return FittedFeatures(model, stats, jobs, columns, types, spec.output, pending)
    slots = slot_names(model.transform(df.limit(0)), spec.output)
    return FittedFeatures(model, stats, jobs, slots, None, spec.output)


def slot_names(transformed: DataFrame, output: str) -> list[str]:
    """The name of every slot of the assembled vector, from its ML attribute metadata."""
    attrs = transformed.schema[output].metadata.get("ml_attr", {})
    named: dict[int, str] = {}
    for group in attrs.get("attrs", {}).values():
        for attr in group:
            named[attr["idx"]] = attr.get("name", f"{output}_{attr['idx']}")
    size = attrs.get("num_attrs", len(named))
    return [named.get(i, f"{output}_{i}") for i in range(size)]
