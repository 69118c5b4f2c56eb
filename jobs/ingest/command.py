"""The `batchml ingest` command and its output."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from batchml.jobs.app import JsonOption, emit, reports_errors, run_context
from batchml.jobs.ingest.job import run
from batchml.jobs.ingest.request import ContractViolation, IngestRequest
from batchml.lib.platform.errors import EXIT_QUARANTINED


def _render_ingest(data: dict[str, Any]) -> str:
    lines = [
        f"ingest {data['source']} -> {data['table']}: {data['status']}",
        f"  batch {data['batch_id'] or '-'}  run {data['run_id']}  files {data['files']} new, "
        f"{data['files_already_ingested']} already ingested"
        + (f", {data['files_changed']} changed" if data["files_changed"] else ""),
        f"  rows read {data['rows_read']}, written {data['rows_written']}, "
        f"quarantined {data['rows_quarantined']}",
        f"  table {data['table_uri']} version {data['table_version']}",
    ]
    if data["quarantined_by_rule"]:
        lines.append(f"  quarantine {data['quarantine_uri']} version {data['quarantine_version']}")
        lines += [f"    {rule}: {count}" for rule, count in data["quarantined_by_rule"].items()]
    if data["recovered_batches"]:
        lines.append(f"  completed interrupted batches: {', '.join(data['recovered_batches'])}")
    if data["message"]:
        lines.append(f"  {data['message']}")
    return "\n".join(lines)


@reports_errors
def command(
    ctx: typer.Context,
    source: Annotated[str, typer.Argument(help="A source from the sources section of the config.")],
    *,
    path: Annotated[
        str | None, typer.Option("--path", help="Read these files instead (file, folder, glob).")
    ] = None,
    batch_id: Annotated[
        str | None,
        typer.Option("--batch-id", help="Name the batch (default: a hash of the files)."),
    ] = None,
    mode: Annotated[
        str | None, typer.Option("--mode", help="append, overwrite or replace (as configured).")
    ] = None,
    replace_where: Annotated[
        str | None,
        typer.Option("--replace-where", help="With --mode replace: the partitions replaced."),
    ] = None,
    force: Annotated[
        bool,
        typer.Option("--force", help="Ingest the files --path names again, even if ingested."),
    ] = False,
    as_json: JsonOption = False,
) -> None:
    """Ingest the new raw files of a source into its Delta table, under its data contract.

    Files already ingested (same path, size and modification time) are skipped.
    """
    if mode is not None and mode not in ("append", "overwrite", "replace"):
        raise typer.BadParameter("use append, overwrite or replace", param_hint="--mode")
    state = run_context(ctx)
    request = IngestRequest(source, path, batch_id, mode, replace_where, force)
    try:
        report = run(state.spark(), state.config().settings, request)
    except ContractViolation as exc:
        emit(exc.report.to_dict(), as_json, _render_ingest)
        raise
    emit(report.to_dict(), as_json, _render_ingest)
    if report.status == "written_with_quarantine":
        typer.echo(
            f"batchml: warning: {report.rows_quarantined} rows quarantined in "
            f"{report.quarantine_uri}",
            err=True,
        )
        raise typer.Exit(EXIT_QUARANTINED)
