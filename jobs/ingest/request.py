"""What one ingest run is given, works with and reports."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from pyspark.sql import SparkSession

from batchml.lib.delta import DeltaTables
from batchml.lib.ingest.contracts import (
    CheckedContract,
)
from batchml.lib.ingest.ledger import (
    IngestLedger,
)
from batchml.lib.platform.errors import EXIT_CONTRACT, BatchmlError
from batchml.lib.platform.settings import SourceSettings, TableContract


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


@dataclass
class IngestJob:
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
