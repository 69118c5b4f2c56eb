"""Names and values written into Spark SQL text."""

from __future__ import annotations


def identifier(name: str) -> str:
    """A column or table name as a Spark SQL identifier: `name`, backticks doubled."""
    return "`" + name.replace("`", "``") + "`"


def string(value: str) -> str:
    """A string as a SQL literal with quotes doubled ('it''s'), as predicates of Delta
    replaces and registry filters are written."""
    return "'" + value.replace("'", "''") + "'"
