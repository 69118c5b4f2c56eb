"""`batchml train MODEL`: fit a feature pipeline plus an estimator on a pinned feature
table's training split, evaluate on the validation and test splits, register the result.

Steps, all on one pinned table version:
1. hash split on the pipeline's key (`lib/splits.py`);
2. the feature pipeline fitted on the training split in one pass, which also yields
   the training profile (numeric deciles from KLL sketches, category frequencies);
3. the assembled training data (label, features, and the weight / validation / fold
   columns when used) persisted once, serialized in memory and on disk, for estimators
   that read it many times; unpersisted after;
4. optional tuning (grid or random search; CrossValidator on hash folds, or every
   candidate scored on the validation split), optional early stopping on the
   validation split (GBT's validationIndicatorCol, xgboost's early_stopping_rounds);
5. metrics on the validation and test splits; the `PipelineModel` registered with a
   manifest that is enough to train it again (`--reproduce`).
"""

from __future__ import annotations

import math
import random
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from pyspark import StorageLevel
from pyspark.ml import PipelineModel
from pyspark.ml.tuning import CrossValidator
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from batchml.jobs.features import log_centres
from batchml.lib.delta import delta_tables
from batchml.lib.errors import EXIT_INPUT, BatchmlError, ConfigError, InputError, first_line
from batchml.lib.feature_pipeline import fit_features, profile_of
from batchml.lib.lakehouse import resolve_path, table_location
from batchml.lib.logs import get_logger
from batchml.lib.progress import progress
from batchml.lib.registry import Registry
from batchml.lib.runtime import package_version
from batchml.lib.settings import FeaturePipelineSpec, ModelSpec, ParamRange, Settings
from batchml.lib.splits import check_fractions, with_fold, with_split
from batchml.lib.training import (
    EARLY_STOPPING,
    ITERATIVE,
    checked_param,
    class_weights,
    default_metric,
    estimator,
    evaluator,
    holdout_metrics,
    is_xgboost,
    task_of,
    weight_column,
)

log = get_logger(__name__)
SPLIT = "__split"
WEIGHT = "__weight"
IS_VALIDATION = "__is_validation"
FOLD = "__fold"
TOLERANCE = 1e-9  # metrics of a reproduction must match to this
XGB_EARLY_STOPPING_ROUNDS = 10


@dataclass(frozen=True)
class TrainPlan:
    """Everything that decides the model: specs, the table and its pinned version."""

    model: str
    spec: ModelSpec
    pipeline_name: str
    pipeline: FeaturePipelineSpec
    table_uri: str
    table_version: int | None = None
    partitions: int | None = None  # recorded by an earlier training (reproduce)


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


@dataclass
class TrainReport:
    """What training read, fitted, measured and registered."""

    model: str
    version: int
    algorithm: str
    training_table: str
    training_version: int
    rows: dict[str, int]
    metrics: dict[str, dict[str, float]]
    seconds: float
    params: dict[str, Any] = field(default_factory=dict)
    tuning: dict[str, Any] | None = None
    early_stopping: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class ReproduceReport:
    """A registered version trained again from its manifest, metric by metric."""

    model: str
    version: int
    training_table: str
    training_version: int
    match: bool
    registered: dict[str, dict[str, float]]
    reproduced: dict[str, dict[str, float]]
    differences: dict[str, float]
    seconds: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def plan_from_settings(settings: Settings, name: str, table_version: int | None) -> TrainPlan:
    """The plan of a configured model (checked before Spark reads anything)."""
    if name not in settings.models:
        known = ", ".join(sorted(settings.models)) or "none configured"
        raise ConfigError(f"unknown model {name!r} (models: {known})")
    spec = settings.models[name]
    if spec.pipeline not in settings.pipelines:
        raise ConfigError(f"models.{name}.pipeline = {spec.pipeline!r} is not under [pipelines]")
    pipeline = settings.pipelines[spec.pipeline]
    view = settings.views.get(pipeline.view)
    uri = table_location((view.table if view else None) or pipeline.view, settings)
    return TrainPlan(name, spec, spec.pipeline, pipeline, uri, table_version)


