"""Raw source files: finding them, fingerprinting a batch, and reading them with a contract.

Sources are read with the contract's column names and never with an inferred schema:
CSV and JSON-lines as strings (cast afterwards, so a value that does not cast is caught
per row), with unparseable lines kept whole in `_raw_record` instead of failing the job.
"""

from __future__ import annotations

import contextlib
import csv
import fnmatch
import glob
import gzip
import hashlib
import io
import itertools
import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

from pyspark.errors import AnalysisException
from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T

from batchml.lib.delta.paths import hadoop_path
from batchml.lib.ingest.contracts import RAW_RECORD, SOURCE_FILE, CheckedContract, raw_column
from batchml.lib.platform import storage
from batchml.lib.platform.errors import InputError, first_line

PARQUET_MAGIC = b"PAR1"
TEXT_FORMATS = ("csv", "json")


@dataclass(frozen=True)
class SourceFile:
    """One raw file: where it is read from (`path`, absolute), how the ledger names it
    (`key`: its path relative to its source's root, so a moved or copied lakehouse or
    landing folder names it the same; absolute for a file outside that root), its size
    and modification time, and the SHA-256 of its bytes once ingest has hashed them."""

    path: str
    size: int
    mtime_ns: int
    sha256: str | None = None
    key: str = ""

    @property
    def name(self) -> str:
        """The file's name in the ledger (its key; its path where it has none)."""
        return self.key or self.path


@dataclass(frozen=True)
class SourceRoot:
    """The folder a source's files are named relative to.

    `path` is its real absolute path. `lakehouse` is the lakehouse root (absolute) and
    `lake_relative` the same folder relative to it when it lies under it (`raw/flights`).
    The ledger records each file's key together with its root as `recorded` says (the
    lake-relative form where there is one), so a later run can tell a moved lakehouse
    or landing folder (same root, another place) from an edited glob (another root).
    """

    path: str
    lake_relative: str | None = None
    lakehouse: str | None = None

    @property
    def recorded(self) -> str:
        """The root as the ledger records it."""
        return self.lake_relative if self.lake_relative is not None else self.path

    def key(self, path: str) -> str:
        """A file's ledger key: relative to the root, or absolute outside it."""
        if storage.is_remote(self.path) or storage.is_remote(path):
            base = self.path.rstrip("/") + "/"
            return path[len(base) :] if path.startswith(base) else path
        relative = os.path.relpath(path, self.path)
        if relative == "." or relative.startswith("../") or relative == "..":
            return path
        return relative.replace(os.sep, "/")

    def path_of(self, key: str) -> str:
        """Where a ledger key's file is read from."""
        return key if _absolute(key) else storage.join(self.path, key)

    def recorded_key(self, recorded: str, recorded_root: str | None = None) -> str:
        """The key, under this root, of a file as a ledger row recorded it.

        - With its root recorded: the same root (wherever the lakehouse or landing
          folder is now) keeps the key; a root the file lies under or over here (the
          glob's folder part edited: `raw/flights/2013` then `raw/flights`) rebases it.
        - Rows of older ledgers recorded absolute paths and no root: a path under this
          root, or under this root's place in another lakehouse (`/old/lake/raw/flights/
          jan.csv` for `raw/flights`), becomes relative.
        """
        if recorded_root is not None and not _absolute(recorded):
            if recorded_root == self.recorded:
                return recorded
            if _absolute(recorded_root):
                folder = recorded_root
            elif self.lakehouse is not None:
                folder = storage.join(self.lakehouse, recorded_root)
            else:
                return recorded
            full = (
                storage.join(folder, recorded)
                if storage.is_remote(folder)
                else os.path.normpath(os.path.join(folder, recorded))
            )
            rebased = self.key(full)
            if not _absolute(rebased):
                return rebased
            # outside this root: a root inside the lakehouse names the same place wherever
            # the lakehouse is, so this is another folder's file; a landing folder outside
            # it that is not this root was moved or re-mounted: same key
            return full if not _absolute(recorded_root) else recorded
        if not _absolute(recorded):
            return recorded
        key = self.key(recorded)
        if key != recorded or self.lake_relative in (None, "."):
            return key
        marker = f"/{self.lake_relative.strip('/')}/"
        at = recorded.rfind(marker)
        return recorded[at + len(marker) :] if at >= 0 else recorded


def _absolute(path: str) -> bool:
    return os.path.isabs(path) or storage.is_remote(path)


