"""Boosted trees at equal settings: MLlib GBT vs xgboost.spark (batchml's default booster)
vs scikit-learn HistGradientBoosting vs native xgboost.

The synthetic table of `train_lr.py` (20 numeric columns with nulls, 3 categorical of
10 / 50 / 200 levels, label from a logistic model), the same 80/20 hash split. Same
settings everywhere: --trees trees of depth --depth, learning rate 0.1, --bins bins.
  (xgb)      batchml.jobs.train.fit.fit with xgboost_classifier (xgboost.spark, hist,
             num_workers = 2 task slots, the default `native` encoding)
  (xgb_more_trees) the same with --xgb-extra-trees trees: xgb at GBT's AUC
  (xgb_one_hot) the same with encoding = "one_hot" (the assembled vector, as before)
  (gbt)      batchml.jobs.train.fit.fit with gbt_classifier (MLlib GBTClassifier)
  (hgb)      deltalake -> pandas, HistGradientBoostingClassifier (categories as ordinal
             codes: its native categories need at most --bins levels), in a child process
  (native)   deltalake -> pandas, xgboost.XGBClassifier (hist, 2 threads, categories
             as pandas categories: the same encoding batchml's default `native` gives
             xgboost.spark), in a child process
Each side's time covers reading the table, fitting (features included) and scoring the
holdout; a child process's time starts after its imports. The output work differs in one
way: batchml's job also computes the training profile, every holdout metric and the
score profile (a single aggregation), the one-process fits the holdout's ROC AUC only.

Method, per table size in one run: every side warmed up --warmup times (untimed, the full
work), then --rounds rounds with the sides' order rotated each round; the figure is the
median of the rounds (every round printed), the ratios are of those medians (a machine's
speed drifts over minutes: the rounds are side by side). Memory: each side's process
tree's peak RSS, sampled every 0.1 s (a side in this process: this process, its JVM and
the Python workers xgboost trains in; a child: the child and what it started).
--memory-cap applies to every side the same way: each runs in a child process killed
when its tree's resident memory passes the cap, as a container's limit would (an
address-space limit, RLIMIT_AS, stops xgboost and scikit-learn loading their libraries
at any useful size); batchml's sides build their own SparkSession there (--driver-memory
heap) and are timed once it is up, so their JVM starts cold every run (this process's
own session, which made the table, idles meanwhile outside every side's tree). Without
a cap no side is capped: batchml's sides share this process's session (warm after the
warm-up; its heap is --driver-memory, within which Spark spills) and the one-process
fits still run in children.
Checked on every run, in every mode: the rows of each split, the trees fitted, a holdout
AUC above 0.5 (the label is learnable); xgb's AUC within --auc-tolerance of native
xgboost's (the same booster on the same encoding). A side killed at the cap did nothing
and says so: its median is null, with the resident memory it was killed at.

    uv run python benchmarks/train_boost.py --workdir /tmp/bench_lr [--rows 1000000]
    uv run python benchmarks/train_boost.py --workdir /tmp/bench_lr --only xgb hgb native \
        --rows 1000000 10000000 --driver-memory 3g --memory-cap 4g   # past one process
    uv run python benchmarks/train_boost.py --workdir /tmp/bench_lr --only xgb hgb native \
        --rounds 5
    uv run python benchmarks/train_boost.py --smoke   # seconds: checks the work only

(--rounds was the number of alternated rounds of xgb, hgb and native before; it is now
the harness's, for every side, after --warmup.)
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import harness
from train_lr import (
    CATEGORICAL,
    NUMERIC,
    SEED,
    SPLIT,
    RunLog,
    bench_settings,
    cap_applies_to,
    ensure_table,
    in_own_session,
    in_this_process,
    spec_for,
)

from batchml.jobs.train import fit as train_fit
from batchml.jobs.train import plan as train_plan
from batchml.lib.platform.runtime import memory_bytes
from batchml.lib.platform.settings import ModelSpec

SPARK_SIDES = ("xgb", "xgb_more_trees", "xgb_one_hot", "gbt")
CHILD_SIDES = ("hgb", "native")
SIDES = (*SPARK_SIDES, *CHILD_SIDES)
# smoke: batchml's default booster against both one-process fits, the headline
# comparison; the other Spark sides are the same job with another algorithm or encoding
# (run_ours), each 7-15 s more at the smoke size (--only adds them)
SMOKE_SIDES = ["xgb", "hgb", "native"]


def trees_of(estimator) -> int:
    """The trees a fitted booster holds: xgboost's boosting rounds, MLlib's trees."""
    if hasattr(estimator, "get_booster"):
        return int(estimator.get_booster().num_boosted_rounds())
    return int(estimator.getNumTrees)  # MLlib's tree ensembles: a property


def run_ours(
    spark, settings, uri: str, algorithm: str, params: dict, encoding: str | None = None
) -> harness.Timed:
    """batchml's training job (registers nothing): read, features, fit, holdout metrics."""
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
    seconds = time.perf_counter() - started
    return harness.Timed(
        seconds,
        {
            "auc": round(trained.metrics["test"]["areaUnderROC"], 4),
            "trees": trees_of(trained.fitted.stages[-1]),
            "rows": dict(trained.rows),
            "encoding": trained.encoding,
        },
    )


