"""The train job: fit a plan and register the result, or retrain a registered version
from its manifest and compare (`--reproduce`)."""

from __future__ import annotations

import math
import subprocess
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from pyspark.sql import SparkSession

from batchml.jobs.train.fit import fit
from batchml.jobs.train.plan import plan_from_manifest, plan_from_settings
from batchml.lib.delta import delta_tables
from batchml.lib.platform import storage
from batchml.lib.platform.logs import get_logger
from batchml.lib.platform.runtime import package_version
from batchml.lib.platform.settings import Settings
from batchml.lib.tracking.registry import registry_of

log = get_logger(__name__)


TOLERANCE = 1e-9  # metrics of a reproduction must match to this


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
    report: str | None = None  # the evaluation report of the test split

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
    registry = registry_of(settings, delta_tables(spark, settings))
    version = registry.register(
        name,
        trained.fitted,
        {
            "algorithm": spec.algorithm,
            "params": trained.params,
            "task": trained.task,
            "classes": trained.classes,
            "model_spec": spec.model_dump(mode="json"),
            "feature_pipeline": plan.pipeline_name,
            "feature_spec": plan.pipeline.model_dump(mode="json"),
            "training_table": trained.table_uri,
            "training_version": trained.table_version,
            "split": {"key": plan.pipeline.key, "fractions": spec.split, "seed": spec.seed},
            "seed": spec.seed,
            "config_hash": config_hash,
            "config": resolved_config or {},
            "metrics": trained.metrics,
            "rows": trained.rows,
            "training_seconds": round(trained.seconds, 3),
            "spark_jobs_feature_fit": trained.spark_jobs_feature_fit,
            "persisted_training_data": trained.persisted,
            "training_partitions": trained.partitions,
            "encoding": trained.encoding,
            "tuning": trained.tuning,
            "early_stopping": trained.early_stopping,
            "code": code_version(),
            "versions": library_versions(spark),
            "training_profile": trained.profile,
            "score_profile": trained.score_profile,
        },
    )
    log.info(
        "model trained",
        extra={"model": name, "version": version.version, "metrics": trained.metrics},
    )
    report = None
    if spec.evaluation.report and "test" in spec.split:
        report = _test_report(spark, settings, version, trained.fitted)
    return TrainReport(
        name,
        version.version,
        spec.algorithm,
        trained.table_uri,
        trained.table_version,
        trained.rows,
        trained.metrics,
        round(trained.seconds, 3),
        trained.params,
        trained.tuning,
        trained.early_stopping,
        report,
    )


def _test_report(spark: SparkSession, settings: Settings, version, fitted) -> str | None:
    """The evaluation report of the test split, beside the version (`<artifact>/report`),
    scored by the pipeline just fitted (the registered one, not loaded back). The
    version is registered already: a failure here is logged, not raised."""
    from batchml.lib.evaluation.model import TRAIN_REPORT, evaluate, record_evaluation

    try:
        done = evaluate(
            spark,
            settings,
            version,
            split="test",
            report_dir=storage.join(version.artifact_uri, TRAIN_REPORT),
            fitted=fitted,
        )
    except Exception as exc:
        log.warning("no test report", extra={"model": version.name, "why": str(exc)[:300]})
        return None
    try:
        record_evaluation(done, version)  # `evaluate` and `promote` read it, not rescore
    except Exception as exc:  # then they score the split again
        log.warning("test evaluation not recorded", extra={"why": str(exc)[:300]})
    return done.report


def reproduce(spark: SparkSession, settings: Settings, ref: str) -> ReproduceReport:
    """Train a registered version again from its manifest; compare the metrics."""
    registry = registry_of(settings)
    version = registry.get(ref)
    trained = fit(spark, settings, plan_from_manifest(version.manifest))
    registered = version.manifest.get("metrics", {})
    differences = compare_metrics(registered, trained.metrics)
    return ReproduceReport(
        version.name,
        version.version,
        version.training_table,
        version.training_version,
        not differences,
        registered,
        trained.metrics,
        differences,
        round(trained.seconds, 3),
    )


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
        dirty = subprocess.run(  # the whole checkout's changes, from any folder of it
            ["git", "-C", str(here), "status", "--porcelain"],
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