def plan_from_manifest(manifest: dict[str, Any]) -> TrainPlan:
    """The plan a registered version was trained with."""
    if "model_spec" not in manifest:
        raise InputError(f"{manifest.get('name')}@{manifest.get('version')} was registered "
                         "without its model spec and cannot be reproduced")  # fmt: skip
    spec = ModelSpec.model_validate(manifest["model_spec"])
    recorded_workers = (manifest.get("params") or {}).get("num_workers")
    if is_xgboost(spec.algorithm) and recorded_workers is not None:
        # the workers' shares of the data shape the trees: rebuild exactly those
        spec = spec.model_copy(
            update={"params": {**spec.params, "num_workers": int(recorded_workers)}}
        )
    return TrainPlan(
        manifest["name"], spec,
        manifest["feature_pipeline"], FeaturePipelineSpec.model_validate(manifest["feature_spec"]),
        manifest["training_table"], int(manifest["training_version"]),
        manifest.get("training_partitions"),
    )  # fmt: skip


def check_plan(plan: TrainPlan) -> str:
    """Refuse a plan that cannot train, before any data is read; returns the task."""
    spec, where = plan.spec, f"models.{plan.model}"
    if not plan.pipeline.key:
        raise ConfigError(f"pipelines.{plan.pipeline_name} needs a key column for the split")
    check_fractions(spec.split)
    if "train" not in spec.split:
        raise ConfigError(f"{where}.split needs a 'train' fraction")
    empty = [part for part, share in spec.split.items() if share <= 0]
    if empty:
        raise ConfigError(f"{where}.split leaves {', '.join(empty)} empty (fraction 0)")
    task = task_of(spec.algorithm)
    if spec.class_weight is not None and task != "classification":
        raise ConfigError(f"{where}.class_weight needs a classifier, not {spec.algorithm}")
    if spec.early_stopping:
        if spec.algorithm not in EARLY_STOPPING:
            raise ConfigError(f"{where}.early_stopping: {spec.algorithm} cannot stop early "
                              f"(only {', '.join(sorted(EARLY_STOPPING))})")  # fmt: skip
        if "validation" not in spec.split:
            raise ConfigError(f"{where}.early_stopping needs a 'validation' split")
        if spec.tuning is not None:
            raise ConfigError(f"{where}: early_stopping and tuning cannot be combined yet; "
                              "tune the number of trees instead")  # fmt: skip
    if spec.tuning is not None:
        if spec.tuning.strategy == "holdout" and "validation" not in spec.split:
            raise ConfigError(f"{where}.tuning.strategy = 'holdout' needs a 'validation' split")
        if spec.tuning.method == "grid":
            ranges = [k for k, v in spec.tuning.space.items() if isinstance(v, ParamRange)]
            if ranges:
                raise ConfigError(
                    f"{where}.tuning.space: a grid needs lists of values, "
                    f"{', '.join(ranges)} is a range (use method = 'random')"
                )
        if not spec.tuning.space:
            raise ConfigError(f"{where}.tuning.space is empty")
    return task


def run(
    spark: SparkSession,
    settings: Settings,
    name: str,
    *,
    config_hash: str = "",
    resolved_config: dict[str, Any] | None = None,
    table_version: int | None = None,
) -> TrainReport:
    """Train and register one configured model."""
    plan = plan_from_settings(settings, name, table_version)
    trained = fit(spark, settings, plan)
    spec = plan.spec
    registry = Registry(spark, delta_tables(spark, settings),
                        resolve_path(settings.registry.root, settings))  # fmt: skip
    version = registry.register(name, trained.fitted, {
        "algorithm": spec.algorithm, "params": trained.params, "task": trained.task,
        "model_spec": spec.model_dump(mode="json"),
        "feature_pipeline": plan.pipeline_name,
        "feature_spec": plan.pipeline.model_dump(mode="json"),
        "training_table": trained.table_uri, "training_version": trained.table_version,
        "split": {"key": plan.pipeline.key, "fractions": spec.split, "seed": spec.seed},
        "seed": spec.seed, "config_hash": config_hash, "config": resolved_config or {},
        "metrics": trained.metrics, "rows": trained.rows,
        "training_seconds": round(trained.seconds, 3),
        "spark_jobs_feature_fit": trained.spark_jobs_feature_fit,
        "persisted_training_data": trained.persisted,
        "training_partitions": trained.partitions,
        "tuning": trained.tuning, "early_stopping": trained.early_stopping,
        "code": code_version(), "versions": library_versions(spark),
        "training_profile": trained.profile,
    })  # fmt: skip
    log.info("model trained", extra={"model": name, "version": version.version,
                                     "metrics": trained.metrics})  # fmt: skip
    return TrainReport(name, version.version, spec.algorithm, trained.table_uri,
                       trained.table_version, trained.rows, trained.metrics,
                       round(trained.seconds, 3), trained.params, trained.tuning,
                       trained.early_stopping)  # fmt: skip