def source_root(pattern: str, lakehouse_root: str | None = None) -> SourceRoot:
    """The root of a source's file, folder or glob: its leading folders without glob
    characters (a folder is its own root, a file's root is its folder)."""
    if storage.is_remote(pattern):
        return _remote_root(pattern, lakehouse_root)
    parts = pattern.split("/")
    fixed = list(itertools.takewhile(lambda part: not glob.has_magic(part), parts))
    if len(fixed) < len(parts):
        folder = "/".join(fixed) or "/"
    elif os.path.isdir(pattern):
        folder = pattern
    else:
        folder = os.path.dirname(pattern) or "."
    real = os.path.realpath(folder)
    if not lakehouse_root or "://" in lakehouse_root:
        return SourceRoot(real)
    lakehouse = os.path.abspath(os.path.expanduser(lakehouse_root))
    relative = None
    # as written first (a symlinked folder inside the lakehouse is still inside it),
    # then with links resolved
    for inner, outer in ((os.path.abspath(folder), lakehouse), (real, os.path.realpath(lakehouse))):
        inside = os.path.relpath(inner, outer)
        if inside != ".." and not inside.startswith("../"):
            relative = inside.replace(os.sep, "/")
            break
    return SourceRoot(real, relative, lakehouse)


def _remote_root(pattern: str, lakehouse_root: str | None) -> SourceRoot:
    """`source_root` of a pattern on an object store: URIs as Spark names its files."""
    pattern = storage.spark_uri(pattern)
    scheme_and_bucket, parts = _uri_parts(pattern)
    fixed = list(itertools.takewhile(lambda part: not glob.has_magic(part), parts))
    folder = "/".join([scheme_and_bucket, *fixed])
    if len(fixed) == len(parts) and storage.is_file(folder):
        folder = storage.parent(folder)
    elif len(fixed) < len(parts) and not fixed:
        folder = scheme_and_bucket
    if not lakehouse_root or not storage.is_remote(lakehouse_root):
        return SourceRoot(folder)
    lake = storage.spark_uri(lakehouse_root).rstrip("/")
    if folder == lake:
        return SourceRoot(folder, ".", lake)
    if folder.startswith(lake + "/"):
        return SourceRoot(folder, folder[len(lake) + 1 :], lake)
    return SourceRoot(folder, None, lake)


def _uri_parts(uri: str) -> tuple[str, list[str]]:
    """`s3a://bucket/a/b*/c` -> ("s3a://bucket", ["a", "b*", "c"])."""
    scheme, _, rest = uri.partition("://")
    bucket, _, key = rest.partition("/")
    return f"{scheme}://{bucket}", [part for part in key.split("/") if part]


def _list_remote(pattern: str) -> list[SourceFile]:
    """The files of a file, folder or glob on an object store: one listing of the
    pattern's fixed prefix, its keys matched against the glob (`*` and `?` within one
    path segment, `**` across them; a matched folder brings its files). Names starting
    with `.`, and `_` below a matched folder, are skipped, as locally."""
    pattern = storage.spark_uri(pattern)
    scheme_and_bucket, parts = _uri_parts(pattern)
    fixed = list(itertools.takewhile(lambda part: not glob.has_magic(part), parts))
    base = "/".join([scheme_and_bucket, *fixed])
    wild = parts[len(fixed) :]
    if not wild and storage.is_file(base):
        entry = storage.stat(base)
        return [SourceFile(base, entry.size, entry.mtime_ns)] if entry else []
    matchers = [_segment_matcher(part) for part in wild]
    found = []
    for entry in storage.list_files(base):
        relative = entry.uri[len(base) + 1 :].split("/")
        if any(part.startswith(".") for part in relative):
            continue
        depth = _matched_depth(relative, matchers)
        if depth is None:
            continue
        below = relative[depth:-1] + ([relative[-1]] if depth < len(relative) else [])
        if any(part.startswith((".", "_")) for part in below) or relative[-1].startswith("."):
            continue
        found.append(SourceFile(entry.uri, entry.size, entry.mtime_ns))
    return found


def _segment_matcher(part: str) -> re.Pattern[str] | None:
    """A regex for one glob segment (None for `**`, any number of segments)."""
    return None if part == "**" else re.compile(fnmatch.translate(part))


def _matched_depth(segments: list[str], matchers: list[re.Pattern[str] | None]) -> int | None:
    """How many leading segments the glob matched (the rest lie in a matched folder), or
    None when it does not match."""
    if not matchers:
        return 0
    head, *rest = matchers
    if head is None:  # `**`: zero or more segments, none of them hidden
        for skip in range(len(segments) + 1):
            if skip and segments[skip - 1].startswith("."):
                return None
            depth = _matched_depth(segments[skip:], rest)
            if depth is not None:
                return skip + depth
        return None
    if not segments or segments[0].startswith(".") or not head.match(segments[0]):
        return None
    depth = _matched_depth(segments[1:], rest)
    return None if depth is None else depth + 1


