"""`batchml train MODEL`: fit a feature pipeline plus an estimator on a pinned feature
table's training split, evaluate on the validation and test splits, register the result.

The first part of the training issue: MLlib estimators by name with validated params,
the deterministic hash split, one registered `PipelineModel` per version with its
lineage. Tuning, early stopping, xgboost and `--reproduce` are still to come.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from typing import Any

from pyspark.ml import Pipeline
from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from batchml.jobs.features import log_centres
from batchml.lib.delta import delta_tables
from batchml.lib.errors import ConfigError, InputError
from batchml.lib.feature_pipeline import fit_features
from batchml.lib.lakehouse import resolve_path, table_location
from batchml.lib.logs import get_logger
from batchml.lib.registry import Registry
from batchml.lib.runtime import package_version
from batchml.lib.settings import Settings
from batchml.lib.splits import check_fractions, with_split
from batchml.lib.training import estimator, holdout_metrics, task_of

log = get_logger(__name__)
SPLIT = "__split"


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

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def run(
    spark: SparkSession, settings: Settings, name: str, *, config_hash: str = ""
) -> TrainReport:
    """Train and register one configured model."""
    if name not in settings.models:
        known = ", ".join(sorted(settings.models)) or "none configured"
        raise ConfigError(f"unknown model {name!r} (models: {known})")
    spec = settings.models[name]
    if spec.pipeline not in settings.pipelines:
        raise ConfigError(f"models.{name}.pipeline = {spec.pipeline!r} is not under [pipelines]")
    pipeline = settings.pipelines[spec.pipeline]
    if not pipeline.key:
        raise ConfigError(f"pipelines.{spec.pipeline} needs a key column for the split")
    check_fractions(spec.split)
    if "train" not in spec.split:
        raise ConfigError(f"models.{name}.split needs a 'train' fraction")
    task = task_of(spec.algorithm)
    model = estimator(spec.algorithm, dict(spec.params), label=pipeline.label,
                      features=pipeline.output, seed=spec.seed)  # fmt: skip
    tables = delta_tables(spark, settings)
    view = settings.views.get(pipeline.view)
    uri = table_location((view.table if view else None) or pipeline.view, settings)
    read = tables.read(uri)
    if pipeline.key not in read.df.columns:
        raise InputError(f"key column {pipeline.key} is not in {read.uri}")
    started = time.perf_counter()
    split_df = with_split(read.df, pipeline.key, spec.split, seed=spec.seed, column=SPLIT)
    train_df = split_df.filter(F.col(SPLIT) == "train").filter(F.col(pipeline.label).isNotNull())
    features = fit_features(train_df, spec.pipeline, pipeline,
                            centres=log_centres(tables, read, list(pipeline.numeric)))  # fmt: skip
    if features.stats.rows == 0:
        raise InputError(f"training split of {read.uri}@{read.version} is empty")
    classes = _classes(train_df, pipeline.label) if task == "classification" else 0
    if task == "classification" and classes < 2:
        raise InputError(f"label {pipeline.label} has a single class in the training split")
    fitted = Pipeline(stages=[*features.model.stages, model]).fit(train_df)
    metrics: dict[str, dict[str, float]] = {}
    rows = {"train": features.stats.rows}
    for part in spec.split:
        if part == "train":
            continue
        holdout = split_df.filter(F.col(SPLIT) == part).filter(F.col(pipeline.label).isNotNull())
        scored = fitted.transform(holdout)
        rows[part] = holdout.count()
        if rows[part] == 0:
            raise InputError(f"the {part} split of {read.uri}@{read.version} is empty")
        metrics[part] = holdout_metrics(scored, task, pipeline.label, binary=classes == 2)
    seconds = time.perf_counter() - started
    registry = Registry(spark, tables, resolve_path(settings.registry.root, settings))
    version = registry.register(name, fitted, {
        "algorithm": spec.algorithm, "params": dict(spec.params), "task": task,
        "feature_pipeline": spec.pipeline, "feature_spec": pipeline.model_dump(),
        "training_table": read.uri, "training_version": read.version,
        "split": {"key": pipeline.key, "fractions": spec.split, "seed": spec.seed},
        "seed": spec.seed, "config_hash": config_hash, "metrics": metrics, "rows": rows,
        "training_seconds": round(seconds, 3), "spark_jobs_feature_fit": features.spark_jobs,
        "versions": {p: package_version(p) for p in ("batchml", "pyspark", "deltalake")},
    })  # fmt: skip
    log.info("model trained", extra={"model": name, "version": version.version,
                                     "metrics": metrics})  # fmt: skip
    return TrainReport(name, version.version, spec.algorithm, read.uri, read.version, rows,
                       metrics, round(seconds, 3))  # fmt: skip


def _classes(df, label: str) -> int:
    return int(df.agg(F.countDistinct(F.col(label))).collect()[0][0])