def reproduce(spark: SparkSession, settings: Settings, ref: str) -> ReproduceReport:
    """Train a registered version again from its manifest; compare the metrics."""
    registry = Registry(spark, delta_tables(spark, settings),
                        resolve_path(settings.registry.root, settings))  # fmt: skip
    version = registry.get(ref)
    trained = fit(spark, settings, plan_from_manifest(version.manifest))
    registered = version.manifest.get("metrics", {})
    differences = compare_metrics(registered, trained.metrics)
    return ReproduceReport(version.name, version.version, version.training_table,
                           version.training_version, not differences, registered,
                           trained.metrics, differences, round(trained.seconds, 3))  # fmt: skip


def compare_metrics(
    registered: dict[str, dict[str, float]], reproduced: dict[str, dict[str, float]]
) -> dict[str, float]:
    """`split.metric` -> absolute difference, for every metric off by more than 1e-9 (or
    present on one side only: infinity)."""
    differences: dict[str, float] = {}
    for part in sorted(set(registered) | set(reproduced)):
        for metric in sorted(set(registered.get(part, {})) | set(reproduced.get(part, {}))):
            old = registered.get(part, {}).get(metric)
            new = reproduced.get(part, {}).get(metric)
            gap = math.inf if old is None or new is None else abs(old - new)
            if not gap <= TOLERANCE:
                differences[f"{part}.{metric}"] = gap
    return differences


def fit(spark: SparkSession, settings: Settings, plan: TrainPlan) -> Trained:
    """Split, fit features and estimator, tune / stop early, measure. Registers nothing."""
    task = check_plan(plan)
    spec, pipeline = plan.spec, plan.pipeline
    label, slots = pipeline.label, spark.sparkContext.defaultParallelism
    model = estimator(
        spec.algorithm,
        dict(spec.params),
        label=label,
        features=pipeline.output,
        seed=spec.seed,
        task_slots=slots,
        reproducing=plan.partitions is not None,
    )
    candidates = _candidates(plan, model, slots)
    tables = delta_tables(spark, settings)
    read = tables.read(plan.table_uri, version=plan.table_version)
    for column in (pipeline.key, label):
        if column not in read.df.columns:
            raise InputError(f"column {column} is not in {read.uri}@{read.version} "
                             f"(columns: {', '.join(read.df.columns)})")  # fmt: skip
    started = time.perf_counter()
    split_df = with_split(read.df, pipeline.key, spec.split, seed=spec.seed, column=SPLIT)
    labelled = split_df.filter(F.col(label).isNotNull())
    train_df = labelled.filter(F.col(SPLIT) == "train")
    if train_df.limit(1).count() == 0:
        raise InputError(f"the training split of {read.uri}@{read.version} has no labelled rows")
    features = fit_features(train_df, plan.pipeline_name, pipeline, profile=True,
                            centres=log_centres(tables, read, list(pipeline.numeric)))  # fmt: skip
    counts: dict[Any, int] = {}
    if task == "classification":
        counts = {r[0]: int(r[1]) for r in train_df.groupBy(label).count().collect()}
        if len(counts) < 2:
            raise InputError(f"label {label} has a single class in the training split of "
                             f"{read.uri}@{read.version}: {list(counts)}")  # fmt: skip
    classes = len(counts)
    weights = class_weights(counts, spec.class_weight)
    fit_df = labelled.filter(F.col(SPLIT).isin("train", "validation")) if spec.early_stopping \
        else train_df  # fmt: skip
    columns = [F.col(label), F.col(pipeline.output)]
    if weights:
        columns.append(weight_column(label, weights).alias(WEIGHT))
        model.set(model.getParam("weightCol"), WEIGHT)
    if spec.early_stopping:
        columns.append((F.col(SPLIT) == "validation").alias(IS_VALIDATION))
        model.set(model.getParam("validationIndicatorCol"), IS_VALIDATION)
        if is_xgboost(spec.algorithm) and "early_stopping_rounds" not in spec.params:
            model.set(model.getParam("early_stopping_rounds"), XGB_EARLY_STOPPING_ROUNDS)
    if spec.tuning is not None and spec.tuning.strategy == "cross_validation":
        fit_df = with_fold(fit_df, pipeline.key, spec.tuning.folds, seed=spec.seed, column=FOLD)
        columns.append(F.col(FOLD))
    partitions = _training_partitions(plan, model, slots)
    if is_xgboost(spec.algorithm):
        partitions = _workers_with_data(
            fit_df, pipeline.key, partitions, plan, validation=spec.early_stopping
        )
        model.set(model.getParam("num_workers"), partitions)
    # The estimator sees the same partitions, in the same order, whatever the layout of
    # the table and the master: MLlib's forests sample per partition, xgboost builds its
    # histograms per worker, and sums depend on their order.
    fit_df = fit_df.repartition(partitions, F.col(pipeline.key)).sortWithinPartitions(pipeline.key)
    assembled = features.model.transform(fit_df).select(*columns)
    persist = spec.persist
    if persist is None:
        persist = spec.algorithm in ITERATIVE and _fits_in_storage(
            spark, features.stats.rows, len(features.model.stages[-1].getInputCols())
        )
    if persist:
        assembled = assembled.persist(StorageLevel.MEMORY_AND_DISK)  # serialized in PySpark
    tuning = stopping = None
    interval = settings.logging.progress_interval
    try:
        with progress(spark, f"train {plan.model}", interval=interval):
            if candidates:
                best, tuning = _tune(spark, plan, model, candidates, assembled, features, labelled,
                                     task, classes)  # fmt: skip
            else:
                best = model.fit(assembled)
    except BatchmlError:
        raise
    except Exception as exc:  # inside Spark, Py4J, an executor or the estimator's library
        raise EstimatorFailed(plan.model, spec.algorithm, exc) from exc
    finally:
        if persist:
            assembled.unpersist()
    if spec.early_stopping:
        stopping = _stopped_at(best, spec.algorithm)
    fitted = PipelineModel(stages=[*features.model.stages, best])
    rows = {"train": features.stats.rows}
    metrics: dict[str, dict[str, float]] = {}
    for part in spec.split:
        if part == "train":
            continue
        scored = fitted.transform(labelled.filter(F.col(SPLIT) == part))
        rows[part], metrics[part] = holdout_metrics(scored, task, label, binary=classes == 2)
        if rows[part] == 0:
            raise InputError(f"the {part} split of {read.uri}@{read.version} is empty")
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
    )


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


