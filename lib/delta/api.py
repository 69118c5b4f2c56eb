"""The small Delta API every job uses, whatever the backend."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal, Protocol

from pyspark.sql import DataFrame, SparkSession

from batchml.lib.platform.errors import InputError

WriteMode = Literal["append", "overwrite", "replace"]
WRITE_MODES: tuple[str, ...] = ("append", "overwrite", "replace")


class CommitConflict(InputError):
    """A concurrent commit changed what this write replaces; nothing was committed.
    Rerunning the write (on the new snapshot) is safe."""


@dataclass(frozen=True)
class TableRead:
    """A table read at one pinned version."""

    df: DataFrame
    uri: str
    version: int
    # rows as the log's file statistics count them (None when some file has none, or the
    # backend does not look): lets a caller skip a Spark job to learn a read is empty
    rows: int | None = None


@dataclass(frozen=True)
class WriteToken:
    """Idempotency token: Delta's `txn` action. A token already committed makes a write a no-op."""

    app_id: str
    version: int


@dataclass(frozen=True)
class WriteResult:
    """What a write did: the version it made (or found, when it was a no-op)."""

    uri: str
    version: int
    committed: bool
    files_added: int = 0
    files_removed: int = 0
    rows_added: int = 0
    message: str = ""
    attempts: int = 1  # commit attempts: more than one when concurrent writers conflicted


@dataclass(frozen=True)
class VacuumResult:
    """Files a vacuum removed (or would remove, on a dry run)."""

    uri: str
    dry_run: bool
    files: list[str] = field(default_factory=list)
    staging_dirs: list[str] = field(default_factory=list)


class DeltaTables(Protocol):
    """Read, write and inspect Delta tables through one backend."""

    name: str
    spark: SparkSession

    def read(
        self, uri: str, *, version: int | None = None, timestamp: datetime | None = None
    ) -> TableRead: ...

    def write(
        self,
        df: DataFrame,
        uri: str,
        *,
        mode: WriteMode = "append",
        partition_by: list[str] | None = None,
        replace_where: str | None = None,
        token: WriteToken | None = None,
        merge_schema: bool = False,
        commit_info: dict[str, Any] | None = None,
        before_commit: Callable[[], None] | None = None,
        overwrite_schema: bool = False,
    ) -> WriteResult: ...

    def read_added(self, uri: str, since: int, version: int) -> TableRead | None:
        """The rows of the files added to the table between versions `since` and
        `version` (an incremental read); None when files were removed in between too (an
        overwrite or a replace: the caller must read the whole version)."""
        ...

    def history(self, uri: str, limit: int | None = None) -> list[dict[str, Any]]: ...

    def version(self, uri: str) -> int | None: ...

    def exists(self, uri: str) -> bool: ...

    def column_centres(self, uri: str, version: int, columns: list[str]) -> dict[str, float]:
        """Rough centres of numeric columns from the log's file statistics, where the
        backend exposes them (a feature fit then skips a pass); {} where it does not."""
        ...

    def has_token(self, uri: str, token: WriteToken) -> bool:
        """Whether a write with this idempotency token is committed to the table."""
        ...

    def vacuum(
        self,
        uri: str,
        *,
        retain_hours: float = 168,
        dry_run: bool = False,
        keep_versions: list[int] | None = None,
    ) -> VacuumResult: ...
