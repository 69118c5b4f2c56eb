"""`batchml predict`: score a pinned version of a Delta table with a registered model and
write the predictions back to Delta: idempotent, incremental, with lineage.

The output table holds, per model name, the predictions of one model version. It is
partitioned by `model_name` (then by the date column `partition_by` names, when set), so
that a full rescore replaces exactly this model's slice in one commit.

- Idempotent by construction: every commit carries the Delta txn token
  (`predict/<model>@<version>/<input table>`, input version). A rerun for the same model
  version and input version finds the token committed and writes nothing, on either
  Delta backend, after a crash between the Parquet write and the commit as after a
  completed run.
- Incremental: when this model version's newest predictions came from an earlier
  version of the same input, only the rows of the files added to the input since then
  are scored (the two versions' file lists from the Delta log; no anti-join over the
  output) and appended. Files removed in between (an overwrite, a replace) mean rows
  changed: the whole current version is rescored and replaces this model's slice.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Annotated, Any

import typer
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T

from batchml.jobs.app import JsonOption, emit, reports_errors, run_context
from batchml.lib.delta import DeltaTables, WriteToken, delta_tables
from batchml.lib.delta.delta_log import open_snapshot
from batchml.lib.delta.lakehouse import recorded_forms, split_version, table_location
from batchml.lib.delta.schemas import compare_schemas
from batchml.lib.features.keys import KeyCounts, check_key_columns, count_keys, refuse_all_null
from batchml.lib.platform.errors import ConfigError, InputError
from batchml.lib.platform.logs import get_logger
from batchml.lib.platform.settings import PredictionSpec, Settings
from batchml.lib.platform.sqltext import string as _sql
from batchml.lib.scoring.model import (
    check_input,
    feature_columns,
    score_with,
    scored_columns,
    trained_types,
)
from batchml.lib.tracking import runs
from batchml.lib.tracking.registry import registry_of

log = get_logger(__name__)

MODEL_NAME = "model_name"
LINEAGE = (MODEL_NAME, "model_version", "input_table", "input_version", "run_id", "scored_at")


@dataclass(frozen=True)
class PredictRequest:
    """What `batchml predict` was asked: a model ref, and overrides of its conf section."""

    model: str  # NAME, NAME@VERSION or NAME@ALIAS; NAME may be a [predictions.NAME] section
    input: str | None = None  # TABLE or TABLE@VERSION
    output: str | None = None
    full: bool = False
    # a first run (no predictions of this model version yet) scores only the rows of the
    # files added to the input after this version: "score new data from here on"
    since: int | None = None


@dataclass
class PredictReport:
    """What one run scored and wrote."""

    model: str
    model_version: int
    input_table: str
    input_version: int
    output_table: str
    run_id: str
    mode: str  # full | incremental | skipped
    # sql: a linear model as one SQL expression; arrow: an xgboost booster on Arrow
    # batches; mllib: the pipeline's own transform
    scorer: str = ""
    rows_scored: int = 0
    output_version: int | None = None
    message: str = ""
    retention_removed_files: int = 0
    seconds: float = 0.0
    columns: list[str] = field(default_factory=list)
    # the scored rows' key: rows, distinct, duplicated, duplicate_rows, null_rows, example
    keys: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Plan:
    """The request resolved against the config: locations, pins and the model ref."""

    model_ref: str
    input_uri: str
    input_version: int | None
    output_uri: str
    spec: PredictionSpec


def plan_for(settings: Settings, request: PredictRequest, cwd: Path | None = None) -> Plan:
    """Resolve the model ref, input and output from the request and `[predictions.NAME]`.

    Raises:
        ConfigError: no input or output from either, or a bad `TABLE@VERSION`.
    """
    name, at, selector = request.model.partition("@")
    section = settings.predictions.get(name)
    if section is not None:
        model_name = section.model.partition("@")[0]
        model_ref = f"{model_name}@{selector}" if at else section.model
        input_ref = request.input or section.input
        output_ref = request.output or section.output
        spec = section
    else:
        if not (request.input and request.output):
            known = ", ".join(sorted(settings.predictions)) or "none"
            raise ConfigError(
                f"predict {request.model}: no [predictions.{name}] section in the config "
                f"(sections: {known}); give --input and --output"
            )
        model_ref, input_ref, output_ref = request.model, request.input, request.output
        spec = PredictionSpec(model=request.model, input=input_ref, output=output_ref)
    table, version = split_version(input_ref)
    where = cwd or Path.cwd()
    return Plan(
        model_ref,
        table_location(table, settings, relative_to=where),
        version,
        table_location(output_ref, settings, relative_to=where),
        spec,
    )


def last_run(tables: DeltaTables, output: str, model_name: str) -> dict[str, Any] | None:
    """batchml's commit info of the newest predict commit for `model_name` in the output."""
    if not tables.exists(output):
        return None
    for commit in tables.history(output):
        info = commit.get("batchml") or {}
        if info.get("job") == "predict" and info.get("model") == model_name:
            return info
    return None


