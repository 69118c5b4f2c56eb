"""Drift over a scoring table: batchml's one pass vs the naive per-feature loop.

4M scoring rows x 20 numeric + 3 categorical features against a 4M-row training snapshot,
measured in one run on the same session:
  (batchml) the training profile as `train` stores it (computed in the training
            aggregate; timed apart, it is not monitoring's cost), then the fine bins from
            the stored sketches, `input_profile` and every figure (PSI, KS, JS, ...): one
            pass over the scoring data, none over the training data
  (naive)   per numeric feature `approxQuantile` deciles on the training data, then a
            Bucketizer + groupBy count on each side; per categorical feature a groupBy
            count on each side; PSI from those counts
PSI agreement: batchml's PSI on the naive's own bins (its edges and training counts)
against the naive PSI, per feature.

    uv run python benchmarks/monitor_drift.py [--rows 4000000] [--repeat 3] [--workdir DIR]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import time
from datetime import UTC, datetime
from pathlib import Path

from pyspark.ml.feature import Bucketizer
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from batchml.lib.features.statistics import DECILES, collect_stats, profile_of
from batchml.lib.monitoring import drift
from batchml.lib.platform.settings import FeaturePipelineSpec
from batchml.lib.spark.metrics import mark, resources_since

NUMERIC = [f"x{i:02d}" for i in range(20)]
CATEGORICAL = ["c0", "c1", "c2"]


def table(spark: SparkSession, rows: int, seed: int, shift: float) -> DataFrame:
    columns = [
        (F.randn(seed * 1000 + i) * (1 + i / 10) + i + shift * (i % 3)).alias(name)
        for i, name in enumerate(NUMERIC)
    ]
    levels = [
        F.concat(F.lit(name), (F.rand(seed * 1000 + 50 + j) * (5 + 20 * j) + shift).cast("int"))
        .alias(name)
        for j, name in enumerate(CATEGORICAL)
    ]  # fmt: skip
    return spark.range(rows).select(*columns, *levels, F.lit(1).alias("label"))


def naive(train: DataFrame, score: DataFrame) -> dict[str, dict]:
    out = {}
    for column in NUMERIC:
        edges = train.approxQuantile(column, DECILES, 0.001)
        splits = [-float("inf"), *edges, float("inf")]
        sides = []
        for df in (train, score):
            bucketed = Bucketizer(splits=splits, inputCol=column, outputCol="b").transform(df)
            counts = {r["b"]: r["count"] for r in bucketed.groupBy("b").count().collect()}
            sides.append([counts.get(float(i), 0) for i in range(len(splits) - 1)])
        out[column] = {"edges": edges, "train": sides[0], "score": sides[1],
                       "psi": drift.psi(sides[0], sides[1])}  # fmt: skip
    for column in CATEGORICAL:
        sides = [
            {r[column]: r["count"] for r in df.groupBy(column).count().collect()}
            for df in (train, score)
        ]
        levels = sorted(set(sides[0]) | set(sides[1]))
        expected = [sides[0].get(level, 0) for level in levels]
        actual = [sides[1].get(level, 0) for level in levels]
        out[column] = {"psi": drift.psi(expected, actual)}
    return out


def timed(spark: SparkSession, action):
    before = mark(spark.sparkContext)
    started = time.perf_counter()
    result = action()
    seconds = time.perf_counter() - started
    return result, seconds, resources_since(spark.sparkContext, before)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=4_000_000)
    parser.add_argument("--workdir", default="/tmp/bench_drift")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    spark = (
        SparkSession.builder.master("local[2]")
        .config("spark.driver.memory", "6g")
        .config("spark.sql.shuffle.partitions", "8")
        .config("spark.ui.enabled", "false")
        .getOrCreate()
    )
    spark.sparkContext.setLogLevel("ERROR")
    work = Path(args.workdir)
    for name, seed, shift in (("train", 1, 0.0), ("score", 2, 0.3)):
        if not (work / name).exists():
            table(spark, args.rows, seed, shift).write.parquet(str(work / name))
    train = spark.read.parquet(str(work / "train"))
    score = spark.read.parquet(str(work / "score"))
    spec = FeaturePipelineSpec(
        view="v",
        label="label",
        numeric={c: {} for c in NUMERIC},
        categorical={c: {} for c in CATEGORICAL},
    )
    profile, profile_s, _ = timed(
        spark, lambda: profile_of(collect_stats(train, spec, profile=True))
    )

    def ours() -> dict[str, dict]:
        numeric = {c: profile["numeric"][c] for c in NUMERIC}
        fine = drift.grids(spark, numeric)
        summaries = drift.input_profile(score, {c: g.edges for c, g in fine.items()}, CATEGORICAL)
        figures = drift.numeric_drifts(numeric, summaries, fine)
        for c in CATEGORICAL:
            figures[c] = drift.categorical_drift(profile["categorical"][c], summaries[c])
        return figures

    # alternated, each side's median of --repeat runs (the first run of either also
    # pays the JVM's warm-up)
    ours_runs, naive_runs = [], []
    for _ in range(args.repeat):
        ours_runs.append(timed(spark, ours))
        naive_runs.append(timed(spark, lambda: naive(train, score)))
    ours_figures, ours_s, ours_res = sorted(ours_runs, key=lambda r: r[1])[len(ours_runs) // 2]
    naive_figures, naive_s, naive_res = sorted(naive_runs, key=lambda r: r[1])[len(naive_runs) // 2]

    # PSI on the naive's own bins: same edges, same training counts. The naive Bucketizer's
    # bins are [e, e'); batchml's (e, e'] (as training's inclusive ranks count): an edge
    # one ulp lower makes `v <= edge` mean `v < e` for every double
    below = {c: [math.nextafter(e, -math.inf) for e in naive_figures[c]["edges"]] for c in NUMERIC}
    same_bins = drift.input_profile(score, below, [])
    differences = []
    for c in NUMERIC:
        counts = [same_bins[c].counts.get(i, 0) for i in range(len(DECILES) + 1)]
        assert counts == naive_figures[c]["score"], c
        differences.append(
            abs(drift.psi(naive_figures[c]["train"], counts) - naive_figures[c]["psi"])
        )
    report = {
        "date": datetime.now(UTC).strftime("%Y-%m-%d"),
        "machine": f"{os.cpu_count()} cores, {platform.machine()}, "
        f"Python {platform.python_version()}",
        "rows": args.rows,
        "features": {"numeric": len(NUMERIC), "categorical": len(CATEGORICAL)},
        "repeat": args.repeat,
        "batchml_runs_seconds": [round(r[1], 2) for r in ours_runs],
        "naive_runs_seconds": [round(r[1], 2) for r in naive_runs],
        "batchml": {"seconds": round(ours_s, 2), "spark_jobs": ours_res["jobs"],
                    "input_bytes": ours_res["input_bytes"]},
        "scoring_data_bytes": sum(f.stat().st_size for f in (work / "score").glob("*.parquet")),
        "naive": {"seconds": round(naive_s, 2), "spark_jobs": naive_res["jobs"],
                  "input_bytes": naive_res["input_bytes"]},
        "speedup": round(naive_s / ours_s, 2),
        "training_profile_at_train_seconds": round(profile_s, 2),
        "psi_max_abs_difference_same_bins": max(differences),
        "psi_batchml_vs_naive_own_bins": {
            c: [round(ours_figures[c]["psi"], 5), round(naive_figures[c]["psi"], 5)]
            for c in [*NUMERIC[:3], *CATEGORICAL]
        },
        "ks_batchml": {c: round(ours_figures[c]["ks"], 4) for c in NUMERIC[:3]},
    }  # fmt: skip
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
