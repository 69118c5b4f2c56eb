"""Logistic regression end to end: batchml's training job vs naive MLlib vs scikit-learn.

Synthetic Delta table (embedded backend): 20 numeric columns (5% nulls) and 3 skewed
categorical columns of 10 / 50 / 200 levels; the label is drawn from a logistic model of
all of them, so the best AUC is below 1 and the three fits can be compared on it. The
same 80/20 hash split for all three (batchml's `with_split`, written into the table as a
column for the other two). Each measures read -> fit pipeline -> score the holdout:
  (ours)    batchml.jobs.train.fit.fit: one-pass feature statistics (plus the training
            profile), assembled training data persisted, LogisticRegression, metrics
  (naive)   Imputer, VectorAssembler + StandardScaler, StringIndexer + OneHotEncoder,
            LogisticRegression as one MLlib Pipeline.fit on the training rows (no
            persist), then transform + BinaryClassificationEvaluator on the holdout
  (sklearn) deltalake -> pandas, ColumnTransformer(SimpleImputer + StandardScaler,
            OneHotEncoder) + LogisticRegression(lbfgs), in a child process whose peak
            RSS is measured; with --sklearn-memory-cap it runs under RLIMIT_AS
All three: no regularisation, at most --max-iter iterations, tolerance 1e-6.

    uv run python benchmarks/train_lr.py --workdir /tmp/bench_lr [--rows 1000000 4000000]
    uv run python benchmarks/train_lr.py --workdir /tmp/bench_lr --rows 10000000 \
        --skip naive --sklearn-memory-cap 8g
"""

from __future__ import annotations

import argparse
import json
import math
import multiprocessing
import platform
import resource
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from baselines import naive_pipeline
from pyspark.ml import Pipeline
from pyspark.ml.classification import LogisticRegression
from pyspark.ml.evaluation import BinaryClassificationEvaluator
from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from batchml.jobs.train import fit as train_fit
from batchml.jobs.train import plan as train_plan
from batchml.lib.delta.embedded import EmbeddedDelta
from batchml.lib.platform.config import load_config
from batchml.lib.platform.logs import configure_logging
from batchml.lib.platform.runtime import memory_bytes
from batchml.lib.platform.settings import FeaturePipelineSpec, ModelSpec
from batchml.lib.spark.session import build_session
from batchml.lib.training.splits import with_split

NUMERIC = [f"x{i}" for i in range(20)]
CATEGORICAL = {"c10": 10, "c50": 50, "c200": 200}
SPLIT = {"train": 0.8, "test": 0.2}
SEED = 7


def _uniform(seed: int) -> F.Column:
    """A uniform number in (0, 1) from a hash of the row id: deterministic, so using it
    twice in one query gives the same value (two `rand(seed)` calls need not)."""
    hashed = F.pmod(F.xxhash64(F.lit(seed), F.col("id")), F.lit(1 << 30)).cast("double")
    return (hashed + F.lit(0.5)) / F.lit(float(1 << 30))


def _normal(seed: int) -> F.Column:
    return F.sqrt(F.lit(-2.0) * F.log(_uniform(seed))) * F.cos(
        F.lit(2 * math.pi) * _uniform(seed + 7919)
    )


def bench_session(work: Path, driver_memory: str = "6g", conf: dict[str, str] | None = None):
    """The benchmarks' session: local[2], embedded Delta, 4 shuffle partitions, the
    lakehouse under `work`; `conf`: extra Spark settings. Returns (spark, settings)."""
    overrides = [
        'spark.master="local[2]"',
        'delta.backend="embedded"',
        "spark.shuffle_partitions=4",
        f"spark.driver_memory={driver_memory}",
        f'lakehouse.root="{work}"',
        *(f'spark.conf."{key}"="{value}"' for key, value in (conf or {}).items()),
    ]
    settings = load_config(overrides=overrides).settings
    configure_logging("WARNING")
    return build_session(settings), settings