def run(spark: SparkSession, settings: Settings, request: PredictRequest) -> PredictReport:
    """Score the input with the model and write the predictions (see the module doc)."""
    started = time.perf_counter()
    plan = plan_for(settings, request)
    tables = delta_tables(spark, settings)
    registry = registry_of(settings, tables)
    model = registry.get(plan.model_ref)
    read = tables.read(plan.input_uri, version=plan.input_version)
    pipeline_key = (model.manifest.get("feature_spec") or {}).get("key")
    key = plan.spec.key or ([pipeline_key] if pipeline_key else [])
    if not key:
        raise ConfigError(
            f"predict {model.name}: no key column (the model's feature pipeline has none; "
            "set key in its [predictions] section)"
        )
    keep = list(dict.fromkeys([*key, *plan.spec.passthrough]))
    if plan.spec.partition_by and plan.spec.partition_by not in keep:
        keep.append(plan.spec.partition_by)
    needed = {c: "feature" for c in feature_columns(model.manifest)}
    needed.update({c: "key" for c in key if c not in needed})
    needed.update({c: "passthrough" for c in plan.spec.passthrough if c not in needed})
    if plan.spec.partition_by:
        needed.setdefault(plan.spec.partition_by, "partition")
    check_input(read.df.schema, needed, trained_types(tables, model), read.uri, read.version)
    check_key_columns(read.df.schema, key, f"input {read.uri}@{read.version}")
    if plan.spec.retention_days and plan.spec.partition_by:
        kind = read.df.schema[plan.spec.partition_by].dataType
        if not isinstance(kind, T.DateType):
            raise ConfigError(
                f"predictions for {model.name}: retention_days needs partition_by to be a "
                f"date column, and {plan.spec.partition_by} is {kind.simpleString()}"
            )

    run_id = runs.run_id()
    # recorded by its lake name (the token, the commit, the rows): a copied or moved
    # lakehouse finds its own predictions of the same input
    input_forms = recorded_forms(read.uri, settings)
    app_id = f"predict/{model.name}@{model.version}/{input_forms[0]}"
    token = WriteToken(app_id, read.version)
    report = PredictReport(
        model.name, model.version, read.uri, read.version, plan.output_uri, run_id, "full"
    )
    output_exists = tables.exists(plan.output_uri)
    # A rescore whose token is already in the table (--full, or a model version scoring
    # again after another took its slice) cannot carry it: the write would be skipped.
    # Replacing the model's slice is idempotent by itself.
    spent = output_exists and tables.has_token(plan.output_uri, token)
    previous = last_run(tables, plan.output_uri, model.name) if output_exists else None
    same_slice = (
        previous is not None
        and previous.get("model_version") == model.version
        and previous.get("input") in input_forms
    )
    if not request.full and spent and same_slice:
        report.mode = "skipped"
        report.message = (
            f"{model.name}@{model.version} already scored {read.uri}@{read.version}; "
            "nothing written"
        )
        return _finish(report, started)
    frame = read.df
    start = request.since if request.since is not None and not same_slice else None
    if (same_slice or start is not None) and not request.full:
        if same_slice:
            assert previous is not None  # the slice the previous run scored
            since = int(previous["input_version"])
        else:
            assert start is not None  # no same slice: a start, by the condition above
            since = int(start)
        if not same_slice and since > read.version:
            raise InputError(f"--since {since} is after {read.uri}'s version {read.version}")
        if since > read.version:
            raise InputError(
                f"{model.name}@{model.version} already scored the newer version {since} of "
                f"{read.uri}; pass --full to replace its predictions with version "
                f"{read.version}'s"
            )
        added = tables.read_added(read.uri, since, read.version)
        if added is None:
            report.message = (
                f"files of {read.uri} were removed or rewritten between versions {since} and "
                f"{read.version}: full rescore"
            )
            log.info("full rescore", extra={"reason": report.message})
        else:
            frame, report.mode = added.df, "incremental"
    # the log's statistics say how many rows; without them, one small Spark job
    rows = added.rows if report.mode == "incremental" and added is not None else read.rows
    if rows == 0 or (rows is None and frame.isEmpty()):
        report.message = (
            f"no rows added to {read.uri} since version {since}; nothing written"
            if report.mode == "incremental"
            else f"{read.uri}@{read.version} is empty; nothing written"
        )
        report.mode = "skipped"
        return _finish(report, started)
    appending = report.mode == "incremental" and same_slice  # else the slice is replaced
    _check_keys(tables, plan, model.name, frame, key, report, appending=appending)
    lineage = {
        MODEL_NAME: model.name,
        "model_version": model.version,
        "input_table": input_forms[0],
        "input_version": read.version,
        "run_id": run_id,
        "scored_at": datetime.now(UTC).replace(microsecond=0),
    }
    scored, classes, report.scorer = score_with(registry, model, frame, keep)
    out = scored_columns(scored, classes, keep, lineage)
    report.columns = out.columns
    if plan.spec.partition_by:
        # rows of one date to one task: a file per date per run, not one per task per
        # date (the small-files problem of a year's backfill on a wide cluster)
        out = out.repartition(F.col(f"`{plan.spec.partition_by}`"))
    if output_exists:  # named before any scoring runs
        current = tables.read(plan.output_uri).df.schema
        problem = compare_schemas(current, out.schema).describe(plan.output_uri, allow_extra=False)
        if problem:
            raise InputError(
                f"predictions table {plan.output_uri} does not take these predictions: "
                f"{problem.split(': ', 1)[1]}; nothing was written"
            )
    commit = {
        "job": "predict",
        "run_id": run_id,
        "model": model.name,
        "model_version": model.version,
        "input": input_forms[0],
        "input_version": read.version,
        "mode": report.mode,
    }
    # appended to this model version's own slice, or replacing whatever the slice held
    replacing = not (report.mode == "incremental" and same_slice) and output_exists
    written = tables.write(
        out,
        plan.output_uri,
        mode="replace" if replacing else "append",
        replace_where=f"{MODEL_NAME} = {_sql(model.name)}" if replacing else None,
        partition_by=[MODEL_NAME, *([plan.spec.partition_by] if plan.spec.partition_by else [])],
        token=None if spent else token,
        commit_info=commit,
    )
    report.output_version = written.version
    report.rows_scored = written.rows_added
    if not written.committed:
        report.mode = "skipped"
        report.message = written.message
        return _finish(report, started)
    if not report.message:
        report.message = f"{report.mode}: {written.rows_added} rows scored"
    repeats = KeyCounts(**report.keys).describe() if report.keys else ""
    if repeats:
        report.message += f"; key {', '.join(key)}: {repeats}"
    if plan.spec.retention_days and plan.spec.partition_by:
        report.retention_removed_files = _apply_retention(
            tables, out, plan.output_uri, model.name, plan.spec
        )
    return _finish(report, started)


