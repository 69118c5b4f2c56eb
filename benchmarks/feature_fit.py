"""Fitting a feature pipeline: batchml's single-pass fit vs naive MLlib vs scikit-learn.

Synthetic table (Delta, embedded backend): 20 numeric columns (5% nulls; mean
imputation + standard scaling) and 3 skewed categorical columns of 10 / 50 / 200 levels
(one-hot). For each --rows size, three sides, each timed from the table on disk to a
fitted pipeline (reading the table is in every side's time):
  (ours)    batchml.lib.features.pipeline.fit_features — the Delta log read, centres
            from its statistics (as `features --fit` does), then the statistics in one
            aggregate plus one stacked count, stages built from them
  (naive)   the Delta log read, then Imputer, VectorAssembler + StandardScaler,
            StringIndexer + OneHotEncoder per categorical column, fitted as one MLlib
            Pipeline
  (sklearn) in a child process (its own imports and start not timed): the table read
            into pandas (deltalake), then ColumnTransformer(SimpleImputer +
            StandardScaler, OneHotEncoder).fit_transform
The output work differs in one way: scikit-learn's ColumnTransformer.fit transforms
the rows as it fits (its fit is fit_transform), so its time includes building the
transformed matrix; the Spark sides return fitted models and transform nothing.

Method: one run; each side warmed up --warmup times (untimed), then --rounds timed
rounds with the order of the sides rotated each round; every round printed (stderr), the
median reported, ratios from medians of the same run. No memory cap on any side: the
Spark sides run in this process's JVM (spark.driver_memory=8g), scikit-learn's child
is only measured (its process tree's peak resident memory).

Checked every run: ours and naive transform the first 2,000 rows alike (within 1e-6, in
standard deviations); scikit-learn's means (its imputer's) equal ours, its categories
are ours, and its matrix has a row per table row and a column per numeric column and
level.

    uv run python benchmarks/feature_fit.py [--rows 1000000 4000000] [--rounds 3]
    uv run python benchmarks/feature_fit.py --smoke   # seconds: checks the work only

`--repeat N` (the best of N before, scikit-learn run once) is now an alias of
`--rounds N` (the median of N, for every side).
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
import time

import harness
import numpy as np
from baselines import jobs_of, naive_pipeline
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from batchml.lib.delta.delta_log import column_centres, open_snapshot
from batchml.lib.delta.embedded import EmbeddedDelta
from batchml.lib.features.pipeline import fit_features
from batchml.lib.platform.config import load_config
from batchml.lib.platform.logs import configure_logging
from batchml.lib.platform.settings import FeaturePipelineSpec

NUMERIC = [f"x{i}" for i in range(20)]
CATEGORICAL = {"c10": 10, "c50": 50, "c200": 200}
COMPARED_ROWS = 2000  # the rows whose transformed vectors ours and naive must agree on
VECTOR_TOLERANCE = 1e-6  # in standard deviations: two ways of summing the same variance


def make_table(spark: SparkSession, uri: str, rows: int) -> None:
    df = spark.range(rows, numPartitions=max(2, rows // 500_000))
    columns = [F.col("id")]
    for i, name in enumerate(NUMERIC):
        value = F.randn(100 + i) * (i + 1) + i * 10.0
        columns.append(F.when(F.rand(200 + i) < 0.05, None).otherwise(value).alias(name))
    for j, (name, levels) in enumerate(CATEGORICAL.items()):
        skewed = F.floor(F.pow(F.rand(300 + j), 3) * levels).cast("int")  # level 0 most common
        columns.append(F.concat(F.lit(f"{name}_"), skewed.cast("string")).alias(name))
    columns.append((F.rand(400) < 0.3).cast("int").alias("label"))
    EmbeddedDelta(spark).write(df.select(*columns), uri, mode="overwrite")


def sklearn_fit(uri: str) -> harness.Timed:
    """In a child process: the table into pandas and the ColumnTransformer fitted (and,
    as its fit does, applied); timed after the imports."""
    from deltalake import DeltaTable
    from sklearn.compose import ColumnTransformer
    from sklearn.impute import SimpleImputer
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    started = time.perf_counter()
    frame = DeltaTable(uri).to_pandas()
    loaded = time.perf_counter()
    transformer = ColumnTransformer(
        [
            ("num", make_pipeline(SimpleImputer(strategy="mean"), StandardScaler()), NUMERIC),
            ("cat", OneHotEncoder(handle_unknown="ignore"), list(CATEGORICAL)),
        ]
    )
    matrix = transformer.fit_transform(frame)
    seconds = time.perf_counter() - started
    imputer = transformer.named_transformers_["num"][0]
    encoder = transformer.named_transformers_["cat"]
    return harness.Timed(
        seconds,
        {
            "shape": tuple(int(n) for n in matrix.shape),
            "means": dict(zip(NUMERIC, (float(m) for m in imputer.statistics_), strict=True)),
            "levels": {
                column: sorted(str(level) for level in levels)
                for column, levels in zip(CATEGORICAL, encoder.categories_, strict=True)
            },
            "load_seconds": loaded - started,
        },
    )


def check_ours_equals_naive(ours, naive, df: DataFrame) -> float:
    """The largest difference between ours and the naive pipeline's vectors on the
    first rows; asserted within VECTOR_TOLERANCE."""
    sample = df.filter(F.col("id") < COMPARED_ROWS)
    mine = {
        row["id"]: row["features"].toArray()
        for row in ours.model.transform(sample).select("id", "features").collect()
    }
    theirs = {
        row["id"]: row["features"].toArray()
        for row in naive.transform(sample).select("id", "features").collect()
    }
    assert mine and mine.keys() == theirs.keys(), (len(mine), len(theirs))
    largest = max(float(np.max(np.abs(mine[key] - theirs[key]))) for key in mine)
    assert largest <= VECTOR_TOLERANCE, largest
    return largest


def check_sklearn_equals_ours(found: dict, ours, rows: int) -> None:
    """scikit-learn saw the same rows, means and levels as ours."""
    levels = {
        column: sorted(level for level, _ in ours.stats.categorical[column])
        for column in CATEGORICAL
    }
    assert found["levels"] == levels, "scikit-learn's categories differ from ours"
    width = len(NUMERIC) + sum(len(kept) for kept in levels.values())
    assert found["shape"] == (rows, width), (found["shape"], (rows, width))
    for column in NUMERIC:
        mean = ours.stats.numeric[column].mean
        assert math.isclose(found["means"][column], mean, rel_tol=1e-9), (column, mean)


def one_size(spark, spec: FeaturePipelineSpec, work, rows: int, args) -> dict[str, object]:
    uri = str(work / f"bench_{rows}")
    table_rows = None
    if (work / f"bench_{rows}" / "_delta_log").exists():  # kept in --workdir: reused
        table_rows = sum(open_snapshot(uri).add_actions().column("num_records").to_pylist())
    if table_rows != rows:
        make_table(spark, uri, rows)

    def read() -> tuple[DataFrame, int]:
        table = EmbeddedDelta(spark).read(uri)
        return table.df, table.version

    def ours() -> harness.Timed:
        started = time.perf_counter()
        df, version = read()
        # rough centres from the Delta log's min/max statistics, as `features --fit` uses
        centres = column_centres(open_snapshot(uri, version=version), NUMERIC)
        fitted = fit_features(df, "bench", spec, centres)
        seconds = time.perf_counter() - started
        assert fitted.stats.rows == rows, (fitted.stats.rows, rows)
        # fit_features counts its own jobs (it runs them under its own job group)
        return harness.Timed(seconds, fitted)

    def naive() -> harness.Timed:
        seconds, jobs, model = jobs_of(spark, lambda: naive_pipeline(spec).fit(read()[0]))
        assert jobs > 0, "the naive pipeline launched no Spark job"
        return harness.Timed(seconds, (jobs, model))

    sides = harness.side_by_side(
        {
            "ours": ours,
            "naive": naive,
            "sklearn": lambda: harness.in_child(sklearn_fit, uri),
        },
        rounds=args.rounds,
        warmup=args.warmup,
        label=f"{rows} rows",
    )
    fitted = sides.results["ours"].value
    naive_jobs, naive_model = sides.results["naive"].value
    learned = sides.results["sklearn"]
    max_diff = check_ours_equals_naive(fitted, naive_model, read()[0])
    check_sklearn_equals_ours(learned.value, fitted, rows)
    return {
        **sides.figures(),
        "ours_spark_jobs": fitted.spark_jobs,
        "naive_spark_jobs": naive_jobs,
        "sklearn_last_round_load_s": round(learned.value["load_seconds"], 3),
        "sklearn_child_memory": learned.memory,
        "sklearn_output_shape": list(learned.value["shape"]),
        "max_abs_diff_vs_naive": max_diff,
        "naive / ours": round(sides.ratio("naive", "ours"), 2),
        "sklearn / ours": round(sides.ratio("sklearn", "ours"), 2),
    }


def main(argv: list[str] | None = None) -> dict[str, object]:
    parser = harness.arguments(__doc__)
    parser.add_argument(
        "--repeat",
        dest="rounds",
        type=int,
        default=argparse.SUPPRESS,
        help="the former name of --rounds",
    )
    parser.add_argument("--rows", type=int, nargs="+", default=[1_000_000, 4_000_000])
    args = harness.parse(parser, argv, rows=[2000])
    work = harness.workdir(args, "fit").resolve()
    settings = load_config(
        overrides=[
            'spark.master="local[2]"',
            'delta.backend="embedded"',
            "spark.driver_memory=8g",
            f'lakehouse.root="{work}"',
        ],
        environ={},
    ).settings
    configure_logging("WARNING")
    spec = FeaturePipelineSpec.model_validate(
        {
            "view": "bench",
            "label": "label",
            "numeric": {c: {"impute": "mean", "scale": True} for c in NUMERIC},
            "categorical": {c: {} for c in CATEGORICAL},
        }
    )
    results: dict[str, object] = {
        **harness.header(args),
        "memory_cap": "none: the Spark sides share this process's JVM (8g heap); "
        "scikit-learn's child is measured, not capped",
        "timed": "table read + fit on every side; scikit-learn's fit also transforms",
    }
    with harness.session(settings) as spark:
        results["spark"] = spark.version
        for rows in args.rows:
            results[str(rows)] = one_size(spark, spec, work, rows, args)
    if args.workdir is None:  # a folder of our own: its tables are not kept for reuse
        shutil.rmtree(work, ignore_errors=True)
    print(json.dumps(results, indent=2))
    return results


if __name__ == "__main__":
    main()
