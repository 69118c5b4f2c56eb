"""Every figure of an evaluation over a scored table, batchml's evaluation vs MLlib's
evaluators, in one run: seconds, Spark jobs and the precision of ROC AUC.

Data: --rows scored rows in a Delta table (written once; a workdir's table of that many
rows is reused): a key, a label, the positive class's probability from a logistic model
of a few normal draws (smooth scores, a few ties), the prediction at 0.5, and two slice
columns (`carrier`: 16 skewed values, `origin`: 3).
  (batchml)   lib/evaluation.evaluate_binary: ROC / PR AUC with error bounds, log loss,
              Brier, figures at two thresholds, F1-best threshold, calibration, score
              histogram, slices by carrier and origin (pooled under 500 rows); once
              without the bootstrap (`batchml`) and once with --replicates replicates
              (`batchml_bootstrap`)
  (mllib)     BinaryClassificationEvaluator for ROC and PR (default numBins=1000), and
              MulticlassClassificationEvaluator for accuracy, f1, weightedPrecision,
              weightedRecall and logLoss, plus a groupBy per slice column (rows,
              positives, accuracy): the same headline figures; no intervals (a bootstrap
              with MLlib would be --replicates times all of it)
  (mllib_exact) BinaryClassificationEvaluator(numBins=0): the exact ROC and PR AUC, the
              reference for the precision of batchml's (and of MLlib's default)
The sides do not produce the same figures: batchml's are a superset of MLlib's (the
intervals, calibration, histogram and F1-best threshold have no MLlib counterpart).
Every side reads the same Delta version through the same DataFrame; each timed window
is the evaluation alone (its Spark jobs and the driver's work on their results).

Method: all four sides through harness.side_by_side in one process and session: the
same warm-up per side (--warmup, default 1, discarded), the same --rounds (default 3)
with the order of the sides rotated each round, every round printed, the median
reported; speed-ups are medians of the same run. No memory cap. Spark jobs: each side's
last round. (Before: batchml's best of 3 against MLlib's single runs.) Checks, on the
last round's figures at every size: every side saw --rows rows; batchml's ROC and PR AUC are within
their error bounds of the exact ones; its log loss and accuracy equal MLlib's (1e-9);
each slice's rows, positives and accuracy equal MLlib's group-bys (small values pooled
as batchml pools them); the bootstrap interval holds the point estimate.

    uv run python benchmarks/evaluate_metrics.py --workdir /tmp/bench_eval [--rows 4000000]
    uv run python benchmarks/evaluate_metrics.py --smoke   # seconds: checks the work only
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import harness
from baselines import jobs_of
from pyspark.ml.evaluation import BinaryClassificationEvaluator, MulticlassClassificationEvaluator
from pyspark.ml.functions import array_to_vector
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from batchml.lib.delta import delta_tables
from batchml.lib.evaluation.binary import evaluate_binary
from batchml.lib.evaluation.bins import OTHER, EvalSpec
from batchml.lib.platform.config import load_config
from batchml.lib.platform.logs import configure_logging

SLICES = ("carrier", "origin")
MIN_SLICE_ROWS = 500
SAME = 1e-9  # sums of the same doubles in another order


def make_table(spark: SparkSession, tables, uri: str, rows: int) -> None:
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


def ours(read, replicates: int) -> dict[str, Any]:
    spec = EvalSpec(
        thresholds=(0.5, 0.3),
        slices=SLICES,
        min_slice_rows=MIN_SLICE_ROWS,
        replicates=replicates,
        seed=42,
        key="key",
    )
    return evaluate_binary(read.df, "label", "p", spec, rows_hint=read.rows)


def vectors_of(df: DataFrame) -> DataFrame:
    """The scored rows as MLlib's evaluators take them: a probability vector."""
    return df.select(
        "label",
        "prediction",
        *SLICES,
        array_to_vector(F.array(1 - F.col("p"), F.col("p"))).alias("probability"),
    )


def mllib(vectors: DataFrame) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name in ("areaUnderROC", "areaUnderPR"):
        out[name] = BinaryClassificationEvaluator(
            labelCol="label", rawPredictionCol="probability", metricName=name
        ).evaluate(vectors)
    for name in ("accuracy", "f1", "weightedPrecision", "weightedRecall", "logLoss"):
        out[name] = MulticlassClassificationEvaluator(labelCol="label", metricName=name).evaluate(
            vectors
        )
    for column in SLICES:
        out[column] = {
            row[column]: {"rows": row["rows"], "positives": int(row["positives"]),
                          "correct": int(row["correct"])}
            for row in vectors.groupBy(column)
            .agg(
                F.count(F.lit(1)).alias("rows"),
                F.sum("label").alias("positives"),
                F.sum((F.col("prediction") == F.col("label")).cast("long")).alias("correct"),
            )
            .collect()
        }  # fmt: skip
    return out


def exact(vectors: DataFrame) -> dict[str, float]:
    return {
        name: BinaryClassificationEvaluator(
            labelCol="label", rawPredictionCol="probability", numBins=0, metricName=name
        ).evaluate(vectors)
        for name in ("areaUnderROC", "areaUnderPR")
    }


