"""`batchml monitor`: drift of a scoring input against a model's training snapshot.

The training side comes from the profile stored in the model's manifest (no pass over
the training data); a model registered without one is profiled from its pinned training
version by time travel (and the report says so). The input is read once (`lib/drift.py`).
Every figure is appended to the monitoring Delta table (`<lakehouse>/_monitoring`): one
row per feature and metric, with the model version, the input table and version, the
run id and a status from the thresholds in `[models.NAME.monitoring]`.

Exit codes: 0 when no feature drifted (warnings included), 8 when one did (a scheduler's
cue to retrain).
"""

from __future__ import annotations

import time
import uuid
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import typer
from pyspark.sql import SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T

from batchml.jobs.app import JsonOption, ModelRefArg, RunContext, emit, reports_errors
from batchml.lib import drift, runs
from batchml.lib.delta import DeltaTables, delta_tables
from batchml.lib.errors import InputError
from batchml.lib.lakehouse import resolve_path, table_location
from batchml.lib.logs import get_logger
from batchml.lib.registry import ModelVersion, registry_of
from batchml.lib.settings import FeaturePipelineSpec, MonitoringSpec, Settings
from batchml.lib.splits import with_split

log = get_logger(__name__)
EXIT_DRIFT = 8
STATUS_ORDER = {"ok": 0, "warn": 1, "drift": 2}
MONITORING_SCHEMA = T.StructType(
    [
        T.StructField("run_id", T.StringType()),
        T.StructField("monitored_at", T.TimestampType()),
        T.StructField("model", T.StringType()),
        T.StructField("model_version", T.LongType()),
        T.StructField("input_table", T.StringType()),
        T.StructField("input_version", T.LongType()),
        T.StructField("feature", T.StringType()),
        T.StructField("kind", T.StringType()),
        T.StructField("metric", T.StringType()),
        T.StructField("value", T.DoubleType()),
        T.StructField("status", T.StringType()),
    ]
)


@dataclass
class MonitorReport:
    """One monitoring run: per feature its figures and status, and the run's status."""

    run_id: str
    model: str
    model_version: int
    input_table: str
    input_version: int
    rows: int
    profile_source: str  # "stored" | "time travel"
    status: str
    features: dict[str, dict[str, Any]] = field(default_factory=dict)
    monitoring_table: str = ""
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def monitoring_uri(settings: Settings) -> str:
    return resolve_path("_monitoring", settings)


def monitoring_spec(settings: Settings, model: ModelVersion) -> MonitoringSpec:
    """The thresholds: the model's current `[models.NAME.monitoring]`, else defaults."""
    spec = settings.models.get(model.name)
    return spec.monitoring if spec is not None else MonitoringSpec()


def training_profile(
    spark: SparkSession, tables: DeltaTables, model: ModelVersion
) -> tuple[dict[str, Any], str]:
    """The stored profile, else one computed from the pinned training version.

    Raises:
        InputError: no stored profile and the training version's files are gone.
    """
    stored = model.manifest.get("training_profile")
    if stored:
        return stored, "stored"
    from batchml.lib.feature_pipeline import collect_stats, profile_of

    spec = FeaturePipelineSpec.model_validate(model.manifest.get("feature_spec") or {})
    where = f"{model.training_table}@{model.training_version}"
    log.info(f"{model.name}@{model.version} has no stored training profile: profiling {where}")
    try:
        frame = tables.read(model.training_table, version=model.training_version).df
        split = model.manifest.get("split") or {}
        if split.get("fractions") and split.get("key") in frame.columns:
            # the profile training stores is the training split's: the same rows here
            frame = with_split(
                frame, split["key"], split["fractions"], seed=int(split["seed"]), column="__s"
            )
            frame = frame.filter(F.col("__s") == "train").drop("__s")
        return profile_of(collect_stats(frame, spec, profile=True)), "time travel"
    except InputError as exc:
        raise InputError(
            f"{model.name}@{model.version} has no stored training profile and its training "
            f"data {where} cannot be read ({exc}); a registry-aware vacuum (`batchml table "
            "vacuum`) keeps the versions registered models were trained on"
        ) from None


def status_of(figures: dict[str, Any], spec: MonitoringSpec) -> dict[str, str]:
    """ok | warn | drift for each figure that has thresholds."""
    limits = {
        "psi": (spec.psi_warn, spec.psi_drift),
        "ks": (spec.ks_warn, spec.ks_drift),
        "js": (spec.js_warn, spec.js_drift),
        "null_rate_change": (spec.null_rate_warn, spec.null_rate_drift),
        "mean_shift_sd": (spec.mean_shift_warn, spec.mean_shift_drift),
    }
    out = {}
    for metric, (warn, drifted) in limits.items():
        value = figures.get(metric)
        if value is None:
            continue
        size = abs(value)
        out[metric] = "drift" if size >= drifted else "warn" if size >= warn else "ok"
    return out


