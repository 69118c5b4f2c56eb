"""Fitting one plan: split, feature pipeline, estimator, early stopping, holdout metrics.

Registers nothing: `job.py` registers, `--reproduce` compares."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from pyspark import StorageLevel
from pyspark.ml import PipelineModel
from pyspark.sql import DataFrame, Row, SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T

from batchml.jobs.train.plan import FOLD, IS_VALIDATION, SPLIT, WEIGHT, TrainPlan, check_plan
from batchml.jobs.train.tuning import candidates, tune
from batchml.lib.delta import delta_tables
from batchml.lib.evaluation.holdout import holdout_metrics
from batchml.lib.features.pipeline import fit_features
from batchml.lib.features.statistics import FeatureStats, NumericPass, profile_of
from batchml.lib.platform.errors import EXIT_INPUT, BatchmlError, InputError, first_line
from batchml.lib.platform.logs import get_logger
from batchml.lib.platform.progress import progress
from batchml.lib.platform.settings import Settings
from batchml.lib.platform.sqltext import identifier as _q
from batchml.lib.spark.jvm import storage_memory
from batchml.lib.training.estimators import (
    ITERATIVE,
    class_weights,
    encoding_of,
    estimator,
    is_xgboost,
    weight_column,
)
from batchml.lib.training.splits import with_fold, with_split

log = get_logger(__name__)

SCORE = "__score"  # the profiled output of the model on its last holdout split


XGB_EARLY_STOPPING_ROUNDS = 10
ROW_KEY = "__row_key"  # the key under its own name through the shuffle


@dataclass
class Trained:
    """A fitted pipeline and everything measured on the way."""

    fitted: PipelineModel
    table_uri: str
    table_version: int
    task: str
    params: dict[str, Any]
    rows: dict[str, int]
    metrics: dict[str, dict[str, float]]
    seconds: float
    profile: dict[str, Any]
    spark_jobs_feature_fit: int
    persisted: bool
    tuning: dict[str, Any] | None = None
    early_stopping: dict[str, Any] | None = None
    partitions: int = 1  # the training data was cut into this many (by key hash)
    classes: int = 0  # label values of a classifier (0 for a regressor)
    score_profile: dict[str, Any] | None = None
    encoding: str = "one_hot"  # how the features reach the estimator (ModelSpec.encoding)
    # where the profile's numeric statistics came from: their own query ("queried"), or
    # "observed" on the training pass (a booster's, whose stages need none of them)
    numeric_statistics: str = "queried"


def fit(spark: SparkSession, settings: Settings, plan: TrainPlan) -> Trained:
    """Split, fit features and estimator, tune / stop early, measure. Registers nothing."""
    task = check_plan(plan)
    spec, pipeline = plan.spec, plan.pipeline
    label, slots = pipeline.label, spark.sparkContext.defaultParallelism
    split_key = pipeline.key
    assert split_key is not None  # check_plan: a key for the split
    # Any: an MLlib estimator, or an xgboost one (ArrowTrained) with setters of its own
    model: Any = estimator(
        spec.algorithm,
        dict(spec.params),
        label=label,
        features=pipeline.output,
        seed=spec.seed,
        task_slots=slots,
        reproducing=plan.partitions is not None,
    )
    searched = candidates(plan, model, slots)
    tables = delta_tables(spark, settings)
    read = tables.read(plan.table_uri, version=plan.table_version)
    for column in (split_key, label):
        if column not in read.df.columns:
            raise InputError(
                f"column {column} is not in {read.uri}@{read.version} "
                f"(columns: {', '.join(read.df.columns)})"
            )
    started = time.perf_counter()
    split_df = with_split(read.df, split_key, spec.split, seed=spec.seed, column=SPLIT)
    labelled = split_df.filter(F.col(label).isNotNull())
    train_df = labelled.filter(F.col(SPLIT) == "train")
    fit_df = (
        labelled.filter(F.col(SPLIT).isin("train", "validation"))
        if spec.early_stopping
        else train_df
    )
    encoding = encoding_of(spec)
    boosted = is_xgboost(spec.algorithm)
    partitions = _training_partitions(plan, model, slots)
    # the rows each xgboost worker would get, counted in the categories' pass
    extra = {"workers": _worker_of(split_key, partitions)} if boosted else None
    features = fit_features(
        fit_df,  # the statistics describe the training split (`where`)
        plan.pipeline_name,
        pipeline,
        encoding=encoding,
        profile=True,
        centres=tables.column_centres(read.uri, read.version, list(pipeline.numeric)),
        label_counts=task == "classification",  # counted in the categories' pass
        where=(F.col(SPLIT) == "train") if spec.early_stopping else None,
        extra=extra,
        empty=f"the training split of {read.uri}@{read.version} has no labelled rows",
        # a booster's stages need no numeric statistic: the profile rides on its pass
        defer_numeric=boosted and not searched,
    )
    counts: dict[Any, int] = {}
    if task == "classification":
        counts = dict(features.stats.labels or {})
        if len(counts) < 2:
            raise InputError(
                f"label {label} has a single class in the training split of "
                f"{read.uri}@{read.version}: {list(counts)}"
            )
    classes = len(counts)
    if is_xgboost(spec.algorithm) and task == "classification":
        model.classes = classes  # its fit would count them with a pass of its own
    weights = class_weights(counts, spec.class_weight)
    if features.feature_types is not None:
        # the booster reads the feature columns themselves: numbers and category codes
        model.setParams(features_col=features.columns, feature_types=features.feature_types)
    columns = [F.col(label), *(F.col(c) for c in features.columns)]
    if boosted and features.feature_types is not None:
        # xgboost reads float32: cast before the shuffle, which then moves half the bytes
        columns[1:] = [F.col(c).cast("float").alias(c) for c in features.columns]
    if weights:
        columns.append(weight_column(label, weights).alias(WEIGHT))
        model.set(model.getParam("weightCol"), WEIGHT)
    if spec.early_stopping:
        columns.append((F.col(SPLIT) == "validation").alias(IS_VALIDATION))
        model.set(model.getParam("validationIndicatorCol"), IS_VALIDATION)
        if is_xgboost(spec.algorithm) and "early_stopping_rounds" not in spec.params:
            model.set(model.getParam("early_stopping_rounds"), XGB_EARLY_STOPPING_ROUNDS)
    if spec.tuning is not None and spec.tuning.strategy == "cross_validation":
        fit_df = with_fold(fit_df, split_key, spec.tuning.folds, seed=spec.seed, column=FOLD)
        columns.append(F.col(FOLD))
    if boosted:
        partitions = _workers_with_data(
            fit_df,
            split_key,
            partitions,
            plan,
            validation=spec.early_stopping,
            counted=features.stats.extra.get("workers"),
        )
        model.set(model.getParam("num_workers"), partitions)
        model.laid_out = True  # cut below: its own partition count would run the shuffle
        model.evaluate_training = False  # only the validation rows' metric is read
    # The estimator sees the same partitions, in the same order, whatever the layout of
    # the table and the master: MLlib's forests sample per partition, xgboost builds its
    # histograms per worker, and sums depend on their order.
    # Only the columns the estimator reads (and the key) cross the shuffle: the feature
    # stages run row by row before it, so the rows and their order are the same.
    key = F.col(split_key).alias(ROW_KEY)
    source = fit_df if features.pending is None else features.pending.observe(fit_df)
    assembled = (
        features.model.transform(source)
        .select(key, *columns)
        .repartition(partitions, ROW_KEY)
        .sortWithinPartitions(ROW_KEY)
        .drop(ROW_KEY)
    )
    persist = spec.persist
    if persist is None:
        persist = spec.algorithm in ITERATIVE and _fits_in_storage(
            spark,
            features.stats.rows,
            # the last stage, a VectorAssembler: PySpark types the stages as Transformers
            len(features.model.stages[-1].getInputCols()),  # type: ignore[attr-defined]
        )  # ITERATIVE estimators are MLlib's: always the one_hot encoding's assembler
    if persist:
        assembled = assembled.persist(StorageLevel.MEMORY_AND_DISK)  # serialized in PySpark
    tuning = stopping = None
    interval = settings.logging.progress_interval
    try:
        with progress(spark, f"train {plan.model}", interval=interval):
            if searched:
                best, tuning = tune(
                    spark, plan, model, searched, assembled, features, labelled, task, classes
                )
            else:
                best = model.fit(assembled)
    except BatchmlError:
        raise
    except Exception as exc:  # inside Spark, Py4J, an executor or the estimator's library
        raise EstimatorFailed(plan.model, spec.algorithm, exc) from exc
    finally:
        if persist:
            assembled.unpersist()
    how = "queried"
    if features.pending is not None:  # observed on the training pass, else queried
        how = features.pending.finish(features.stats, train_df)
        log.info("training profile", extra={"model": plan.model, "numeric_statistics": how})
    if spec.early_stopping:
        stopping = _stopped_at(best, spec.algorithm)
    fitted = PipelineModel(stages=[*features.model.stages, best])
    rows = {"train": features.stats.rows}
    metrics: dict[str, dict[str, float]] = {}
    score_profile = None
    holdouts = [part for part in spec.split if part != "train"]
    for part in holdouts:
        scored = _holdout_scores(fitted, labelled.filter(F.col(SPLIT) == part), label)
        last = part == holdouts[-1]  # test when there is one: its scores are profiled too
        profiler = _score_profiler(scored, task, classes) if last else None
        if profiler is not None:  # observed on the metrics' pass: each row scored once
            scored = scored.withColumn(SCORE, profiler[1])
            measured = profiler[2].observe(scored)
        else:
            measured = scored
        rows[part], metrics[part] = holdout_metrics(measured, task, label, binary=classes == 2)
        if rows[part] == 0:
            raise InputError(f"the {part} split of {read.uri}@{read.version} is empty")
        if profiler is not None:
            stats = FeatureStats(rows[part])  # exact: the observation must have seen them all
            profiler[2].finish(stats, scored.select(SCORE))
            numbers = profile_of(stats)["numeric"][SCORE]
            score_profile = {"column": profiler[0], "split": part, **numbers}
    params = {
        p.name: _plain(v)
        for p, v in best.extractParamMap().items()
        if p.name in spec.params
        or (tuning and p.name in tuning["best_params"])
        or p.name in ("num_workers", "early_stopping_rounds")
    }
    return Trained(
        fitted,
        read.uri,
        read.version,
        task,
        params,
        rows,
        metrics,
        time.perf_counter() - started,
        profile_of(features.stats),
        features.spark_jobs,
        persist,
        tuning,
        stopping,
        partitions,
        classes,
        score_profile,
        encoding,
        how,
    )


def _holdout_scores(fitted: PipelineModel, frame: DataFrame, label: str) -> DataFrame:
    """The label, `prediction` and, for a binary classifier, `probability` of a holdout's
    rows. An xgboost pipeline runs through the booster scorer (the predict job's path:
    the same scores as xgboost.spark's transform, without its per-row pandas arrays),
    anything else through its own transform."""
    from batchml.lib.scoring import booster as booster_scorer

    try:
        return booster_scorer.score(fitted, frame, [label])
    except booster_scorer.NotBooster:
        scored = fitted.transform(frame)
    kept = [c for c in (label, "prediction", "probability") if c in scored.columns]
    return scored.select(*(F.col(f"`{c}`") for c in kept))


def _score_profiler(
    scored: DataFrame, task: str, classes: int
) -> tuple[str, F.Column, NumericPass] | None:
    """How the model's output on a holdout split is profiled like a numeric feature
    (deciles, their counts, a KLL sketch): what `batchml monitor` compares the scores of
    a predictions table with. The positive class's probability for a binary classifier,
    the prediction for a regressor; none for more classes. Returns (the output column,
    its value as a double, the aggregate that profiles it as column SCORE)."""
    from pyspark.ml.functions import vector_to_array

    from batchml.lib.platform.settings import FeaturePipelineSpec, NumericFeature

    if task == "regression":
        column, value = "prediction", F.col("prediction").cast("double")
    elif classes == 2 and isinstance(scored.schema["probability"].dataType, T.DoubleType):
        column, value = "probability", F.col("probability")  # the booster scorer's
    elif classes == 2:
        column, value = "probability", vector_to_array(F.col("probability"))[1]
    else:
        return None
    spec = FeaturePipelineSpec(view="scores", label=SCORE, numeric={SCORE: NumericFeature()})
    return column, value, NumericPass(spec, profile=True)


def _training_partitions(plan: TrainPlan, model, slots: int) -> int:
    """How many partitions the training data is cut into: recorded (reproduce), from the
    spec, xgboost's num_workers, else the session's task slots."""
    if plan.partitions is not None:
        return int(plan.partitions)
    if plan.spec.partitions is not None:
        return plan.spec.partitions
    if is_xgboost(plan.spec.algorithm):
        return int(model.getOrDefault(model.getParam("num_workers")))
    return max(1, slots)


def _worker_of(key: str, workers: int) -> F.Column:
    """A row's "worker:split": which of `workers` hash partitions it goes to, its split."""
    worker = F.expr(f"CAST(pmod(hash({_q(key)}), {workers}) AS STRING)")
    return F.concat_ws(":", worker, F.col(SPLIT))


def _workers_with_data(
    fit_df: DataFrame,
    key: str,
    workers: int,
    plan: TrainPlan,
    *,
    validation: bool,
    counted: dict[str, int] | None = None,
) -> int:
    """The most xgboost workers (at most `workers`) whose hash partitions of the data
    each hold training rows (and validation rows, when stopping early): a worker with
    no rows fails the whole barrier stage ("Empty dataset at worker"). `counted`: the
    rows per `_worker_of(key, workers)` value, already counted (no job for that case)."""
    split = F.col(SPLIT)
    rows: list[dict[str, int]] | list[Row]
    for count in range(workers, 0, -1):
        if count == workers and counted is not None:
            rows = [
                {part: counted.get(f"{worker}:{part}", 0) for part in ("train", "validation")}
                for worker in range(workers)
            ]
        else:
            slot = F.expr(f"pmod(hash({_q(key)}), {count})")
            rows = (
                fit_df.groupBy(slot.alias("worker"))
                .agg(
                    F.sum((split == "train").cast("int")).alias("train"),
                    F.sum((split == "validation").cast("int")).alias("validation"),
                )
                .collect()
            )
        filled = [r for r in rows if r["train"] and (r["validation"] or not validation)]
        if len(filled) == count:
            if count < workers:
                if plan.partitions is not None:
                    raise InputError(
                        f"{plan.model}: the recorded num_workers = {workers} "
                        "leaves a worker without rows"
                    )
                log.info(
                    "fewer xgboost workers: some would get no rows",
                    extra={"model": plan.model, "asked": workers, "used": count},
                )
            return count
    wanted = "training and validation rows" if validation else "training rows"
    raise InputError(f"{plan.model}: no worker gets {wanted} (the split left none)")


class EstimatorFailed(BatchmlError):
    """Fitting failed inside Spark or the estimator's library (exit 4: the data or the
    params it was given); the executor traceback is logged at DEBUG (`--verbose`)."""

    exit_code = EXIT_INPUT

    def __init__(self, model: str, algorithm: str, exc: BaseException) -> None:
        log.debug("estimator failure", exc_info=exc)
        super().__init__(f"training {model} ({algorithm}) failed: {_root_cause(exc)}")


def _root_cause(exc: BaseException) -> str:
    """The most telling line of a failure that crossed Spark, Py4J and Python workers."""
    text = str(exc)
    for marker in (
        "XGBoostError:",
        "ValueError:",
        "RuntimeError:",
        "IllegalArgumentException:",
        "SparkException:",
        "Exception:",
    ):
        for line in text.splitlines():
            if marker in line:
                return line.strip()[:300]
    return f"{type(exc).__name__}: {first_line(exc)[:300]}"


def _fits_in_storage(spark: SparkSession, rows: int, inputs: int) -> bool:
    """Whether the assembled training data (about 12 bytes per assembler input and row,
    plus row overhead) fits in the cluster's storage memory. Caching more than that
    did not spill gracefully in a trial: the columnar cache ran the heap out of memory."""
    storage = storage_memory(spark)
    if storage is None:  # no JVM to ask (Spark Connect): do not risk the cache
        return False
    estimate = rows * (12 * inputs + 64)
    if estimate > storage:
        log.info(
            "not persisting the training data: estimated larger than storage memory",
            extra={"estimate_mb": estimate >> 20, "storage_mb": storage >> 20},
        )
    return estimate <= storage


def _stopped_at(model, algorithm: str) -> dict[str, Any]:
    """How many boosting rounds early stopping kept."""
    if is_xgboost(algorithm):
        booster = model.get_booster()
        return {
            "best_iteration": int(booster.best_iteration),
            "rounds_trained": int(booster.num_boosted_rounds()),
        }
    return {"trees": int(model.getNumTrees)}


def _plain(value: Any) -> Any:
    return value if isinstance(value, (int, float, str, bool, type(None))) else str(value)
