"""`batchml ingest SOURCE`: raw files into a versioned Delta table under a data contract.

Rows that break the contract (or cannot be parsed at all) go to the table's quarantine
table with the rules they broke; the table's policy decides whether the batch is then
written (`quarantine`), written only under a bad-row fraction (`threshold`), or not
written at all (`fail`). Each file is ingested once: the source's ingest ledger
(`lib/ledger.py`) records the files already in the table, and a run reads only the new
ones; a batch already committed (same files, or same batch id) commits nothing.
"""

from __future__ import annotations

import math
import uuid
from dataclasses import asdict, dataclass, field, replace
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
from batchml.lib.ledger import (
    ABANDONED,
    INGESTED,
    PENDING,
    FilePlan,
    IngestLedger,
    LedgerState,
    file_sha256,
    plan_files,
)
from batchml.lib.logs import get_logger
from batchml.lib.settings import Settings, SourceSettings, TableContract
from batchml.lib.sources import (
    SourceBatch,
    SourceFile,
    batch_of,
    check_csv_headers,
    check_formats,
    list_files,
    read_raw,
    reader_options,
)

log = get_logger(__name__)
TARGET_FILE_BYTES = 128 * 1024 * 1024
MAX_RAW_FILES_PER_TASK = 500  # raw files one coalesced task may read (see _into_files)


@dataclass(frozen=True)
class IngestRequest:
    """One ingest run: a configured source, optionally pointed at other files or a mode."""

    source: str
    path: str | None = None
    batch_id: str | None = None
    mode: str | None = None
    replace_where: str | None = None
    force: bool = False  # ingest the files of `path` again, even if already ingested


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
    files_already_ingested: int = 0  # listed files the ledger holds unchanged: skipped
    files_changed: int = 0  # listed files ingested before that changed since
    recovered_batches: list[str] = field(default_factory=list)  # interrupted, completed now
    ledger_uri: str = ""
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


@dataclass
class _Job:
    """What one run works with, shared by the new batch and any batch it completes."""

    spark: SparkSession
    request: IngestRequest
    source: SourceSettings
    contract: TableContract
    checked: CheckedContract
    tables: DeltaTables
    table_uri: str
    quarantine_uri: str
    ledger: IngestLedger
    mode: str
    replace_where: str | None


def run(spark: SparkSession, settings: Settings, request: IngestRequest) -> IngestReport:
    """Ingest the files of a configured source that are not in its table yet.

    Raises:
        ConfigError: unknown source or table, or a mode without its predicate.
        InputError: missing or malformed files, a bad contract, an incompatible table,
            an ingested file that changed (with `on_changed_file = "error"`).
        ContractViolation: the table's policy rejected the batch (nothing written).
    """
    source, contract = configured_source(settings, request.source)
    mode = request.mode or source.mode
    replace_where = request.replace_where or source.replace_where
    if mode == "replace" and not replace_where:
        raise ConfigError(f"source {request.source}: mode 'replace' needs replace_where")
    if mode != "replace":
        replace_where = None
    if request.force and not request.path:
        raise ConfigError("--force ingests again the files --path names; give --path")
    checked = check_contract(spark, source.table, contract)
    output = output_schema(spark, checked)
    tables = delta_tables(spark, settings)
    table_uri, quarantine_uri = table_uris(source.table, contract, settings)
    ledger_uri = resolve_path(source.ledger or f"_ingest/{request.source}", settings)
    job = _Job(
        spark,
        request,
        source,
        contract,
        checked,
        tables,
        table_uri,
        quarantine_uri,
        IngestLedger(spark, tables, ledger_uri, request.source),
        mode,
        replace_where,
    )
    run_id = uuid.uuid4().hex[:16]
    state = job.ledger.load()
    known_batches = dict(state.ingested_by)  # before completing interrupted batches
    _check_target(tables, table_uri, output, contract)
    recovered = _complete_interrupted(job, state, run_id)
    if recovered:
        state = job.ledger.load()

    listed = list_files(resolve_path(request.path or source.path, settings))
    plan = plan_files(listed, state, content_hash=source.content_hash)
    files = _batch_files(job, plan, listed)
    if source.content_hash:
        files = [replace(f, sha256=file_sha256(f.path)) for f in files]
    salt = ""
    if request.force:  # a new batch, unless this forced run was interrupted and is rerun
        salt = "force:" + ",".join(str(known_batches.get(f.path)) for f in files)
    batch = batch_of(files, batch_id=request.batch_id, salt=salt)
    report = IngestReport(
        request.source, source.table, table_uri, quarantine_uri, batch.batch_id, run_id,
        files=len(files), files_already_ingested=0 if request.force else len(plan.unchanged),
        files_changed=len(plan.changed), recovered_batches=recovered, ledger_uri=ledger_uri,
    )  # fmt: skip
    if not files:
        report.status = "skipped"
        report.batch_id = ""
        report.table_version = tables.version(table_uri)
        report.message = (
            f"no new files for source {request.source}: {len(plan.unchanged)} files already "
            f"ingested"
            + (f", {len(plan.changed)} changed and skipped" if plan.changed else "")
            + "; nothing written"
        )
        skipped = {"source": request.source, "files_already_ingested": len(plan.unchanged)}
        log.info("ingest skipped", extra=skipped)
        job.ledger.compact(state)
        return report
    _write_batch(job, batch, report)
    job.ledger.compact(state)
    return report