def _workers_with_data(
    fit_df: DataFrame, key: str, workers: int, plan: TrainPlan, *, validation: bool
) -> int:
    """The most xgboost workers (at most `workers`) whose hash partitions of the data
    each hold training rows (and validation rows, when stopping early): a worker with
    no rows fails the whole barrier stage ("Empty dataset at worker")."""
    split = F.col(SPLIT)
    for count in range(workers, 0, -1):
        slot = F.expr(f"pmod(hash(`{key}`), {count})")
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
    status = spark.sparkContext._jsc.sc().getExecutorMemoryStatus()
    storage, entries = 0, status.values().iterator()
    while entries.hasNext():
        storage += entries.next()._1()
    estimate = rows * (12 * inputs + 64)
    if estimate > storage:
        log.info(
            "not persisting the training data: estimated larger than storage memory",
            extra={"estimate_mb": estimate >> 20, "storage_mb": storage >> 20},
        )
    return estimate <= storage


def _candidates(plan: TrainPlan, model, slots: int) -> list[dict[str, Any]]:
    """The param maps a search tries (checked against the estimator), or none."""
    tuning = plan.spec.tuning
    if tuning is None:
        return []
    names = list(tuning.space)
    if tuning.method == "grid":
        maps: list[dict[str, Any]] = [{}]
        for name in names:
            maps = [{**m, name: value} for m in maps for value in tuning.space[name]]
    else:
        draw = random.Random(plan.spec.seed)
        maps = [{name: _draw(draw, tuning.space[name]) for name in names}
                for _ in range(tuning.samples)]  # fmt: skip
    for candidate in maps:
        for name, value in candidate.items():
            try:
                checked_param(model, plan.spec.algorithm, name, value)
            except InputError as exc:
                raise InputError(f"models.{plan.model}.tuning.space: {exc}") from None
    if is_xgboost(plan.spec.algorithm) and tuning.parallelism > 1:
        workers = model.getOrDefault(model.getParam("num_workers"))
        if workers * tuning.parallelism > slots:
            raise ConfigError(
                f"models.{plan.model}.tuning.parallelism = {tuning.parallelism} "
                f"x num_workers = {workers} is more than the {slots} task "
                "slots: the barrier stages would wait for each other forever"
            )
    return maps


