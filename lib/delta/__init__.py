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

from batchml.lib import runs
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
from batchml.lib.logs import get_logger
from batchml.lib.settings import Settings

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

        return NotedTables(ConnectorDelta(spark))
    from batchml.lib.delta.embedded import EmbeddedDelta

    return NotedTables(EmbeddedDelta(spark))


class NotedTables:
    """A backend whose reads and writes are noted in the current run (`lib/runs.py`)."""

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
