"""Every figure of an evaluation over a scored table, batchml's evaluation vs MLlib's
evaluators, in one run: seconds, Spark jobs and the precision of ROC AUC.

Data: --rows scored rows in a Delta table (written once): a key, a label, the positive
class's probability from a logistic model of a few normal draws (smooth scores, a few
ties), the prediction at 0.5, and two slice columns (`carrier`: 16 skewed values,
`origin`: 3).
  (ours)      lib/evaluation.evaluate_binary: ROC / PR AUC with error bounds, log loss,
              Brier, figures at two thresholds, F1-best threshold, calibration, score
              histogram, slices by carrier and origin (pooled under 500 rows); once
              without the bootstrap and once with 200 replicates
  (MLlib)     BinaryClassificationEvaluator for ROC and PR (default numBins=1000), and
              MulticlassClassificationEvaluator for accuracy, f1, weightedPrecision,
              weightedRecall and logLoss, plus a groupBy per slice column (rows,
              positives, accuracy): the same headline figures; no intervals (a bootstrap
              with MLlib would be 200 times all of it)
  (exact)     BinaryClassificationEvaluator(numBins=0): the exact ROC AUC, as the
              reference for the precision of ours (and of MLlib's default)

Timing: after a warm-up, batchml's two variants are the best of 3 runs each; the MLlib
evaluations run once each (74-87 s; the JVM is warm by then).

    uv run python benchmarks/evaluate_metrics.py --workdir /tmp/bench_eval [--rows 4000000]
"""

from __future__ import annotations

import argparse
import platform
import tempfile
from datetime import UTC, datetime
from pathlib import Path

from baselines import jobs_of
from pyspark.ml.evaluation import BinaryClassificationEvaluator, MulticlassClassificationEvaluator
from pyspark.ml.functions import array_to_vector
from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from batchml.lib.delta.embedded import EmbeddedDelta
from batchml.lib.evaluation.binary import evaluate_binary
from batchml.lib.evaluation.bins import EvalSpec
from batchml.lib.platform.config import load_config
from batchml.lib.platform.logs import configure_logging
from batchml.lib.spark.session import build_session


