"""`batchml evaluate`: a registered model's metrics over a whole Delta table version, with
bootstrap intervals, slices and a report (HTML + PNG) written beside the model version.

The default table is the model's own training table at its pinned version, test split
(the same hash split training used). Any table or version with the model's columns and
the label can be evaluated: `--table flight_features@7 --split all`.
"""

from __future__ import annotations

import re
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Annotated, Any

import typer
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T

from batchml.jobs.app import JsonOption, ModelRefArg, RunContext, emit, reports_errors
from batchml.jobs.predict import (
    _trained_types,
    check_input,
    feature_columns,
    score_with,
    split_version,
)
from batchml.lib import evaluation as ev
from batchml.lib import storage
from batchml.lib.delta import DeltaTables, delta_tables
from batchml.lib.errors import ConfigError, InputError
from batchml.lib.lakehouse import table_location
from batchml.lib.logs import get_logger
from batchml.lib.registry import ModelVersion, Registry, registry_of
from batchml.lib.settings import EvaluationSpec, Settings
from batchml.lib.splits import with_split

log = get_logger(__name__)
SPLITS = ("test", "validation", "train", "all")
SCORE, PREDICTION, PROBABILITIES = "__score", "__prediction", "__probabilities"
TRAIN_REPORT = "report"


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


@dataclass
class Target:
    """The rows to evaluate: a table version, filtered to a split."""

    frame: DataFrame
    uri: str
    version: int
    split: str
    rows_hint: int | None


def evaluation_spec(model: ModelVersion) -> EvaluationSpec:
    """The version's `[models.NAME.evaluation]` as registered (defaults when absent)."""
    spec = (model.manifest.get("model_spec") or {}).get("evaluation")
    return EvaluationSpec.model_validate(spec or {})


def target_of(
    tables: DeltaTables,
    settings: Settings,
    model: ModelVersion,
    table_ref: str | None,
    split: str,
) -> Target:
    """The table version and split to evaluate (default: the training table's pinned
    version, test split)."""
    if split not in SPLITS:
        raise ConfigError(f"--split {split!r}: one of {', '.join(SPLITS)}")
    if table_ref:
        name, version = split_version(table_ref)
        uri = table_location(name, settings, relative_to=Path.cwd())
    else:
        uri, version = model.training_table, model.training_version
    read = tables.read(uri, version=version)
    frame, hint = read.df, read.rows
    if split != "all":
        recorded = model.manifest.get("split") or {}
        fractions = recorded.get("fractions") or {}
        if split not in fractions:
            have = ", ".join(fractions) or "none recorded"
            raise InputError(
                f"{model.name}@{model.version} has no {split!r} split (splits: {have}); "
                "use --split all"
            )
        key = recorded["key"]
        if key not in frame.columns:
            raise InputError(f"split key {key} is not a column of {read.uri}@{read.version}")
        frame = with_split(frame, key, fractions, seed=int(recorded["seed"]), column="__split")
        frame = frame.filter(F.col("__split") == split).drop("__split")
        hint = int(hint * fractions[split]) if hint is not None else None
    return Target(frame, read.uri, read.version, split, hint)


def scored(
    registry: Registry,
    tables: DeltaTables,
    model: ModelVersion,
    target: Target,
    keep: list[str],
    fitted: Any = None,
) -> tuple[DataFrame, str, int, str, list[tuple[str, float]]]:
    """`target` scored by `model`, with the columns evaluation reads: the label and
    `keep`, `__score` (class 1's probability, binary), `__prediction` and
    `__probabilities` (multiclass). Returns (frame, task, classes, scorer, weights)."""
    from pyspark.ml.functions import vector_to_array

    from batchml.lib.report import pipeline_weights, scorer_weights

    label = (model.manifest.get("feature_spec") or {}).get("label")
    if not label:
        raise InputError(f"{model.name}@{model.version} has no label in its manifest")
    needed = {c: "feature" for c in feature_columns(model.manifest)}
    needed.setdefault(label, "label")
    for column in keep:
        needed.setdefault(column, "slice")
    check_input(
        target.frame.schema, needed, _trained_types(tables, model), target.uri, target.version
    )
    key = (model.manifest.get("feature_spec") or {}).get("key")
    key_column = [key] if key and key in target.frame.columns else []
    columns = list(dict.fromkeys([label, *key_column, *keep]))
    scorer = registry.scorer(model) if fitted is None else None
    if scorer is None and fitted is None:
        fitted = registry.load(model)  # loaded once: it scores and gives the weights
    frame, classes, how = score_with(registry, model, target.frame, columns, fitted)
    task = "regression" if model.manifest.get("task") == "regression" else "classification"
    outputs = [F.col(f"`{c}`") for c in columns]
    outputs.append(F.col("prediction").cast("double").alias(PREDICTION))
    if task == "classification":
        kind = frame.schema["probability"].dataType if "probability" in frame.columns else None
        if classes == 2 and isinstance(kind, T.DoubleType):
            outputs.append(F.col("probability").alias(SCORE))
        elif classes == 2:
            outputs.append(vector_to_array("probability")[1].alias(SCORE))
        elif "probabilities" in frame.columns:
            outputs.append(F.col("probabilities").alias(PROBABILITIES))
        elif "probability" in frame.columns:
            outputs.append(vector_to_array("probability").alias(PROBABILITIES))
    weights: list[tuple[str, float]] = []
    try:
        weights = (
            scorer_weights(scorer) if scorer is not None else pipeline_weights(fitted, target.frame)
        )
    except Exception as exc:  # weights are for the report: never fail an evaluation
        log.info("no feature weights for the report", extra={"why": str(exc)})
    kind = "regression" if task == "regression" else ("binary" if classes == 2 else "multiclass")
    return frame.select(*outputs), kind, classes, how, weights


