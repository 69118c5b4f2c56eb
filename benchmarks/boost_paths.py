"""Where xgboost.spark's time goes: the same boosting fed three ways (issue 18's profile).

The table of `train_lr.py` (20 numeric columns with 5% nulls, 3 categorical of 10 / 50 /
200 levels), its training split; --trees trees of depth --depth, learning rate 0.1,
--bins bins, hist. Each side goes from the Delta table to a fitted booster:
  (vector)   batchml's one-hot feature pipeline (mean imputation, scaling, one-hot)
             fitted, the assembled vector column, SparkXGBClassifier(features_col=
             "features"): what `batchml train` did for xgboost_classifier
  (columns)  the 20 numeric columns as they are (nulls are xgboost's missing values) and
             the 3 StringIndexer codes (the indexers fitted) as native categories
             (feature_types "c"), SparkXGBClassifier(features_col=[23 columns])
  (native)   deltalake -> pandas in a child process (timed after its imports), the same
             23 columns (codes as pandas categories), xgboost.train on one DMatrix with
             2 threads
The time of a side ("total") is all of that; its parts are reported too: the feature or
indexer fit and the xgboost.spark fit (which reads the table and prepares its rows
itself) for the Spark paths; the read, the DMatrix and the boosting for native. The
"fit" ratios set the xgboost.spark fit against native's DMatrix + boosting, whose data is
already in memory: that difference is the point of the profile (what the Spark path
costs beyond the boosting), not a like-for-like time; the "total" ratios are. For the two
Spark paths the Spark side alone is also timed, apart (not in the total): the rows
xgboost.spark would read (its input columns, the vector as an array) written to the
`noop` sink. Test ROC AUC of each, computed after the timed work. (--workdir keeps the
table; the default is now a temporary folder, removed at the end, not /tmp/bench_lr.)

Method, in one run: every side warmed up --warmup times (untimed, the full work), then
--rounds rounds with the sides' order rotated each round; every figure is the median of
the rounds (every round printed), the ratios are of those medians. No memory cap; each
side's process tree's peak RSS (the Spark paths: this process, its JVM, xgboost's
Python workers; native: its child process).
Checked on every run, in every mode: the trees fitted, the training rows the Spark side
wrote and native read, a test AUC above 0.5 (the label is learnable), and the columns
path's AUC within --auc-tolerance of native's (the same encoding).

    uv run python benchmarks/boost_paths.py --workdir /tmp/bench_lr [--rows 1000000]
    uv run python benchmarks/boost_paths.py --smoke   # seconds: checks the work only
"""

from __future__ import annotations

import json
import shutil
import time
from typing import Any

import harness
from pyspark.ml.evaluation import BinaryClassificationEvaluator
from pyspark.ml.feature import StringIndexer
from pyspark.ml.functions import vector_to_array
from pyspark.sql import DataFrame, Observation
from pyspark.sql import functions as F
from train_lr import (
    CATEGORICAL,
    NUMERIC,
    RunLog,
    bench_settings,
    ensure_table,
    in_this_process,
    spec_for,
)

from batchml.lib.delta.embedded import EmbeddedDelta
from batchml.lib.features.pipeline import fit_features

PARAMS = {"n_estimators": 100, "max_depth": 5, "learning_rate": 0.1, "max_bin": 32}
SIDES = ("vector", "columns", "native")


def timed(action):
    started = time.perf_counter()
    result = action()
    return result, time.perf_counter() - started


def auc(model, test) -> float:
    scored = model.transform(test)
    evaluator = BinaryClassificationEvaluator(labelCol="label", rawPredictionCol="probability")
    return round(evaluator.evaluate(scored), 4)


def trees_of(model) -> int:
    return int(model.get_booster().num_boosted_rounds())


def spark_side_alone(rows: DataFrame) -> tuple[int, float]:
    """The rows xgboost.spark would read, written to the `noop` sink: (rows, seconds)."""
    observation = Observation("noop")
    observed = rows.observe(observation, F.count(F.lit(1)).alias("rows"))
    _, seconds = timed(lambda: observed.write.format("noop").mode("overwrite").save())
    return int(observation.get["rows"]), seconds


