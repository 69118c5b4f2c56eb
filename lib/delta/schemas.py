"""Checking a DataFrame's schema against a table's before anything is written."""

from __future__ import annotations

from dataclasses import dataclass

from pyspark.sql import types as T

from batchml.lib.delta.paths import PARTITION_TYPES
from batchml.lib.platform.errors import InputError


@dataclass(frozen=True)
class SchemaDiff:
    """How an incoming schema differs from a table's (types compared without nullability)."""

    missing: list[str]
    extra: list[T.StructField]
    mistyped: list[tuple[str, str, str]]  # column, table type, incoming type

    def describe(self, uri: str, *, allow_extra: bool) -> str | None:
        """One line listing every problem, or None when the write may go ahead."""
        problems = []
        if self.missing:
            problems.append(f"missing columns {', '.join(self.missing)}")
        if self.mistyped:
            problems.append(
                "mistyped columns "
                + ", ".join(f"{c} (table {t}, data {d})" for c, t, d in self.mistyped)
            )
        if self.extra and not allow_extra:
            problems.append(
                f"extra columns {', '.join(f.name for f in self.extra)} "
                "(pass merge_schema to add them to the table)"
            )
        if not problems:
            return None
        return f"data does not match the schema of table {uri}: " + "; ".join(problems)


def compare_schemas(table: T.StructType, incoming: T.StructType) -> SchemaDiff:
    """Compare by column name; a type differs when its simple string does (nullability aside)."""
    incoming_by_name = {f.name: f for f in incoming}
    table_names = set(table.fieldNames())
    missing = [f.name for f in table if f.name not in incoming_by_name]
    mistyped = [
        (f.name, f.dataType.simpleString(), incoming_by_name[f.name].dataType.simpleString())
        for f in table
        if f.name in incoming_by_name
        and f.dataType.simpleString() != incoming_by_name[f.name].dataType.simpleString()
    ]
    extra = [f for f in incoming if f.name not in table_names]
    return SchemaDiff(missing, extra, mistyped)


def check_partition_columns(schema: T.StructType, columns: list[str], uri: str) -> None:
    """Partition columns must exist and be of a type with an exact string form."""
    names = schema.fieldNames()
    unknown = [c for c in columns if c not in names]
    if unknown:
        raise InputError(
            f"table {uri}: partition columns {', '.join(unknown)} are not in the data "
            f"(columns: {', '.join(names)})"
        )
    if len(set(columns)) != len(columns):
        raise InputError(f"table {uri}: partition columns repeat: {', '.join(columns)}")
    if columns and len(columns) == len(names):
        raise InputError(f"table {uri}: every column is a partition column; keep one for data")
    for name in columns:
        type_name = schema[name].dataType.typeName()
        if type_name not in PARTITION_TYPES:
            raise InputError(
                f"table {uri}: column {name} of type {schema[name].dataType.simpleString()} "
                f"cannot be a partition column (use one of {', '.join(PARTITION_TYPES)})"
            )
