"""The ingest ledger: which raw files of a source are already in its table.

One small Delta table per source (default `<lakehouse>/_ingest/<source>`), one row per
file and state change:

- `pending`: written just before the table commit of a batch (after the batch passed
  its contract), with the host and process id of the writer; while it writes, the writer
  renews a lease object (`<ledger>/_batchml_leases/<batch id>.json`) every 30 seconds,
  so a run on another host (where its process id says nothing) sees it is still there;
- `ingested`: written after the table (and quarantine) commits, carrying the batch's
  Delta transaction token, so it is written once even when a run is retried;
- `abandoned`: a pending batch whose table commit never happened (its writer died or
  failed before committing); its files count as not ingested.

A file counts as ingested when it has an `ingested` row. Its identity is its path
relative to the source's root (so a copied, moved or re-mounted lakehouse or landing
folder names the same files; only a file outside that root is recorded by its absolute
path), its size and modification time, and the SHA-256 of its bytes (unless the source
sets `content_hash = false`): a file of the same size whose time changed is compared by
its bytes, so a byte-identical copy with a new time is not new. Ledgers of older
versions recorded absolute paths: they are read as keys under the root. A run
killed between the table commit and the `ingested` row leaves a `pending` batch whose
token is in the table: the next run finds it and completes it (quarantine, then the
ledger), so no file is lost or read twice, however many new files landed meanwhile.
The record lives in table rows, not in commit info, so log cleanup cannot erase it.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import socket
import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
from pyspark.sql import SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T

from batchml.lib.delta import DeltaTables, WriteToken
from batchml.lib.ingest.sources import SourceFile, SourceRoot
from batchml.lib.platform import storage
from batchml.lib.platform.logs import get_logger
from batchml.lib.platform.runtime import process_alive

log = get_logger(__name__)

LEDGER_SCHEMA = T.StructType(
    [
        T.StructField("path", T.StringType()),
        T.StructField("size", T.LongType()),
        T.StructField("mtime_ns", T.LongType()),
        T.StructField("sha256", T.StringType()),
        T.StructField("state", T.StringType()),
        T.StructField("batch_id", T.StringType()),
        T.StructField("run_id", T.StringType()),
        T.StructField("host", T.StringType()),
        T.StructField("pid", T.LongType()),
        T.StructField("recorded_at", T.TimestampType()),
        # the source's root `path` is relative to (relative to the lakehouse where it is
        # under it); null in rows of ledgers from before keys were relative
        T.StructField("root", T.StringType()),
    ]
)
PENDING, INGESTED, ABANDONED = "pending", "ingested", "abandoned"
COMPACT_AFTER_FILES = 32  # rewrite the ledger as one file once it has this many
STALE_PENDING = timedelta(hours=24)  # a pending batch older than this has no live writer
LEASE_DIR = "_batchml_leases"
LEASE_RENEW_SECONDS = 30.0  # how often a writer renews its batch's lease
# a lease not renewed for this long belongs to a writer that is gone (ten missed renewals:
# room for a slow store and for clocks of different hosts that disagree by minutes)
LEASE_SECONDS = 300.0


@dataclass(frozen=True)
class PendingBatch:
    """A batch whose writer recorded its files and had not (yet) finished."""

    batch_id: str
    files: tuple[SourceFile, ...]
    host: str
    pid: int
    recorded_at: datetime
    lease_renewed: float | None = None  # when its writer last renewed the lease (epoch s)

    def writer_alive(self) -> bool:
        """Whether the process that wrote it still runs.

        On the writer's host its process id says so (a batch pending for over a day is
        taken as dead: the id may have been reused since). On another host (a cluster
        driver, a scheduler's worker) the lease does: live while renewed in the last
        `LEASE_SECONDS`.
        """
        if self.host != socket.gethostname():
            return self.lease_age() < LEASE_SECONDS
        if self.pid == os.getpid():
            return False
        recorded = self.recorded_at
        if recorded is not None and recorded.tzinfo is None:
            recorded = recorded.replace(tzinfo=UTC)
        if recorded is not None and datetime.now(UTC) - recorded > STALE_PENDING:
            return False
        return bool(process_alive(self.host, self.pid))

    def lease_age(self) -> float:
        """Seconds since the lease was last renewed (infinite without a lease)."""
        if self.lease_renewed is None:
            return float("inf")
        return max(0.0, time.time() - self.lease_renewed)


class BatchLease:
    """The lease of a batch being written: an object renewed by a background thread
    until the batch is done, then deleted. A writer killed leaves it behind, and it
    expires `LEASE_SECONDS` after its last renewal."""

    def __init__(self, uri: str, every: float = LEASE_RENEW_SECONDS) -> None:
        self.uri = uri
        self.every = every
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def renew(self) -> None:
        body = {"host": socket.gethostname(), "pid": os.getpid(), "renewed": time.time()}
        storage.write_text(self.uri, json.dumps(body))

    def _heartbeat(self) -> None:
        while not self._stop.wait(self.every):
            try:
                self.renew()
            except Exception as exc:  # a store hiccup: the next renewal may get through
                log.warning("batch lease not renewed", extra={"lease": self.uri, "error": str(exc)})

    def __enter__(self) -> BatchLease:
        self.renew()
        self._thread = threading.Thread(target=self._heartbeat, name="batch-lease", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:  # a renewal stuck on the store ends with its timeout
            self._thread.join(timeout=self.every + 60)
        with contextlib.suppress(Exception):  # left behind, it only expires
            storage.delete(self.uri)


def read_lease(uri: str) -> float | None:
    """When the lease at `uri` was last renewed; None when there is none. A store that
    cannot be read fails the run (one line): guessing "no lease" could race a writer."""
    try:
        text = storage.read_text(uri)
    except FileNotFoundError:
        return None
    try:
        return float(json.loads(text)["renewed"])
    except (ValueError, KeyError, TypeError):  # not a lease batchml wrote
        return None


@dataclass
class LedgerState:
    """What the ledger says: the ingested version of each path, and pending batches."""

    ingested: dict[str, SourceFile] = field(default_factory=dict)
    ingested_by: dict[str, str] = field(default_factory=dict)  # path -> its latest batch id
    batches: set[str] = field(default_factory=set)  # batch ids with ingested rows
    pending: list[PendingBatch] = field(default_factory=list)
    files: int = 0  # data files of the ledger table (compaction trigger)


@dataclass(frozen=True)
class FilePlan:
    """The listed files sorted by what the ledger says of them."""

    new: list[SourceFile]
    unchanged: list[SourceFile]
    changed: list[SourceFile]  # ingested before, with another size or modification time


def plan_files(listed: Iterable[SourceFile], state: LedgerState, *, content_hash: bool) -> FilePlan:
    """Split the listed files into new, already ingested, and changed since ingested.

    A file is looked up by its key. One with the recorded size and modification time is
    unchanged; with `content_hash`, so is one of the recorded size whose bytes hash to the
    recorded SHA-256 (copied or uploaded again with a new time). Only those files are
    hashed here.
    """
    new, unchanged, changed = [], [], []
    for listed_file in listed:
        known = state.ingested.get(listed_file.name)
        if known is None:
            new.append(listed_file)
        elif (known.size, known.mtime_ns) == (listed_file.size, listed_file.mtime_ns) or (
            content_hash
            and known.sha256
            and known.size == listed_file.size
            and known.sha256 == file_sha256(listed_file.path)
        ):
            unchanged.append(listed_file)
        else:
            changed.append(listed_file)
    return FilePlan(new, unchanged, changed)


def file_sha256(path: str) -> str:
    digest = hashlib.sha256()
    with storage.open_input(path) as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


class IngestLedger:
    """The ledger table of one source, its files keyed under the source's root."""

    def __init__(
        self, spark: SparkSession, tables: DeltaTables, uri: str, source: str, root: SourceRoot
    ) -> None:
        self.spark = spark
        self.tables = tables
        self.uri = uri
        self.source = source
        self.root = root

    def load(self) -> LedgerState:
        """Read the ledger (file metadata only, one row per file and state change)."""
        state = LedgerState()
        if not self.tables.exists(self.uri):
            return state
        read = self.tables.read(self.uri)
        state.files = _data_files(read.df)
        # Arrow to the driver: rows of file metadata (a few hundred bytes per raw file),
        # which the planning step needs as a lookup table by path. Column lists, not row
        # dicts: 400,000 ledger rows take under a second.
        columns = [
            "path",
            "size",
            "mtime_ns",
            "sha256",
            "state",
            "batch_id",
            "host",
            "pid",
            "recorded_at",
        ]
        root = F.col("root") if "root" in read.df.columns else F.lit(None).cast("string")
        arrow = (
            read.df.select(*columns, root.alias("root"))
            .toArrow()
            .sort_by([("recorded_at", "ascending")])
        )
        states = arrow.column("state")
        ingested = arrow.filter(pc.equal(states, INGESTED))
        keys: dict[tuple[str, str | None], str] = {}  # (recorded path, its root) -> key
        for recorded, size, mtime, sha, batch, recorded_root in zip(
            *(
                ingested.column(c).to_pylist()
                for c in ("path", "size", "mtime_ns", "sha256", "batch_id", "root")
            ),
            strict=True,
        ):
            key = keys.get((recorded, recorded_root))
            if key is None:
                key = self.root.recorded_key(recorded, recorded_root)
                keys[(recorded, recorded_root)] = key
            state.ingested[key] = SourceFile(self.root.path_of(key), size, mtime, sha, key)
            state.ingested_by[key] = batch
        state.batches = set(pc.unique(ingested.column("batch_id")).to_pylist())
        closed = arrow.filter(pc.is_in(states, pa.array([INGESTED, ABANDONED])))
        closed_ids = pc.unique(closed.column("batch_id"))
        open_rows = arrow.filter(
            pc.and_(
                pc.equal(states, PENDING), pc.invert(pc.is_in(arrow.column("batch_id"), closed_ids))
            )
        ).to_pylist()
        pending: dict[str, list[dict]] = {}
        for row in open_rows:
            pending.setdefault(row["batch_id"], []).append(row)
        for batch_id, batch_rows in pending.items():
            first = batch_rows[0]
            state.pending.append(
                PendingBatch(
                    batch_id,
                    tuple(self._source_file(r) for r in batch_rows),
                    first["host"] or "",
                    int(first["pid"] or 0),
                    first["recorded_at"],
                    read_lease(self.lease_uri(batch_id)),
                )
            )
        return state

    def lease_uri(self, batch_id: str) -> str:
        return storage.join(self.uri, LEASE_DIR, f"{batch_id}.json")

    def lease(self, batch_id: str) -> BatchLease:
        """The lease to hold while writing batch `batch_id` (a context manager)."""
        return BatchLease(self.lease_uri(batch_id))

    def record(
        self,
        files: Iterable[SourceFile],
        *,
        state: str,
        batch_id: str,
        run_id: str,
        token: WriteToken | None = None,
    ) -> None:
        """Append one row per file in `state`, as one commit (a no-op if `token` is in)."""
        now = datetime.now(UTC)
        host, pid = socket.gethostname(), os.getpid()
        root = self.root.recorded
        rows = [
            (f.name, f.size, f.mtime_ns, f.sha256, state, batch_id, run_id, host, pid, now, root)
            for f in files
        ]
        columns: list[Sequence[Any]] = (
            list(zip(*rows, strict=True)) if rows else [[] for _ in LEDGER_SCHEMA]
        )
        arrow = pa.table(
            {name: list(values) for name, values in zip(LEDGER_SCHEMA.names, columns, strict=True)},
            schema=_ARROW_SCHEMA,
        )
        self.tables.write(
            self.spark.createDataFrame(arrow).coalesce(1),
            self.uri,
            token=token,
            merge_schema=True,  # a ledger from before `root` gains the column
            commit_info={
                "job": "ingest",
                "source": self.source,
                "state": state,
                "batch_id": batch_id,
                "run_id": run_id,
                "files": len(rows),
            },
        )

    def _source_file(self, row: dict) -> SourceFile:
        key = self.root.recorded_key(row["path"], row.get("root"))
        size, mtime = int(row["size"]), int(row["mtime_ns"])
        return SourceFile(self.root.path_of(key), size, mtime, row["sha256"], key)

    def compact(self, state: LedgerState) -> None:
        """Rewrite the ledger as one file once runs have left many small ones.

        Best effort: a concurrent writer makes the overwrite conflict; it is then left
        for a later run. The rows (and the transaction tokens in the log) stay the same.
        """
        if state.files + 2 < COMPACT_AFTER_FILES:
            return
        try:
            rows_df = self.tables.read(self.uri).df
            closed_df = rows_df.filter(F.col("state").isin(INGESTED, ABANDONED)).select("batch_id")
            # what the ledger must remember: every ingested row, and the rows of batches
            # still pending (the rows of finished or abandoned batches' pending states go)
            kept_df = rows_df.filter(F.col("state") == INGESTED).unionByName(
                rows_df.filter(F.col("state") == PENDING).join(
                    closed_df.distinct(), "batch_id", "left_anti"
                )
            )
            self.tables.write(
                kept_df.coalesce(1),
                self.uri,
                mode="overwrite",
                commit_info={"job": "ingest", "source": self.source, "state": "compact"},
            )
        except Exception as exc:
            log.info("ingest ledger compaction skipped", extra={"reason": str(exc)[:200]})


_ARROW_SCHEMA = pa.schema(
    [
        ("path", pa.string()),
        ("size", pa.int64()),
        ("mtime_ns", pa.int64()),
        ("sha256", pa.string()),
        ("state", pa.string()),
        ("batch_id", pa.string()),
        ("run_id", pa.string()),
        ("host", pa.string()),
        ("pid", pa.int64()),
        ("recorded_at", pa.timestamp("us", tz="UTC")),
        ("root", pa.string()),
    ]
)


def _data_files(df) -> int:
    return len(df.inputFiles())
