"""`batchml features`: materialise a feature view into a versioned Delta feature table."""

from __future__ import annotations

import uuid
from dataclasses import asdict, dataclass, field
from typing import Annotated, Any

import typer
from pyspark.sql import SparkSession

from batchml.jobs.app import JsonOption, emit, reports_errors, run_context
from batchml.lib.delta import DeltaTables, WriteResult, WriteToken, delta_tables
from batchml.lib.delta.lakehouse import lake_name, recorded_forms, table_location
from batchml.lib.features.keys import check_key_columns, count_keys
from batchml.lib.features.views import (
    ResolvedView,
    configured_view,
    driving_source,
    resolve_view,
)
from batchml.lib.platform.errors import ConfigError, InputError
from batchml.lib.platform.logs import get_logger
from batchml.lib.platform.settings import FeatureView, Settings
from batchml.lib.tracking import runs

log = get_logger(__name__)


@dataclass
class FeaturesReport:
    """What the job read (pinned sources) and wrote (or would write, with --explain)."""

    view: str
    table_uri: str
    sources: dict[str, dict[str, Any]]
    schema: list[dict[str, Any]]
    sql: str
    run_id: str
    explain_only: bool = False
    version: int | None = None
    rows: int | None = None
    status: str = "written"
    message: str = ""
    extra: dict[str, Any] = field(default_factory=dict)
    # a view with a key: rows, distinct, duplicated, duplicate_rows, null_rows, example
    keys: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def run(
    spark: SparkSession,
    settings: Settings,
    view_name: str | None = None,
    *,
    explain: bool = False,
    overwrite_schema: bool = False,
    full: bool = False,
) -> FeaturesReport:
    """Resolve the view's sources to versions and write the view as one overwrite commit,
    or, for an `incremental` view, append the rows of the driving source's new files.

    A rerun while the feature table's latest version already holds this view over the
    same source versions (same SQL) writes nothing.
    """
    name, view = configured_view(settings, view_name)
    tables = delta_tables(spark, settings)
    if view.incremental:
        driving_source(name, view)  # a bad `driving` is a config error before any read
    resolved = resolve_view(spark, tables, settings, name, view)
    assert resolved is not None  # only an incremental resolution can come back empty
    report = FeaturesReport(
        name,
        resolved.output_uri,
        {s.name: {"uri": s.uri, "version": s.version} for s in resolved.sources},
        [{"name": f.name, "type": f.dataType.simpleString()} for f in resolved.df.schema],
        resolved.sql,
        runs.run_id(),
        explain_only=explain,
    )
    if view.key:  # named before anything is written
        check_key_columns(resolved.df.schema, view.key, f"feature view {name}")
    if explain:
        report.status = "explained"
        return report
    # the sources by their lake names, so a copied or moved lakehouse holds the same
    # view (the absolute form is how earlier versions fingerprinted it)
    fingerprint, *earlier = (
        uuid.uuid5(
            uuid.NAMESPACE_URL,
            "|".join(
                [name, resolved.sql, *[f"{named(s.uri)}@{s.version}" for s in resolved.sources]]
            ),
        ).hex[:20]
        for named in (lambda uri: lake_name(uri, settings), str)
    )
    if tables.exists(resolved.output_uri):
        latest = tables.history(resolved.output_uri, 1)[0]
        if (latest.get("batchml") or {}).get("fingerprint") in (fingerprint, *earlier):
            report.version, report.status = latest["version"], "skipped"
            report.message = (
                f"feature table {resolved.output_uri} version {latest['version']} already holds "
                f"view {name} over these source versions; nothing written"
            )
            return report
    sql_hash = uuid.uuid5(uuid.NAMESPACE_URL, f"{name}|{resolved.sql}").hex[:20]
    report.extra["mode"] = "full"
    if view.incremental and not (full or overwrite_schema):
        appended = _incremental(
            spark, tables, settings, resolved, view, report, fingerprint, sql_hash
        )
        if appended is not None:
            return _count_keys(tables, view, appended)
    try:
        result = _write(
            tables, resolved, view, report, fingerprint, overwrite_schema, sql_hash, settings
        )
    except InputError as exc:
        if "does not match the schema" not in str(exc) or overwrite_schema:
            raise
        raise InputError(f"{exc}; rerun with --overwrite-schema to replace it") from None
    report.version = result.version
    report.rows = result.rows_added
    reason = report.extra.get("rebuild_reason")
    report.message = (
        f"wrote {result.rows_added} rows to {resolved.output_uri} (version {result.version})"
        + (f"; rebuilt: {reason}" if reason else "")
    )
    log.info("features", extra={"view": name, "status": report.status, "version": report.version})
    return _count_keys(tables, view, report)


