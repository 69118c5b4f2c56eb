"""Writing one batch: read the raw files, check every row against the contract, commit
the good rows and the quarantine, record the files in the ledger."""

from __future__ import annotations

import math
from typing import Any

from pyspark.sql import DataFrame, Observation
from pyspark.sql import functions as F

from batchml.jobs.ingest.request import ContractViolation, IngestJob, IngestReport
from batchml.lib.delta import DeltaTables, WriteToken
from batchml.lib.ingest.contracts import (
    FAILED_RULES,
    IS_GOOD,
    RAW_RECORD,
    CheckedContract,
    good_rows,
    quarantine_rows,
    rule_names,
    with_good_flag,
    with_key_count,
)
from batchml.lib.ingest.ledger import (
    INGESTED,
    PENDING,
)
from batchml.lib.ingest.sources import (
    SourceBatch,
    check_csv_headers,
    check_formats,
    read_raw,
    reader_options,
)
from batchml.lib.platform.errors import InputError
from batchml.lib.platform.logs import get_logger
from batchml.lib.platform.settings import TableContract

log = get_logger(__name__)


TARGET_FILE_BYTES = 128 * 1024 * 1024


MAX_RAW_FILES_PER_TASK = 500  # raw files one coalesced task may read (see _into_files)


def write_batch(job: IngestJob, batch: SourceBatch, report: IngestReport) -> None:
    """Check, write and quarantine one batch, then record its files in the ledger."""
    token = batch_token(job.request.source, batch.batch_id)
    state = _batch_state(job.tables, job.table_uri, job.quarantine_uri, token, report)
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
    # while the batch is written, its lease tells runs on other hosts that it is
    with job.ledger.lease(batch.batch_id):
        _write_checked(job, batch, report, token, resuming=state == "resume")


def _write_checked(
    job: IngestJob, batch: SourceBatch, report: IngestReport, token: WriteToken, *, resuming: bool
) -> None:
    request, source, checked, tables = job.request, job.source, job.checked, job.tables
    check_formats(batch, source.format)
    if source.format == "csv":
        check_csv_headers(batch, checked, source.options)
    started = {
        "source": request.source,
        "table": source.table,
        "files": len(batch.files),
        "batch_id": batch.batch_id,
        "run_id": report.run_id,
    }
    log.info("ingest started", extra=started)

    options = reader_options(source.options)
    raw_df = with_key_count(
        read_raw(job.spark, batch, source.format, options, checked, job.ledger.root), checked
    )
    commit = {
        "job": "ingest",
        "run_id": report.run_id,
        "source": request.source,
        "batch_id": batch.batch_id,
        "files": len(batch.files),
    }
    # The files are parsed once for the table: the counts the policy needs are observed
    # during that write and checked before its commit. Only a batch with bad rows is
    # read a second time, to write its quarantine rows.
    counted = Observation(f"ingest-{report.run_id}-{batch.batch_id}")
    flagged_df = with_good_flag(raw_df, checked)
    observed_df = flagged_df.observe(counted, *_batch_metrics(flagged_df))
    files = max(1, math.ceil(sum(f.size for f in batch.files) / TARGET_FILE_BYTES))

    table_commit = dict(commit)  # completed by check_batch: read by a rerun after a crash

    def check_batch() -> None:
        _check_counts(counted.get if counts is None else counts, report, source.format, batch.paths)
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
        _into_files(good_rows(observed_df, checked), files, batch),
        job.table_uri,
        mode=job.mode,  # type: ignore[arg-type]  # a str: the command checks --mode
        partition_by=job.contract.partition_by or None,
        replace_where=job.replace_where,
        token=token,
        commit_info=table_commit,
        before_commit=check_batch if counts is None else None,
    )
    report.table_version = written.version
    report.rows_written = written.rows_added
    if report.rows_quarantined:
        by_rule = Observation(f"quarantine-{report.run_id}-{batch.batch_id}")
        names = rule_names(checked, has_raw=RAW_RECORD in raw_df.columns)
        quarantine_df = _quarantine_rows(raw_df, checked, report, source.format, options)
        quarantined = tables.write(
            _into_files(
                quarantine_df.observe(
                    by_rule,
                    *[
                        F.sum(F.array_contains(FAILED_RULES, name).cast("int")).alias(name)
                        for name in names
                    ],
                ),
                1,
                batch,
            ),
            job.quarantine_uri,
            token=token,
            commit_info=commit,
        )
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
    log.info("ingest finished", extra={k: v for k, v in report.to_dict().items() if k != "message"})


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


def batch_token(source: str, batch_id: str) -> WriteToken:
    return WriteToken(f"batchml.ingest/{source}/{batch_id}", 1)


def _batch_state(
    tables: DeltaTables,
    table_uri: str,
    quarantine_uri: str,
    token: WriteToken,
    report: IngestReport,
) -> str:
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


def _batch_metrics(flagged_df: DataFrame) -> list:
    """Aggregates observed over every row of the batch."""
    malformed = (
        F.sum(F.col(RAW_RECORD).isNotNull().cast("int"))
        if RAW_RECORD in flagged_df.columns
        else F.lit(0)
    )
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
        if contract.policy == "threshold"
        else "policy 'fail'"
    )
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