def row_key(model: ModelVersion, frame: DataFrame) -> str | None:
    """The model's row key when the scored frame has it (it chooses the edges' sample)."""
    key = (model.manifest.get("feature_spec") or {}).get("key")
    return key if key and key in frame.columns else None


def model_threshold(model: ModelVersion) -> float:
    value = (model.manifest.get("params") or {}).get("threshold")
    return float(value) if isinstance(value, (int, float)) else 0.5


def figures_of(
    frame: DataFrame,
    kind: str,
    classes: int,
    label: str,
    spec: ev.EvalSpec,
    rows_hint: int | None,
) -> dict[str, Any]:
    if kind == "binary":
        return ev.evaluate_binary(frame, label, SCORE, spec, rows_hint=rows_hint)
    if kind == "regression":
        return ev.evaluate_regression(frame, label, PREDICTION, spec, rows_hint=rows_hint)
    probabilities = PROBABILITIES if PROBABILITIES in frame.columns else None
    return ev.evaluate_multiclass(frame, label, PREDICTION, probabilities, classes, spec)


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
) -> EvalReport:
    """Evaluate one model version (see the module doc). Writes only the report files."""
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
    ev.check_thresholds(tuple(thresholds))
    target = target_of(tables, settings, model, table, split)
    frame, kind, classes, how, weights = scored(registry, tables, model, target, list(conf.slices))
    label = model.manifest["feature_spec"]["label"]
    cuts = tuple(dict.fromkeys([model_threshold(model), *conf.thresholds, *thresholds]))
    spec = ev.EvalSpec(
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
        from batchml.lib.report import write_report as write

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


HEADLINE = {
    "binary": ("areaUnderROC", "areaUnderPR", "log_loss", "brier", "accuracy", "f1"),
    "multiclass": ("accuracy", "macro_f1", "weighted_f1", "log_loss"),
    "regression": ("rmse", "mae", "r2", "mape"),
}


def render(data: dict[str, Any]) -> str:
    m = data["metrics"]
    intervals = (m.get("bootstrap") or {}).get("intervals", {})
    lines = [
        f"evaluate {data['model']}@{data['model_version']} on "
        f"{data['table']}@{data['table_version']} ({data['split']} split, {m['rows']:,} rows, "
        f"scorer {data['scorer']}, {data['seconds']} s)"
    ]
    for name in HEADLINE[data["task"]]:
        if name not in m or m[name] is None:
            continue
        ci = intervals.get(name)
        bound = m.get(f"{name}_error_bound")
        lines.append(
            f"  {name:<14}{m[name]:.6f}"
            + (f"  95% CI [{ci[0]:.6f}, {ci[1]:.6f}]" if ci else "")
            + (f"  (binning error <= {bound:.1e})" if bound is not None else "")
        )
    for t in m.get("thresholds", []):
        c = t["confusion"]
        lines.append(
            f"  at {t['threshold']:<11g} precision {t['precision']:.4f}, recall {t['recall']:.4f}, "
            f"f1 {t['f1']:.4f}; tp {c['tp']}, fp {c['fp']}, fn {c['fn']}, tn {c['tn']}"
        )
    if "best_f1" in m:
        lines.append(f"  best F1 {m['best_f1']:.4f} at threshold {m['best_f1_threshold']:.4f}")
    for column, table in (m.get("slices") or {}).items():
        key = HEADLINE[data["task"]][0]
        shown = ", ".join(
            f"{e['value']} {e.get(key) if e.get(key) is None else round(e[key], 4)} ({e['rows']:,})"
            for e in table[:8]
        )
        more = f", … {len(table) - 8} more" if len(table) > 8 else ""
        lines.append(f"  by {column}: {shown}{more}")
    if data.get("report"):
        lines.append(f"  report: {data['report']}")
    return "\n".join(lines)


@reports_errors
def command(
    ctx: typer.Context,
    model: ModelRefArg,
    *,
    table: Annotated[
        str | None,
        typer.Option(
            "--table",
            metavar="TABLE[@VERSION]",
            help="The table to evaluate on (default: the model's training table and version).",
        ),
    ] = None,
    split: Annotated[
        str, typer.Option("--split", help="test, validation, train or all (the whole table).")
    ] = "test",
    threshold: Annotated[
        list[float] | None,
        typer.Option("--threshold", help="Also report the figures at this threshold (repeat)."),
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Metrics of a registered model over a whole table version, with intervals and a report."""
    state: RunContext = ctx.find_object(RunContext)
    report = evaluate(
        state.spark(),
        state.config().settings,
        model,
        table=table,
        split=split,
        thresholds=tuple(threshold or ()),
    )
    data = report.to_dict()
    if not as_json:
        emit(data, False, render)
        return
    for key in ("roc_curve", "pr_curve", "score_histogram", "residual_histogram"):
        data["metrics"].pop(key, None)
    emit(data, True, render)
