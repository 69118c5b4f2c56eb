"""Delta Lake table I/O behind one small API (`api.py`), with two backends: `connector.py`
(Delta's Spark connector, what clusters run) and `embedded.py` (delta-rs for the log,
Spark for the Parquet data; no jar to download). `backend.py` picks one.

tables = delta_tables(spark, settings)      # backend from delta.backend
read = tables.read(uri, version=3)           # read.df, read.version
tables.write(df, uri, mode="replace", replace_where="month = '2013-02'")
"""

from __future__ import annotations

from typing import Any

from pyspark.sql import SparkSession

from batchml.lib.delta.api import (
    CommitConflict,
    DeltaTables,
    TableRead,
    VacuumResult,
    WriteMode,
    WriteResult,
    WriteToken,
)
from batchml.lib.delta.backend import BackendChoice, session_backend
from batchml.lib.platform.logs import get_logger
from batchml.lib.platform.settings import Settings
from batchml.lib.tracking import runs

__all__ = [
    "BackendChoice",
    "CommitConflict",
    "DeltaTables",
    "TableRead",
    "VacuumResult",
    "WriteMode",
    "WriteResult",
    "WriteToken",
    "delta_tables",
]

log = get_logger(__name__)


def delta_tables(spark: SparkSession, settings: Settings) -> DeltaTables:
    """The Delta backend `delta.backend` selects for this session; the table versions it
    reads and writes are noted in the run being recorded (the runs table)."""
    choice = session_backend(spark, settings.delta.backend)
    log.debug("delta backend", extra={"backend": choice.name, "reason": choice.reason})
    if choice.name == "connector":
        from batchml.lib.delta.connector import ConnectorDelta

        shared = shared_tables(settings)
        if shared:
            return NotedTables(SharedOnDeltaRs(ConnectorDelta(spark), spark, shared))
        return NotedTables(ConnectorDelta(spark))
    from batchml.lib.delta.embedded import EmbeddedDelta

    return NotedTables(EmbeddedDelta(spark))


class NotedTables:
    """A backend whose reads and writes are noted in the current run (`lib/tracking/runs.py`)."""

    def __init__(self, backend: DeltaTables) -> None:
        self.backend = backend

    def __getattr__(self, name: str) -> Any:
        return getattr(self.backend, name)

    def read(self, uri: str, *args: Any, **kwargs: Any) -> TableRead:
        read = self.backend.read(uri, *args, **kwargs)
        runs.note_read(read.uri, read.version)
        return read

    def read_added(self, uri: str, since: int, version: int) -> TableRead | None:
        read = self.backend.read_added(uri, since, version)
        if read is not None:
            runs.note_read(read.uri, read.version)
        return read

    def write(self, df: Any, uri: str, *args: Any, **kwargs: Any) -> WriteResult:
        result = self.backend.write(df, uri, *args, **kwargs)
        runs.note_write(result.uri, result.version, result.committed)
        return result


def shared_tables(settings: Settings) -> tuple[str, ...]:
    """The small tables every run writes, when they are on an object store: the registry,
    the ingest ledgers, `_monitoring`. Runs on several machines write them at once;
    Delta's S3 log store is safe for one writing driver only, delta-rs's conditional
    PUT for any number (the runs table is always written by delta-rs)."""
    from batchml.lib.delta.lakehouse import resolve_path
    from batchml.lib.platform import storage

    places = [
        resolve_path(settings.registry.root, settings),
        resolve_path("_ingest", settings),
        resolve_path("_monitoring", settings),
        *(resolve_path(s.ledger, settings) for s in settings.sources.values() if s.ledger),
    ]
    return tuple(p.rstrip("/") for p in places if storage.is_remote(p))


class SharedOnDeltaRs:
    """The connector, but for writes to the shared tables on an object store, which the
    embedded backend commits (delta-rs, conditional PUT): safe with any number of
    writers. Reads and every other table stay the connector's; both read the same log."""

    def __init__(self, connector: DeltaTables, spark: SparkSession, shared: tuple[str, ...]):
        from batchml.lib.delta.embedded import EmbeddedDelta

        self.connector = connector
        self.embedded = EmbeddedDelta(spark)
        self.shared = shared
        self.name = getattr(connector, "name", "connector")

    def __getattr__(self, name: str) -> Any:
        return getattr(self.connector, name)

    def is_shared(self, uri: str) -> bool:
        from batchml.lib.platform import storage

        place = storage.spark_uri(uri).rstrip("/")
        return any(place == s or place.startswith(f"{s}/") for s in self.shared)

    def write(self, df: Any, uri: str, *args: Any, **kwargs: Any) -> WriteResult:
        backend = self.embedded if self.is_shared(uri) else self.connector
        return backend.write(df, uri, *args, **kwargs)
