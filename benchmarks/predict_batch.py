"""Batch scoring end to end (read Delta -> score -> write), batchml's predict job vs
the alternatives, in one run, in rows per second.

Data: the logistic regression benchmark's synthetic table (`train_lr.make_table`: 20
numeric columns with nulls, 3 skewed categorical columns). A model is trained and
registered on a --sample-rows sample; the input table to score has --rows rows.

Every side writes the same columns: the key `id`, `prediction`, class 1's `probability`
and the six lineage columns `batchml predict` writes (model_name, model_version,
input_table, input_version, run_id, scored_at; constants on the other sides). Every
side's timed window is: model from the registry (or, for scikit-learn, from its pickle)
-> read the input -> score every row -> write the output into an empty location (the
last run's output is removed before each run, untimed). Not in any window: the JVM's
or a child's start and imports, training.
  (ours)        `batchml predict --full` (jobs.predict.run) into a Delta table
                partitioned by model_name; it also counts the key (lib/features/keys)
                and checks the input's schema; the LR model runs as one SQL expression
                (lib/scoring/linear.py)
  (ours, parquet) the same scoring (score_with + scored_columns) written as plain
                Parquet: no key count, no checks, no commit: Delta's and the job's share
  (a) naive     PipelineModel.transform(df), the same columns selected, Parquet
  (b) pandas    scikit-learn (the same pipeline shape, fitted on batchml's training
                split of the sample) predict_proba over the rows read in chunks of
                500,000 with pyarrow, Parquet, in a child process (no cap; its process
                tree's peak RSS is reported; its clock starts after its imports)
  (c) mapInPandas the same scikit-learn model inside Spark, Parquet
xgboost (the training benchmark's booster: --trees trees of depth 5):
  (ours)        `batchml predict --full`: feature stages in the JVM, the booster on
                Arrow batches (lib/scoring/booster.py), into Delta
  (xgb.spark)   the pipeline's own transform (xgboost.spark's pandas UDF), the same
                columns written as Parquet
Incremental: the input grown by one "month" (1/12 of --rows) after a scored version:
scoring only the month's files vs a full rescore of the grown input; before every run
of either, the predictions table is restored to its state after scoring the year.
Memory (not with --smoke or --skip-memory): `batchml predict` in a child process with a
1 GB driver, on --rows and on 4 x --rows: peak RSS of the driver JVM, of Python and of
the child's process tree. Each round is a fresh process: no warm-up.

Method: every comparison in one run through harness.side_by_side: the same warm-up per
side (--warmup, default 1, discarded), the same --rounds (default 3) with the order of
the sides rotated each round, every round printed, the median reported; ratios are
medians of the same run. No memory cap on any side. (Before: batchml's best of two
runs against each alternative's single run, and the naive side wrote every column.)
Checks at every size: every round, each side wrote --rows rows with the same columns,
the incremental run scored the month only and the rescore every row; on the last
round's outputs, batchml's probabilities equal MLlib's and the two scikit-learn sides'
equal each other (1e-9), scikit-learn's ROC AUC is within 0.02 of batchml's, the
xgboost sides' probabilities equal (1e-6). --smoke runs the LR
comparison and its checks only (xgboost, incremental and memory cost more than all of
it; --skip-xgboost, --skip-incremental, --skip-memory do the same at any size).

    uv run python benchmarks/predict_batch.py --workdir /tmp/bench_predict [--rows 4000000]
    uv run python benchmarks/predict_batch.py --smoke   # seconds: checks the work only
"""

from __future__ import annotations

import importlib
import json
import pickle
import shutil
import statistics
import time
import warnings
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import harness
from pyspark.sql import functions as F
from train_lr import CATEGORICAL, NUMERIC, make_table

from batchml.jobs import predict
from batchml.jobs.train import job as train_job
from batchml.lib.delta import delta_tables
from batchml.lib.platform.config import load_config
from batchml.lib.platform.logs import configure_logging
from batchml.lib.scoring.model import score_with, scored_columns
from batchml.lib.tracking.registry import registry_of
from batchml.lib.training.splits import with_split

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
params = {{ maxIter = {iterations}, regParam = 0.0, tol = 1e-6 }}
# the test split's report (plots, bootstrap) is not what this benchmark measures
evaluation = {{ report = false }}