def _count_keys(tables: DeltaTables, view: FeatureView, report: FeaturesReport) -> FeaturesReport:
    """A view with a `key`: its repeated and null keys over the table version written
    (one aggregation over the key columns), in the report and its message."""
    if not view.key or report.status != "written" or report.version is None:
        return report
    frame = tables.read(report.table_uri, version=report.version).df
    counts = count_keys(frame, view.key)
    report.keys = counts.to_dict()
    said = counts.describe()
    if counts.all_null:
        said = "; ".join(
            filter(None, [f"key column {', '.join(counts.all_null)} is null in every row", said])
        )
    if said:
        report.message += f"; key {', '.join(view.key)}: {said}"
        log.warning("key repeats", extra={"view": report.view, **report.keys})
    return report


def _incremental(
    spark: SparkSession,
    tables: DeltaTables,
    settings: Settings,
    resolved: ResolvedView,
    view: FeatureView,
    report: FeaturesReport,
    fingerprint: str,
    sql_hash: str,
) -> FeaturesReport | None:
    """Append the view over the driving source's files added since the version the last
    materialisation pinned (the other sources at their pinned versions). None when the
    table must be rebuilt instead (first run, changed SQL, rewritten driving source); the
    reason is in `report.extra["rebuild_reason"]`."""
    driving = driving_source(report.view, view)
    pins = {s.name: s for s in resolved.sources}
    latest = tables.history(resolved.output_uri, 1)[0] if tables.exists(resolved.output_uri) else {}
    info = latest.get("batchml") or {}
    before = (info.get("sources") or {}).get(driving) or {}
    if info.get("view") != report.view or info.get("sql_hash") != sql_hash:
        report.extra["rebuild_reason"] = (
            "the SQL changed since the last materialisation"
            if info.get("view") == report.view
            else "no earlier materialisation of this view to build on"
        )
        return None
    if (
        before.get("uri") not in recorded_forms(pins[driving].uri, settings)
        or before.get("version") is None
    ):
        report.extra["rebuild_reason"] = f"driving source {driving} is another table"
        return None
    since, current = int(before["version"]), pins[driving].version
    if since == current:
        report.status, report.version = "skipped", latest["version"]
        report.message = (
            f"no new files in driving source {driving} since version {since}; nothing "
            "written (lookup sources are read as of each run; --full rebuilds)"
        )
        return report
    if since > current:
        report.extra["rebuild_reason"] = (
            f"driving source {driving} is pinned at {current}, before {since}"
        )
        return None
    pinned_view = view.model_copy(update={"sources": {n: p.version for n, p in pins.items()}})
    added = resolve_view(
        spark, tables, settings, report.view, pinned_view, rows_added_since={driving: since}
    )
    if added is None:
        report.extra["rebuild_reason"] = (
            f"files of driving source {driving} were removed or rewritten between versions "
            f"{since} and {current}"
        )
        return None
    result = tables.write(
        added.df,
        resolved.output_uri,
        mode="append",
        token=WriteToken(f"features/{report.view}/{sql_hash}", current),
        commit_info=_commit_info(report, fingerprint, sql_hash, "incremental", settings),
    )
    report.extra["mode"] = "incremental"
    report.version, report.rows = result.version, result.rows_added
    report.status = "written" if result.committed else "skipped"
    report.message = (
        f"appended {result.rows_added} rows from the files added to {driving} between "
        f"versions {since} and {current} (version {result.version})"
        if result.committed
        else result.message
    )
    log.info(
        "features", extra={"view": report.view, "status": report.status, "mode": "incremental"}
    )
    return report


def _commit_info(
    report: FeaturesReport, fingerprint: str, sql_hash: str, mode: str, settings: Settings
) -> dict:
    """The commit's record of the view, its sources by their lake names."""
    sources = {
        name: {**source, "uri": lake_name(source["uri"], settings)}
        for name, source in report.sources.items()
    }
    return {
        "job": "features",
        "view": report.view,
        "run_id": report.run_id,
        "fingerprint": fingerprint,
        "sql_hash": sql_hash,
        "mode": mode,
        "sources": sources,
    }


