"""Fitting a feature pipeline: batchml's single-pass fit vs naive MLlib vs scikit-learn.

Synthetic table (Delta, embedded backend): 20 numeric columns (5% nulls; mean
imputation + standard scaling) and 3 skewed categorical columns of 10 / 50 / 200 levels
(one-hot). For each size, after a warm-up fit:
  (ours)    batchml.lib.features.pipeline.fit_features — statistics in one aggregate plus
            one stacked count, stages built from them
  (naive)   Imputer, VectorAssembler + StandardScaler, StringIndexer + OneHotEncoder
            per categorical column, fitted as one MLlib Pipeline
  (sklearn) ColumnTransformer(SimpleImputer + StandardScaler, OneHotEncoder).fit_transform
            on the same rows in pandas (the load into pandas is not timed)
Reports fit seconds, Spark jobs launched, the largest difference between ours and the
naive output, and scikit-learn's peak memory.

    uv run python benchmarks/feature_fit.py [--rows 1000000 4000000] [--repeat 3]
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
from baselines import jobs_of, naive_pipeline
from deltalake import DeltaTable
from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from batchml.lib.delta.delta_log import column_centres, open_snapshot
from batchml.lib.delta.embedded import EmbeddedDelta
from batchml.lib.features.pipeline import fit_features
from batchml.lib.platform.config import load_config
from batchml.lib.platform.logs import configure_logging
from batchml.lib.platform.settings import FeaturePipelineSpec
from batchml.lib.spark.session import build_session

NUMERIC = [f"x{i}" for i in range(20)]
CATEGORICAL = {"c10": 10, "c50": 50, "c200": 200}


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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, nargs="+", default=[1_000_000, 4_000_000])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--workdir", type=Path, default=None)
    args = parser.parse_args()
    work = (args.workdir or Path(tempfile.mkdtemp(prefix="batchml-fit-bench-"))).resolve()
    cfg = load_config(
        overrides=[
            'spark.master="local[2]"',
            'delta.backend="embedded"',
            "spark.driver_memory=8g",
            f'lakehouse.root="{work}"',
        ]
    )
    configure_logging("WARNING")
    spark = build_session(cfg.settings)
    spec = FeaturePipelineSpec.model_validate(
        {
            "view": "bench",
            "label": "label",
            "numeric": {c: {"impute": "mean", "scale": True} for c in NUMERIC},
            "categorical": {c: {} for c in CATEGORICAL},
        }
    )
    report: dict[str, object] = {}
    for rows in args.rows:
        uri = str(work / f"bench_{rows}")
        if not Path(uri).exists():
            make_table(spark, uri, rows)
        read = EmbeddedDelta(spark).read(uri)
        df = read.df
        # rough centres from the Delta log's min/max statistics, as `features --fit` uses
        centres = column_centres(open_snapshot(uri, version=read.version), NUMERIC)
        fit_features(df, "warm-up", spec, centres)  # JVM and code paths warm
        naive_pipeline(spec).fit(df)
        ours = [
            jobs_of(spark, lambda d=df, c=centres: fit_features(d, "bench", spec, c))
            for _ in range(args.repeat)
        ]
        naive = [
            jobs_of(spark, lambda d=df: naive_pipeline(spec).fit(d)) for _ in range(args.repeat)
        ]
        best_ours, best_naive = min(ours, key=lambda r: r[0]), min(naive, key=lambda r: r[0])
        sample = df.filter(F.col("id") < 2000)
        ours_rows = best_ours[2].model.transform(sample).select("id", "features").collect()
        naive_rows = best_naive[2].transform(sample).select("id", "features").collect()
        mine = {r["id"]: r["features"].toArray() for r in ours_rows}
        theirs = {r["id"]: r["features"].toArray() for r in naive_rows}
        max_diff = max(float(np.max(np.abs(mine[k] - theirs[k]))) for k in mine)

        from sklearn.compose import ColumnTransformer
        from sklearn.impute import SimpleImputer
        from sklearn.pipeline import make_pipeline
        from sklearn.preprocessing import OneHotEncoder, StandardScaler

        frame = DeltaTable(uri).to_pandas()
        rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        transformer = ColumnTransformer(
            [
                ("num", make_pipeline(SimpleImputer(strategy="mean"), StandardScaler()), NUMERIC),
                ("cat", OneHotEncoder(handle_unknown="ignore"), list(CATEGORICAL)),
            ]
        )
        started = time.perf_counter()
        transformer.fit_transform(frame)
        sklearn_seconds = time.perf_counter() - started
        sklearn_peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        del frame
        report[str(rows)] = {
            # fit_features counts its own jobs (it runs them under its own job group)
            "ours_seconds": round(best_ours[0], 3),
            "ours_spark_jobs": best_ours[2].spark_jobs,
            "naive_seconds": round(best_naive[0], 3),
            "naive_spark_jobs": best_naive[1],
            "sklearn_fit_transform_seconds": round(sklearn_seconds, 3),
            "sklearn_process_peak_rss_mb": round(sklearn_peak, 1),
            "sklearn_peak_rss_growth_mb": round(sklearn_peak - rss_before, 1),
            "max_abs_diff_vs_naive": max_diff,
            "naive / ours": round(best_naive[0] / best_ours[0], 2),
            "sklearn / ours": round(sklearn_seconds / best_ours[0], 2),
        }
    print(
        json.dumps(
            {
                "date": datetime.now(UTC).isoformat(timespec="seconds"),
                "machine": f"{platform.machine()}, {spark.sparkContext.defaultParallelism} cores "
                f"(local[2]), Python {platform.python_version()}, Spark {spark.version}",
                "results": report,
            },
            indent=2,
        )
    )
    spark.stop()


if __name__ == "__main__":
    main()