[models.bench_xgb]
pipeline = "bench"
algorithm = "xgboost_classifier"
split = {{ train = 0.8, test = 0.2 }}
params = {{ n_estimators = {trees}, max_depth = 5, learning_rate = 0.1, max_bin = 32 }}
evaluation = {{ report = false }}

[predictions.bench_lr]
model = "bench_lr"
input = "score_input"
output = "scores"

[predictions.bench_xgb]
model = "bench_xgb"
input = "score_input"
output = "scores_xgb"
"""

# what every side writes: predict's columns for a binary model keyed by `id`
OUTPUT_COLUMNS = ["id", "prediction", "probability", *predict.LINEAGE]
CHUNK_ROWS = 500_000
SKLEARN_MODULES = ("sklearn.compose", "sklearn.impute", "sklearn.linear_model",
                   "sklearn.pipeline", "sklearn.preprocessing")  # fmt: skip
# batchml's SQL scorer computes what the MLlib stages compute, in another order of
# operations; the two scikit-learn sides run one model on the same rows
SAME_SCORES = 1e-9
# scikit-learn's model is fitted apart (the same rows, its own solver): its
# probabilities are not MLlib's; their ROC AUC on the scored rows' labels is this close
CLOSE_AUC = 0.02


def write_conf(work: Path, trees: int = 100, iterations: int = 50) -> Path:
    conf = work / "bench.toml"
    conf.write_text(
        CONF.format(
            numeric="\n".join(f'{c} = {{ impute = "mean" }}' for c in NUMERIC),
            categorical="\n".join(f"{c} = {{}}" for c in CATEGORICAL),
            trees=trees,
            iterations=iterations,
        )
    )
    return conf


def settings_for(work: Path, driver_memory: str = "6g", trees: int = 100, iterations: int = 50):
    return load_config(
        conf_file=write_conf(work, trees, iterations),
        overrides=[
            'spark.master="local[2]"',
            'delta.backend="embedded"',
            f'spark.driver_memory="{driver_memory}"',
            f'lakehouse.root="{work}"',
            "runs.record=false",
        ],
        environ={},
    ).settings


def ensure_table(spark, tables, uri: str, rows: int) -> bool:
    """The synthetic table of `rows` rows at `uri` (one of an earlier run is kept when
    it has that many rows, at version 0); True when it was (re)written."""
    if Path(uri, "_delta_log").exists():
        read = tables.read(uri)
        if read.version == 0 and read.rows == rows:
            return False
        shutil.rmtree(uri)
    make_table(spark, uri, rows)
    return True


def prepare(spark, settings, work: Path, rows: int, sample_rows: int, models: tuple[str, ...]):
    """The training sample, the input to score and the registered `models` (trained on
    the sample unless an earlier run registered them from this sample, with these
    parameters). Returns the registry."""
    tables = delta_tables(spark, settings)
    resampled = ensure_table(spark, tables, str(work / "train_sample"), sample_rows)
    ensure_table(spark, tables, str(work / "score_input"), rows)
    registry = registry_of(settings, tables)
    for name in models:
        wanted = settings.models[name].params
        versions = registry.list(name)
        current = versions[-1].manifest.get("params", {}) if versions else None
        if resampled or current is None or any(current.get(k) != v for k, v in wanted.items()):
            train_job.run(spark, settings, name)
    return registry


def lineage_of(version, input_version: int) -> dict[str, Any]:
    """The lineage columns' values for the sides that are not the predict job."""
    return {
        "model_name": version.name,
        "model_version": version.version,
        "input_table": "score_input",
        "input_version": input_version,
        "run_id": "benchmark",
        "scored_at": datetime.now(UTC).replace(microsecond=0),
    }


def lineage_columns(lineage: dict[str, Any]) -> list:
    return [F.lit(value).alias(name) for name, value in lineage.items()]


def parquet_output(path: Path) -> tuple[int, list[str]]:
    """Rows (from the files' footers) and columns of a Parquet folder."""
    import pyarrow.dataset as ds

    dataset = ds.dataset(str(path), format="parquet")
    return dataset.count_rows(), dataset.schema.names


def check_parquet(path: Path, rows: int, side: str) -> None:
    written, columns = parquet_output(path)
    assert written == rows, f"{side} wrote {written} rows, not {rows}"
    assert columns == OUTPUT_COLUMNS, f"{side} wrote {columns}, not {OUTPUT_COLUMNS}"