def _write(
    tables: DeltaTables,
    resolved: ResolvedView,
    view: FeatureView,
    report: FeaturesReport,
    fingerprint: str,
    overwrite_schema: bool,
    sql_hash: str,
    settings: Settings,
) -> WriteResult:
    return tables.write(
        resolved.df,
        resolved.output_uri,
        mode="overwrite",
        partition_by=view.partition_by or None,
        overwrite_schema=overwrite_schema,
        commit_info=_commit_info(report, fingerprint, sql_hash, "full", settings),
    )


def fit_pipeline(spark: SparkSession, settings: Settings, name: str) -> dict[str, Any]:
    """Fit a configured feature pipeline on its view's feature table (latest version) and
    describe it: statistics, slots, Spark jobs. Training fits the same pipeline itself."""
    from batchml.lib.features.pipeline import fit_features  # pyspark.ml: only when fitting

    if name not in settings.pipelines:
        known = ", ".join(sorted(settings.pipelines)) or "none configured"
        raise ConfigError(f"unknown feature pipeline {name!r} (pipelines: {known})")
    spec = settings.pipelines[name]
    view = settings.views.get(spec.view)
    uri = table_location((view.table if view else None) or spec.view, settings)
    tables = delta_tables(spark, settings)
    read = tables.read(uri)
    fitted = fit_features(
        read.df,
        name,
        spec,
        centres=tables.column_centres(read.uri, read.version, list(spec.numeric)),
    )
    return {
        "pipeline": name,
        "table_uri": read.uri,
        "table_version": read.version,
        "rows": fitted.stats.rows,
        "labelled_rows": fitted.stats.labelled,
        "spark_jobs": fitted.spark_jobs,
        "slots": len(fitted.slot_names),
        "slot_names": fitted.slot_names,
        "stages": [type(stage).__name__ for stage in fitted.model.stages],
        "numeric": {c: asdict(n) for c, n in fitted.stats.numeric.items()},
        "categorical_levels": {c: len(v) for c, v in fitted.stats.categorical.items()},
    }


def _render_features(data: dict[str, Any]) -> str:
    lines = [f"view {data['view']} -> {data['table_uri']}: {data['status']}"]
    lines += [
        f"  source {n}: version {s['version']} ({s['uri']})" for n, s in data["sources"].items()
    ]
    if data["explain_only"]:
        lines += ["", data["sql"], ""]
        lines += [f"  {f['name']:<24} {f['type']}" for f in data["schema"]]
    elif data["message"]:
        lines.append(f"  {data['message']}")
    return "\n".join(lines)


@reports_errors
def command(
    ctx: typer.Context,
    *,
    view: Annotated[
        str | None,
        typer.Option("--view", help="A view from the views section (optional if only one)."),
    ] = None,
    explain: Annotated[
        bool,
        typer.Option("--explain", help="Print the SQL, pinned sources and schema; write nothing."),
    ] = False,
    overwrite_schema: Annotated[
        bool,
        typer.Option(
            "--overwrite-schema", help="Replace the feature table's schema if it changed."
        ),
    ] = False,
    full: Annotated[
        bool,
        typer.Option("--full", help="Rebuild an incremental view's table from all its rows."),
    ] = False,
    fit: Annotated[
        str | None,
        typer.Option(
            "--fit", help="Fit this feature pipeline on its feature table and describe it."
        ),
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Materialise a feature view (Spark SQL over pinned Delta tables) into a Delta table."""
    state = run_context(ctx)
    if fit is not None:
        described = fit_pipeline(state.spark(), state.config().settings, fit)
        emit(
            described,
            as_json,
            lambda d: (
                f"pipeline {d['pipeline']} fitted on {d['table_uri']}@{d['table_version']}: "
                f"{d['rows']} rows, {d['slots']} feature slots, {d['spark_jobs']} Spark jobs\n"
                f"stages: {', '.join(d['stages'])}"
            ),
        )
        return
    report = run(
        state.spark(),
        state.config().settings,
        view,
        explain=explain,
        overwrite_schema=overwrite_schema,
        full=full,
    )
    emit(report.to_dict(), as_json, _render_features)