def local_child(kind: str, uri: str, trees: int, depth: int, bins: int) -> harness.Timed:
    """In a child process: everything imported first, then read -> fit -> score."""
    import numpy as np
    import pandas as pd
    import xgboost
    from deltalake import DeltaTable
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.metrics import roc_auc_score

    started = time.perf_counter()
    frame = DeltaTable(uri).to_pandas()
    training, holdout = frame[frame["split"] == "train"], frame[frame["split"] == "test"]
    if kind == "hgb":

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
        fitted = int(model.n_iter_)
    else:
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
        fitted = int(model.get_booster().num_boosted_rounds())
    auc = float(roc_auc_score(holdout["label"], scores))
    seconds = time.perf_counter() - started
    return harness.Timed(
        seconds,
        {
            "auc": round(auc, 4),
            "trees": fitted,
            "rows": {"train": len(training), "test": len(holdout)},
        },
    )


def compare(spark, settings, uri: str, splits: dict[str, int], args) -> dict[str, object]:
    cap = memory_bytes(args.memory_cap) if args.memory_cap else None
    log = RunLog(args.rounds)
    work, partitions = str(args.work), settings.spark.shuffle_partitions
    gbt = {"maxIter": args.trees, "maxDepth": args.depth, "stepSize": 0.1, "maxBins": args.bins}
    xgb = {
        "n_estimators": args.trees,
        "max_depth": args.depth,
        "learning_rate": 0.1,
        "max_bin": args.bins,
    }
    more = {**xgb, "n_estimators": args.xgb_extra_trees}
    # side: (how it runs, the trees it must hold)
    spark_sides: dict[str, tuple[tuple, int]] = {
        "xgb": (("xgboost_classifier", xgb), args.trees),
        "xgb_more_trees": (("xgboost_classifier", more), args.xgb_extra_trees),
        "xgb_one_hot": (("xgboost_classifier", xgb, "one_hot"), args.trees),
        "gbt": (("gbt_classifier", gbt), args.trees),
    }

    def runner(name: str) -> Callable[[], harness.Timed]:
        if name in CHILD_SIDES:
            shape = (args.trees, args.depth, args.bins)
            return lambda: harness.in_child(local_child, name, uri, *shape, cap=cap)
        how = (uri, *spark_sides[name][0])
        if cap is None:
            return lambda: in_this_process(lambda: run_ours(spark, settings, *how))
        return lambda: harness.in_child(
            in_own_session, work, args.driver_memory, partitions, run_ours, *how, cap=cap
        )

    def checked(name: str) -> Callable[[], harness.Timed]:
        run, trees = runner(name), spark_sides.get(name, (None, args.trees))[1]

        def check() -> harness.Timed:
            result = run()
            if result.value is None:  # killed at the cap: its figures say so
                assert cap is not None, f"{name}: no result"
                return result
            found = result.value
            assert found["auc"] > 0.5, f"{name}: holdout AUC {found['auc']}, label learnable"
            assert found["trees"] == trees, f"{name}: {found['trees']} trees of {trees}"
            assert found["rows"] == splits, f"{name}: rows {found['rows']}, table's {splits}"
            return result

        return check

    names = [name for name in SIDES if name in args.only]
    sides = harness.side_by_side(
        {name: log.record(name, checked(name)) for name in names},
        rounds=args.rounds,
        warmup=args.warmup,
        label=Path(uri).name,
    )
    harness.note(sides.table())
    figures = {name: log.figures(sides, name, "auc", "trees") for name in names}
    auc = {name: found["auc"] for name, found in figures.items()}
    if auc.get("xgb") is not None and auc.get("native") is not None:
        gap = abs(auc["xgb"] - auc["native"])
        assert gap <= args.auc_tolerance, f"xgb AUC {auc['xgb']}, native {auc['native']}"
    result: dict[str, object] = dict(figures)
    for slower, faster in (
        ("xgb", "native"),
        ("xgb", "hgb"),
        ("xgb_one_hot", "xgb"),
        ("gbt", "xgb"),
        ("gbt", "xgb_more_trees"),
    ):
        if slower in names and faster in names:
            result[f"{slower} / {faster}"] = log.ratio(sides, slower, faster)
    return result