def sklearn_model(frame, iterations: int):
    """scikit-learn's version of the pipeline, fitted on `frame` (pandas)."""
    import numpy as np
    from sklearn.compose import ColumnTransformer
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    model = make_pipeline(
        ColumnTransformer(
            [
                ("num", make_pipeline(SimpleImputer(strategy="mean"), StandardScaler()), NUMERIC),
                ("cat", OneHotEncoder(handle_unknown="ignore"), list(CATEGORICAL)),
            ]
        ),
        # C=inf: no penalty, as MLlib's regParam = 0
        LogisticRegression(solver="lbfgs", C=np.inf, max_iter=iterations, tol=1e-6),
    )
    with warnings.catch_warnings():
        # as many iterations as MLlib's maxIter: whether either converged is not the point
        warnings.simplefilter("ignore", ConvergenceWarning)
        return model.fit(frame, frame["label"])


def sklearn_scores(model, frame) -> dict[str, Any]:
    """id, prediction (probability above 0.5, as MLlib's threshold) and probability."""
    probability = model.predict_proba(frame)[:, 1]
    return {"id": frame["id"], "prediction": (probability > 0.5).astype("float64"),
            "probability": probability}  # fmt: skip


def pandas_child(model_path: str, uri: str, out_dir: str, lineage: dict) -> harness.Timed:
    """(b), in a child process: its clock starts after its imports."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.dataset as ds
    import pyarrow.parquet as pq
    from deltalake import DeltaTable

    # what unpickling the model imports, imported before the clock starts
    for module in SKLEARN_MODULES:
        importlib.import_module(module)
    started = time.perf_counter()
    with open(model_path, "rb") as handle:
        model = pickle.load(handle)
    dataset = ds.dataset(DeltaTable(uri).file_uris(), format="parquet")
    # the lineage columns: one value repeated, filled by numpy (no Python list of rows)
    scored_at = np.datetime64(lineage["scored_at"].replace(tzinfo=None), "us")
    values = {**lineage, "scored_at": scored_at}
    constants = {
        "model_name": pa.string(),
        "model_version": pa.int32(),
        "input_table": pa.string(),
        "input_version": pa.int32(),
        "run_id": pa.string(),
        "scored_at": pa.timestamp("us", tz="UTC"),
    }
    rows, writer = 0, None
    for batch in dataset.to_batches(columns=["id", *NUMERIC, *CATEGORICAL], batch_size=CHUNK_ROWS):
        frame = batch.to_pandas()
        scores = sklearn_scores(model, frame)
        columns = {name: pa.array(column) for name, column in scores.items()}
        for name, kind in constants.items():
            columns[name] = pa.array(np.full(len(frame), values[name]), type=kind)
        table = pa.table(columns)
        if writer is None:
            writer = pq.ParquetWriter(f"{out_dir}/part-0.parquet", table.schema)
        writer.write_table(table)
        rows += len(frame)
    assert writer is not None, f"{uri} has no rows"
    writer.close()
    return harness.Timed(time.perf_counter() - started, rows)


def predict_child(
    work: str, input_name: str, output: str, trees: int, iterations: int
) -> harness.Timed:
    """`batchml predict` in a process of its own with a 1 GB driver: its peak memory."""
    settings = settings_for(Path(work), "1g", trees, iterations)
    configure_logging("WARNING")
    with harness.session(settings) as spark:
        started = time.perf_counter()
        report = predict.run(
            spark,
            settings,
            predict.PredictRequest("bench_lr", input=input_name, output=output, full=True),
        )
        seconds = time.perf_counter() - started
        jvm = spark.sparkContext._jvm.java.lang.ProcessHandle.current().pid()
        figures = {
            "rows": report.rows_scored,
            "python_peak_rss_mb": peak_rss_mb("self"),
            "jvm_peak_rss_mb": peak_rss_mb(str(jvm)),
        }
    return harness.Timed(seconds, figures)


def peak_rss_mb(pid: str) -> int:
    """A process's peak RSS (VmHWM: ru_maxrss would carry the parent's peak over a
    spawn, which forks before it execs)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return round(int(line.split()[1]) / 1024)
    raise RuntimeError(f"no VmHWM for process {pid}")


def make_month(spark, tables, uri: str, start: int, count: int) -> int:
    """Append `count` new rows (ids from `start`) to the input: one more month."""
    scratch = f"{uri}_month"
    make_table(spark, scratch, count)
    month = tables.read(scratch).df.withColumn("id", F.col("id") + start)
    tables.write(month, uri)
    shutil.rmtree(scratch)
    return count


