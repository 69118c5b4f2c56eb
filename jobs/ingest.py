"""`batchml ingest SOURCE`: raw files into a versioned Delta table under a data contract.

Rows that break the contract (or cannot be parsed at all) go to the table's quarantine
table with the rules they broke; the table's policy decides whether the batch is then
written (`quarantine`), written only under a bad-row fraction (`threshold`), or not
written at all (`fail`). A batch already ingested (same files, or same batch id) commits
nothing.
"""

from __future__ import annotations

import math
import uuid
from dataclasses import asdict, dataclass, field
from typing import Any

from pyspark.sql import DataFrame, Observation, SparkSession
from pyspark.sql import functions as F

from batchml.lib.contracts import (
    FAILED_RULES,
    IS_GOOD,
    RAW_RECORD,
    CheckedContract,
    check_contract,
    good_rows,
    output_schema,
    quarantine_rows,
    rule_names,
    with_good_flag,
    with_key_count,
)
from batchml.lib.delta import DeltaTables, WriteToken, delta_tables
from batchml.lib.delta.schemas import compare_schemas
from batchml.lib.errors import EXIT_CONTRACT, BatchmlError, ConfigError, InputError
from batchml.lib.lakehouse import resolve_path, table_uris
from batchml.lib.logs import get_logger
from batchml.lib.settings import Settings, SourceSettings, TableContract
from batchml.lib.sources import (
    check_csv_headers,
    check_formats,
    find_batch,
    read_raw,
    reader_options,
)

log = get_logger(__name__)
TARGET_FILE_BYTES = 128 * 1024 * 1024


@dataclass(frozen=True)
class IngestRequest:
    """One ingest run: a configured source, optionally pointed at other files or a mode."""

    source: str
    path: str | None = None
    batch_id: str | None = None
    mode: str | None = None
    replace_where: str | None = None


@dataclass
class IngestReport:
    """What an ingest run read, wrote and quarantined (logged, returned, printed)."""

    source: str
    table: str
    table_uri: str
    quarantine_uri: str
    batch_id: str
    run_id: str
    status: str = "written"  # written | written_with_quarantine | skipped | rejected
    files: int = 0
    rows_read: int = 0
    rows_written: int = 0
    rows_quarantined: int = 0
    quarantined_by_rule: dict[str, int] = field(default_factory=dict)
    table_version: int | None = None
    quarantine_version: int | None = None
    message: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class ContractViolation(BatchmlError):
    """The batch broke its contract beyond what the table's policy accepts."""

    exit_code = EXIT_CONTRACT

    def __init__(self, message: str, report: IngestReport) -> None:
        super().__init__(message)
        self.report = report


def configured_source(settings: Settings, name: str) -> tuple[SourceSettings, TableContract]:
    """The source and its table's contract, or a ConfigError naming what is missing."""
    if name not in settings.sources:
        known = ", ".join(sorted(settings.sources)) or "none configured"
        raise ConfigError(f"unknown source {name!r} (sources: {known})")
    source = settings.sources[name]
    if source.table not in settings.tables:
        known = ", ".join(sorted(settings.tables)) or "none configured"
        raise ConfigError(
            f"sources.{name}.table = {source.table!r} has no contract in [tables] (tables: {known})"
        )
    return source, settings.tables[source.table]