def pooled(groups: dict[str, dict[str, int]]) -> dict[str, dict[str, int]]:
    """MLlib's group-by of a slice column with the values under MIN_SLICE_ROWS rows
    summed as one `other`, as batchml pools them."""
    out: dict[str, dict[str, int]] = {}
    for value, counts in groups.items():
        name = OTHER if counts["rows"] < MIN_SLICE_ROWS else value
        entry = out.setdefault(name, {"rows": 0, "positives": 0, "correct": 0})
        for key in entry:
            entry[key] += counts[key]
    return out


def check(rows: int, plain: dict, boot: dict, theirs: dict, references: dict) -> None:
    """batchml's figures against MLlib's and the exact AUCs."""
    for figures in (plain, boot):
        assert figures["rows"] == rows, figures["rows"]
    for name in ("areaUnderROC", "areaUnderPR"):
        error = abs(plain[name] - references[name])
        assert error <= plain[f"{name}_error_bound"] + SAME, (name, error, plain)
        # the bootstrap changes no point figure
        assert abs(boot[name] - plain[name]) <= SAME, (name, boot[name], plain[name])
    assert abs(plain["log_loss"] - theirs["logLoss"]) <= SAME, (plain["log_loss"], theirs)
    assert abs(plain["accuracy"] - theirs["accuracy"]) <= SAME, (plain["accuracy"], theirs)
    for column in SLICES:
        assert sum(c["rows"] for c in theirs[column].values()) == rows, theirs[column]
        expected = pooled(theirs[column])
        found = {entry["value"]: entry for entry in plain["slices"][column]}
        assert found.keys() == expected.keys(), (column, sorted(found), sorted(expected))
        for value, counts in expected.items():
            entry = found[value]
            assert (entry["rows"], entry["positives"]) == (counts["rows"], counts["positives"])
            assert abs(entry["accuracy"] - counts["correct"] / counts["rows"]) <= SAME, entry
    low, high = boot["bootstrap"]["intervals"]["areaUnderROC"]
    assert low <= boot["areaUnderROC"] <= high, (low, boot["areaUnderROC"], high)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = harness.arguments(__doc__)
    parser.add_argument("--rows", type=int, default=4_000_000)
    parser.add_argument("--replicates", type=int, default=200, help="batchml's bootstrap")
    args = harness.parse(parser, argv, rows=5_000)
    given = args.workdir is not None
    work = harness.workdir(args, "eval").resolve()
    settings = load_config(
        overrides=[
            'spark.master="local[2]"',
            'delta.backend="embedded"',
            "spark.driver_memory=6g",
            f'lakehouse.root="{work}"',
            "runs.record=false",
        ],
        environ={},
    ).settings
    configure_logging("WARNING")
    try:
        with harness.session(settings) as spark:
            tables = delta_tables(spark, settings)
            uri = str(work / "scored")
            if not (Path(uri, "_delta_log").exists() and tables.read(uri).rows == args.rows):
                make_table(spark, tables, uri, args.rows)
            read = tables.read(uri)
            vectors = vectors_of(read.df)

            def side(action):
                """The side's seconds and Spark jobs (counted by a job group)."""
                seconds, jobs, result = jobs_of(spark, action)
                return harness.Timed(seconds, {"jobs": jobs, "figures": result})

            sides = harness.side_by_side(
                {
                    "batchml": lambda: side(lambda: ours(read, 0)),
                    "batchml_bootstrap": lambda: side(lambda: ours(read, args.replicates)),
                    "mllib": lambda: side(lambda: mllib(vectors)),
                    "mllib_exact": lambda: side(lambda: exact(vectors)),
                },
                rounds=args.rounds,
                warmup=args.warmup,
                label="evaluate",
            )
    finally:
        if not given:  # a temporary folder of this run only
            shutil.rmtree(work, ignore_errors=True)
    harness.note(sides.table())
    last = {name: result.value for name, result in sides.results.items()}
    plain, boot = last["batchml"]["figures"], last["batchml_bootstrap"]["figures"]
    theirs, references = last["mllib"]["figures"], last["mllib_exact"]["figures"]
    check(args.rows, plain, boot, theirs, references)
    results = {
        **harness.header(args),
        "rows": args.rows,
        "replicates": args.replicates,
        **sides.figures(),
        "spark_jobs": {name: value["jobs"] for name, value in last.items()},
        "speedup_vs_mllib": round(sides.ratio("mllib", "batchml"), 2),
        "speedup_vs_mllib_with_bootstrap": round(sides.ratio("mllib", "batchml_bootstrap"), 2),
        "precision": {
            name: {
                "exact": references[name],
                "batchml": plain[name],
                "batchml_abs_error": abs(plain[name] - references[name]),
                "batchml_error_bound": plain[f"{name}_error_bound"],
                "batchml_bins": plain["bins"],
                "mllib_default": theirs[name],
                "mllib_default_abs_error": abs(theirs[name] - references[name]),
            }
            for name in ("areaUnderROC", "areaUnderPR")
        },
        "roc_auc_bootstrap_interval": boot["bootstrap"]["intervals"]["areaUnderROC"],
        "log_loss": {"batchml": plain["log_loss"], "mllib": theirs["logLoss"]},
        "accuracy": {"batchml": plain["accuracy"], "mllib": theirs["accuracy"]},
    }
    print(json.dumps(results, indent=2))
    return results


if __name__ == "__main__":
    main()