def _check_keys(
    tables: DeltaTables,
    plan: Plan,
    model_name: str,
    frame: DataFrame,
    key: list[str],
    report: PredictReport,
    *,
    appending: bool,
) -> None:
    """Count the key over the rows to score (one aggregation over the key columns) into
    the report. A key column null on every row is refused; with `unique_key`, so are
    repeated keys, null keys, and keys this model's predictions already hold (an
    incremental append; a rescore replaces them). Nothing is written when refused.

    Raises:
        InputError: the key column(s) and how many keys, with an example.
    """
    if not plan.spec.count_keys:
        return
    where = f"input {report.input_table}@{report.input_version}"
    counts = count_keys(frame, key)
    refuse_all_null(counts, key, where)
    report.keys = counts.to_dict()
    if not plan.spec.unique_key:
        if counts.duplicated or counts.null_rows:
            log.warning("key repeats", extra={"key": key, **report.keys})
        return
    if counts.duplicated or counts.null_rows:
        what = (
            f"{counts.duplicated} values of key {', '.join(key)} are on more than one row "
            f"(e.g. {counts.example})"
            if counts.duplicated
            else f"{counts.null_rows} rows have a null in key {', '.join(key)} (no identity)"
        )
        raise InputError(f"{where}: {what} and predictions.unique_key is set; nothing was written")
    if not appending:
        return
    columns = [F.col(f"`{c}`") for c in key]
    held = tables.read(plan.output_uri).df.filter(F.col(MODEL_NAME) == model_name).select(*columns)
    again = frame.select(*columns).join(held, key, "left_semi")
    clash = again.agg(
        F.count(F.lit(1)).alias("rows"), F.first(F.struct(*columns)).alias("example")
    ).collect()[0]
    if clash["rows"]:
        example = ", ".join(f"{c}={clash['example'][c]!r}" for c in key)
        raise InputError(
            f"{where}: {clash['rows']} new rows have a key {model_name}'s predictions already "
            f"hold (key {', '.join(key)}, e.g. {example}) and predictions.unique_key is set; "
            "nothing was written"
        )


