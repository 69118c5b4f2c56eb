"""One model version evaluated over a table version and split: scored once, every
figure from one aggregation (`binary.py`, `regression.py`, `multiclass.py`), the report
page written beside the version (`page.py`). The `evaluate` command and training's own
report both run it.
"""

from __future__ import annotations

import json
import re
import time
from dataclasses import asdict, dataclass, field
from typing import Any

from pyspark.sql import DataFrame, SparkSession

from batchml.lib.delta import delta_tables
from batchml.lib.evaluation.binary import evaluate_binary
from batchml.lib.evaluation.bins import EvalSpec, check_thresholds
from batchml.lib.evaluation.multiclass import evaluate_multiclass
from batchml.lib.evaluation.regression import evaluate_regression
from batchml.lib.platform import storage
from batchml.lib.platform.errors import InputError
from batchml.lib.platform.logs import get_logger
from batchml.lib.platform.settings import EvaluationSpec, Settings
from batchml.lib.scoring.model import (
    PREDICTION,
    PROBABILITIES,
    SCORE,
    model_threshold,
    row_key,
    scored,
    target_of,
)
from batchml.lib.tracking.registry import ModelVersion, registry_of

log = get_logger(__name__)
TRAIN_REPORT = "report"  # the folder of training's own report, in the version's artifact
# training's evaluation of its test split, beside that report: what `evaluate` with no
# table, split or threshold of its own would compute again (the same rows, model, bins)
RECORDED = "evaluation.json"


