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
from pathlib import Path
from typing import Any

from pyspark import StorageLevel
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from batchml.lib.contracts import (
    FAILED_RULES,
    RAW_RECORD,
    CheckedContract,
    bad_rows,
    check_contract,
    good_rows,
    output_schema,
    with_failed_rules,
    with_typed_columns,
)
from batchml.lib.delta import DeltaTables, WriteToken, delta_tables
from batchml.lib.delta.schemas import compare_schemas
from batchml.lib.errors import EXIT_CONTRACT, BatchmlError, ConfigError, InputError
from batchml.lib.logs import get_logger
from batchml.lib.settings import Settings, SourceSettings, TableContract
from batchml.lib.sources import check_csv_headers, check_formats, find_batch, read_raw

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


def resolve_path(path: str, settings: Settings) -> str:
    """Relative paths live under the lakehouse root; absolute paths and URIs stay."""
    if "://" in path or Path(path).is_absolute():
        return path
    return str(Path(settings.lakehouse.root) / path)


def table_uris(name: str, contract: TableContract, settings: Settings) -> tuple[str, str]:
    """(table, quarantine table) locations of a contract."""
    table = resolve_path(contract.path or name, settings)
    quarantine = resolve_path(contract.quarantine, settings) if contract.quarantine else None
    return table, quarantine or f"{table.rstrip('/')}_quarantine"


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
    if _already_ingested(tables, table_uri, quarantine_uri, token, report):
        return report
    _check_target(tables, table_uri, output, contract)
    check_formats(batch, source.format)
    if source.format == "csv":
        check_csv_headers(batch, checked, source.options)
    started = {"source": request.source, "table": source.table, "files": len(batch.files),
               "batch_id": batch.batch_id, "run_id": report.run_id}  # fmt: skip
    log.info("ingest started", extra=started)

    raw_df = read_raw(spark, batch, source.format, source.options, checked)
    flagged_df = with_failed_rules(with_typed_columns(raw_df, checked), checked)
    # Every output (counts, good rows, quarantine) comes from one parse of the files.
    flagged_df = flagged_df.persist(StorageLevel.MEMORY_AND_DISK)
    try:
        _count(flagged_df, report, source.format, batch.paths)
        _apply_policy(contract, report)
        commit = {"job": "ingest", "run_id": report.run_id, "source": request.source,
                  "batch_id": batch.batch_id, "files": len(batch.files),
                  "rows_quarantined": report.rows_quarantined}  # fmt: skip
        # about one output file per 128 MB of input, however the read was split
        files = max(1, math.ceil(sum(f.size for f in batch.files) / TARGET_FILE_BYTES))
        written = tables.write(
            good_rows(flagged_df, checked).coalesce(files), table_uri,
            mode=mode,  # type: ignore[arg-type]
            partition_by=contract.partition_by or None, replace_where=replace_where,
            token=token, commit_info=commit,
        )  # fmt: skip
        report.table_version = written.version
        report.rows_written = written.rows_added
        if report.rows_quarantined:
            quarantined = tables.write(
                _quarantine_rows(flagged_df, checked, report).coalesce(1), quarantine_uri,
                token=token,
                commit_info=commit,
            )  # fmt: skip
            report.quarantine_version = quarantined.version
            report.status = "written_with_quarantine"
    finally:
        flagged_df.unpersist()
    report.message = (
        f"wrote {report.rows_written} rows to {source.table} (version {report.table_version})"
        + (f", quarantined {report.rows_quarantined}" if report.rows_quarantined else "")
    )
    log.info("ingest finished", extra={k: v for k, v in report.to_dict().items()
                                        if k != "message"})  # fmt: skip
    return report


def _already_ingested(
    tables: DeltaTables, table_uri: str, quarantine_uri: str, token: WriteToken,
    report: IngestReport,
) -> bool:  # fmt: skip
    """True when this batch is fully in: its commit is in the table and, if it had bad
    rows, in the quarantine table too. A run that died between the two commits is redone:
    the table write is then a no-op (same token) and the quarantine write completes it."""
    if not tables.has_token(table_uri, token):
        return False
    previous = _ingest_commit(tables, table_uri, report)
    if previous.get("rows_quarantined") and not tables.has_token(quarantine_uri, token):
        log.info("ingest resumes the quarantine write", extra={"batch_id": report.batch_id})
        return False
    report.status = "skipped"
    report.table_version = previous.get("version")
    if tables.exists(quarantine_uri):
        report.quarantine_version = tables.version(quarantine_uri)
    report.message = (
        f"batch {report.batch_id} of source {report.source} is already in {report.table} "
        f"(version {report.table_version}); nothing written"
    )
    log.info("ingest skipped", extra={"source": report.source, "batch_id": report.batch_id})
    return True


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


def _count(flagged_df: DataFrame, report: IngestReport, file_format: str, paths) -> None:
    has_raw = RAW_RECORD in flagged_df.columns
    totals = flagged_df.agg(
        F.count(F.lit(1)).alias("rows"),
        F.sum(F.when(F.size(FAILED_RULES) > 0, 1).otherwise(0)).alias("bad"),
        F.sum(F.when(F.col(RAW_RECORD).isNotNull(), 1).otherwise(0)).alias("malformed")
        if has_raw else F.lit(0).alias("malformed"),
    ).collect()[0]  # fmt: skip
    report.rows_read = int(totals["rows"])
    report.rows_quarantined = int(totals["bad"] or 0)
    if report.rows_read == 0:
        raise InputError(f"source {report.source}: the batch's files hold no rows")
    if has_raw and totals["malformed"] == report.rows_read:
        raise InputError(
            f"source {report.source}: no line of {', '.join(paths[:3])} parses as "
            f"{file_format}; is it a {file_format} file?"
        )
    if report.rows_quarantined:
        by_rule = (
            flagged_df.filter(F.size(FAILED_RULES) > 0)
            .select(F.explode(FAILED_RULES).alias("rule"))
            .groupBy("rule")
            .count()
            .collect()
        )
        report.quarantined_by_rule = dict(sorted((r["rule"], int(r["count"])) for r in by_rule))


def _apply_policy(contract: TableContract, report: IngestReport) -> None:
    if not report.rows_quarantined or contract.policy == "quarantine":
        return
    fraction = report.rows_quarantined / report.rows_read
    rules = ", ".join(f"{rule}: {count}" for rule, count in report.quarantined_by_rule.items())
    if contract.policy == "threshold" and fraction <= contract.max_bad_fraction:
        return
    report.status = "rejected"
    limit = (
        f"over max_bad_fraction {contract.max_bad_fraction}"
        if contract.policy == "threshold" else "policy 'fail'"
    )  # fmt: skip
    report.message = (
        f"table {report.table}: {report.rows_quarantined} of {report.rows_read} rows "
        f"({fraction:.2%}) break the contract, {limit}; nothing written ({rules})"
    )
    raise ContractViolation(report.message, report)


def _quarantine_rows(flagged_df: DataFrame, checked: CheckedContract, report: IngestReport):
    return bad_rows(flagged_df, checked).select(
        "*",
        F.lit(report.source).alias("source"),
        F.lit(report.batch_id).alias("batch_id"),
        F.lit(report.run_id).alias("ingest_run_id"),
        F.current_timestamp().alias("ingested_at"),
    )