def _apply_retention(
    tables: DeltaTables, out: DataFrame, output: str, model_name: str, spec: PredictionSpec
) -> int:
    """Drop this model's prediction partitions more than `retention_days` older than its
    newest one, in one commit. The newest scored date, not today, is the reference: a
    backfill of old data keeps its predictions."""
    column = spec.partition_by
    # the partition values in the log say which dates the slice holds: no Spark job
    actions = open_snapshot(output).add_actions()
    names = actions.column(f"partition.{MODEL_NAME}").to_pylist()
    dates = [
        d
        for n, d in zip(names, actions.column(f"partition.{column}").to_pylist(), strict=True)
        if n == model_name and isinstance(d, date)
    ]
    if not dates:
        return 0
    cutoff = max(dates) - timedelta(days=int(spec.retention_days or 0))
    if min(dates) >= cutoff:
        return 0
    predicate = f"{MODEL_NAME} = {_sql(model_name)} AND `{column}` < DATE'{cutoff.isoformat()}'"
    empty = out.limit(0)
    dropped = tables.write(
        empty,
        output,
        mode="replace",
        replace_where=predicate,
        commit_info={"job": "predict-retention", "model": model_name, "before": str(cutoff)},
    )
    log.info("retention", extra={"table": output, "before": str(cutoff)})
    return dropped.files_removed


def _finish(report: PredictReport, started: float) -> PredictReport:
    report.seconds = round(time.perf_counter() - started, 3)
    summary = {k: v for k, v in report.to_dict().items() if k not in ("columns", "message")}
    log.info("predict finished", extra={**summary, "outcome": report.message})
    return report


@reports_errors
def command(
    ctx: typer.Context,
    model: Annotated[
        str,
        typer.Argument(
            metavar="MODEL[@VERSION|@ALIAS]",
            help="A registered model, or the name of a predictions section of the config.",
        ),
    ],
    *,
    input_ref: Annotated[
        str | None,
        typer.Option(
            "--input", metavar="TABLE[@VERSION]", help="The table to score (default: conf)."
        ),
    ] = None,
    output: Annotated[
        str | None,
        typer.Option("--output", metavar="TABLE", help="The predictions table (default: conf)."),
    ] = None,
    full: Annotated[
        bool,
        typer.Option("--full", help="Rescore the whole input version, not only new files."),
    ] = False,
    since: Annotated[
        int | None,
        typer.Option(
            "--since",
            min=0,
            metavar="VERSION",
            help="First run of a model version: score only rows added after this input version.",
        ),
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Score a pinned Delta table version with a registered model; write the predictions."""
    state = run_context(ctx)
    request = PredictRequest(model, input_ref, output, full, since)
    report = run(state.spark(), state.config().settings, request)
    emit(report.to_dict(), as_json, _render)


def _render(data: dict[str, Any]) -> str:
    how = f" (scorer: {data['scorer']})" if data.get("scorer") else ""
    where = f"{data['output_table']}" + (
        f"@{data['output_version']}" if data["output_version"] is not None else ""
    )
    return (
        f"predict {data['model']}@{data['model_version']} on "
        f"{data['input_table']}@{data['input_version']}: {data['mode']}, "
        f"{data['rows_scored']} rows{how} -> {where} ({data['message']}; {data['seconds']} s)"
    )
