"""Delta Lake table I/O behind one small API (`api.py`), with two backends: `connector.py`
(Delta's Spark connector, what clusters run) and `embedded.py` (delta-rs for the log,
Spark for the Parquet data; no jar to download). `backend.py` picks one.

tables = delta_tables(spark, settings)      # backend from delta.backend
read = tables.read(uri, version=3)           # read.df, read.version
tables.write(df, uri, mode="replace", replace_where="month = '2013-02'")
"""

from __future__ import annotations

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
    """The Delta backend `delta.backend` selects for this session."""
    choice = session_backend(spark, settings.delta.backend)
    log.debug("delta backend", extra={"backend": choice.name, "reason": choice.reason})
    if choice.name == "connector":
        from batchml.lib.delta.connector import ConnectorDelta

        return ConnectorDelta(spark)
    from batchml.lib.delta.embedded import EmbeddedDelta

    return EmbeddedDelta(spark)