def make_table(spark: SparkSession, tables: EmbeddedDelta, uri: str, rows: int) -> None:
    df = spark.range(rows, numPartitions=max(2, rows // 500_000))
    margin = F.randn(1) * 1.2 + F.randn(2) * 0.6 - 0.9
    truth = F.lit(1.0) / (F.lit(1.0) + F.exp(-(margin + F.randn(3) * 0.8)))
    scored = df.select(
        F.col("id").alias("key"),
        (F.rand(4) < truth).cast("double").alias("label"),
        F.round(F.lit(1.0) / (F.lit(1.0) + F.exp(-margin)), 7).alias("p"),
        F.concat(F.lit("C"), F.floor(F.pow(F.rand(5), 2) * 16).cast("string")).alias("carrier"),
        F.element_at(
            F.array(*map(F.lit, ("EWR", "JFK", "LGA"))), (F.rand(6) * 3 + 1).cast("int")
        ).alias("origin"),
    ).withColumn("prediction", (F.col("p") > 0.5).cast("double"))
    tables.write(scored, uri, mode="overwrite")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=4_000_000)
    parser.add_argument("--workdir", type=Path, default=None)
    args = parser.parse_args()
    work = (args.workdir or Path(tempfile.mkdtemp(prefix="batchml-eval-bench-"))).resolve()
    cfg = load_config(
        overrides=[
            'spark.master="local[2]"',
            'delta.backend="embedded"',
            "spark.driver_memory=6g",
            f'lakehouse.root="{work}"',
        ]
    )
    configure_logging("WARNING")
    spark = build_session(cfg.settings)
    tables = EmbeddedDelta(spark)
    uri = str(work / "scored")
    if not Path(uri, "_delta_log").exists():
        make_table(spark, tables, uri, args.rows)
    read = tables.read(uri)
    df = read.df

    def ours(replicates: int):
        spec = EvalSpec(
            thresholds=(0.5, 0.3),
            slices=("carrier", "origin"),
            min_slice_rows=500,
            replicates=replicates,
            seed=42,
            key="key",
        )
        return evaluate_binary(df, "label", "p", spec, rows_hint=read.rows)

    vectors = df.select(
        "label",
        "prediction",
        "carrier",
        "origin",
        array_to_vector(F.array(1 - F.col("p"), F.col("p"))).alias("probability"),
    )

    def mllib():
        out = {}
        for name in ("areaUnderROC", "areaUnderPR"):
            out[name] = BinaryClassificationEvaluator(
                labelCol="label", rawPredictionCol="probability", metricName=name
            ).evaluate(vectors)
        for name in ("accuracy", "f1", "weightedPrecision", "weightedRecall", "logLoss"):
            out[name] = MulticlassClassificationEvaluator(
                labelCol="label", metricName=name
            ).evaluate(vectors)
        for column in ("carrier", "origin"):
            out[column] = (
                vectors.groupBy(column)
                .agg(
                    F.count(F.lit(1)),
                    F.sum("label"),
                    F.avg((F.col("prediction") == F.col("label")).cast("double")),
                )
                .collect()
            )
        return out

    def exact():
        return {
            name: BinaryClassificationEvaluator(
                labelCol="label", rawPredictionCol="probability", numBins=0, metricName=name
            ).evaluate(vectors)
            for name in ("areaUnderROC", "areaUnderPR")
        }

    jobs_of(spark, lambda: df.agg(F.sum("p")).collect())  # warm the JVM and the file cache
    jobs_of(spark, lambda: ours(0))
    plain_s, plain_jobs, plain = min(
        (jobs_of(spark, lambda: ours(0)) for _ in range(3)), key=lambda r: r[0]
    )
    boot_s, boot_jobs, boot = min(
        (jobs_of(spark, lambda: ours(200)) for _ in range(3)), key=lambda r: r[0]
    )
    mllib_s, mllib_jobs, theirs = jobs_of(spark, mllib)
    exact_s, exact_jobs, references = jobs_of(spark, exact)
    reference, reference_pr = references["areaUnderROC"], references["areaUnderPR"]
    ci = boot["bootstrap"]["intervals"]["areaUnderROC"]
    print(
        f"# evaluate_metrics: {args.rows:,} scored rows, {datetime.now(UTC):%Y-%m-%d}, "
        f"{platform.machine()}, local[2]"
    )
    print(f"batchml, no bootstrap:     {plain_s:7.2f} s, {plain_jobs} Spark jobs")
    print(f"batchml, 200 replicates:   {boot_s:7.2f} s, {boot_jobs} Spark jobs")
    print(f"MLlib evaluators + slices: {mllib_s:7.2f} s, {mllib_jobs} Spark jobs")
    print(f"MLlib exact ROC + PR AUC:  {exact_s:7.2f} s, {exact_jobs} Spark jobs")
    print(
        f"speed-up vs MLlib: {mllib_s / plain_s:.1f}x (no bootstrap), "
        f"{mllib_s / boot_s:.1f}x (with 200 replicates)"
    )
    print(
        f"ROC AUC: exact {reference:.9f}; batchml {plain['areaUnderROC']:.9f} "
        f"(|error| {abs(plain['areaUnderROC'] - reference):.1e}, bound "
        f"{plain['areaUnderROC_error_bound']:.1e}, {plain['bins']} bins); MLlib default "
        f"{theirs['areaUnderROC']:.9f} (|error| {abs(theirs['areaUnderROC'] - reference):.1e})"
    )
    print(
        f"PR AUC: exact {reference_pr:.9f}; batchml {plain['areaUnderPR']:.9f} (|error| "
        f"{abs(plain['areaUnderPR'] - reference_pr):.1e}, bound "
        f"{plain['areaUnderPR_error_bound']:.1e}); MLlib default {theirs['areaUnderPR']:.9f} "
        f"(|error| {abs(theirs['areaUnderPR'] - reference_pr):.1e})"
    )
    print(f"ROC AUC 95% bootstrap interval: [{ci[0]:.6f}, {ci[1]:.6f}]")
    print(
        f"log loss: batchml {plain['log_loss']:.9f}, MLlib {theirs['logLoss']:.9f}; "
        f"accuracy: batchml {plain['accuracy']:.9f}, MLlib {theirs['accuracy']:.9f}"
    )


if __name__ == "__main__":
    main()