class Scoring:
    """The sides of the scoring comparisons, over one session and work folder."""

    def __init__(self, spark, settings, work: Path, rows: int) -> None:
        self.spark, self.settings, self.work, self.rows = spark, settings, work, rows
        self.tables = delta_tables(spark, settings)
        self.registry = registry_of(settings, self.tables)
        self.source = str(work / "score_input")
        self.model_path = work / "sklearn_lr.pkl"

    def output(self, side: str) -> Path:
        return self.work / f"out_{side}"

    def clear(self, side: str) -> None:
        """Before each run, untimed: every side writes into an empty location."""
        shutil.rmtree(self.output(side), ignore_errors=True)

    def predict(self, side: str, model: str, scorer: str) -> harness.Timed:
        request = predict.PredictRequest(model, output=self.output(side).name, full=True)
        started = time.perf_counter()
        report = predict.run(self.spark, self.settings, request)
        seconds = time.perf_counter() - started
        assert report.mode == "full" and report.rows_scored == self.rows, report.message
        assert report.scorer == scorer, (report.scorer, scorer)
        assert report.columns == OUTPUT_COLUMNS, report.columns
        return harness.Timed(seconds, report.scorer)

    def lr_parquet(self, side: str) -> harness.Timed:
        """batchml's scoring and columns, as plain Parquet."""
        started = time.perf_counter()
        read = self.tables.read(self.source)
        version = self.registry.get("bench_lr")
        scored, classes, scorer = score_with(self.registry, version, read.df, ["id"])
        out = scored_columns(scored, classes, ["id"], lineage_of(version, read.version))
        out.write.parquet(str(self.output(side)))
        seconds = time.perf_counter() - started
        assert scorer == "sql", scorer
        check_parquet(self.output(side), self.rows, side)
        return harness.Timed(seconds, scorer)

    def pipeline_parquet(self, side: str, model: str) -> harness.Timed:
        """The registered pipeline's own transform (MLlib's stages; xgboost.spark's
        pandas UDF), the same columns selected, as Parquet."""
        from pyspark.ml.functions import vector_to_array

        started = time.perf_counter()
        read = self.tables.read(self.source)
        version = self.registry.get(model)
        fitted = self.registry.load(version)
        scored = fitted.transform(read.df).select(
            "id",
            F.col("prediction").cast("double").alias("prediction"),
            vector_to_array("probability")[1].alias("probability"),
            *lineage_columns(lineage_of(version, read.version)),
        )
        scored.write.parquet(str(self.output(side)))
        seconds = time.perf_counter() - started
        check_parquet(self.output(side), self.rows, side)
        return harness.Timed(seconds, "transform")

    def map_in_pandas(self, side: str) -> harness.Timed:
        """(c): the scikit-learn model in Spark's Python workers."""
        import pandas as pd

        started = time.perf_counter()
        with open(self.model_path, "rb") as handle:
            model = pickle.load(handle)

        def score(batches):
            # sklearn_scores written out: Spark's Python workers cannot import this
            # script's module (pickled by reference) when it is not __main__
            for frame in batches:
                probability = model.predict_proba(frame)[:, 1]
                yield pd.DataFrame(
                    {
                        "id": frame["id"],
                        "prediction": (probability > 0.5).astype("float64"),
                        "probability": probability,
                    }
                )

        read = self.tables.read(self.source)
        frame = read.df.select("id", *NUMERIC, *CATEGORICAL)
        scored = frame.mapInPandas(score, "id long, prediction double, probability double")
        lineage = lineage_of(self.registry.get("bench_lr"), read.version)
        scored.select("*", *lineage_columns(lineage)).write.parquet(str(self.output(side)))
        seconds = time.perf_counter() - started
        check_parquet(self.output(side), self.rows, side)
        return harness.Timed(seconds, "mapInPandas")

    def pandas(self, side: str, memory: list[dict]) -> harness.Timed:
        """(b) in a child process; its tree's peak memory kept in `memory`."""
        out = self.output(side)
        out.mkdir()
        lineage = lineage_of(self.registry.get("bench_lr"), self.tables.read(self.source).version)
        timed = harness.in_child(pandas_child, str(self.model_path), self.source, str(out), lineage)
        assert timed.value == self.rows, (timed.value, self.rows)
        check_parquet(out, self.rows, side)
        memory.append(timed.memory)
        return timed

    def read_output(self, side: str):
        path = self.output(side)
        if (path / "_delta_log").exists():
            return self.tables.read(str(path)).df
        return self.spark.read.parquet(str(path))

    def auc(self, side: str) -> float:
        """ROC AUC of a side's probabilities against the input's labels."""
        from pyspark.ml.evaluation import BinaryClassificationEvaluator

        labels = self.tables.read(self.source).df.select("id", "label")
        scored = self.read_output(side).select("id", "probability").join(labels, "id")
        return BinaryClassificationEvaluator(
            rawPredictionCol="probability", labelCol="label"
        ).evaluate(scored)

    def differences(self, pairs: list[tuple[str, str]]) -> dict[str, dict[str, float]]:
        """Per pair of sides, their outputs joined on the key (all in one join and one
        aggregation): the largest and the mean absolute difference of the
        probabilities, and the rows whose prediction differs."""
        names = list(dict.fromkeys(side for pair in pairs for side in pair))
        joined = None
        for index, side in enumerate(names):
            frame = self.read_output(side).select(
                "id",
                F.col("prediction").alias(f"prediction{index}"),
                F.col("probability").alias(f"probability{index}"),
            )
            joined = frame if joined is None else joined.join(frame, "id")
        assert joined is not None
        figures = [F.count(F.lit(1)).alias("rows")]
        for number, (side, other) in enumerate(pairs):
            a, b = names.index(side), names.index(other)
            gap = F.abs(F.col(f"probability{a}") - F.col(f"probability{b}"))
            flips = (F.col(f"prediction{a}") != F.col(f"prediction{b}")).cast("long")
            figures += [
                F.max(gap).alias(f"max{number}"),
                F.avg(gap).alias(f"mean{number}"),
                F.sum(flips).alias(f"flips{number}"),
            ]
        found = joined.agg(*figures).collect()[0]
        assert found["rows"] == self.rows, f"{names} share {found['rows']} keys"
        return {
            f"{side} vs {other}": {
                "max_abs_probability_difference": float(found[f"max{number}"]),
                "mean_abs_probability_difference": float(found[f"mean{number}"]),
                "rows_with_another_prediction": int(found[f"flips{number}"]),
            }
            for number, (side, other) in enumerate(pairs)
        }


