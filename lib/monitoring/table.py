"""The monitoring table (`<lakehouse>/_monitoring`): one row per monitored figure —
feature, kind, metric, value, status — with the model version, the input table and
version, the run id and, for performance rows, the period judged. Its schema and
location, the statuses, the append, and the periods already judged.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

from pyspark.sql import functions as F
from pyspark.sql import types as T

from batchml.lib.delta import DeltaTables
from batchml.lib.delta.lakehouse import resolve_path
from batchml.lib.platform.settings import MonitoringSpec, Settings
from batchml.lib.tracking.registry import ModelVersion

MONITORING_TABLE = "_monitoring"  # under the lakehouse root
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
        T.StructField("period", T.StringType()),  # performance rows: the period judged
    ]
)
PERFORMANCE = "__performance__"  # the feature name of performance rows
RUN_ROW = "__run__"  # the feature name of a run's own row (rows read, the run's status)


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
    scope: str = "whole version"  # or "rows added after version N" (--since)
    predictions_table: str | None = None  # where the compared scores came from
    features: dict[str, dict[str, Any]] = field(default_factory=dict)
    # the headline metric of each newly labelled period of the predictions
    performance: list[dict[str, Any]] = field(default_factory=list)
    degraded: bool = False  # a period dropped past degradation_drift
    monitoring_table: str = ""
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def monitoring_uri(settings: Settings) -> str:
    return resolve_path(MONITORING_TABLE, settings)


def monitoring_spec(settings: Settings, model: ModelVersion) -> MonitoringSpec:
    """The thresholds: the model's current `[models.NAME.monitoring]`, else defaults."""
    spec = settings.models.get(model.name)
    return spec.monitoring if spec is not None else MonitoringSpec()


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
        out[metric] = graded(abs(value), warn, drifted)
    return out


def graded(size: float, warn: float, drifted: float) -> str:
    return "drift" if size >= drifted else "warn" if size >= warn else "ok"


def recorded_periods(
    tables: DeltaTables, monitoring: str, model: ModelVersion
) -> dict[tuple[str, int], set[int | None]]:
    """(period, labelled rows) already judged for this model version -> the positives
    each time (None: not recorded, as before positives were). A period is judged again
    when its labelled rows or its positives changed (labels landed, or were corrected)."""
    judged: dict[tuple[str, int], set[int | None]] = {}
    if not tables.exists(monitoring):
        return judged
    frame = tables.read(monitoring).df
    if "period" not in frame.columns:
        return judged  # another schema: the append names it
    rows = frame.filter(
        (F.col("feature") == PERFORMANCE)
        & (F.col("model") == model.name)
        & (F.col("model_version") == model.version)
        & F.col("metric").isin("rows", "positives")
    ).select("run_id", "period", "metric", "value")
    runs: dict[tuple[str, str], dict[str, int]] = {}
    for r in rows.collect():
        runs.setdefault((r["run_id"], r["period"]), {})[r["metric"]] = int(r["value"])
    for (_, period), found in runs.items():
        if "rows" in found:
            judged.setdefault((period, found["rows"]), set()).add(found.get("positives"))
    return judged


def append(
    tables: DeltaTables, report: MonitorReport, input_name: str, *, run_row: bool = True
) -> None:
    """The report's figures as monitoring rows, the input by its lake name."""
    now = datetime.now(UTC)
    base = (
        report.run_id,
        now,
        report.model,
        report.model_version,
        input_name,
        report.input_version,
    )
    rows: list[tuple[Any, ...]] = []
    if run_row:
        rows.append((*base, RUN_ROW, "run", "rows", float(report.rows), report.status, None))
    for feature, figures in report.features.items():
        for metric, value in figures.items():
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                status = figures["statuses"].get(metric)
                rows.append((*base, feature, figures["kind"], metric, float(value), status, None))
    for entry in report.performance:
        low, high = entry["interval"] or (None, None)
        for metric, value, status in (
            (entry["metric"], entry["value"], entry["status"]),
            (f"{entry['metric']}_lower", low, None),
            (f"{entry['metric']}_upper", high, None),
            ("rows", float(entry["rows"]), None),
            ("positives", entry.get("positives"), None),
            ("labels_resolved", entry.get("labels_resolved"), None),
        ):
            if value is not None:
                row = (PERFORMANCE, "performance", metric, float(value), status, entry["period"])
                rows.append((*base, *row))
    tables.write(
        tables.spark.createDataFrame(rows, MONITORING_SCHEMA),
        report.monitoring_table,
        commit_info={"job": "monitor", "model": report.model, "run_id": report.run_id},
    )
