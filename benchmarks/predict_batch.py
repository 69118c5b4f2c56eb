"""Batch scoring end to end (read Delta -> transform -> write), batchml's predict job vs
the alternatives, in one run, in rows per second.

Data: the logistic regression benchmark's synthetic table (`train_lr.make_table`: 20
numeric columns with nulls, 3 skewed categorical columns). A model is trained and
registered on a 200,000-row sample; the input table to score has --rows rows.
  (ours)        `batchml predict` (jobs.predict.run, --full): key, prediction,
                probability and lineage columns into a Delta table; the LR model runs
                as one SQL expression (lib/scoring/linear.py)
  (ours, parquet) the same columns written as plain Parquet: Delta's share of the time
  (a) naive     PipelineModel.transform(df).write.parquet with every column (vectors too)
  (b) pandas    scikit-learn (the same pipeline shape) predict_proba over the rows read
                in chunks with pyarrow, in a child process whose peak RSS is measured
  (c) mapInPandas the same scikit-learn model inside Spark, written as Parquet
xgboost (the training benchmark's booster: 100 trees of depth 5, trained on the sample):
  (ours)        `batchml predict --full`: feature stages in the JVM, the booster on
                Arrow batches (lib/scoring/booster.py), into Delta
  (xgb.spark)   the pipeline's own transform (xgboost.spark's pandas UDF), the same
                columns written as Parquet
Memory: `batchml predict` in a child process with a 1 GB driver, on --rows and on
4 x --rows: peak RSS of the driver JVM and of Python.
Incremental: the input grown by one "month" (1/12 of --rows) after a scored version, vs
a full rescore of the whole year.

    uv run python benchmarks/predict_batch.py --workdir /tmp/bench_predict [--rows 4000000]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import platform
import shutil
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from train_lr import CATEGORICAL, NUMERIC, make_table

from batchml.jobs import predict
from batchml.jobs.train import job as train_job
from batchml.lib.delta.embedded import EmbeddedDelta
from batchml.lib.platform.config import load_config
from batchml.lib.platform.logs import configure_logging
from batchml.lib.scoring.model import score_with, scored_columns
from batchml.lib.spark.session import build_session
from batchml.lib.tracking.registry import registry_of

CONF = """
[pipelines.bench]
view = "train_sample"
label = "label"
key = "id"
[pipelines.bench.numeric]
{numeric}
[pipelines.bench.categorical]
{categorical}

[models.bench_lr]
pipeline = "bench"
algorithm = "logistic_regression"
split = {{ train = 0.8, test = 0.2 }}
params = {{ maxIter = 50, regParam = 0.0, tol = 1e-6 }}

[models.bench_xgb]
pipeline = "bench"
algorithm = "xgboost_classifier"
split = {{ train = 0.8, test = 0.2 }}
params = {{ n_estimators = 100, max_depth = 5, learning_rate = 0.1, max_bin = 32 }}

[predictions.bench_lr]
model = "bench_lr"
input = "score_input"
output = "scores"

[predictions.bench_xgb]
model = "bench_xgb"
input = "score_input"
output = "scores_xgb"
"""


def write_conf(work: Path) -> Path:
    conf = work / "bench.toml"
    conf.write_text(
        CONF.format(
            numeric="\n".join(f'{c} = {{ impute = "mean" }}' for c in NUMERIC),
            categorical="\n".join(f"{c} = {{}}" for c in CATEGORICAL),
        )
    )
    return conf


def settings_for(work: Path, driver_memory: str = "6g"):
    return load_config(
        conf_file=write_conf(work),
        overrides=[
            'spark.master="local[2]"',
            'delta.backend="embedded"',
            f'spark.driver_memory="{driver_memory}"',
            f'lakehouse.root="{work}"',
        ],
        environ={},
    ).settings


def peak_rss_mb() -> float:
    """This process's peak RSS (VmHWM: ru_maxrss would carry the parent's peak over a
    spawn, which forks before it execs)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def timed(action) -> float:
    started = time.perf_counter()
    action()
    return time.perf_counter() - started


def sklearn_model(uri: str):
    """scikit-learn's version of the pipeline, fitted on the training sample."""
    from deltalake import DeltaTable
    from sklearn.compose import ColumnTransformer
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    frame = DeltaTable(uri).to_pandas(columns=[*NUMERIC, *CATEGORICAL, "label"])
    model = make_pipeline(
        ColumnTransformer(
            [
                ("num", make_pipeline(SimpleImputer(strategy="mean"), StandardScaler()), NUMERIC),
                ("cat", OneHotEncoder(handle_unknown="ignore"), list(CATEGORICAL)),
            ]
        ),
        LogisticRegression(solver="lbfgs", penalty=None, max_iter=50, tol=1e-6),
    )
    return model.fit(frame, frame["label"])


