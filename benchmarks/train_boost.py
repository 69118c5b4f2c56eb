"""Boosted trees at equal settings: MLlib GBT vs xgboost.spark (batchml's default booster)
vs scikit-learn HistGradientBoosting vs native xgboost.

The synthetic table of `train_lr.py` (20 numeric columns with nulls, 3 categorical of
10 / 50 / 200 levels, label from a logistic model), the same 80/20 hash split. Same
settings everywhere: --trees trees of depth --depth, learning rate 0.1, --bins bins.
  (gbt)      batchml.jobs.train.fit.fit with gbt_classifier (MLlib GBTClassifier)
  (xgb)      batchml.jobs.train.fit.fit with xgboost_classifier (xgboost.spark, hist,
             num_workers = 2 task slots, the default `native` encoding); also with
             --xgb-extra-trees rounds when its AUC is below GBT's, to compare at equal AUC
  (xgb_one_hot) the same with encoding = "one_hot" (the assembled vector, as before)
  (hgb)      deltalake -> pandas, HistGradientBoostingClassifier (categories as ordinal
             codes: its native categories need at most --bins levels), in a child process
  (native)   deltalake -> pandas, xgboost.XGBClassifier (hist, 2 threads, categories
             as pandas categories: the same encoding batchml's default `native` gives
             xgboost.spark), in a child process
Times include reading the table, fitting (features included) and scoring the holdout.

    uv run python benchmarks/train_boost.py --workdir /tmp/bench_lr [--rows 1000000]
    uv run python benchmarks/train_boost.py --workdir /tmp/bench_lr --only xgb \
        --rows 1000000 10000000      # scaling of the default booster
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import platform
import resource
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from train_lr import CATEGORICAL, NUMERIC, SEED, SPLIT, make_table, spec_for

from batchml.jobs.train import fit as train_fit
from batchml.jobs.train import plan as train_plan
from batchml.lib.config import load_config
from batchml.lib.logs import configure_logging
from batchml.lib.settings import ModelSpec
from batchml.lib.spark import build_session


def run_ours(
    spark, settings, uri: str, algorithm: str, params: dict, encoding: str | None = None
) -> dict:
    model = ModelSpec(
        pipeline="bench",
        algorithm=algorithm,
        split=SPLIT,
        seed=SEED,
        params=params,
        encoding=encoding,
    )
    plan = train_plan.TrainPlan(f"bench_{algorithm}", model, "bench", spec_for(uri), uri, None)
    started = time.perf_counter()
    trained = train_fit.fit(spark, settings, plan)
    return {
        "seconds": round(time.perf_counter() - started, 2),
        "auc": round(trained.metrics["test"]["areaUnderROC"], 4),
        "params": params,
    }


def local_child(kind: str, uri: str, trees: int, depth: int, bins: int, out) -> None:
    import numpy as np
    from deltalake import DeltaTable
    from sklearn.metrics import roc_auc_score

    started = time.perf_counter()
    frame = DeltaTable(uri).to_pandas()
    training, holdout = frame[frame["split"] == "train"], frame[frame["split"] == "test"]
    if kind == "hgb":
        from sklearn.ensemble import HistGradientBoostingClassifier

        def matrix(part):
            data = part[NUMERIC].copy()
            for column in CATEGORICAL:
                data[column] = part[column].str.split("_").str[1].astype(int)
            return data

        model = HistGradientBoostingClassifier(
            max_iter=trees,
            max_depth=depth,
            learning_rate=0.1,
            max_bins=bins,
            early_stopping=False,  # native categories need cardinality <= bins: ordinal codes
        )
        model.fit(matrix(training), training["label"])
        scores = model.predict_proba(matrix(holdout))[:, 1]
    else:
        import pandas as pd
        import xgboost

        levels = {c: sorted(frame[c].dropna().unique()) for c in CATEGORICAL}

        def matrix(part):  # the encoding batchml's native one gives xgboost: categories
            data = part[NUMERIC].astype(np.float32)
            for column in CATEGORICAL:
                data[column] = pd.Categorical(part[column], categories=levels[column])
            return data

        train_matrix, test_matrix = matrix(training), matrix(holdout)
        model = xgboost.XGBClassifier(
            n_estimators=trees,
            max_depth=depth,
            learning_rate=0.1,
            max_bin=bins,
            tree_method="hist",
            n_jobs=2,
            enable_categorical=True,
        )
        model.fit(train_matrix, training["label"])
        scores = model.predict_proba(test_matrix)[:, 1]
    out.put(
        {
            "seconds": round(time.perf_counter() - started, 2),
            "auc": round(float(roc_auc_score(holdout["label"], scores)), 4),
            "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
        }
    )


def run_local(kind: str, uri: str, trees: int, depth: int, bins: int) -> dict:
    context = multiprocessing.get_context("spawn")  # no fork after deltalake / the JVM
    queue = context.Queue()
    child = context.Process(target=local_child, args=(kind, uri, trees, depth, bins, queue))
    child.start()
    child.join()
    return queue.get() if not queue.empty() else {"failed": f"exit code {child.exitcode}"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, nargs="+", default=[1_000_000])
    parser.add_argument("--trees", type=int, default=100)
    parser.add_argument("--depth", type=int, default=5)
    parser.add_argument("--bins", type=int, default=32)
    parser.add_argument("--xgb-extra-trees", type=int, default=200)
    parser.add_argument("--only", nargs="*", default=["gbt", "xgb", "xgb_one_hot", "hgb", "native"])
    parser.add_argument("--workdir", type=Path, default=None)
    parser.add_argument("--driver-memory", default="6g")
    args = parser.parse_args()
    work = (args.workdir or Path(tempfile.mkdtemp(prefix="batchml-boost-bench-"))).resolve()
    cfg = load_config(
        overrides=[
            'spark.master="local[2]"',
            'delta.backend="embedded"',
            "spark.shuffle_partitions=4",
            f"spark.driver_memory={args.driver_memory}",
            f'lakehouse.root="{work}"',
        ]
    )
    configure_logging("WARNING")
    spark = build_session(cfg.settings)
    gbt = {"maxIter": args.trees, "maxDepth": args.depth, "stepSize": 0.1, "maxBins": args.bins}
    xgb = {
        "n_estimators": args.trees,
        "max_depth": args.depth,
        "learning_rate": 0.1,
        "max_bin": args.bins,
    }
    report: dict[str, object] = {}
    for rows in args.rows:
        uri = str(work / f"lr_{rows}")
        if not Path(uri).exists():
            make_table(spark, uri, rows)
        result: dict[str, object] = {}
        if "xgb" in args.only:
            run_ours(spark, cfg.settings, uri, "xgboost_classifier", {**xgb, "n_estimators": 2})
            result["xgb"] = run_ours(spark, cfg.settings, uri, "xgboost_classifier", xgb)
        if "xgb_one_hot" in args.only:
            result["xgb_one_hot"] = run_ours(
                spark, cfg.settings, uri, "xgboost_classifier", xgb, encoding="one_hot"
            )
        if "gbt" in args.only:
            result["gbt"] = run_ours(spark, cfg.settings, uri, "gbt_classifier", gbt)
            if "xgb" in result and result["xgb"]["auc"] < result["gbt"]["auc"]:
                more = {**xgb, "n_estimators": args.xgb_extra_trees}
                result["xgb_more_trees"] = run_ours(
                    spark, cfg.settings, uri, "xgboost_classifier", more
                )
        for kind in ("hgb", "native"):
            if kind in args.only:
                result[kind] = run_local(kind, uri, args.trees, args.depth, args.bins)
        for other in ("native", "hgb", "xgb_one_hot"):
            if "xgb" in result and result.get(other, {}).get("seconds"):
                result[f"xgb / {other}"] = round(
                    result["xgb"]["seconds"] / result[other]["seconds"], 2
                )
        if "gbt" in result and "xgb" in result:
            result["gbt / xgb"] = round(result["gbt"]["seconds"] / result["xgb"]["seconds"], 2)
        if "gbt" in result and "xgb_more_trees" in result:
            result["gbt / xgb_more_trees"] = round(
                result["gbt"]["seconds"] / result["xgb_more_trees"]["seconds"], 2
            )
        report[str(rows)] = result
        print(json.dumps({str(rows): result}), flush=True)
    print(
        json.dumps(
            {
                "date": datetime.now(UTC).isoformat(timespec="seconds"),
                "machine": f"{platform.machine()}, {spark.sparkContext.defaultParallelism} cores "
                f"(local[2]), Python {platform.python_version()}, Spark {spark.version}",
                "settings": {
                    "trees": args.trees,
                    "depth": args.depth,
                    "learning_rate": 0.1,
                    "bins": args.bins,
                },
                "results": report,
            },
            indent=2,
        )
    )
    spark.stop()


if __name__ == "__main__":
    main()