@dataclass(frozen=True)
class SourceBatch:
    """The files one ingest run reads, and the batch id that makes it idempotent."""

    files: tuple[SourceFile, ...]
    batch_id: str
    explicit_id: bool

    @property
    def paths(self) -> list[str]:
        return [f.path for f in self.files]


def list_files(pattern: str, root: SourceRoot | None = None) -> list[SourceFile]:
    """Expand a file, folder or glob into its files, sorted by path (hidden ones skipped),
    each keyed relative to `root` (default: the pattern's own root).

    One `stat` per file and one `realpath` per directory, so a landing folder of many
    thousands of files lists in well under a second per 100,000.

    Raises:
        InputError: nothing matches, or only empty files do.
    """
    if storage.is_remote(pattern):
        return _keyed(pattern, _list_remote(pattern), root)
    real_dirs: dict[str, str] = {}
    folder, name = os.path.split(pattern)
    if glob.has_magic(name) and not glob.has_magic(folder):
        # the common landing-folder case (`raw/orders/*.csv`): one scan of the folder,
        # one stat per matching file
        files = _scan(folder, name, real_dirs)
        matched = []
    else:
        files = []
        matched = (
            sorted(glob.glob(pattern, recursive=True)) if glob.has_magic(pattern) else [pattern]
        )
    for candidate in matched:
        if os.path.isdir(candidate):
            files.extend(_walk(candidate, real_dirs))
        elif os.path.isfile(candidate):
            files.append(_source_file(candidate, os.stat(candidate), real_dirs))
    return _keyed(pattern, files, root)


def _keyed(pattern: str, files: list[SourceFile], root: SourceRoot | None) -> list[SourceFile]:
    if not files:
        raise InputError(f"source path {pattern} matches no files")
    if all(f.size == 0 for f in files):
        raise InputError(f"source path {pattern} matches only empty files")
    root = root or source_root(pattern)
    keyed = {replace(f, key=root.key(f.path)) for f in files}
    return sorted(keyed, key=lambda f: f.path)


def batch_of(
    files: list[SourceFile], *, batch_id: str | None = None, salt: str = ""
) -> SourceBatch:
    """The batch of these files: its id is `batch_id`, else a hash of every file's key,
    size and modification time (plus `salt`), so the same files make the same batch,
    wherever the lakehouse lives."""
    if batch_id is not None:
        return SourceBatch(tuple(files), batch_id, True)
    digest = hashlib.sha256(
        json.dumps([[f.name, f.size, f.mtime_ns] for f in files] + [salt]).encode()
    ).hexdigest()
    return SourceBatch(tuple(files), f"files-{digest[:20]}", False)


def find_batch(pattern: str, *, batch_id: str | None = None) -> SourceBatch:
    """Every file under `pattern` as one batch (see `list_files` and `batch_of`)."""
    return batch_of(list_files(pattern), batch_id=batch_id)


def _scan(folder: str, name_pattern: str, real_dirs: dict[str, str]) -> list[SourceFile]:
    found = []
    try:
        entries = list(os.scandir(folder or "."))
    except (FileNotFoundError, NotADirectoryError):
        return []
    real = os.path.realpath(folder or ".")
    wanted = re.compile(fnmatch.translate(name_pattern))
    for entry in entries:
        if entry.name.startswith(".") or not wanted.match(entry.name):
            continue  # glob skips hidden names too
        if entry.is_dir():
            found.extend(_walk(entry.path, real_dirs))
        elif entry.is_file():
            info = entry.stat()
            found.append(SourceFile(f"{real}/{entry.name}", info.st_size, info.st_mtime_ns))
    return found


def _walk(folder: str, real_dirs: dict[str, str]) -> list[SourceFile]:
    found = []
    with os.scandir(folder) as entries:
        for entry in entries:
            if entry.name.startswith((".", "_")):
                continue
            if entry.is_dir():
                found.extend(_walk(entry.path, real_dirs))
            elif entry.is_file():
                found.append(_source_file(entry.path, entry.stat(), real_dirs))
    return found


def _source_file(path: str, info: os.stat_result, real_dirs: dict[str, str]) -> SourceFile:
    folder, name = os.path.split(os.path.abspath(path))
    real = real_dirs.get(folder)
    if real is None:
        real = real_dirs[folder] = os.path.realpath(folder)
    return SourceFile(os.path.join(real, name), info.st_size, info.st_mtime_ns)


def check_formats(batch: SourceBatch, file_format: str) -> None:
    """Refuse files whose first bytes say they are another format (before Spark runs)."""
    for source in batch.files:
        if source.size == 0:
            continue
        with storage.open_input(source.path) as handle:
            head = handle.read(4)
        if file_format in TEXT_FORMATS and head == PARQUET_MAGIC:
            raise InputError(f"file {source.path} is Parquet, not {file_format}")
        if file_format == "parquet" and head != PARQUET_MAGIC:
            raise InputError(f"file {source.path} is not a Parquet file")


