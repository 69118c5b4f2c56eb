"""Baselines the benchmarks (and tests) compare batchml with: what a user would write."""

from __future__ import annotations

import time
import uuid

from pyspark.ml import Pipeline
from pyspark.ml.feature import (
    Imputer,
    OneHotEncoder,
    StandardScaler,
    StringIndexer,
    VectorAssembler,
)

from batchml.lib.platform.settings import FeaturePipelineSpec


def naive_pipeline(spec: FeaturePipelineSpec) -> Pipeline:
    """What a user would write with MLlib stages (each fitted with its own pass): for
    comparisons in tests and benchmarks. Imputes, scales, one-hot encodes; no indicators,
    no top-N, no hashing."""
    stages = []
    numeric = list(spec.numeric)
    for strategy in ("mean", "median"):
        columns = [c for c in numeric if spec.numeric[c].impute == strategy]
        if columns:
            stages.append(
                Imputer(
                    inputCols=columns, outputCols=[f"{c}__imp" for c in columns], strategy=strategy
                )
            )
    inputs = [f"{c}__imp" if spec.numeric[c].impute else c for c in numeric]
    stages.append(VectorAssembler(inputCols=inputs, outputCol="__numeric", handleInvalid="keep"))
    stages.append(
        StandardScaler(inputCol="__numeric", outputCol="__scaled", withMean=True, withStd=True)
    )
    outputs = ["__scaled"]
    for column in spec.categorical:
        stages.append(
            StringIndexer(inputCol=column, outputCol=f"{column}__index", handleInvalid="keep")
        )
    if spec.categorical:
        names = list(spec.categorical)
        stages.append(
            OneHotEncoder(
                inputCols=[f"{c}__index" for c in names],
                outputCols=[f"{c}__onehot" for c in names],
                handleInvalid="keep",
            )
        )
        outputs += [f"{c}__onehot" for c in names]
    stages.append(VectorAssembler(inputCols=outputs, outputCol=spec.output, handleInvalid="keep"))
    return Pipeline(stages=stages)


def jobs_of(spark, action) -> tuple[float, int, object]:
    """(seconds, Spark jobs, result) of `action()`: the jobs counted by a job group."""
    group = f"bench-{uuid.uuid4().hex[:8]}"
    spark.sparkContext.setJobGroup(group, group)
    started = time.perf_counter()
    result = action()
    seconds = time.perf_counter() - started
    spark.sparkContext.setJobGroup(None, None)
    return seconds, len(spark.sparkContext.statusTracker().getJobIdsForGroup(group)), result
