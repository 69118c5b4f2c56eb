"""The runs table: one row per job run — what it read and wrote, its outcome, its cost.

A run is opened by the entrypoint (`jobs/app.py`) before the command and closed after
it, whatever the outcome. While it is open, the Delta I/O module notes every table
version read or written and the registry notes every model version it touches (through
`note_*`, which do nothing outside a run). Closing it adds the resources Spark measured
(`spark_metrics`) and appends one row to `<lakehouse>/_runs` through delta-rs: no Spark
job, so a run whose Spark session broke is still recorded.
"""

from __future__ import annotations

import getpass
import json
import os
import random
import socket
import time
import uuid
from contextvars import ContextVar
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from batchml.lib.delta.lakehouse import relative_to, resolve_path
from batchml.lib.platform.errors import InputError
from batchml.lib.platform.logs import get_logger
from batchml.lib.platform.redaction import redact_text
from batchml.lib.platform.settings import Settings
from batchml.lib.platform.signals import EXIT_SIGINT, EXIT_SIGTERM
from batchml.lib.spark.metrics import RESOURCE_COLUMNS, Mark

log = get_logger(__name__)


def runs_schema():  # -> pyarrow.Schema; pyarrow is imported when a run is written
    """The runs table's columns."""
    import pyarrow as pa

    text, count = pa.string(), pa.int64()
    return pa.schema(
        [
            ("run_id", text),
            ("job", text),
            ("arguments", text),  # JSON: the global options and the command's
            ("config_hash", text),
            ("user", text),
            ("host", text),
            ("pid", count),
            ("master", text),
            ("app_id", text),
            ("event_log", text),
            ("started_at", pa.timestamp("us", tz="UTC")),
            ("ended_at", pa.timestamp("us", tz="UTC")),
            ("duration_s", pa.float64()),
            ("status", text),
            ("exit_code", pa.int32()),
            ("error", text),
            ("reads", text),  # JSON [{table, version}]
            ("writes", text),  # JSON [{table, version, committed}]
            ("models", text),  # JSON [{name, version, action}]
            *[(column, count) for column in RESOURCE_COLUMNS],
            ("gpu", text),  # JSON; null until a job runs on GPUs
            ("summary", text),  # JSON: what the job decided (pipeline: every step, why)
        ]
    )


@dataclass
class Run:
    """One job run being recorded."""

    job: str
    arguments: dict[str, Any]
    run_id: str = field(default_factory=lambda: uuid.uuid4().hex[:16])
    started_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    reads: list[dict[str, Any]] = field(default_factory=list)
    writes: list[dict[str, Any]] = field(default_factory=list)
    models: list[dict[str, Any]] = field(default_factory=list)
    error: str | None = None  # the one-line error the run ended with
    summary: dict[str, Any] | None = None  # the job's own account (`note_summary`)
    spark_mark: Mark | None = None  # the session's job/stage ids when the run began


_current: ContextVar[Run | None] = ContextVar("batchml_run", default=None)


def current() -> Run | None:
    """The run being recorded, if any."""
    return _current.get()


def begin(job: str, arguments: dict[str, Any]) -> Run:
    run = Run(job=job, arguments=arguments)
    _current.set(run)
    return run


def end() -> None:
    _current.set(None)


def note_read(uri: str, version: int) -> None:
    """A table version was read by the current run."""
    run = current()
    entry = {"table": uri, "version": version}
    if run is not None and entry not in run.reads:
        run.reads.append(entry)


def note_write(uri: str, version: int, committed: bool) -> None:
    """A table version was written (or found already written) by the current run."""
    run = current()
    if run is not None:
        run.writes.append({"table": uri, "version": version, "committed": committed})


def note_model(name: str, version: int, action: str) -> None:
    """A model version was registered, aliased or otherwise touched by the current run."""
    run = current()
    if run is not None:
        run.models.append({"name": name, "version": version, "action": action})


def run_id() -> str:
    """The current run's id (a job's writes carry it), or a new one outside a run."""
    run = current()
    return run.run_id if run is not None else uuid.uuid4().hex[:16]


def note_summary(summary: dict[str, Any]) -> None:
    """What the current run decided, kept in its row (replaces an earlier note)."""
    run = current()
    if run is not None:
        run.summary = summary


def note_error(message: str) -> None:
    """The one-line error the current run is about to exit with."""
    run = current()
    if run is not None:
        run.error = message


