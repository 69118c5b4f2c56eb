"""`batchml monitor`: drift of a scoring input against a model's training snapshot.

The training side comes from the profile stored in the model's manifest (no pass over
the training data); a model registered without one is profiled from its pinned training
version by time travel (and the report says so): `lib/monitoring/profiles.py`. The input
is read once (`lib/monitoring/drift.py`). Periods whose labels landed are judged against
the registered test metric (`lib/monitoring/performance.py`). Every figure is appended
to the monitoring Delta table (`lib/monitoring/table.py`): one row per feature and
metric, with the model version, the input table and version, the run id and a status
from the thresholds in `[models.NAME.monitoring]`.

Exit codes: 0 when nothing drifted (warnings included), 8 when a feature or the scores
drifted or a labelled period's performance dropped past `degradation_drift` (a
scheduler's cue to retrain).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated, Any

import typer
from pyspark.sql import SparkSession

from batchml.jobs.app import JsonOption, ModelRefArg, emit, reports_errors, run_context
from batchml.lib.delta import delta_tables
from batchml.lib.delta.lakehouse import (
    lake_name,
    recorded_forms,
    split_version,
    table_location,
)
from batchml.lib.monitoring import drift
from batchml.lib.monitoring.performance import performance, predictions_uri
from batchml.lib.monitoring.profiles import score_figures, scored_rows, training_profile
from batchml.lib.monitoring.table import (
    STATUS_ORDER,
    MonitorReport,
    append,
    monitoring_spec,
    monitoring_uri,
    status_of,
)
from batchml.lib.platform.errors import InputError
from batchml.lib.platform.logs import get_logger
from batchml.lib.platform.settings import (
    Settings,
)
from batchml.lib.tracking import runs
from batchml.lib.tracking.registry import registry_of

log = get_logger(__name__)
EXIT_DRIFT = 8


def monitor(
    spark: SparkSession,
    settings: Settings,
    model_ref: str,
    input_ref: str | None = None,
    *,
    since: int | None = None,
    predictions: str | None = None,
) -> MonitorReport:
    """Drift of an input table version (or of the rows added to it after version `since`)
    against the model's training snapshot, and of its predictions' scores against the
    scores at training; every figure appended to the monitoring table.

    Raises:
        InputError: unknown model or table version, a feature absent from the input, a
            monitoring table with another schema.
    """
    started = time.monotonic()
    tables = delta_tables(spark, settings)
    model = registry_of(settings, None).get(model_ref)
    if input_ref:
        name, version = split_version(input_ref)
        uri = table_location(name, settings, relative_to=Path.cwd())
    else:
        uri, version = model.training_table, None  # the training table as it is now
    read = tables.read(uri, version=version)
    frame, scope = read.df, "whole version"
    if since is not None:
        if not 0 <= since < read.version:
            earlier = (
                f"give a version from 0 to {read.version - 1}"
                if read.version
                else "it has no earlier version"
            )
            raise InputError(
                f"--since {since}: rows added after it must come from a later version of "
                f"{read.uri}, which is at version {read.version} ({earlier})"
            )
        added = tables.read_added(read.uri, since, read.version)
        if added is None:
            log.info(f"files of {read.uri} were rewritten after version {since}: whole version")
        else:
            frame, scope = added.df, f"rows added after version {since}"
    profile, source = training_profile(spark, tables, model)
    numeric = profile.get("numeric") or {}
    categorical = profile.get("categorical") or {}
    missing = [c for c in [*numeric, *categorical] if c not in frame.columns]
    if missing:
        raise InputError(
            f"{read.uri}@{read.version} lacks feature column(s) {', '.join(missing)} "
            f"of {model.name}@{model.version}"
        )
    binned = {c: p for c, p in numeric.items() if p.get("deciles")}
    fine = drift.grids(spark, binned)
    summaries = drift.input_profile(frame, {c: g.edges for c, g in fine.items()}, list(categorical))
    spec = monitoring_spec(settings, model)
    features: dict[str, dict[str, Any]] = {}
    numeric_figures = drift.numeric_drifts(binned, summaries, fine)
    for column, figures in numeric_figures.items():
        features[column] = {"kind": "numeric", **figures}
    for column in categorical:
        figures = drift.categorical_drift(categorical[column], summaries[column])
        features[column] = {"kind": "categorical", **figures}
    scored_in = predictions_uri(settings, model, read.uri, predictions)
    scores = None
    if scored_in:
        scores = scored_rows(
            tables,
            scored_in,
            model,
            read.uri,
            (since, read.version),
            recorded_forms(read.uri, settings),
        )
    compared = score_figures(spark, model, scores) if scores is not None else None
    if compared is not None:
        features[compared[0]] = compared[1]
    for feature in features.values():
        statuses = status_of(feature, spec)
        feature["statuses"] = statuses
        feature["status"] = max(statuses.values(), key=STATUS_ORDER.__getitem__, default="ok")
    for name in spec.ignore:
        if name in features:
            features[name]["ignored"] = True  # reported, not judged
    periods: list[dict[str, Any]] = []
    if scored_in and tables.exists(scored_in):
        periods = performance(
            tables, settings, model, scored_in, read.uri, spec, monitoring_uri(settings)
        )
    judged = [f["status"] for name, f in features.items() if name not in spec.ignore]
    overall = max(
        [*judged, *(p["status"] for p in periods)],
        key=STATUS_ORDER.__getitem__,
        default="ok",
    )
    rows = next(iter(summaries.values())).rows if summaries else 0
    report = MonitorReport(
        run_id=runs.run_id(),
        model=model.name,
        model_version=model.version,
        input_table=read.uri,
        input_version=read.version,
        rows=rows,
        profile_source=source,
        status=overall,
        scope=scope,
        predictions_table=scored_in if scores is not None or periods else None,
        features=features,
        performance=periods,
        degraded=any(p["status"] == "drift" for p in periods),
        monitoring_table=monitoring_uri(settings),
    )
    append(tables, report, lake_name(report.input_table, settings))
    report.seconds = round(time.monotonic() - started, 2)
    return report


def score_drift(
    spark: SparkSession, settings: Settings, model_ref: str, input_uri: str, since: int | None
) -> dict[str, Any] | None:
    """Only the scores part of `monitor`: this version's scores of the input rows after
    version `since` against its training-time score profile, appended to the monitoring
    table (no `__run__` row). For a scheduled run, which monitors before it scores."""
    tables = delta_tables(spark, settings)
    model = registry_of(settings, None).get(model_ref)
    scored_in = predictions_uri(settings, model, input_uri, None)
    version = tables.version(input_uri)
    if not scored_in or version is None or not tables.exists(scored_in):
        return None
    scores = scored_rows(
        tables, scored_in, model, input_uri, (since, version), recorded_forms(input_uri, settings)
    )
    compared = score_figures(spark, model, scores) if scores is not None else None
    if compared is None:
        return None
    name, figures = compared
    statuses = status_of(figures, monitoring_spec(settings, model))
    figures["statuses"] = statuses
    figures["status"] = max(statuses.values(), key=STATUS_ORDER.__getitem__, default="ok")
    report = MonitorReport(
        runs.run_id(),
        model.name,
        model.version,
        input_uri,
        version,
        figures["rows"],
        "-",
        figures["status"],
        features={name: figures},
        monitoring_table=monitoring_uri(settings),
    )
    append(tables, report, lake_name(report.input_table, settings), run_row=False)
    return {"feature": name, **figures}


def judge_performance(
    spark: SparkSession, settings: Settings, model_ref: str, input_uri: str
) -> list[dict[str, Any]]:
    """Only the performance part of `monitor`: the periods of this model version's
    predictions of `input_uri` whose labels landed since they were last judged, appended
    to the monitoring table (no `__run__` row: no drift was looked at). For a scheduled
    run with no new input rows, where labels may still have landed."""
    tables = delta_tables(spark, settings)
    model = registry_of(settings, None).get(model_ref)
    scored_in = predictions_uri(settings, model, input_uri, None)
    version = tables.version(input_uri)
    if not scored_in or not tables.exists(scored_in) or version is None:
        return []
    spec = monitoring_spec(settings, model)
    periods = performance(
        tables, settings, model, scored_in, input_uri, spec, monitoring_uri(settings)
    )
    if periods:
        status = max((p["status"] for p in periods), key=STATUS_ORDER.__getitem__)
        report = MonitorReport(
            runs.run_id(),
            model.name,
            model.version,
            input_uri,
            version,
            0,
            "-",
            status,
            performance=periods,
            monitoring_table=monitoring_uri(settings),
        )
        append(tables, report, lake_name(report.input_table, settings), run_row=False)
    return periods


def render(data: dict[str, Any]) -> str:
    lines = [
        f"{data['model']}@{data['model_version']} vs {data['input_table']}@"
        f"{data['input_version']} ({data['rows']} rows, {data['scope']}; training profile: "
        f"{data['profile_source']}): {data['status'].upper()}",
        f"  {'feature':<24} {'kind':<11} {'PSI':>7} {'KS/JS':>7} {'nulls Δ':>8} "
        f"{'mean Δ sd':>9}  status",
    ]
    for feature, f in data["features"].items():
        second = f.get("js") if f["kind"] == "categorical" else f.get("ks")
        extra = ""
        if f.get("unseen_levels"):
            extra = f"  unseen {f['unseen_rows']}: {', '.join(map(str, f['unseen_levels']))}"
        lines.append(
            f"  {feature:<24} {f['kind']:<11} {f['psi']:>7.3f} {_num(second):>7} "
            f"{f['null_rate_change']:>+8.3f} {_num(f.get('mean_shift_sd')):>9}  "
            f"{f['status']}{' (ignored)' if f.get('ignored') else ''}{extra}"
        )
    for entry in data.get("performance") or []:
        low, high = entry["interval"] or (None, None)
        drop = "" if entry.get("drop") is None else f", {entry['drop']:+.1%} vs test"
        if entry.get("labels_resolved"):
            drop += f"; {entry['labels_resolved']} older label rows set aside"
        lines.append(
            f"  performance {entry['period']}: {entry['metric']} {entry['value']:.4f} "
            f"[{_num(low)}, {_num(high)}] on {entry['rows']} labelled rows{drop}  "
            f"{entry['status']}"
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
    since: Annotated[
        int | None,
        typer.Option(
            "--since",
            metavar="VERSION",
            help="Only the rows added to the input after this version (the new batch).",
        ),
    ] = None,
    predictions: Annotated[
        str | None,
        typer.Option(
            metavar="TABLE",
            help="The predictions table whose scores of this input to compare (default: "
            "the [predictions] section of this model and input).",
        ),
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Drift of a scoring input against the model's training snapshot (exit 8: drift)."""
    state = run_context(ctx)
    report = monitor(
        state.spark(),
        state.config().settings,
        model,
        input_table,
        since=since,
        predictions=predictions,
    )
    emit(report.to_dict(), as_json, render)
    if report.status == "drift":
        raise typer.Exit(EXIT_DRIFT)