def pandas_child(sample_uri: str, uri: str, out_dir: str, queue) -> None:
    """(b): chunks of rows through pyarrow -> pandas -> predict_proba -> Parquet."""
    import pyarrow as pa
    import pyarrow.dataset as ds
    import pyarrow.parquet as pq
    from deltalake import DeltaTable

    model = sklearn_model(sample_uri)
    started = time.perf_counter()
    dataset = ds.dataset(DeltaTable(uri).file_uris(), format="parquet")
    rows = 0
    with pq.ParquetWriter(
        f"{out_dir}/part-0.parquet", pa.schema([("id", pa.int64()), ("probability", pa.float64())])
    ) as writer:
        for batch in dataset.to_batches(columns=["id", *NUMERIC, *CATEGORICAL], batch_size=500_000):
            frame = batch.to_pandas()
            probability = model.predict_proba(frame)[:, 1]
            writer.write_table(pa.table({"id": frame["id"], "probability": probability}))
            rows += len(frame)
    queue.put(
        {
            "seconds": time.perf_counter() - started,
            "rows": rows,
            "peak_rss_mb": peak_rss_mb(),
        }
    )


def predict_child(work: str, input_name: str, output: str, queue) -> None:
    """`batchml predict` in a process of its own, with a 1 GB driver: its peak memory."""
    from train_lr import jvm_peak_rss_mb

    settings = settings_for(Path(work), driver_memory="1g")
    configure_logging("WARNING")
    spark = build_session(settings)
    started = time.perf_counter()
    report = predict.run(
        spark,
        settings,
        predict.PredictRequest("bench_lr", input=input_name, output=output, full=True),
    )
    queue.put(
        {
            "seconds": time.perf_counter() - started,
            "rows": report.rows_scored,
            "python_peak_rss_mb": peak_rss_mb(),
            "jvm_peak_rss_mb": jvm_peak_rss_mb(spark),
        }
    )
    spark.stop()