def run(spark: SparkSession, settings: Settings, request: IngestRequest) -> IngestReport:
    """Ingest one batch of a configured source.

    Raises:
        ConfigError: unknown source or table, or a mode without its predicate.
        InputError: missing or malformed files, a bad contract, an incompatible table.
        ContractViolation: the table's policy rejected the batch (nothing written).
    """
    source, contract = configured_source(settings, request.source)
    mode = request.mode or source.mode
    replace_where = request.replace_where or source.replace_where
    if mode == "replace" and not replace_where:
        raise ConfigError(f"source {request.source}: mode 'replace' needs replace_where")
    if mode != "replace":
        replace_where = None
    checked = check_contract(spark, source.table, contract)
    output = output_schema(spark, checked)
    tables = delta_tables(spark, settings)
    table_uri, quarantine_uri = table_uris(source.table, contract, settings)
    batch = find_batch(resolve_path(request.path or source.path, settings),
                       batch_id=request.batch_id)  # fmt: skip
    report = IngestReport(
        request.source, source.table, table_uri, quarantine_uri, batch.batch_id,
        uuid.uuid4().hex[:16], files=len(batch.files),
    )  # fmt: skip
    token = WriteToken(f"batchml.ingest/{request.source}/{batch.batch_id}", 1)
    state = _batch_state(tables, table_uri, quarantine_uri, token, report)
    if state == "skipped":
        return report
    resuming = state == "resume"
    _check_target(tables, table_uri, output, contract)
    check_formats(batch, source.format)
    if source.format == "csv":
        check_csv_headers(batch, checked, source.options)
    started = {"source": request.source, "table": source.table, "files": len(batch.files),
               "batch_id": batch.batch_id, "run_id": report.run_id}  # fmt: skip
    log.info("ingest started", extra=started)

    options = reader_options(source.options)
    raw_df = with_key_count(read_raw(spark, batch, source.format, options, checked), checked)
    commit = {"job": "ingest", "run_id": report.run_id, "source": request.source,
              "batch_id": batch.batch_id, "files": len(batch.files)}  # fmt: skip
    # The files are parsed once for the table: the counts the policy needs are observed
    # during that write and checked before its commit. Only a batch with bad rows is
    # read a second time, to write its quarantine rows.
    counted = Observation(f"ingest-{report.run_id}")
    flagged_df = with_good_flag(raw_df, checked)
    observed_df = flagged_df.observe(counted, *_batch_metrics(flagged_df))
    files = max(1, math.ceil(sum(f.size for f in batch.files) / TARGET_FILE_BYTES))

    table_commit = dict(commit)  # completed by check_batch: read by a rerun after a crash

    def check_batch() -> None:
        _check_counts(counted.get if counts is None else counts, report, source.format,
                      batch.paths)  # fmt: skip
        table_commit["rows_quarantined"] = report.rows_quarantined
        if _rejected(contract, report):
            report.quarantined_by_rule = _rule_counts(raw_df, checked, source.format, options)
            _reject(contract, report)

    counts = None
    # Count first where the write cannot be stopped before its commit (the connector), or
    # where it will not run at all (resuming a batch whose table commit is already in).
    if tables.name != "embedded" or resuming:
        counts = flagged_df.agg(*_batch_metrics(flagged_df)).collect()[0].asDict()
        check_batch()
    written = tables.write(
        good_rows(observed_df, checked).coalesce(files), table_uri,
        mode=mode,  # type: ignore[arg-type]
        partition_by=contract.partition_by or None, replace_where=replace_where,
        token=token, commit_info=table_commit,
        before_commit=check_batch if counts is None else None,
    )  # fmt: skip
    report.table_version = written.version
    report.rows_written = written.rows_added
    if report.rows_quarantined:
        by_rule = Observation(f"quarantine-{report.run_id}")
        names = rule_names(checked, has_raw=RAW_RECORD in raw_df.columns)
        quarantine_df = _quarantine_rows(raw_df, checked, report, source.format, options)
        quarantined = tables.write(
            quarantine_df.observe(by_rule, *[
                F.sum(F.array_contains(FAILED_RULES, name).cast("int")).alias(name)
                for name in names]).coalesce(1),
            quarantine_uri, token=token, commit_info=commit,
        )  # fmt: skip
        report.quarantined_by_rule = {k: int(v) for k, v in by_rule.get.items() if v}
        report.quarantine_version = quarantined.version
        report.status = "written_with_quarantine"
    report.message = (
        f"wrote {report.rows_written} rows to {source.table} (version {report.table_version})"
        + (f", quarantined {report.rows_quarantined}" if report.rows_quarantined else "")
    )
    log.info("ingest finished", extra={k: v for k, v in report.to_dict().items()
                                        if k != "message"})  # fmt: skip
    return report


def _batch_state(
    tables: DeltaTables, table_uri: str, quarantine_uri: str, token: WriteToken,
    report: IngestReport,
) -> str:  # fmt: skip
    """`new`, `skipped` (fully ingested before) or `resume`: the table commit is in but the
    quarantine commit it needs is not (a run died between the two). A resumed run finds
    the table write a no-op (same token) and completes the quarantine write."""
    if not tables.has_token(table_uri, token):
        return "new"
    previous = _ingest_commit(tables, table_uri, report)
    if previous.get("rows_quarantined") and not tables.has_token(quarantine_uri, token):
        log.info("ingest resumes the quarantine write", extra={"batch_id": report.batch_id})
        return "resume"
    report.status = "skipped"
    report.table_version = previous.get("version")
    if tables.exists(quarantine_uri):
        report.quarantine_version = tables.version(quarantine_uri)
    report.message = (
        f"batch {report.batch_id} of source {report.source} is already in {report.table} "
        f"(version {report.table_version}); nothing written"
    )
    log.info("ingest skipped", extra={"source": report.source, "batch_id": report.batch_id})
    return "skipped"