def _batch_files(job: _Job, plan: FilePlan, listed: list[SourceFile]) -> list[SourceFile]:
    """The files this run ingests: new ones, and changed ones as the source says."""
    if job.request.force:
        return listed
    if plan.changed and job.source.on_changed_file == "error":
        first = plan.changed[0]
        more = f" (and {len(plan.changed) - 1} more)" if len(plan.changed) > 1 else ""
        raise InputError(
            f"file {first.path}{more} was ingested before and has changed since (size or "
            f"modification time); nothing written. Set sources.{job.request.source}."
            'on_changed_file = "skip" or "reingest", or ingest it again with --force --path'
        )
    if plan.changed and job.source.on_changed_file == "skip":
        log.info("changed files skipped", extra={"files": [f.path for f in plan.changed[:5]]})
        return plan.new
    return sorted([*plan.new, *plan.changed], key=lambda f: f.path)


def _complete_interrupted(job: _Job, state: LedgerState, run_id: str) -> list[str]:
    """Finish or abandon the batches earlier runs left pending; returns the finished ones.

    A pending batch whose token is in the table was committed: its quarantine (if any)
    and its ledger rows are completed now. One whose token is not in was never
    committed: it is marked abandoned and its files count as new again.
    """
    finished = []
    for pending in state.pending:
        if pending.writer_alive():
            raise InputError(
                f"source {job.request.source}: another ingest (pid {pending.pid} on "
                f"{pending.host}) is writing batch {pending.batch_id}; nothing written"
            )
        token = _token(job.request.source, pending.batch_id)
        if not job.tables.has_token(job.table_uri, token):
            log.info(
                "interrupted batch abandoned (never committed)",
                extra={"batch_id": pending.batch_id},
            )
            job.ledger.record(
                pending.files, state=ABANDONED, batch_id=pending.batch_id, run_id=run_id
            )
            continue
        interrupted = {"batch_id": pending.batch_id, "files": len(pending.files)}
        log.info("completing an interrupted batch", extra=interrupted)
        batch = SourceBatch(pending.files, pending.batch_id, False)
        report = IngestReport(
            job.request.source,
            job.source.table,
            job.table_uri,
            job.quarantine_uri,
            pending.batch_id,
            run_id,
            files=len(pending.files),
        )
        _write_batch(job, batch, report)
        finished.append(pending.batch_id)
    return finished