def compare_lr(scoring: Scoring, args) -> dict[str, Any]:
    # fitted on the rows batchml's model was trained on: its training split of the sample
    spec = scoring.settings.models["bench_lr"]
    sample = scoring.tables.read(str(scoring.work / "train_sample")).df
    rows = with_split(sample, "id", spec.split, seed=spec.seed, column="__split")
    chosen = rows.filter(F.col("__split") == "train").select(*NUMERIC, *CATEGORICAL, "label")
    model = sklearn_model(chosen.toPandas(), args.max_iter)
    with open(scoring.model_path, "wb") as handle:
        pickle.dump(model, handle)
    pandas_memory: list[dict] = []
    sides = harness.side_by_side(
        {
            "ours_delta": lambda: scoring.predict("ours_delta", "bench_lr", "sql"),
            "ours_parquet": lambda: scoring.lr_parquet("ours_parquet"),
            "a_naive": lambda: scoring.pipeline_parquet("a_naive", "bench_lr"),
            "b_pandas_chunks": lambda: scoring.pandas("b_pandas_chunks", pandas_memory),
            "c_map_in_pandas": lambda: scoring.map_in_pandas("c_map_in_pandas"),
        },
        rounds=args.rounds,
        warmup=args.warmup,
        before=scoring.clear,
        label="LR",
    )
    harness.note(sides.table())
    # the last round's outputs: the same scores where the model is the same
    found = scoring.differences(
        [
            ("ours_delta", "ours_parquet"),
            ("a_naive", "ours_parquet"),
            ("c_map_in_pandas", "b_pandas_chunks"),
            ("b_pandas_chunks", "ours_parquet"),
        ]
    )
    close = found.pop("b_pandas_chunks vs ours_parquet")
    same = found
    for pair, figures in same.items():
        assert figures["max_abs_probability_difference"] <= SAME_SCORES, (pair, figures)
    # scikit-learn's model is its own fit (another solver, another encoding of the
    # categories): its scores are not MLlib's; how well they rank the labels is close
    auc = {side: scoring.auc(side) for side in ("ours_parquet", "b_pandas_chunks")}
    assert abs(auc["ours_parquet"] - auc["b_pandas_chunks"]) <= CLOSE_AUC, auc
    medians = {side: sides.median(side) for side in sides.seconds}
    return {
        **sides.figures(),
        "million_rows_per_second": {
            side: round(args.rows / seconds / 1e6, 3) for side, seconds in medians.items()
        },
        "ratios": {
            "ours / (a) naive, speed": round(sides.ratio("a_naive", "ours_delta"), 2),
            "ours / (c) mapInPandas, speed": round(sides.ratio("c_map_in_pandas", "ours_delta"), 2),
            "ours time / (b) pandas time": round(sides.ratio("ours_delta", "b_pandas_chunks"), 2),
            "Delta output / plain Parquet": round(sides.ratio("ours_delta", "ours_parquet"), 2),
        },
        "agreement": {
            **same,
            "b_pandas_chunks vs ours_parquet (scikit-learn's own fit)": close,
            "roc_auc_on_the_labels": {side: round(value, 5) for side, value in auc.items()},
        },
        "pandas_child_peak_memory_per_round": pandas_memory,
    }