def _ingest_commit(tables: DeltaTables, uri: str, report: IngestReport) -> dict[str, Any]:
    """The batchml commit info of this batch in the table, with its version."""
    for commit in tables.history(uri):
        info = commit.get("batchml") or {}
        if info.get("batch_id") == report.batch_id and info.get("source") == report.source:
            return {**info, "version": commit.get("version")}
    return {}


def _check_target(
    tables: DeltaTables, uri: str, output, contract: TableContract
) -> None:  # fmt: skip
    """An existing table must have the contract's schema: fail before reading any file."""
    if not tables.exists(uri):
        return
    existing = tables.read(uri).df.schema
    diff = compare_schemas(existing, output)
    problem = diff.describe(uri, allow_extra=False)
    if problem:
        raise InputError(f"{problem} (the contract and the table disagree)")


def _batch_metrics(flagged_df: DataFrame) -> list:
    """Aggregates observed over every row of the batch."""
    malformed = (
        F.sum(F.col(RAW_RECORD).isNotNull().cast("int"))
        if RAW_RECORD in flagged_df.columns else F.lit(0)
    )  # fmt: skip
    return [
        F.count(F.lit(1)).alias("rows"),
        F.sum((~F.col(IS_GOOD)).cast("int")).alias("bad"),
        malformed.alias("malformed"),
    ]


def _check_counts(counts: dict[str, Any], report: IngestReport, file_format: str, paths) -> None:
    report.rows_read = int(counts["rows"] or 0)
    report.rows_quarantined = int(counts["bad"] or 0)
    if report.rows_read == 0:
        raise InputError(f"source {report.source}: the batch's files hold no rows")
    if counts["malformed"] == report.rows_read:
        raise InputError(
            f"source {report.source}: no line of {', '.join(paths[:3])} parses as "
            f"{file_format} with the contract's types; is it a {file_format} file?"
        )


def _rule_counts(
    raw_df: DataFrame, checked: CheckedContract, file_format: str, options: dict[str, str]
) -> dict[str, int]:
    """Bad rows per rule (a second pass; only for a batch the policy may reject)."""
    rows = (
        quarantine_rows(raw_df, checked, file_format, options)
        .select(F.explode(FAILED_RULES).alias("rule"))
        .groupBy("rule")
        .count()
        .collect()
    )
    return dict(sorted((r["rule"], int(r["count"])) for r in rows))


def _rejected(contract: TableContract, report: IngestReport) -> bool:
    """Whether the table's policy refuses this batch."""
    if not report.rows_quarantined or contract.policy == "quarantine":
        return False
    if contract.policy == "fail":
        return True
    return report.rows_quarantined / report.rows_read > contract.max_bad_fraction


def _reject(contract: TableContract, report: IngestReport) -> None:
    fraction = report.rows_quarantined / report.rows_read
    rules = ", ".join(f"{rule}: {count}" for rule, count in report.quarantined_by_rule.items())
    limit = (
        f"over max_bad_fraction {contract.max_bad_fraction}"
        if contract.policy == "threshold" else "policy 'fail'"
    )  # fmt: skip
    report.status = "rejected"
    report.message = (
        f"table {report.table}: {report.rows_quarantined} of {report.rows_read} rows "
        f"({fraction:.2%}) break the contract, {limit}; nothing written ({rules})"
    )
    raise ContractViolation(report.message, report)


def _quarantine_rows(
    raw_df: DataFrame,
    checked: CheckedContract,
    report: IngestReport,
    file_format: str,
    options: dict[str, str],
) -> DataFrame:
    return quarantine_rows(raw_df, checked, file_format, options).select(
        "*",
        F.lit(report.source).alias("source"),
        F.lit(report.batch_id).alias("batch_id"),
        F.lit(report.run_id).alias("ingest_run_id"),
        F.current_timestamp().alias("ingested_at"),
    )