def in_child(target, *args) -> dict:
    context = multiprocessing.get_context("spawn")  # no fork after deltalake / the JVM
    queue = context.Queue()
    child = context.Process(target=target, args=(*args, queue))
    child.start()
    result = queue.get()
    child.join()
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=4_000_000)
    parser.add_argument("--workdir", type=Path, default=None)
    args = parser.parse_args()
    work = args.workdir or Path(tempfile.mkdtemp(prefix="batchml-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    settings = settings_for(work)
    configure_logging("WARNING")
    spark = build_session(settings)
    tables = EmbeddedDelta(spark)
    sample, source = str(work / "train_sample"), str(work / "score_input")
    big = str(work / "score_input_x4")
    if not Path(sample).exists():
        make_table(spark, sample, 200_000)
    if Path(source).exists() and tables.version(source) != 0:
        shutil.rmtree(source)  # grown by a month in an earlier run
        shutil.rmtree(work / "scores", ignore_errors=True)
    if not Path(source).exists():
        make_table(spark, source, args.rows)
    if not registry_of(settings).list("bench_lr"):
        train_job.run(spark, settings, "bench_lr")
    fitted = registry_of(settings).load("bench_lr")
    rows = args.rows
    seconds: dict[str, float] = {}

    def ours() -> None:
        request = predict.PredictRequest("bench_lr", full=True)
        assert predict.run(spark, settings, request).rows_scored == rows

    # Warm-up: the first scoring in a JVM pays class loading and JIT compilation (it
    # took 1.6x the second here), which would go to whichever run comes first.
    predict.run(
        spark,
        settings,
        predict.PredictRequest("bench_lr", input="train_sample", output="warm_up", full=True),
    )

    registry = registry_of(settings, tables)
    version = registry.get("bench_lr")

    def ours_parquet() -> None:
        read = tables.read(source)
        lineage = {"model_name": "bench_lr", "model_version": 1, "input_version": read.version}
        scored, classes, _ = score_with(registry, version, read.df, ["id"])
        out = scored_columns(scored, classes, ["id"], lineage)
        out.write.mode("overwrite").parquet(str(work / "out_ours_parquet"))

    # Delta vs plain Parquet is a small difference between two long runs: each twice,
    # interleaved, the better of the two
    for _ in range(2):
        for name, action in (("ours_delta", ours), ("ours_parquet", ours_parquet)):
            spent = timed(action)
            seconds[name] = min(seconds.get(name, spent), spent)

    def naive() -> None:
        scored = fitted.transform(tables.read(source).df)
        scored.write.mode("overwrite").parquet(str(work / "out_naive"))

    seconds["a_naive"] = timed(naive)

    model = sklearn_model(sample)

    def map_in_pandas() -> None:
        def score(batches):
            import pandas as pd

            for frame in batches:
                yield pd.DataFrame(
                    {"id": frame["id"], "probability": model.predict_proba(frame)[:, 1]}
                )

        df = tables.read(source).df.select("id", *NUMERIC, *CATEGORICAL)
        scored = df.mapInPandas(score, "id long, probability double")
        scored.write.mode("overwrite").parquet(str(work / "out_map_in_pandas"))

    seconds["c_map_in_pandas"] = timed(map_in_pandas)
    pandas_dir = work / "out_pandas"
    shutil.rmtree(pandas_dir, ignore_errors=True)
    pandas_dir.mkdir()
    pandas = in_child(pandas_child, sample, source, str(pandas_dir))
    seconds["b_pandas_chunks"] = pandas["seconds"]

    if not registry.list("bench_xgb"):
        train_job.run(spark, settings, "bench_xgb")
    boosted = registry.load("bench_xgb")

    def xgb_ours() -> None:
        request = predict.PredictRequest("bench_xgb", full=True)
        report = predict.run(spark, settings, request)
        assert (report.rows_scored, report.scorer) == (rows, "arrow")

    seconds["xgb_ours_delta"] = timed(xgb_ours)

    def xgb_spark() -> None:
        from pyspark.ml.functions import vector_to_array

        scored = boosted.transform(tables.read(source).df).select(
            "id", "prediction", vector_to_array("probability")[1].alias("probability")
        )
        scored.write.mode("overwrite").parquet(str(work / "out_xgb_spark"))

    seconds["xgb_spark_transform"] = timed(xgb_spark)

    # incremental: one more "month" after the scored version, then the whole year again
    grown = make_month(spark, source, rows, rows // 12)
    seconds["incremental_one_month"] = timed(
        lambda: predict.run(spark, settings, predict.PredictRequest("bench_lr"))
    )
    seconds["full_rescore_year"] = timed(
        lambda: predict.run(spark, settings, predict.PredictRequest("bench_lr", full=True))
    )
    spark.stop()

    if not Path(big).exists():
        spark = build_session(settings)
        make_table(spark, big, 4 * rows)
        spark.stop()
    memory = {
        "rows": in_child(predict_child, str(work), "score_input", "mem_scores"),
        "rows_x4": in_child(predict_child, str(work), "score_input_x4", "mem_scores_x4"),
    }

    per_second = {k: rows / v for k, v in seconds.items() if not k.startswith(("incr", "full"))}
    total = {
        k: memory[k]["python_peak_rss_mb"] + (memory[k]["jvm_peak_rss_mb"] or 0) for k in memory
    }
    report = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": f"{platform.machine()}, 2 cores (local[2]), Python {platform.python_version()}",
        "rows": rows,
        "rows_added_by_the_month": grown,
        "seconds": {k: round(v, 2) for k, v in seconds.items()},
        "million_rows_per_second": {k: round(v / 1e6, 3) for k, v in per_second.items()},
        "pandas_child_peak_rss_mb": round(pandas["peak_rss_mb"]),
        "memory_1g_driver": memory,
        "ratios": {
            "ours / (a) naive, speed": round(seconds["a_naive"] / seconds["ours_delta"], 2),
            "xgboost: ours / xgboost.spark transform, speed": round(
                seconds["xgb_spark_transform"] / seconds["xgb_ours_delta"], 2
            ),
            "ours / (c) mapInPandas, speed": round(
                seconds["c_map_in_pandas"] / seconds["ours_delta"], 2
            ),
            "ours time / (b) pandas time": round(
                seconds["ours_delta"] / seconds["b_pandas_chunks"], 2
            ),
            "Delta output / plain Parquet": round(
                seconds["ours_delta"] / seconds["ours_parquet"], 2
            ),
            "peak RSS 4x rows / rows": round(total["rows_x4"] / total["rows"], 2),
            "incremental month / full year": round(
                seconds["incremental_one_month"] / seconds["full_rescore_year"], 3
            ),
        },
    }
    print(json.dumps(report, indent=2))


def make_month(spark, uri: str, start: int, count: int) -> int:
    """Append `count` new rows (ids from `start`) to the input: one more month."""
    from pyspark.sql import functions as F

    scratch = f"{uri}_month"
    make_table(spark, scratch, count)
    month = EmbeddedDelta(spark).read(scratch).df.withColumn("id", F.col("id") + start)
    EmbeddedDelta(spark).write(month, uri)
    return count


if __name__ == "__main__":
    main()