def compare_xgb(scoring: Scoring, args) -> dict[str, Any]:
    sides = harness.side_by_side(
        {
            "xgb_ours_delta": lambda: scoring.predict("xgb_ours_delta", "bench_xgb", "arrow"),
            "xgb_spark_transform": lambda: scoring.pipeline_parquet(
                "xgb_spark_transform", "bench_xgb"
            ),
        },
        rounds=args.rounds,
        warmup=args.warmup,
        before=scoring.clear,
        label="xgboost",
    )
    harness.note(sides.table())
    pair = ("xgb_ours_delta", "xgb_spark_transform")
    same = scoring.differences([pair])[" vs ".join(pair)]
    # the Arrow scorer runs the same booster on the same features as xgboost.spark
    assert same["max_abs_probability_difference"] <= 1e-6, same
    assert same["rows_with_another_prediction"] == 0, same
    return {
        **sides.figures(),
        "million_rows_per_second": {
            side: round(args.rows / sides.median(side) / 1e6, 3) for side in sides.seconds
        },
        "ratio_ours_to_xgb_spark_speed": round(
            sides.ratio("xgb_spark_transform", "xgb_ours_delta"), 2
        ),
        "agreement": same,
    }


def compare_incremental(scoring: Scoring, args) -> dict[str, Any]:
    """A month's files scored alone vs the grown input rescored, both from the same
    predictions table (the year's, restored before each run)."""
    spark, settings, work = scoring.spark, scoring.settings, scoring.work
    grown, month = work / "score_input_grown", args.rows // 12
    tables = scoring.tables
    if not (grown.exists() and tables.read(str(grown)).rows == args.rows + month):
        shutil.rmtree(grown, ignore_errors=True)
        shutil.copytree(scoring.source, grown)  # the year, version 0
        make_month(spark, tables, str(grown), args.rows, month)  # version 1
    year = work / "scores_year"
    shutil.rmtree(year, ignore_errors=True)
    report = predict.run(
        spark,
        settings,
        predict.PredictRequest("bench_lr", input=f"{grown.name}@0", output=year.name, full=True),
    )
    assert report.rows_scored == args.rows, report.message

    def restore(side: str) -> None:
        shutil.rmtree(scoring.output(side), ignore_errors=True)
        shutil.copytree(year, scoring.output(side))

    def run(side: str, full: bool, mode: str, rows: int) -> harness.Timed:
        request = predict.PredictRequest(
            "bench_lr", input=grown.name, output=scoring.output(side).name, full=full
        )
        started = time.perf_counter()
        done = predict.run(spark, settings, request)
        seconds = time.perf_counter() - started
        assert (done.mode, done.rows_scored) == (mode, rows), (done.mode, done.message)
        assert tables.read(str(scoring.output(side))).rows == args.rows + month
        return harness.Timed(seconds, done.rows_scored)

    sides = harness.side_by_side(
        {
            "incremental_one_month": lambda: run("incremental", False, "incremental", month),
            "full_rescore": lambda: run("rescore", True, "full", args.rows + month),
        },
        rounds=args.rounds,
        warmup=args.warmup,
        before=lambda side: restore("incremental" if side.startswith("incr") else "rescore"),
        label="incremental",
    )
    harness.note(sides.table())
    return {
        **sides.figures(),
        "rows_added_by_the_month": month,
        "ratio_incremental_to_full": round(sides.ratio("incremental_one_month", "full_rescore"), 3),
    }