def vector_path(train: DataFrame, test: DataFrame, uri: str, params: dict) -> harness.Timed:
    """batchml's one-hot pipeline, the assembled vector into xgboost.spark."""
    from xgboost.spark import SparkXGBClassifier

    features, fit_s = timed(lambda: fit_features(train, "bench", spec_for(uri)))
    assembled = features.model.transform(train).select("features", "label")
    rows, spark_s = spark_side_alone(
        assembled.select(vector_to_array("features", "float32"), "label")
    )
    xgb = SparkXGBClassifier(features_col="features", label_col="label", num_workers=2, **params)
    model, xgb_s = timed(lambda: xgb.fit(assembled))
    return harness.Timed(
        fit_s + xgb_s,
        {
            "prepare_s": fit_s,
            "xgb_fit_s": xgb_s,
            "spark_side_s": spark_s,
            "train_rows": rows,
            "slots": len(features.slot_names),
            "trees": trees_of(model),
            "auc": auc(model, features.model.transform(test).select("features", "label")),
        },
    )


def columns_path(train: DataFrame, test: DataFrame, params: dict) -> harness.Timed:
    """Raw numeric columns and StringIndexer codes as native categories."""
    from xgboost.spark import SparkXGBClassifier

    indexer = StringIndexer(
        inputCols=list(CATEGORICAL),
        outputCols=[f"{c}__index" for c in CATEGORICAL],
        handleInvalid="keep",
    )
    indexed, index_s = timed(lambda: indexer.fit(train))
    columns = [*NUMERIC, *(f"{c}__index" for c in CATEGORICAL)]

    def prepared(df):
        return indexed.transform(df).select(*columns, "label")

    rows, spark_s = spark_side_alone(
        prepared(train).select(*(F.col(c).cast("float") for c in columns), "label")
    )
    xgb = SparkXGBClassifier(
        features_col=columns,
        label_col="label",
        num_workers=2,
        feature_types=["q"] * len(NUMERIC) + ["c"] * len(CATEGORICAL),
        **params,
    )
    model, xgb_s = timed(lambda: xgb.fit(prepared(train)))
    return harness.Timed(
        index_s + xgb_s,
        {
            "prepare_s": index_s,
            "xgb_fit_s": xgb_s,
            "spark_side_s": spark_s,
            "train_rows": rows,
            "features": len(columns),
            "trees": trees_of(model),
            "auc": auc(model, prepared(test)),
        },
    )


