"""Tables another engine left in a state no reader can rebuild, named.

Both backends fail on such tables with their engine's words: delta-rs with a kernel
error (`Expected contiguous commit files, but found gap: ParsedLogPath {...}`), Delta's
connector with a Py4J stack trace or an error class, often only once an action runs.
These functions turn the log's listing (file names in `_delta_log`) and the active
file list into one line naming the table, the version and the file at fault, the same
on both backends:

- a data file of the version is gone (deleted by hand, or another tool's vacuum),
- the schema is empty,
- `_delta_log/_last_checkpoint` names a checkpoint that is gone (and the commits it
  stood for are cleaned up),
- the log has a gap: a commit is missing between the last checkpoint and the latest
  version.

They are consulted only once an engine has failed (the log listing, one LIST) or, for
the data files, at read time (one `stat` per file, see `first_missing`).
"""

from __future__ import annotations

import json
import os
import re
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from batchml.lib.platform.errors import InputError

LAST_CHECKPOINT = "_last_checkpoint"
_COMMIT = re.compile(r"^(\d{20})\.json$")
# classic (`V.checkpoint.parquet`), multi-part (`V.checkpoint.0000000001.0000000003.parquet`)
# and V2 (`V.checkpoint.<uuid>.json|parquet`) checkpoints
_CHECKPOINT = re.compile(
    r"^(\d{20})\.checkpoint(?:\.(\d{10})\.(\d{10}))?(?:\.[0-9a-fA-F-]{36})?\.(?:parquet|json)$"
)
# what the engines say about a table whose schema has no field
EMPTY_SCHEMA_SIGNS = (
    "DELTA_READ_TABLE_WITHOUT_COLUMNS",
    "EMPTY_SCHEMA_NOT_SUPPORTED_FOR_DATASOURCE",
    "table with empty schema",
)


class TableDefect(InputError):
    """A table left in a state no reader can read (or not at this version), named."""


@dataclass(frozen=True)
class LogListing:
    """What `_delta_log` holds: commit versions, versions with a complete checkpoint, and
    the version `_last_checkpoint` names (None without that hint)."""

    commits: frozenset[int]
    checkpoints: frozenset[int]
    hint: int | None = None

    @property
    def latest(self) -> int | None:
        versions = self.commits | self.checkpoints
        return max(versions) if versions else None

    @property
    def stale_hint(self) -> bool:
        """`_last_checkpoint` names a checkpoint that is not (wholly) there."""
        return self.hint is not None and self.hint not in self.checkpoints

    def missing_commits(self) -> list[int]:
        """Commits the latest version needs (those after its last checkpoint) that are gone."""
        latest = self.latest
        if latest is None:
            return []
        base = max(self.checkpoints, default=-1)
        return [v for v in range(base + 1, latest + 1) if v not in self.commits]


def parse_listing(names: Iterable[str], last_checkpoint: str | None) -> LogListing:
    """A `LogListing` from the file names in `_delta_log` and `_last_checkpoint`'s text."""
    commits: set[int] = set()
    parts: dict[int, set[int]] = defaultdict(set)
    expected: dict[int, int] = {}
    for name in names:
        commit = _COMMIT.match(name)
        if commit:
            commits.add(int(commit.group(1)))
            continue
        checkpoint = _CHECKPOINT.match(name)
        if checkpoint:
            version = int(checkpoint.group(1))
            part, total = checkpoint.group(2), checkpoint.group(3)
            parts[version].add(int(part) if part else 1)
            expected[version] = int(total) if total else 1
    complete = {v for v, seen in parts.items() if seen >= set(range(1, expected[v] + 1))}
    hint = None
    if last_checkpoint:
        try:
            hint = int(json.loads(last_checkpoint)["version"])
        except (ValueError, KeyError, TypeError):
            hint = None
    return LogListing(frozenset(commits), frozenset(complete), hint)


def local_listing(root: str) -> LogListing | None:
    """The listing of a local table's `_delta_log` (None when there is none)."""
    log_dir = os.path.join(root, "_delta_log")
    try:
        names = os.listdir(log_dir)
    except OSError:
        return None
    hint = None
    if LAST_CHECKPOINT in names:
        try:
            with open(os.path.join(log_dir, LAST_CHECKPOINT), encoding="utf-8") as handle:
                hint = handle.read()
        except OSError:
            hint = None
    return parse_listing(names, hint)


def log_problem(uri: str, listing: LogListing) -> str | None:
    """Why the latest version of the table cannot be rebuilt from its log, in one line;
    None when nothing in the listing stops it. Every read pins its version against the
    latest one, so such a table cannot be read at any version by either backend."""
    missing = listing.missing_commits()
    if not missing:
        return None
    latest = listing.latest
    if listing.stale_hint and listing.hint is not None and max(missing) < listing.hint:
        return (
            f"table {uri}: checkpoint {checkpoint_name(listing.hint)} (version {listing.hint}, "
            f"named in _delta_log/{LAST_CHECKPOINT}) is missing and the commits before it are "
            f"gone too, so version {latest} cannot be rebuilt; restore the checkpoint file"
        )
    first = missing[0]
    return (
        f"table {uri}: its log has a gap: commit {first:020d}.json (version {first}) is "
        f"missing, so version {latest} cannot be rebuilt; restore the file from a backup"
    )


def checkpoint_name(version: int) -> str:
    return f"_delta_log/{version:020d}.checkpoint.parquet"


def is_empty_schema(message: str) -> bool:
    return any(sign in message for sign in EMPTY_SCHEMA_SIGNS)


def empty_schema(uri: str, version: int | None) -> str:
    at = f" version {version}" if version is not None else ""
    return (
        f"table {uri}{at} has an empty schema (no columns), so there is nothing to read; "
        "another engine created it without columns"
    )


def missing_file(uri: str, version: int, relative: str) -> str:
    return (
        f"table {uri} version {version}: data file {relative} is missing (deleted or "
        "vacuumed); read another version or restore the file"
    )


def first_missing(
    files: Iterable[str], exists: Callable[[str], bool] = os.path.exists, root: str = ""
) -> str | None:
    """The first of `files` (relative to `root`) that is not there. A `stat` each: 5,000
    files take about 15 ms on a local disk, against seconds of Spark job that would
    otherwise fail halfway with a Java stack trace."""
    for relative in files:
        if not exists(os.path.join(root, relative) if root else relative):
            return relative
    return None
