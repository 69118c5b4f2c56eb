"""Where xgboost.spark's time goes: the same boosting fed three ways (issue 18's profile).

The table of `train_lr.py` (20 numeric columns with 5% nulls, 3 categorical of 10 / 50 /
200 levels), its training split; 100 trees of depth 5, learning rate 0.1, 32 bins, hist,
in one run:
  (vector)   batchml's feature pipeline today (mean imputation, scaling, one-hot), the
             assembled vector column, SparkXGBClassifier(features_col="features"):
             what `batchml train` does for xgboost_classifier
  (columns)  the 20 numeric columns as they are (nulls are xgboost's missing values) and
             the 3 StringIndexer codes as native categories (feature_types "c"),
             SparkXGBClassifier(features_col=[23 columns])
  (native)   deltalake -> pandas in a child process, the same 23 columns (codes as
             pandas categories), xgboost.train on one DMatrix with 2 threads: the
             boosting alone, on one machine, with the data already in memory
For the two Spark paths, the Spark side alone is also timed: the rows xgboost.spark
would read (its input columns, the vector as an array) written to the `noop` sink.
Test ROC AUC of each on the test split.

    uv run python benchmarks/boost_paths.py --workdir /tmp/bench_lr [--rows 1000000]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import platform
import time
from datetime import UTC, datetime
from pathlib import Path

from pyspark.ml.evaluation import BinaryClassificationEvaluator
from pyspark.ml.feature import StringIndexer
from pyspark.ml.functions import vector_to_array
from pyspark.sql import functions as F
from train_lr import CATEGORICAL, NUMERIC, make_table, spec_for

from batchml.lib.delta.embedded import EmbeddedDelta
from batchml.lib.features.pipeline import fit_features
from batchml.lib.platform.config import load_config
from batchml.lib.platform.logs import configure_logging
from batchml.lib.spark.session import build_session

PARAMS = {"n_estimators": 100, "max_depth": 5, "learning_rate": 0.1, "max_bin": 32}


def timed(action):
    started = time.perf_counter()
    result = action()
    return result, round(time.perf_counter() - started, 2)


def auc(model, test) -> float:
    scored = model.transform(test)
    evaluator = BinaryClassificationEvaluator(labelCol="label", rawPredictionCol="probability")
    return round(evaluator.evaluate(scored), 4)


def native_child(uri: str, out) -> None:
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
    started = time.perf_counter()
    matrix = xgboost.DMatrix(
        train[columns], label=train["label"], enable_categorical=True, nthread=2
    )
    built = time.perf_counter() - started
    started = time.perf_counter()
    booster = xgboost.train(
        {
            "objective": "binary:logistic",
            "tree_method": "hist",
            "max_depth": PARAMS["max_depth"],
            "eta": PARAMS["learning_rate"],
            "max_bin": PARAMS["max_bin"],
            "nthread": 2,
        },
        matrix,
        num_boost_round=PARAMS["n_estimators"],
    )
    boosted = time.perf_counter() - started
    scores = booster.predict(xgboost.DMatrix(test[columns], enable_categorical=True))
    out.put(
        {
            "read_seconds": round(read, 2),
            "dmatrix_seconds": round(built, 2),
            "boosting_seconds": round(boosted, 2),
            "fit_seconds": round(built + boosted, 2),
            "auc": round(float(roc_auc_score(test["label"], np.asarray(scores))), 4),
        }
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/bench_lr"))
    args = parser.parse_args()
    work = args.workdir.resolve()
    cfg = load_config(
        overrides=[
            'spark.master="local[2]"',
            'delta.backend="embedded"',
            "spark.shuffle_partitions=4",
            'spark.driver_memory="6g"',
            f'lakehouse.root="{work}"',
        ]
    )
    configure_logging("WARNING")
    spark = build_session(cfg.settings)
    from xgboost.spark import SparkXGBClassifier

    uri = str(work / f"lr_{args.rows}")
    if not Path(uri).exists():
        make_table(spark, uri, args.rows)
    table = EmbeddedDelta(spark).read(uri).df
    train, test = table.filter("split = 'train'"), table.filter("split = 'test'")
    report: dict[str, object] = {}

    # (vector) batchml's pipeline today
    features, fit_s = timed(lambda: fit_features(train, "bench", spec_for(uri)))
    assembled = features.model.transform(train).select("features", "label")
    _, spark_s = timed(
        lambda: (
            assembled.select(vector_to_array("features", "float32"), "label")
            .write.format("noop")
            .mode("overwrite")
            .save()
        )
    )
    xgb = SparkXGBClassifier(features_col="features", label_col="label", num_workers=2, **PARAMS)
    vector_model, vector_s = timed(lambda: xgb.fit(assembled))
    report["vector"] = {
        "feature_fit_seconds": fit_s,
        "spark_side_seconds": spark_s,
        "xgb_fit_seconds": vector_s,
        "slots": len(features.slot_names),
        "auc": auc(vector_model, features.model.transform(test).select("features", "label")),
    }
    print(json.dumps({"vector": report["vector"]}), flush=True)

    # (columns) raw numeric columns and native categories
    indexer = StringIndexer(
        inputCols=list(CATEGORICAL),
        outputCols=[f"{c}__index" for c in CATEGORICAL],
        handleInvalid="keep",
    )
    indexed_model, index_s = timed(lambda: indexer.fit(train))
    columns = [*NUMERIC, *(f"{c}__index" for c in CATEGORICAL)]

    def prepared(df):
        return indexed_model.transform(df).select(*columns, "label")

    _, spark_s = timed(
        lambda: (
            prepared(train)
            .select(*(F.col(c).cast("float") for c in columns), "label")
            .write.format("noop")
            .mode("overwrite")
            .save()
        )
    )
    xgb = SparkXGBClassifier(
        features_col=columns,
        label_col="label",
        num_workers=2,
        feature_types=["q"] * len(NUMERIC) + ["c"] * len(CATEGORICAL),
        **PARAMS,
    )
    columns_model, columns_s = timed(lambda: xgb.fit(prepared(train)))
    report["columns"] = {
        "indexer_fit_seconds": index_s,
        "spark_side_seconds": spark_s,
        "xgb_fit_seconds": columns_s,
        "features": len(columns),
        "auc": auc(columns_model, prepared(test)),
    }
    print(json.dumps({"columns": report["columns"]}), flush=True)

    # (native) the boosting alone
    context = multiprocessing.get_context("spawn")  # no fork after deltalake / the JVM
    queue = context.Queue()
    child = context.Process(target=native_child, args=(uri, queue))
    child.start()
    child.join()
    report["native"] = queue.get() if not queue.empty() else {"failed": child.exitcode}
    native_fit = report["native"].get("fit_seconds")
    if native_fit:
        report["vector / native"] = round(vector_s / native_fit, 2)
        report["columns / native"] = round(columns_s / native_fit, 2)
    print(
        json.dumps(
            {
                "date": datetime.now(UTC).isoformat(timespec="seconds"),
                "machine": f"{platform.machine()}, local[2], Python {platform.python_version()}, "
                f"Spark {spark.version}",
                "rows": args.rows,
                "settings": PARAMS,
                "results": report,
            },
            indent=2,
        )
    )
    spark.stop()


if __name__ == "__main__":
    main()