def native_child(uri: str, params: dict) -> harness.Timed:
    """In a child process: everything imported first, then read -> DMatrix -> boosting."""
    import numpy as np
    import pandas as pd
    import xgboost
    from deltalake import DeltaTable
    from sklearn.metrics import roc_auc_score

    started = time.perf_counter()
    frame = DeltaTable(uri).to_pandas(columns=[*NUMERIC, *CATEGORICAL, "label", "split"])
    for column in CATEGORICAL:
        frame[column] = pd.Categorical(frame[column])
    read = time.perf_counter() - started
    train, test = frame[frame["split"] == "train"], frame[frame["split"] == "test"]
    columns = [*NUMERIC, *CATEGORICAL]
    matrix, built = timed(
        lambda: xgboost.DMatrix(
            train[columns], label=train["label"], enable_categorical=True, nthread=2
        )
    )
    booster, boosted = timed(
        lambda: xgboost.train(
            {
                "objective": "binary:logistic",
                "tree_method": "hist",
                "max_depth": params["max_depth"],
                "eta": params["learning_rate"],
                "max_bin": params["max_bin"],
                "nthread": 2,
            },
            matrix,
            num_boost_round=params["n_estimators"],
        )
    )
    scores = booster.predict(xgboost.DMatrix(test[columns], enable_categorical=True))
    return harness.Timed(
        read + built + boosted,
        {
            "read_s": read,
            "dmatrix_s": built,
            "boosting_s": boosted,
            "fit_s": built + boosted,
            "train_rows": len(train),
            "trees": int(booster.num_boosted_rounds()),
            "auc": round(float(roc_auc_score(test["label"], np.asarray(scores))), 4),
        },
    )


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = harness.arguments(__doc__)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--trees", type=int, default=PARAMS["n_estimators"])
    parser.add_argument("--depth", type=int, default=PARAMS["max_depth"])
    parser.add_argument("--bins", type=int, default=PARAMS["max_bin"])
    parser.add_argument("--driver-memory", default="6g")
    parser.add_argument(
        "--auc-tolerance",
        type=float,
        default=0.01,
        help="the largest test AUC gap between the columns path and native xgboost",
    )
    # smoke: a few thousand rows, enough trees for an AUC clearly above 0.5 (0.62 after
    # 20 of depth 3); the AUCs of 800 test rows move more between the two fits
    args = harness.parse(parser, argv, rows=4000, trees=20, depth=3, bins=16, auc_tolerance=0.03)
    params = {
        "n_estimators": args.trees,
        "max_depth": args.depth,
        "learning_rate": 0.1,
        "max_bin": args.bins,
    }
    own_folder = args.workdir is None
    work = harness.workdir(args, "paths").resolve()
    # smoke: the test session's shuffle partitions, which joining it would change
    partitions = 2 if args.smoke else 4
    settings = bench_settings(work, args.driver_memory, shuffle_partitions=partitions)
    log = RunLog(args.rounds)
    try:
        with harness.session(settings) as spark:
            uri, splits = ensure_table(spark, work, args.rows)
            table = EmbeddedDelta(spark).read(uri).df
            train, test = table.filter("split = 'train'"), table.filter("split = 'test'")
            runs = {
                "vector": lambda: in_this_process(lambda: vector_path(train, test, uri, params)),
                "columns": lambda: in_this_process(lambda: columns_path(train, test, params)),
                "native": lambda: harness.in_child(native_child, uri, params),
            }

            def checked(name: str):
                def run() -> harness.Timed:
                    result = runs[name]()
                    found = result.value
                    assert found["trees"] == args.trees, f"{name}: {found['trees']} trees"
                    assert found["train_rows"] == splits["train"], (name, found, splits)
                    assert found["auc"] > 0.5, f"{name}: test AUC {found['auc']}, learnable"
                    return result

                return run

            sides = harness.side_by_side(
                {name: log.record(name, checked(name)) for name in SIDES},
                rounds=args.rounds,
                warmup=args.warmup,
                label=f"lr_{args.rows}",
            )
            spark_version = spark.version
    finally:
        if own_folder:
            shutil.rmtree(work, ignore_errors=True)
    harness.note(sides.table())
    parts = {
        "vector": ("prepare_s", "xgb_fit_s", "spark_side_s"),
        "columns": ("prepare_s", "xgb_fit_s", "spark_side_s"),
        "native": ("read_s", "dmatrix_s", "boosting_s", "fit_s"),
    }
    report: dict[str, Any] = {}
    for name in SIDES:
        figures = log.figures(sides, name, "auc", "trees", "slots", "features")
        figures = {key: value for key, value in figures.items() if value is not None}
        figures["parts_median_s"] = {part: round(log.median(name, part), 3) for part in parts[name]}
        report[name] = figures
    gap = abs(report["columns"]["auc"] - report["native"]["auc"])
    assert gap <= args.auc_tolerance, (report["columns"]["auc"], report["native"]["auc"])
    native_fit = log.median("native", "fit_s")
    for path in ("vector", "columns"):
        report[f"total: {path} / native"] = log.ratio(sides, path, "native")
        report[f"fit: {path} / native (native's data in memory)"] = round(
            log.median(path, "xgb_fit_s") / native_fit, 3
        )
    results = {
        **harness.header(args),
        "spark": spark_version,
        "rows": args.rows,
        "settings": params,
        "timed": "total: table -> fitted booster (vector: feature fit + xgboost.spark fit; "
        "columns: indexer fit + xgboost.spark fit; native: read + DMatrix + boosting)",
        "results": report,
    }
    print(json.dumps(results, indent=2))
    return results


if __name__ == "__main__":
    main()
