"""The ingest job: plan the files of a source that are not in its table yet, complete
what an interrupted run left, write the new batch."""

from __future__ import annotations

import socket
from dataclasses import replace

from pyspark.sql import SparkSession

from batchml.jobs.ingest.request import IngestJob, IngestReport, IngestRequest
from batchml.jobs.ingest.write import batch_token, write_batch
from batchml.lib.delta import DeltaTables, delta_tables
from batchml.lib.delta.lakehouse import resolve_path, table_uris
from batchml.lib.delta.schemas import compare_schemas
from batchml.lib.ingest.contracts import (
    check_contract,
    output_schema,
)
from batchml.lib.ingest.ledger import (
    ABANDONED,
    LEASE_SECONDS,
    FilePlan,
    IngestLedger,
    LedgerState,
    PendingBatch,
    file_sha256,
    plan_files,
)
from batchml.lib.ingest.sources import (
    SourceBatch,
    SourceFile,
    batch_of,
    list_files,
    source_root,
)
from batchml.lib.platform.errors import ConfigError, InputError
from batchml.lib.platform.logs import get_logger
from batchml.lib.platform.settings import Settings, SourceSettings, TableContract
from batchml.lib.tracking import runs

log = get_logger(__name__)


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
    # the ledger names files relative to the configured source's root (also those a
    # --path lists under it), so a moved lakehouse or landing folder finds them again
    root = source_root(resolve_path(source.path, settings), settings.lakehouse.root)
    job = IngestJob(
        spark,
        request,
        source,
        contract,
        checked,
        tables,
        table_uri,
        quarantine_uri,
        IngestLedger(spark, tables, ledger_uri, request.source, root),
        mode,
        replace_where,
    )
    run_id = runs.run_id()  # the runs table's id, so the ledger's rows point at it
    state = job.ledger.load()
    known_batches = dict(state.ingested_by)  # before completing interrupted batches
    _check_target(tables, table_uri, output, contract)
    recovered = _complete_interrupted(job, state, run_id)
    if recovered:
        state = job.ledger.load()

    listed = list_files(resolve_path(request.path or source.path, settings), root)
    plan = plan_files(listed, state, content_hash=source.content_hash)
    files = _batch_files(job, plan, listed)
    if source.content_hash:  # recorded, so a copy of the file with a new time is known
        files = [replace(f, sha256=file_sha256(f.path)) for f in files]
    salt = ""
    if request.force:  # a new batch, unless this forced run was interrupted and is rerun
        salt = "force:" + ",".join(str(known_batches.get(f.name)) for f in files)
    batch = batch_of(files, batch_id=request.batch_id, salt=salt)
    report = IngestReport(
        request.source,
        source.table,
        table_uri,
        quarantine_uri,
        batch.batch_id,
        run_id,
        files=len(files),
        files_already_ingested=0 if request.force else len(plan.unchanged),
        files_changed=len(plan.changed),
        recovered_batches=recovered,
        ledger_uri=ledger_uri,
    )
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
    write_batch(job, batch, report)
    job.ledger.compact(state)
    return report


def _batch_files(job: IngestJob, plan: FilePlan, listed: list[SourceFile]) -> list[SourceFile]:
    """The files this run ingests: new ones, and changed ones as the source says."""
    if job.request.force:
        return listed
    if plan.changed and job.source.on_changed_file == "error":
        first = plan.changed[0]
        more = f" (and {len(plan.changed) - 1} more)" if len(plan.changed) > 1 else ""
        compared = "size or bytes" if job.source.content_hash else "size or modification time"
        raise InputError(
            f"file {first.path}{more} was ingested before and has changed since ({compared}); "
            f"nothing written. Set sources.{job.request.source}."
            'on_changed_file = "skip" or "reingest", or ingest it again with --force --path'
        )
    if plan.changed and job.source.on_changed_file == "skip":
        log.info("changed files skipped", extra={"files": [f.path for f in plan.changed[:5]]})
        return plan.new
    return sorted([*plan.new, *plan.changed], key=lambda f: f.path)


def _complete_interrupted(job: IngestJob, state: LedgerState, run_id: str) -> list[str]:
    """Finish or abandon the batches earlier runs left pending; returns the finished ones.

    A pending batch whose token is in the table was committed: its quarantine (if any)
    and its ledger rows are completed now. One whose token is not in was never
    committed: it is marked abandoned and its files count as new again.
    """
    finished = []
    for pending in state.pending:
        if pending.writer_alive():
            raise InputError(
                f"source {job.request.source}: another ingest ({_writer(pending)}) is writing "
                f"batch {pending.batch_id}; nothing written"
            )
        token = batch_token(job.request.source, pending.batch_id)
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
        write_batch(job, batch, report)
        finished.append(pending.batch_id)
    return finished


def _writer(pending: PendingBatch) -> str:
    if pending.host == socket.gethostname():
        return f"pid {pending.pid}"
    return (
        f"pid {pending.pid} on {pending.host}, lease renewed {pending.lease_age():.0f} s ago; "
        f"taken as gone {LEASE_SECONDS:.0f} s after its last renewal"
    )


def _check_target(tables: DeltaTables, uri: str, output, contract: TableContract) -> None:
    """An existing table must have the contract's schema: fail before reading any file."""
    if not tables.exists(uri):
        return
    existing = tables.read(uri).df.schema
    diff = compare_schemas(existing, output)
    problem = diff.describe(uri, allow_extra=False)
    if problem:
        raise InputError(f"{problem} (the contract and the table disagree)")