def check_csv_headers(
    batch: SourceBatch, checked: CheckedContract, options: Mapping[str, object]
) -> None:
    """Each CSV file's header must name the contract's columns, in order."""
    if str(options.get("header", "true")).lower() != "true":
        return
    separator = str(options.get("sep", options.get("delimiter", ",")))
    expected = checked.columns
    for source in batch.files:
        if source.size == 0:
            continue
        header = _first_line(source.path)
        found = next(csv.reader(io.StringIO(header), delimiter=separator), [])
        found = [name.strip() for name in found]
        if found != expected:
            missing = [c for c in expected if c not in found]
            unexpected = [c for c in found if c not in expected]
            detail = []
            if missing:
                detail.append(f"missing {', '.join(missing)}")
            if unexpected:
                detail.append(f"unexpected {', '.join(unexpected[:10])}")
            if not detail:
                detail.append("same columns in another order")
            raise InputError(
                f"file {source.path}: CSV header does not match the contract of table "
                f"{checked.table} ({'; '.join(detail)})"
            )


def _unzipped(raw: Any, path: str) -> Any:
    """The stream as text bytes: gunzipped for a `.gz` file."""
    return gzip.GzipFile(fileobj=raw) if path.endswith(".gz") else contextlib.nullcontext(raw)


def _first_line(path: str) -> str:
    try:
        with storage.open_input(path) as raw, _unzipped(raw, path) as stream:
            text = io.TextIOWrapper(stream, encoding="utf-8", errors="replace", newline="")
            return text.readline().rstrip("\r\n")
    except (OSError, EOFError) as exc:
        raise InputError(f"file {path} cannot be read: {exc}") from None


def read_raw(
    spark: SparkSession,
    batch: SourceBatch,
    file_format: str,
    options: dict[str, str],
    checked: CheckedContract,
    root: SourceRoot | None = None,
) -> DataFrame:
    """The batch with the contract's typed columns and `_source_file` (each row's file by
    its key under `root`: relative to the source's root, as the ledger names it).

    CSV and JSON are parsed straight into the declared types; a line that cannot be
    parsed or converted is kept whole in `_raw_record` (its values null where they
    failed). Parquet keeps its own column types: each column is cast with `try_cast`
    and its original value kept as `<col>__raw`, so a lost value is detected.
    """
    paths = [hadoop_path(p) for p in batch.paths]
    try:
        if file_format == "parquet":
            raw_df = spark.read.options(**options).parquet(*paths)
            missing = [c for c in checked.columns if c not in raw_df.columns]
            if missing:
                raise InputError(
                    f"source files lack columns {', '.join(missing)} of the contract of "
                    f"table {checked.table} (found: {', '.join(raw_df.columns)})"
                )
            columns = [F.col(f"`{c}`").try_cast(t).alias(c) for c, t in checked.types.items()]
            columns += [F.col(f"`{c}`").alias(raw_column(c)) for c in checked.columns]
        else:
            schema = checked.typed_schema().add(RAW_RECORD, T.StringType())
            reader = (
                spark.read.schema(schema)
                .options(**options)
                .option("mode", "PERMISSIVE")
                .option("columnNameOfCorruptRecord", RAW_RECORD)
            )
            if file_format == "csv":
                raw_df = reader.option("header", options.get("header", "true")).csv(paths)
            else:
                raw_df = reader.json(paths)
            columns = [F.col(f"`{c}`") for c in [*checked.columns, RAW_RECORD]]
    except AnalysisException as exc:
        raise InputError(f"cannot read source files: {first_line(exc)}") from None
    return raw_df.select(
        *columns, source_key(F.col("_metadata.file_path"), root).alias(SOURCE_FILE)
    )


def source_key(file_uri: Column, root: SourceRoot | None) -> Column:
    """The ledger key of the file a row was read from, from Spark's `file:` URI of it.

    Hadoop percent-encodes the path (`%20`, `%5B`, `%25`) but leaves `+` as it is, which
    URL decoding would turn into a space: it is escaped first.
    """
    escaped = F.replace(file_uri, F.lit("+"), F.lit("%2B"))
    decoded = F.coalesce(F.try_url_decode(escaped), file_uri)
    path = F.regexp_replace(decoded, r"^file:(//)?", "")
    if root is None:
        return path
    prefix = root.path.rstrip("/") + "/"
    return F.when(path.startswith(prefix), path.substr(len(prefix) + 1, 1 << 30)).otherwise(path)


def reader_options(options: Mapping[str, object]) -> dict[str, str]:
    """Config values (TOML booleans and numbers) as the strings Spark's readers take."""
    return {k: str(v).lower() if isinstance(v, bool) else str(v) for k, v in options.items()}