def _draw(draw: random.Random, space) -> Any:
    if isinstance(space, list):
        return draw.choice(space)
    low, high = space.min, space.max
    if space.log:
        if low <= 0:
            raise ConfigError(f"a log-scale range needs min > 0, not {low}")
        value = math.exp(draw.uniform(math.log(low), math.log(high)))
    else:
        value = draw.uniform(low, high)
    return round(value) if space.integer else value


def _tune(spark, plan, model, candidates, assembled, features, labelled, task, classes):
    """The best fitted estimator and the record of every candidate's score."""
    tuning, spec = plan.spec.tuning, plan.spec
    metric = tuning.metric or default_metric(task, classes)
    judge = evaluator(task, plan.pipeline.label, metric, classes)
    param_maps = [dict(checked_param(model, spec.algorithm, k, v) for k, v in c.items())
                  for c in candidates]  # fmt: skip
    stds: list[float] | None = None
    if tuning.strategy == "cross_validation":
        search = CrossValidator(estimator=model, estimatorParamMaps=param_maps, evaluator=judge,
                                numFolds=tuning.folds, foldCol=FOLD, seed=spec.seed,
                                parallelism=tuning.parallelism)  # fmt: skip
        searched = search.fit(assembled)
        scores, stds = list(searched.avgMetrics), list(searched.stdMetrics)
        best_model = searched.bestModel
    else:
        validation = features.model.transform(labelled.filter(F.col(SPLIT) == "validation"))
        validation = validation.select(plan.pipeline.label, plan.pipeline.output).persist()
        scores = [math.nan] * len(param_maps)
        fitted: dict[int, Any] = {}

        def one(_: int) -> None:
            index, candidate = next(models)
            fitted[index] = candidate
            scores[index] = judge.evaluate(candidate.transform(validation))

        models = model.fitMultiple(assembled, param_maps)  # thread-safe iterator
        try:
            with ThreadPoolExecutor(max_workers=tuning.parallelism) as pool:
                list(pool.map(one, range(len(param_maps))))
        finally:
            validation.unpersist()
    pick = max if judge.isLargerBetter() else min
    best = pick(range(len(scores)), key=lambda i: scores[i])
    if tuning.strategy == "holdout":
        best_model = fitted[best]
    record = {
        "strategy": tuning.strategy, "method": tuning.method, "metric": metric,
        "larger_is_better": judge.isLargerBetter(),
        "folds": tuning.folds if tuning.strategy == "cross_validation" else None,
        "best_params": candidates[best], "best_score": scores[best],
        "candidates": [{"params": c, "score": scores[i], "std": stds[i] if stds else None}
                       for i, c in enumerate(candidates)],
    }  # fmt: skip
    log.info("tuning done", extra={"metric": metric, "best_score": scores[best],
                                   "best_params": candidates[best]})  # fmt: skip
    return best_model, record


def _stopped_at(model, algorithm: str) -> dict[str, Any]:
    """How many boosting rounds early stopping kept."""
    if is_xgboost(algorithm):
        booster = model.get_booster()
        return {"best_iteration": int(booster.best_iteration),
                "rounds_trained": int(booster.num_boosted_rounds())}  # fmt: skip
    return {"trees": int(model.getNumTrees)}


def _plain(value: Any) -> Any:
    return value if isinstance(value, (int, float, str, bool, type(None))) else str(value)


def code_version() -> dict[str, Any]:
    """The package version and, when the code sits in a git checkout, its commit."""
    here = Path(__file__).resolve().parent
    info: dict[str, Any] = {"package": package_version("batchml")}
    try:
        commit = subprocess.run(
            ["git", "-C", str(here), "rev-parse", "HEAD"],
            check=True,
            capture_output=True,
            text=True,
            timeout=5,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(here.parent), "status", "--porcelain"],
            check=True,
            capture_output=True,
            text=True,
            timeout=5,
        ).stdout
        info.update(git_commit=commit, git_dirty=bool(dirty.strip()))
    except (OSError, subprocess.SubprocessError):
        pass
    return info


def library_versions(spark: SparkSession) -> dict[str, str | None]:
    names = ("pyspark", "deltalake", "xgboost-cpu", "scikit-learn", "numpy", "pandas", "pyarrow")
    return {"spark": spark.version, **{name: package_version(name) for name in names}}