def monitor(
    spark: SparkSession, settings: Settings, model_ref: str, input_ref: str | None = None
) -> MonitorReport:
    """Drift of an input table version against the model's training snapshot; every
    figure appended to the monitoring table.

    Raises:
        InputError: unknown model or table version, a feature absent from the input, a
            monitoring table with another schema.
    """
    started = time.monotonic()
    tables = delta_tables(spark, settings)
    model = registry_of(settings, None).get(model_ref)
    from batchml.jobs.predict import split_version

    if input_ref:
        name, version = split_version(input_ref)
        uri = table_location(name, settings, relative_to=Path.cwd())
    else:
        uri, version = model.training_table, None  # the training table as it is now
    read = tables.read(uri, version=version)
    profile, source = training_profile(spark, tables, model)
    numeric = profile.get("numeric") or {}
    categorical = profile.get("categorical") or {}
    missing = [c for c in [*numeric, *categorical] if c not in read.df.columns]
    if missing:
        raise InputError(
            f"{read.uri}@{read.version} lacks feature column(s) {', '.join(missing)} "
            f"of {model.name}@{model.version}"
        )
    edges = {c: p["deciles"] for c, p in numeric.items() if p.get("deciles")}
    summaries = drift.input_profile(read.df, edges, list(categorical))
    spec = monitoring_spec(settings, model)
    features: dict[str, dict[str, Any]] = {}
    numeric_figures = drift.numeric_drifts(spark, {c: numeric[c] for c in edges}, summaries)
    for column, figures in numeric_figures.items():
        features[column] = {"kind": "numeric", **figures}
    for column in categorical:
        figures = drift.categorical_drift(categorical[column], summaries[column])
        features[column] = {"kind": "categorical", **figures}
    for figures in features.values():
        statuses = status_of(figures, spec)
        figures["statuses"] = statuses
        figures["status"] = max(statuses.values(), key=STATUS_ORDER.get, default="ok")
    overall = max((f["status"] for f in features.values()), key=STATUS_ORDER.get, default="ok")
    rows = next(iter(summaries.values())).rows if summaries else 0
    recording = runs.current()
    report = MonitorReport(
        run_id=recording.run_id if recording else uuid.uuid4().hex[:16],
        model=model.name,
        model_version=model.version,
        input_table=read.uri,
        input_version=read.version,
        rows=rows,
        profile_source=source,
        status=overall,
        features=features,
        monitoring_table=monitoring_uri(settings),
    )
    _append(tables, report)
    report.seconds = round(time.monotonic() - started, 2)
    return report


def _append(tables: DeltaTables, report: MonitorReport) -> None:
    now = datetime.now(UTC)
    base = (report.run_id, now, report.model, report.model_version, report.input_table,
            report.input_version)  # fmt: skip
    rows = [(*base, "__run__", "run", "rows", float(report.rows), report.status)]
    for feature, figures in report.features.items():
        for metric, value in figures.items():
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                status = figures["statuses"].get(metric)
                rows.append((*base, feature, figures["kind"], metric, float(value), status))
    tables.write(
        tables.spark.createDataFrame(rows, MONITORING_SCHEMA),
        report.monitoring_table,
        commit_info={"job": "monitor", "model": report.model, "run_id": report.run_id},
    )


def render(data: dict[str, Any]) -> str:
    lines = [
        f"{data['model']}@{data['model_version']} vs {data['input_table']}@"
        f"{data['input_version']} ({data['rows']} rows; training profile: "
        f"{data['profile_source']}): {data['status'].upper()}",
        f"  {'feature':<24} {'kind':<11} {'PSI':>7} {'KS/JS':>7} {'nulls Δ':>8} "
        f"{'mean Δ sd':>9}  status",
    ]
    for feature, f in data["features"].items():
        second = f.get("ks") if f["kind"] == "numeric" else f.get("js")
        extra = ""
        if f.get("unseen_levels"):
            extra = f"  unseen {f['unseen_rows']}: {', '.join(map(str, f['unseen_levels']))}"
        lines.append(
            f"  {feature:<24} {f['kind']:<11} {f['psi']:>7.3f} {_num(second):>7} "
            f"{f['null_rate_change']:>+8.3f} {_num(f.get('mean_shift_sd')):>9}  "
            f"{f['status']}{extra}"
        )
    lines.append(f"  appended to {data['monitoring_table']} (run {data['run_id']})")
    return "\n".join(lines)


def _num(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


@reports_errors
def command(
    ctx: typer.Context,
    model: ModelRefArg,
    *,
    input_table: Annotated[
        str | None,
        typer.Option(
            "--input",
            metavar="TABLE[@VERSION]",
            help="The scoring input (default: the model's training table, latest version).",
        ),
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Drift of a scoring input against the model's training snapshot (exit 8: drift)."""
    state: RunContext = ctx.find_object(RunContext)
    report = monitor(state.spark(), state.config().settings, model, input_table)
    emit(report.to_dict(), as_json, render)
    if report.status == "drift":
        raise typer.Exit(EXIT_DRIFT)