def make_table(spark: SparkSession, uri: str, rows: int) -> None:
    df = spark.range(rows, numPartitions=max(2, rows // 500_000))
    columns = [F.col("id")]
    logit = F.lit(-0.5)
    for i, name in enumerate(NUMERIC):
        standard = _normal(100 + i)
        value = standard * (i + 1) + i * 10.0
        columns.append(F.when(_uniform(200 + i) < 0.05, None).otherwise(value).alias(name))
        weight = ((i % 7) - 3) * 0.15  # some features matter, some do not
        logit = logit + standard * weight
    for j, (name, levels) in enumerate(CATEGORICAL.items()):
        level = F.floor(F.pow(_uniform(300 + j), 3) * levels).cast("int")  # level 0 commonest
        columns.append(F.concat(F.lit(f"{name}_"), level.cast("string")).alias(name))
        logit = logit + F.sin(level.cast("double") * (j + 1.3)) * 0.6
    probability = F.lit(1.0) / (F.lit(1.0) + F.exp(-logit))
    columns.append((_uniform(400) < probability).cast("int").alias("label"))
    table = with_split(df.select(*columns), "id", SPLIT, seed=SEED, column="split")
    EmbeddedDelta(spark).write(table, uri, mode="overwrite")


def spec_for(uri: str) -> FeaturePipelineSpec:
    return FeaturePipelineSpec.model_validate(
        {
            "view": uri,
            "label": "label",
            "key": "id",
            "numeric": {c: {"impute": "mean", "scale": True} for c in NUMERIC},
            "categorical": {c: {} for c in CATEGORICAL},
        }
    )


def run_ours(spark, settings, uri: str, max_iter: int, persist: bool | None = None) -> dict:
    model = ModelSpec(
        pipeline="bench",
        algorithm="logistic_regression",
        split=SPLIT,
        seed=SEED,
        params={"maxIter": max_iter, "regParam": 0.0, "tol": 1e-6},
        persist=persist,
    )
    plan = train_plan.TrainPlan("bench_lr", model, "bench", spec_for(uri), uri, None)
    started = time.perf_counter()
    trained = train_fit.fit(spark, settings, plan)
    seconds = time.perf_counter() - started
    return {
        "seconds": round(seconds, 2),
        "auc": trained.metrics["test"]["areaUnderROC"],
        "iterations": trained.fitted.stages[-1].summary.totalIterations,
    }


def run_naive(spark, uri: str, max_iter: int) -> dict:
    started = time.perf_counter()
    df = EmbeddedDelta(spark).read(uri).df
    stages = naive_pipeline(spec_for(uri)).getStages()
    lr = LogisticRegression(
        featuresCol="features", labelCol="label", maxIter=max_iter, regParam=0.0, tol=1e-6
    )
    model = Pipeline(stages=[*stages, lr]).fit(df.filter("split = 'train'"))
    scored = model.transform(df.filter("split = 'test'"))
    auc = BinaryClassificationEvaluator(labelCol="label").evaluate(scored)
    return {
        "seconds": round(time.perf_counter() - started, 2),
        "auc": auc,
        "iterations": model.stages[-1].summary.totalIterations,
    }


def sklearn_child(uri: str, max_iter: int, cap: int | None, out) -> None:
    if cap:
        resource.setrlimit(resource.RLIMIT_AS, (cap, cap))
    try:
        from deltalake import DeltaTable
        from sklearn.compose import ColumnTransformer
        from sklearn.impute import SimpleImputer
        from sklearn.linear_model import LogisticRegression as SkLogistic
        from sklearn.metrics import roc_auc_score
        from sklearn.pipeline import make_pipeline
        from sklearn.preprocessing import OneHotEncoder, StandardScaler

        started = time.perf_counter()
        frame = DeltaTable(uri).to_pandas()
        read = time.perf_counter() - started
        training, holdout = frame[frame["split"] == "train"], frame[frame["split"] == "test"]
        model = make_pipeline(
            ColumnTransformer(
                [
                    (
                        "num",
                        make_pipeline(SimpleImputer(strategy="mean"), StandardScaler()),
                        NUMERIC,
                    ),
                    ("cat", OneHotEncoder(handle_unknown="ignore"), list(CATEGORICAL)),
                ]
            ),
            SkLogistic(solver="lbfgs", penalty=None, max_iter=max_iter, tol=1e-6),
        )
        model.fit(training, training["label"])
        auc = roc_auc_score(holdout["label"], model.predict_proba(holdout)[:, 1])
        out.put(
            {
                "seconds": round(time.perf_counter() - started, 2),
                "read_seconds": round(read, 2),
                "auc": auc,
                "iterations": int(model[-1].n_iter_[0]),
                "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
            }
        )
    except MemoryError:
        out.put(
            {
                "failed": "MemoryError",
                "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
            }
        )


def run_sklearn(uri: str, max_iter: int, cap: int | None) -> dict:
    context = multiprocessing.get_context("spawn")  # no fork after deltalake / the JVM
    queue = context.Queue()
    child = context.Process(target=sklearn_child, args=(uri, max_iter, cap, queue))
    child.start()
    child.join()
    if not queue.empty():
        return queue.get()
    return {"failed": f"exit code {child.exitcode}"}


def jvm_peak_rss_mb(spark: SparkSession) -> float | None:
    pid = spark.sparkContext._jvm.java.lang.ProcessHandle.current().pid()
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return round(int(line.split()[1]) / 1024)
    return None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, nargs="+", default=[1_000_000, 4_000_000])
    parser.add_argument("--max-iter", type=int, default=100)
    parser.add_argument("--workdir", type=Path, default=None)
    parser.add_argument("--driver-memory", default="6g")
    parser.add_argument("--skip", nargs="*", default=[], choices=["ours", "naive", "sklearn"])
    parser.add_argument(
        "--persist-off",
        action="store_true",
        help="also run ours without persisting the assembled training data",
    )
    parser.add_argument("--sklearn-memory-cap", default=None, help="e.g. 8g (RLIMIT_AS)")
    args = parser.parse_args()
    work = (args.workdir or Path(tempfile.mkdtemp(prefix="batchml-lr-bench-"))).resolve()
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
    cap = memory_bytes(args.sklearn_memory_cap) if args.sklearn_memory_cap else None
    report: dict[str, object] = {}
    for rows in args.rows:
        uri = str(work / f"lr_{rows}")
        if not Path(uri).exists():
            make_table(spark, uri, rows)
        run_ours(spark, cfg.settings, str(work / f"lr_{args.rows[0]}"), 5)  # warm-up
        result: dict[str, object] = {}
        if "ours" not in args.skip:
            result["ours"] = run_ours(spark, cfg.settings, uri, args.max_iter)
        if args.persist_off:
            result["ours_no_persist"] = run_ours(spark, cfg.settings, uri, args.max_iter, False)
        if "naive" not in args.skip:
            result["naive"] = run_naive(spark, uri, args.max_iter)
        if "sklearn" not in args.skip:
            result["sklearn"] = run_sklearn(uri, args.max_iter, cap)
        ours = result.get("ours", {}).get("seconds")
        for other in ("naive", "sklearn", "ours_no_persist"):
            theirs = result.get(other, {}).get("seconds")
            if ours and theirs:
                result[f"{other} / ours"] = round(theirs / ours, 2)
                result[f"auc gap vs {other}"] = round(
                    abs(result["ours"]["auc"] - result[other]["auc"]), 4
                )
        report[str(rows)] = result
        print(json.dumps({str(rows): result}), flush=True)
    print(
        json.dumps(
            {
                "date": datetime.now(UTC).isoformat(timespec="seconds"),
                "machine": f"{platform.machine()}, {spark.sparkContext.defaultParallelism} cores "
                f"(local[2]), Python {platform.python_version()}, Spark {spark.version}",
                "driver_memory": args.driver_memory,
                "sklearn_memory_cap": args.sklearn_memory_cap,
                "spark_jvm_peak_rss_mb": jvm_peak_rss_mb(spark),
                "results": report,
            },
            indent=2,
        )
    )
    spark.stop()


if __name__ == "__main__":
    main()