def runs_uri(settings: Settings) -> str:
    """Where the runs table lives (`runs.table`, under the lakehouse root)."""
    return resolve_path(settings.runs.table, settings)


def status_of(exit_code: int, error: str | None) -> str:
    """succeeded (0), interrupted (Ctrl-C, SIGTERM), failed (an error was reported), or
    completed (a verdict exit code without an error: promote's "not promoted",
    ingest's "rows quarantined")."""
    if exit_code == 0:
        return "succeeded"
    if exit_code in (EXIT_SIGINT, EXIT_SIGTERM):
        return "interrupted"
    return "failed" if error else "completed"


def row_of(
    run: Run,
    *,
    exit_code: int,
    error: str | None,
    config_hash: str | None,
    master: str | None,
    app_id: str | None,
    event_log: str | None,
    resources: dict[str, int | None] | None,
    lakehouse: str | None = None,
) -> dict[str, Any]:
    """The runs-table row of a finished run; the tables it read and wrote and its event
    log recorded relative to `lakehouse` when under it (a moved lakehouse's runs name its
    own tables)."""
    ended = datetime.now(UTC)

    def named(entries: list[dict[str, Any]]) -> list[dict[str, Any]]:
        if not lakehouse:
            return entries
        return [{**e, "table": relative_to(str(e["table"]), lakehouse)} for e in entries]

    if lakehouse and event_log:
        event_log = relative_to(event_log, lakehouse)
    row: dict[str, Any] = {
        "run_id": run.run_id,
        "job": run.job,
        "arguments": json.dumps(run.arguments, sort_keys=True, default=str),
        "config_hash": config_hash,
        "user": _user(),
        "host": socket.gethostname(),
        "pid": os.getpid(),
        "master": master,
        "app_id": app_id,
        "event_log": event_log,
        "started_at": run.started_at,
        "ended_at": ended,
        "duration_s": (ended - run.started_at).total_seconds(),
        "status": status_of(exit_code, error),
        "exit_code": exit_code,
        "error": redact_text(error) if error else error,
        "reads": json.dumps(named(run.reads)),
        "writes": json.dumps(named(run.writes)),
        "models": json.dumps(run.models),
        "gpu": None,
        "summary": json.dumps(run.summary, default=str) if run.summary is not None else None,
    }
    for column in RESOURCE_COLUMNS:
        row[column] = (resources or {}).get(column)
    return row


APPEND_ATTEMPTS = 5


def append(uri: str, row: dict[str, Any]) -> None:
    """Append one row to the runs table (created on first use) in one delta-rs commit."""
    import pyarrow as pa
    from deltalake import write_deltalake
    from deltalake.exceptions import CommitFailedError

    from batchml.lib.platform import storage

    table = pa.Table.from_pylist([row], schema=runs_schema())
    for attempt in range(1, APPEND_ATTEMPTS + 1):
        try:
            write_deltalake(
                storage.delta_rs_uri(uri),
                table,
                mode="append",
                schema_mode="merge",
                storage_options=storage.delta_options(uri),
            )
            return
        except CommitFailedError:
            # runs that start together race to create the table (delta-rs retries
            # appends itself, not a lost creation): append to the winner's table
            if attempt == APPEND_ATTEMPTS:
                raise
            time.sleep(random.uniform(0.05, 0.2) * attempt)


def list_runs(uri: str, *, job: str | None = None, limit: int | None = None) -> list[dict]:
    """The recorded runs, newest first."""
    from batchml.lib.delta.delta_log import table_exists, table_rows

    if not table_exists(uri):
        return []
    rows = [r for r in table_rows(uri) if job is None or r["job"] == job]
    rows.sort(key=lambda r: r["started_at"], reverse=True)
    return rows[:limit] if limit else rows


def get_run(uri: str, run_id: str) -> dict[str, Any]:
    """One recorded run, by id or by a unique prefix of it.

    Raises:
        InputError: no run (or more than one) matches.
    """
    matches = [r for r in list_runs(uri) if r["run_id"].startswith(run_id)]
    if not matches:
        raise InputError(f"no run {run_id!r} in the runs table {uri}")
    if len(matches) > 1:
        raise InputError(f"run id prefix {run_id!r} matches {len(matches)} runs; give more")
    return matches[0]


def _user() -> str | None:
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # a container user without a passwd entry
        return os.environ.get("USER")
