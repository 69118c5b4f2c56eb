"""`batchml ingest SOURCE`: raw files into a versioned Delta table under a data contract.

Rows that break the contract (or cannot be parsed at all) go to the table's quarantine
table with the rules they broke; the table's policy decides whether the batch is then
written (`quarantine`), written only under a bad-row fraction (`threshold`), or not
written at all (`fail`). Each file is ingested once: the source's ingest ledger
(`lib/ingest/ledger.py`) records the files already in the table, and a run reads only the new
ones; a batch already committed (same files, or same batch id) commits nothing.

Modules: `command.py` (the Typer command and its output), `job.py` (`run`: plan the
files, complete interrupted batches), `write.py` (one batch: check, write, quarantine,
ledger), `request.py` (the request, the report, the violation error).
"""

from batchml.jobs.ingest.job import run
from batchml.jobs.ingest.request import ContractViolation, IngestReport, IngestRequest

__all__ = ["ContractViolation", "IngestReport", "IngestRequest", "run"]