def main(argv: list[str] | None = None) -> dict[str, object]:
    parser = harness.arguments(__doc__)
    parser.add_argument("--rows", type=int, nargs="+", default=[1_000_000])
    parser.add_argument("--trees", type=int, default=100)
    parser.add_argument("--depth", type=int, default=5)
    parser.add_argument("--bins", type=int, default=32)
    parser.add_argument("--xgb-extra-trees", type=int, default=200)
    parser.add_argument("--only", nargs="*", default=None, choices=list(SIDES))
    parser.add_argument("--driver-memory", default="6g")
    parser.add_argument(
        "--memory-cap", default=None, help="e.g. 4g: every side capped, see the module's text"
    )
    parser.add_argument(
        "--auc-tolerance",
        type=float,
        default=0.01,
        help="the largest holdout AUC gap between xgb and native xgboost",
    )
    # smoke: a few thousand rows, enough trees for an AUC clearly above 0.5 (xgboost's
    # is 0.55 after 5 trees of depth 3, 0.62 after 20); the AUCs of 800 holdout rows
    # move more between the two xgboost fits
    args = harness.parse(
        parser,
        argv,
        rows=[4000],
        trees=20,
        depth=3,
        bins=16,
        xgb_extra_trees=30,
        auc_tolerance=0.03,
    )
    if args.only is None:
        args.only = SMOKE_SIDES if args.smoke else list(SIDES)
    own_folder = args.workdir is None
    args.work = harness.workdir(args, "boost").resolve()
    # smoke: the test session's shuffle partitions, which joining it would change
    partitions = 2 if args.smoke else 4
    settings = bench_settings(args.work, args.driver_memory, shuffle_partitions=partitions)
    try:
        with harness.session(settings) as spark:
            results: dict[str, Any] = {
                **harness.header(args),
                "spark": spark.version,
                "driver_memory": args.driver_memory,
                "memory_cap": args.memory_cap,
                "memory_cap_applies_to": cap_applies_to(args.memory_cap),
                "settings": {
                    "trees": args.trees,
                    "depth": args.depth,
                    "learning_rate": 0.1,
                    "bins": args.bins,
                    "xgb_extra_trees": args.xgb_extra_trees,
                },
            }
            for rows in args.rows:
                uri, splits = ensure_table(spark, args.work, rows)
                results[str(rows)] = compare(spark, settings, uri, splits, args)
    finally:
        if own_folder:
            shutil.rmtree(args.work, ignore_errors=True)
    fitted = [r for r in args.rows if (results[str(r)].get("xgb") or {}).get("median_s")]
    if len(fitted) > 1:  # the default booster's scaling, smallest to largest table
        small, large = min(fitted), max(fitted)
        ratio = results[str(large)]["xgb"]["median_s"] / results[str(small)]["xgb"]["median_s"]
        results[f"xgb {large} / {small} rows"] = round(ratio, 3)
    print(json.dumps(results, indent=2))
    return results


if __name__ == "__main__":
    main()