@dataclass
class EvalReport:
    """One evaluation: what was read, how it was scored, the figures, the report."""

    model: str
    model_version: int
    table: str
    table_version: int
    split: str
    task: str
    scorer: str
    metrics: dict[str, Any]
    report: str | None = None
    seconds: float = 0.0
    weights: list[tuple[str, float]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data.pop("weights")
        return data


def evaluation_spec(model: ModelVersion) -> EvaluationSpec:
    """The version's `[models.NAME.evaluation]` as registered (defaults when absent)."""
    spec = (model.manifest.get("model_spec") or {}).get("evaluation")
    return EvaluationSpec.model_validate(spec or {})


def figures_of(
    frame: DataFrame,
    kind: str,
    classes: int,
    label: str,
    spec: EvalSpec,
    rows_hint: int | None,
) -> dict[str, Any]:
    if kind == "binary":
        return evaluate_binary(frame, label, SCORE, spec, rows_hint=rows_hint)
    if kind == "regression":
        return evaluate_regression(frame, label, PREDICTION, spec, rows_hint=rows_hint)
    probabilities = PROBABILITIES if PROBABILITIES in frame.columns else None
    return evaluate_multiclass(frame, label, PREDICTION, probabilities, classes, spec)


def evaluate(
    spark: SparkSession,
    settings: Settings,
    ref: str | ModelVersion,
    *,
    table: str | None = None,
    split: str = "test",
    thresholds: tuple[float, ...] = (),
    report_dir: str | None = None,
    write_report: bool = True,
    fitted: Any = None,
) -> EvalReport:
    """Evaluate one model version (see the module doc). Writes only the report files.
    `fitted`: the version's pipeline when the caller holds it (training, right after
    registering it): not loaded again from the registry (a job per stage)."""
    started = time.perf_counter()
    tables = delta_tables(spark, settings)
    registry = registry_of(settings, tables)
    model = ref if isinstance(ref, ModelVersion) else registry.get(ref)
    conf = evaluation_spec(model)
    regression = model.manifest.get("task") == "regression"
    if thresholds and regression:
        raise InputError(
            f"{model.name}@{model.version} is a regression model: "
            "classification metrics (--threshold) do not apply"
        )
    check_thresholds(tuple(thresholds))
    if fitted is None and table is None and split == "test" and not thresholds and not report_dir:
        found = recorded_evaluation(model)
        if found is not None and (found.report or not write_report):
            found.seconds = round(time.perf_counter() - started, 3)
            log.info(
                "evaluated (training's test report)",
                extra={"model": model.name, "version": model.version, "seconds": found.seconds},
            )
            return found
    target = target_of(tables, settings, model, table, split)
    frame, kind, classes, how, weights = scored(
        registry, tables, model, target, list(conf.slices), fitted
    )
    label = model.manifest["feature_spec"]["label"]
    cuts = tuple(dict.fromkeys([model_threshold(model), *conf.thresholds, *thresholds]))
    spec = EvalSpec(
        thresholds=cuts,
        slices=tuple(conf.slices),
        min_slice_rows=conf.min_slice_rows,
        replicates=conf.bootstrap,
        seed=int(model.manifest.get("seed", 42)),
        key=row_key(model, frame),
    )
    # The figures read the scores twice (the edges' sample, the aggregation). A linear
    # model's SQL scorer costs less than a cache; a booster or MLlib stages are kept.
    kept = how != "sql"
    if kept:
        from pyspark import StorageLevel

        frame = frame.persist(StorageLevel.MEMORY_AND_DISK)
    try:
        figures = figures_of(frame, kind, classes, label, spec, target.rows_hint)
    finally:
        if kept:
            frame.unpersist()
    report = EvalReport(
        model.name,
        model.version,
        target.uri,
        target.version,
        target.split,
        kind,
        how,
        figures,
        weights=weights,
    )
    if write_report:
        directory = report_dir or evaluation_dir(model, target.uri, target.version, target.split)
        from batchml.lib.evaluation.page import write_report as write

        title = (
            f"{model.name}@{model.version} ({model.algorithm}) on "
            f"{target.uri.rstrip('/').rsplit('/', 1)[-1]}@{target.version}, {target.split} split"
        )
        report.report = str(write(directory, title, figures, weights))
    report.seconds = round(time.perf_counter() - started, 3)
    log.info(
        "evaluated",
        extra={"model": model.name, "version": model.version, "seconds": report.seconds},
    )
    return report


def record_evaluation(report: EvalReport, model: ModelVersion) -> None:
    """Keep training's evaluation of its test split beside its report (written after the
    page: a record found means a whole report)."""
    from batchml.lib.evaluation.page import plain_json

    data = report.to_dict()
    for where in ("table", "report", "seconds"):  # found again from the version
        data.pop(where)
    storage.write_text(
        storage.join(model.artifact_uri, TRAIN_REPORT, RECORDED),
        json.dumps(data, indent=2, default=plain_json),
    )


def recorded_evaluation(model: ModelVersion) -> EvalReport | None:
    """Training's evaluation of the version's test split (None: not recorded, or a record
    of another version). The table is the version's own training table (where the
    registry finds it now: a copied lakehouse reads its own), the report its page."""
    folder = storage.join(model.artifact_uri, TRAIN_REPORT)
    try:
        data = json.loads(storage.read_text(storage.join(folder, RECORDED)))
    except (FileNotFoundError, ValueError):
        return None
    if not isinstance(data, dict) or (data.get("model"), data.get("model_version")) != (
        model.name,
        model.version,
    ):
        return None
    if data.get("table_version") != model.training_version or data.get("split") != "test":
        return None
    page = storage.join(folder, "report.html")
    return EvalReport(
        model.name,
        model.version,
        model.training_table,
        model.training_version,
        "test",
        str(data.get("task")),
        str(data.get("scorer")),
        dict(data.get("metrics") or {}),
        report=page if storage.exists(page) else None,
    )


def evaluation_dir(model: ModelVersion, uri: str, version: int, split: str) -> str:
    """`<artifact>/evaluations/<table>@<version>-<split>`: one folder per evaluated table
    version and split (evaluating it again rewrites it)."""
    name = re.sub(r"[^A-Za-z0-9_.-]", "_", uri.rstrip("/").rsplit("/", 1)[-1])
    return storage.join(model.artifact_uri, "evaluations", f"{name}@{version}-{split}")


def reports_of(model: ModelVersion) -> list[str]:
    """The report pages written for a version: training's first, then evaluations."""
    root = model.artifact_uri
    found = []
    if storage.exists(storage.join(root, TRAIN_REPORT, "report.html")):
        found.append(storage.join(root, TRAIN_REPORT, "report.html"))
    pages = storage.list_files(storage.join(root, "evaluations"))
    found.extend(e.uri for e in pages if e.uri.endswith("/report.html"))
    return found