def _write_batch(job: _Job, batch: SourceBatch, report: IngestReport) -> None:
    """Check, write and quarantine one batch, then record its files in the ledger."""
    request, source, checked, tables = job.request, job.source, job.checked, job.tables
    token = _token(request.source, batch.batch_id)
    state = _batch_state(tables, job.table_uri, job.quarantine_uri, token, report)
    if state == "skipped":
        if not batch.explicit_id:  # the token names exactly these files: they are in
            job.ledger.record(
                batch.files,
                state=INGESTED,
                batch_id=batch.batch_id,
                run_id=report.run_id,
                token=token,
            )
        return
    resuming = state == "resume"
    check_formats(batch, source.format)
    if source.format == "csv":
        check_csv_headers(batch, checked, source.options)
    started = {"source": request.source, "table": source.table, "files": len(batch.files),
               "batch_id": batch.batch_id, "run_id": report.run_id}  # fmt: skip
    log.info("ingest started", extra=started)

    options = reader_options(source.options)
    raw_df = with_key_count(read_raw(job.spark, batch, source.format, options, checked), checked)
    commit = {"job": "ingest", "run_id": report.run_id, "source": request.source,
              "batch_id": batch.batch_id, "files": len(batch.files)}  # fmt: skip
    # The files are parsed once for the table: the counts the policy needs are observed
    # during that write and checked before its commit. Only a batch with bad rows is
    # read a second time, to write its quarantine rows.
    counted = Observation(f"ingest-{report.run_id}-{batch.batch_id}")
    flagged_df = with_good_flag(raw_df, checked)
    observed_df = flagged_df.observe(counted, *_batch_metrics(flagged_df))
    files = max(1, math.ceil(sum(f.size for f in batch.files) / TARGET_FILE_BYTES))

    table_commit = dict(commit)  # completed by check_batch: read by a rerun after a crash

    def check_batch() -> None:
        _check_counts(counted.get if counts is None else counts, report, source.format,
                      batch.paths)  # fmt: skip
        table_commit["rows_quarantined"] = report.rows_quarantined
        if _rejected(job.contract, report):
            report.quarantined_by_rule = _rule_counts(raw_df, checked, source.format, options)
            _reject(job.contract, report)
        if not resuming:  # the batch will be committed: say so in the ledger first
            job.ledger.record(
                batch.files, state=PENDING, batch_id=batch.batch_id, run_id=report.run_id
            )

    counts = None
    # Count first where the write cannot be stopped before its commit (the connector), or
    # where it will not run at all (resuming a batch whose table commit is already in).
    if tables.name != "embedded" or resuming:
        counts = flagged_df.agg(*_batch_metrics(flagged_df)).collect()[0].asDict()
        check_batch()
    written = tables.write(
        _into_files(good_rows(observed_df, checked), files, batch), job.table_uri,
        mode=job.mode,  # type: ignore[arg-type]
        partition_by=job.contract.partition_by or None, replace_where=job.replace_where,
        token=token, commit_info=table_commit,
        before_commit=check_batch if counts is None else None,
    )  # fmt: skip
    report.table_version = written.version
    report.rows_written = written.rows_added
    if report.rows_quarantined:
        by_rule = Observation(f"quarantine-{report.run_id}-{batch.batch_id}")
        names = rule_names(checked, has_raw=RAW_RECORD in raw_df.columns)
        quarantine_df = _quarantine_rows(raw_df, checked, report, source.format, options)
        quarantined = tables.write(
            _into_files(quarantine_df.observe(by_rule, *[
                F.sum(F.array_contains(FAILED_RULES, name).cast("int")).alias(name)
                for name in names]), 1, batch),
            job.quarantine_uri, token=token, commit_info=commit,
        )  # fmt: skip
        report.quarantined_by_rule = {k: int(v) for k, v in by_rule.get.items() if v}
        report.quarantine_version = quarantined.version
        report.status = "written_with_quarantine"
    job.ledger.record(
        batch.files, state=INGESTED, batch_id=batch.batch_id, run_id=report.run_id, token=token
    )
    report.message = (
        f"wrote {report.rows_written} rows to {source.table} (version {report.table_version})"
        + (f", quarantined {report.rows_quarantined}" if report.rows_quarantined else "")
        + (
            f"; {report.files_already_ingested} files already ingested"
            if report.files_already_ingested
            else ""
        )
    )
    log.info("ingest finished", extra={k: v for k, v in report.to_dict().items()
                                        if k != "message"})  # fmt: skip


def _into_files(df: DataFrame, files: int, batch: SourceBatch) -> DataFrame:
    """The batch's rows cut into `files` output files.

    Coalescing merges the read tasks into `files` tasks, and a task keeps the reader of
    every file it opened until it ends (Spark closes them on task completion): over a few
    thousand raw files per task that runs the executor out of memory. A batch of many
    small files is shuffled into its output files instead, so the reading stays spread
    over Spark's usual tasks.
    """
    if len(batch.files) > MAX_RAW_FILES_PER_TASK * files:
        return df.repartition(files)
    return df.coalesce(files)


def _token(source: str, batch_id: str) -> WriteToken:
    return WriteToken(f"batchml.ingest/{source}/{batch_id}", 1)


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