def compare_memory(work: Path, args) -> dict[str, Any]:
    """`batchml predict` with a 1 GB driver on --rows and 4 x --rows, each round in a
    fresh child process (nothing to warm up)."""
    found: dict[str, list[dict]] = {"rows": [], "rows_x4": []}

    def child(side: str, table: str, rows: int) -> harness.Timed:
        shutil.rmtree(work / f"mem_{side}", ignore_errors=True)
        timed = harness.in_child(
            predict_child, str(work), table, f"mem_{side}", args.trees, args.max_iter
        )
        assert timed.value["rows"] == rows, timed.value
        found[side].append({**timed.value, **timed.memory})
        return timed

    sides = harness.side_by_side(
        {
            "rows": lambda: child("rows", "score_input", args.rows),
            "rows_x4": lambda: child("rows_x4", "score_input_x4", 4 * args.rows),
        },
        rounds=args.rounds,
        warmup=0,
        label="memory",
    )
    medians = {
        side: {key: statistics.median([r[key] for r in runs]) for key in runs[0]}
        for side, runs in found.items()
    }
    return {
        **sides.figures(),
        "per_round": found,
        "medians": medians,
        "ratio_tree_peak_rss_x4_to_x1": round(
            medians["rows_x4"]["tree_peak_rss_mb"] / medians["rows"]["tree_peak_rss_mb"], 2
        ),
    }


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = harness.arguments(__doc__)
    parser.add_argument("--rows", type=int, default=4_000_000)
    parser.add_argument("--sample-rows", type=int, default=200_000)
    parser.add_argument("--trees", type=int, default=100, help="the xgboost model's trees")
    parser.add_argument(
        "--max-iter", type=int, default=50, help="the logistic regressions' iterations"
    )
    parser.add_argument("--skip-memory", action="store_true", help="no 1 GB-driver children")
    parser.add_argument("--skip-xgboost", action="store_true", help="no xgboost comparison")
    parser.add_argument("--skip-incremental", action="store_true", help="no incremental comparison")
    args = harness.parse(
        parser,
        argv,
        rows=3_000,
        sample_rows=2_000,
        trees=3,
        max_iter=10,
        # the LR comparison and its checks; the rest costs more than all of it
        skip_xgboost=True,
        skip_incremental=True,
        skip_memory=True,
    )
    given = args.workdir is not None
    work = harness.workdir(args, "predict").resolve()
    settings = settings_for(work, trees=args.trees, iterations=args.max_iter)
    configure_logging("WARNING")
    results: dict[str, Any] = {
        **harness.header(args),
        "rows": args.rows,
        "sample_rows": args.sample_rows,
        "xgboost_trees": args.trees,
        "logistic_regression_max_iter": args.max_iter,
        "memory_cap": "none: no side runs under a memory cap",
    }
    try:
        with harness.session(settings) as spark:
            started = time.perf_counter()
            models = ("bench_lr",) if args.skip_xgboost else ("bench_lr", "bench_xgb")
            registry = prepare(spark, settings, work, args.rows, args.sample_rows, models)
            assert all(registry.list(name) for name in models)
            harness.note(f"data and models ready: {time.perf_counter() - started:.1f} s")
            scoring = Scoring(spark, settings, work, args.rows)
            results["logistic_regression"] = compare_lr(scoring, args)
            if not args.skip_xgboost:
                results["xgboost"] = compare_xgb(scoring, args)
            if not args.skip_incremental:
                results["incremental"] = compare_incremental(scoring, args)
            harness.note(f"comparisons done: {time.perf_counter() - started:.1f} s")
            if not args.skip_memory:
                ensure_table(spark, scoring.tables, str(work / "score_input_x4"), 4 * args.rows)
        # the children's JVMs start once this run's session is stopped: no 6 GB driver
        # beside them
        if not args.skip_memory:
            results["memory_1g_driver"] = compare_memory(work, args)
    finally:
        if not given:  # a temporary folder of this run only
            shutil.rmtree(work, ignore_errors=True)
    print(json.dumps(results, indent=2))
    return results


if __name__ == "__main__":
    main()
