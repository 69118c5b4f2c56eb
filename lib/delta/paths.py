"""Table locations, Hive-style partition directories and Delta partition-value strings.

Pure functions: no Spark, no storage. Three spellings of one partition value meet here:
- the directory name Spark writes (`ts=2024-01-01 12%3A00%3A00`, Hive escaping),
- the string the Delta log stores in `partitionValues` (`2024-01-01T12:00:00.000000Z`),
- the `path` of an add action in the log, a relative URI (percent-encoded once more).
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

HIVE_NULL = "__HIVE_DEFAULT_PARTITION__"
_GLOB_SPECIAL = re.compile(r"([\[\]{}*?\\])")
PARTITION_TYPES = (
    "string",
    "date",
    "timestamp",
    "timestamp_ntz",
    "byte",
    "short",
    "integer",
    "long",
    "boolean",
    "decimal",
)


def is_local(uri: str) -> bool:
    """Whether a table location is on the local filesystem."""
    return "://" not in uri or uri.startswith("file:")


def local_path(uri: str) -> str:
    """An absolute local path for a local table location (`file:` URIs included)."""
    if uri.startswith("file:"):
        return unquote(urlparse(uri).path)
    return str(Path(uri).expanduser().resolve())


def normalize_uri(uri: str) -> str:
    """The canonical form of a table location: absolute local path, or the URI as given."""
    return local_path(uri) if is_local(uri) else uri.rstrip("/")


_ESCAPED = re.compile(r"%([0-9A-Fa-f]{2})")


def hive_unescape(name: str) -> str:
    """A directory name's partition value as Spark's partition discovery reads it: every
    `%XX` is one character (code point XX), not a byte of UTF-8. So `%C3%BC` (how other
    writers percent-encode `ü`) reads as `Ã¼`; callers compare with the log's value and
    use the log's where the two differ."""
    return _ESCAPED.sub(lambda match: chr(int(match.group(1), 16)), name)


def relative_file(action: str) -> str:
    """The file's relative path on storage for an add action's `path` as the log holds it.

    (delta-rs percent-encodes the path of an `AddAction` itself: give it the plain path.)
    """
    return unquote(action)


def hadoop_path(path: str) -> str:
    """A local path as Spark must be given it to open exactly that file: Spark expands
    glob characters (`[`, `{`, `*`, `?`) in the paths it reads unless they are escaped.
    """
    return _GLOB_SPECIAL.sub(r"\\\1", path)


def partition_dirs(relative: str) -> list[tuple[str, str | None]]:
    """The `(column, raw value)` pairs of the Hive-style directories above a file."""
    pairs: list[tuple[str, str | None]] = []
    for segment in relative.split("/")[:-1]:
        if "=" not in segment:
            return []
        column, raw = segment.split("=", 1)
        value = hive_unescape(raw)
        pairs.append((hive_unescape(column), None if value == HIVE_NULL else value))
    return pairs


def to_delta_value(spark_text: str | None, type_name: str) -> str | None:
    """Spark's string rendering of a partition value -> Delta's `partitionValues` string.

    Timestamps become UTC ISO-8601 with microseconds (Spark renders them in the session
    time zone, which batchml pins to UTC); every other type keeps Spark's rendering.
    """
    if spark_text is None or spark_text == "":
        return None
    if type_name == "timestamp":
        return parse_timestamp(spark_text).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    if type_name == "timestamp_ntz":
        return parse_timestamp(spark_text, ntz=True).strftime("%Y-%m-%d %H:%M:%S.%f")
    return spark_text


def parse_timestamp(text: str, *, ntz: bool = False) -> datetime:
    """Parse `2024-01-01 12:00:00[.ffffff]` or ISO-8601 (`T`, `Z`, offsets) as UTC."""
    cleaned = text.strip().replace("Z", "+00:00")
    parsed = datetime.fromisoformat(cleaned)
    if ntz:
        return parsed.replace(tzinfo=None)
    if parsed.tzinfo is None:
        return parsed.replace(tzinfo=UTC)
    return parsed.astimezone(UTC)


def typed_value(text: str | None, type_name: str) -> Any:
    """A partition value string as the Python value Spark would give it.

    Raises:
        ValueError: the text is not a value of that type.
    """
    if text is None:
        return None
    if type_name == "string":
        return text
    if type_name == "date":
        return date.fromisoformat(text)
    if type_name in ("timestamp", "timestamp_ntz"):
        return parse_timestamp(text, ntz=type_name == "timestamp_ntz")
    if type_name in ("byte", "short", "integer", "long"):
        return int(text)
    if type_name == "boolean":
        if text.lower() not in ("true", "false"):
            raise ValueError(f"not a boolean: {text!r}")
        return text.lower() == "true"
    if type_name.startswith("decimal"):
        try:
            return Decimal(text)
        except InvalidOperation as exc:
            raise ValueError(f"not a decimal: {text!r}") from exc
    raise ValueError(f"unsupported partition type {type_name}")


def same_value(left: Any, right: Any) -> bool:
    """Equality of two typed partition values (aware and naive datetimes compared in UTC)."""
    if (
        isinstance(left, datetime)
        and isinstance(right, datetime)
        and (left.tzinfo is None) != (right.tzinfo is None)
    ):
        left = left.replace(tzinfo=UTC) if left.tzinfo is None else left
        right = right.replace(tzinfo=UTC) if right.tzinfo is None else right
    return left == right
