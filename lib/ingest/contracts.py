"""Row-level data contracts: typed columns, rules, derived columns, evaluated in one pass.

A contract is checked against itself before Spark reads anything (unknown columns,
unknown types, rules that do not fit a type). Rows are then read with the declared
types; Spark's permissive parser keeps a line it cannot parse or convert whole in
`_raw_record`. Every rule is a built-in Column expression:

- on the hot path, all rules fold into one null-safe boolean (`good_condition`), so a
  good row costs a few comparisons and nothing is built per row;
- for the (usually few) bad rows, `failed_rules` names each rule a row breaks, and a
  type failure is traced to its column by re-reading the raw line as strings.

Rule names, as they appear in quarantine tables and reports:
`malformed` (the line could not be parsed), `type:<col>` (the value does not cast to
the declared type), `not_null:<col>`, `min:<col>`, `max:<col>`, `allowed:<col>`,
`regex:<col>`, `unique_key` (the key repeats within the batch). Derived columns are
computed for good rows only.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import reduce

from pyspark.errors import AnalysisException, ParseException
from pyspark.sql import Column, DataFrame, SparkSession, Window
from pyspark.sql import functions as F
from pyspark.sql import types as T

from batchml.lib.platform.errors import InputError, first_line
from batchml.lib.platform.settings import ColumnContract, TableContract
from batchml.lib.platform.sqltext import identifier as _q

RAW_RECORD = "_raw_record"
SOURCE_FILE = "_source_file"
FAILED_RULES = "failed_rules"
KEY_COUNT = "_key_count"
IS_GOOD = "_is_good"
RAW_SUFFIX = "__raw"
ORDERED_TYPES = (
    T.ByteType,
    T.ShortType,
    T.IntegerType,
    T.LongType,
    T.FloatType,
    T.DoubleType,
    T.DecimalType,
    T.DateType,
    T.TimestampType,
    T.TimestampNTZType,
    T.StringType,
)
NUMERIC_TYPES = ORDERED_TYPES[:7]


@dataclass(frozen=True)
class CheckedContract:
    """A contract whose types have been parsed: ready to build expressions from."""

    table: str
    contract: TableContract
    types: dict[str, T.DataType]

    @property
    def columns(self) -> list[str]:
        return list(self.contract.columns)

    def typed_schema(self) -> T.StructType:
        """The declared raw columns with their types (all nullable)."""
        return T.StructType([T.StructField(n, t) for n, t in self.types.items()])

    def string_schema(self, *, corrupt_column: bool) -> T.StructType:
        """The raw columns as strings, as text sources are read before casting."""
        fields = [T.StructField(name, T.StringType()) for name in self.columns]
        if corrupt_column:
            fields.append(T.StructField(RAW_RECORD, T.StringType()))
        return T.StructType(fields)


def check_contract(spark: SparkSession, table: str, contract: TableContract) -> CheckedContract:
    """Parse the declared types and check every rule against its column.

    Raises:
        InputError: naming the table, the column and what is wrong.
    """
    where = f"contract of table {table}"
    if not contract.columns:
        raise InputError(f"{where}: declares no columns")
    types = _parse_types(spark, where, contract)
    for name, column in contract.columns.items():
        _check_rules(where, name, column, types[name])
    known = set(contract.columns) | set(contract.derived)
    for label, names, allowed in (
        ("unique_key", contract.unique_key, set(contract.columns)),
        ("partition_by", contract.partition_by, known),
    ):
        unknown = [n for n in names if n not in allowed]
        if unknown:
            raise InputError(
                f"{where}: {label} names unknown columns {', '.join(unknown)} "
                f"(columns: {', '.join(sorted(allowed))})"
            )
    clash = sorted(set(contract.derived) & set(contract.columns))
    if clash:
        raise InputError(f"{where}: derived columns {', '.join(clash)} repeat raw columns")
    checked = CheckedContract(table, contract, types)
    _check_derived(spark, checked)
    return checked


def _parse_types(spark: SparkSession, where: str, contract: TableContract) -> dict[str, T.DataType]:
    """Every declared type, parsed by Spark in one call (column by column to find a culprit)."""
    ddl = ", ".join(f"{_q(name)} {column.type}" for name, column in contract.columns.items())
    try:
        schema = spark.createDataFrame([], ddl).schema
    except (ParseException, AnalysisException, ValueError):
        schema = None
    if schema is not None and schema.fieldNames() == list(contract.columns):
        parsed = {field.name: field.dataType for field in schema}
        for name, column in contract.columns.items():
            _check_flat(where, name, column.type, parsed[name])
        return parsed
    return {n: _parse_type(spark, where, n, c.type) for n, c in contract.columns.items()}


def _check_flat(where: str, name: str, text: str, parsed: T.DataType) -> None:
    if not isinstance(parsed, (*ORDERED_TYPES, T.BooleanType)):
        raise InputError(
            f"{where}: column {name} has type {text!r}; contracts take flat types "
            "(int, bigint, double, decimal(p,s), string, date, timestamp, boolean, ...)"
        )


def _parse_type(spark: SparkSession, where: str, name: str, text: str) -> T.DataType:
    try:
        parsed = spark.createDataFrame([], f"`x` {text}").schema["x"].dataType
    except (ParseException, AnalysisException, ValueError) as exc:
        raise InputError(
            f"{where}: column {name} has unknown type {text!r} ({first_line(exc)})"
        ) from None
    _check_flat(where, name, text, parsed)
    return parsed


def _check_rules(where: str, name: str, column: ColumnContract, data_type: T.DataType) -> None:
    if (column.min is not None or column.max is not None) and not isinstance(
        data_type, ORDERED_TYPES
    ):
        raise InputError(f"{where}: column {name} of type {column.type} cannot take min/max")
    if column.regex is not None:
        if not isinstance(data_type, T.StringType):
            raise InputError(f"{where}: column {name} of type {column.type} cannot take a regex")
        try:
            re.compile(column.regex)
        except re.error as exc:
            raise InputError(f"{where}: column {name} has a bad regex: {exc}") from None
    for bound in (column.min, column.max, *(column.allowed or [])):
        if isinstance(data_type, NUMERIC_TYPES) and isinstance(bound, str):
            raise InputError(
                f"{where}: column {name} is {column.type} but a rule compares it with "
                f"the string {bound!r}"
            )


def _check_derived(spark: SparkSession, checked: CheckedContract) -> None:
    """Resolve every derived expression against an empty frame: analysis only, no job."""
    frame = spark.createDataFrame([], checked.typed_schema())
    for name, expression in checked.contract.derived.items():
        try:
            frame = frame.withColumn(name, F.expr(expression))
            frame.schema  # noqa: B018 - forces analysis
        except (AnalysisException, ParseException) as exc:
            raise InputError(
                f"contract of table {checked.table}: derived column {name} = {expression!r} "
                f"does not resolve: {first_line(exc)}"
            ) from None


def output_schema(spark: SparkSession, checked: CheckedContract) -> T.StructType:
    """The schema ingest writes: typed raw columns, then derived columns."""
    frame = spark.createDataFrame([], checked.typed_schema())
    return with_derived(frame, checked).schema


# ----------------------------------------------------------- transformations
def with_derived(df: DataFrame, checked: CheckedContract) -> DataFrame:
    """Add the derived columns in declaration order (later ones may use earlier ones)."""
    for name, expression in checked.contract.derived.items():
        df = df.withColumn(name, F.expr(expression))
    return df


def with_key_count(df: DataFrame, checked: CheckedContract) -> DataFrame:
    """Add how often each row's unique key occurs in the batch (a window: one shuffle)."""
    key = checked.contract.unique_key
    if not key:
        return df
    return df.withColumn(
        KEY_COUNT, F.count(F.lit(1)).over(Window.partitionBy(*[_q(k) for k in key]))
    )


def good_condition(df: DataFrame, checked: CheckedContract) -> Column:
    """True for a row that breaks no rule: every rule folded into one null-safe boolean."""
    conditions: list[Column] = []
    if RAW_RECORD in df.columns:
        conditions.append(F.col(RAW_RECORD).isNull())
    for name, column in checked.contract.columns.items():
        value = F.col(_q(name))
        raw = raw_column(name)
        if raw in df.columns:  # cast afterwards (Parquet): the cast must not lose a value
            conditions.append(F.col(_q(raw)).isNull() | value.isNotNull())
        if not column.nullable:
            conditions.append(value.isNotNull())
        for broken in _value_rules(value, column).values():
            conditions.append(~F.coalesce(broken, F.lit(False)))
    if KEY_COUNT in df.columns:
        conditions.append(~_duplicate_key(checked))
    return reduce(lambda a, b: a & b, conditions, F.lit(True))


def failed_rules(
    df: DataFrame, checked: CheckedContract, file_format: str, options: dict[str, str]
) -> Column:
    """The names of the rules a row breaks (empty for a good row), as array<string>."""
    type_failures = {
        name: _type_failure(df, checked, name, file_format, options) for name in checked.columns
    }
    rules: list[Column] = []
    if RAW_RECORD in df.columns:
        any_type_failure = reduce(
            lambda a, b: a | b, [F.coalesce(c, F.lit(False)) for c in type_failures.values()]
        )
        rules.append(F.when(F.col(RAW_RECORD).isNotNull() & ~any_type_failure, "malformed"))
    for name, column in checked.contract.columns.items():
        value = F.col(_q(name))
        type_failed = F.coalesce(type_failures[name], F.lit(False))
        rules.append(F.when(type_failed, f"type:{name}"))
        if not column.nullable:
            rules.append(F.when(value.isNull() & ~type_failed, f"not_null:{name}"))
        for rule, broken in _value_rules(value, column).items():
            rules.append(F.when(broken, f"{rule}:{name}"))
    if KEY_COUNT in df.columns:
        rules.append(F.when(_duplicate_key(checked), "unique_key"))
    return F.array_compact(F.array(*rules))


def rule_names(checked: CheckedContract, *, has_raw: bool) -> list[str]:
    """Every rule name this contract can report, in evaluation order."""
    names = ["malformed"] if has_raw else []
    for name, column in checked.contract.columns.items():
        names.append(f"type:{name}")
        if not column.nullable:
            names.append(f"not_null:{name}")
        names.extend(f"{rule}:{name}" for rule in _value_rules(F.lit(None), column))
    if checked.contract.unique_key:
        names.append("unique_key")
    return names


def with_good_flag(df: DataFrame, checked: CheckedContract) -> DataFrame:
    """Add `_is_good` once, so that counting and filtering do not evaluate the rules twice."""
    return df.withColumn(IS_GOOD, good_condition(df, checked))


def good_rows(df: DataFrame, checked: CheckedContract) -> DataFrame:
    """Rows that broke no rule: typed columns, then the derived ones.

    Derived expressions run after the filter, so they only ever see values that passed
    every rule (under ANSI mode a bad value could otherwise fail the whole job).
    """
    good = F.col(IS_GOOD) if IS_GOOD in df.columns else good_condition(df, checked)
    return with_derived(df.filter(good).select(*[_q(n) for n in checked.columns]), checked)


def quarantine_rows(
    df: DataFrame, checked: CheckedContract, file_format: str, options: dict[str, str]
) -> DataFrame:
    """Rows that broke a rule: the raw record, the rules broken and the source file."""
    bad = df.filter(~good_condition(df, checked))
    values = [
        F.col(_q(raw_column(n) if raw_column(n) in df.columns else n)).alias(n)
        for n in checked.columns
    ]
    raw = F.to_json(F.struct(*values))
    if RAW_RECORD in df.columns:
        raw = F.coalesce(F.col(RAW_RECORD), raw)
    source = F.col(SOURCE_FILE) if SOURCE_FILE in df.columns else F.lit(None)
    return bad.select(
        raw.alias("raw_record"),
        failed_rules(bad, checked, file_format, options).alias(FAILED_RULES),
        source.cast("string").alias("source_file"),
    )


def raw_column(name: str) -> str:
    """The string value a column was cast from, where casting happens after reading."""
    return f"{name}{RAW_SUFFIX}"


def _value_rules(value: Column, column: ColumnContract) -> dict[str, Column]:
    """rule -> Column true when the (non-null) value breaks it."""
    rules: dict[str, Column] = {}
    if column.min is not None:
        rules["min"] = value < F.lit(column.min)
    if column.max is not None:
        rules["max"] = value > F.lit(column.max)
    if column.allowed is not None:
        rules["allowed"] = ~value.isin([*column.allowed])
    if column.regex is not None:
        rules["regex"] = ~value.rlike(column.regex)
    return rules


def _duplicate_key(checked: CheckedContract) -> Column:
    # a key with a null part is no key (SQL semantics); not_null rules catch those
    complete = reduce(
        lambda a, b: a & b, [F.col(_q(k)).isNotNull() for k in checked.contract.unique_key]
    )
    return complete & (F.col(KEY_COUNT) > 1)


def _type_failure(
    df: DataFrame, checked: CheckedContract, name: str, file_format: str, options: dict[str, str]
) -> Column:
    """True when the column's text is present but does not convert to the declared type."""
    target = checked.types[name]
    raw = raw_column(name)
    if raw in df.columns:
        return F.col(_q(raw)).isNotNull() & F.col(_q(name)).isNull()
    if RAW_RECORD not in df.columns:
        return F.lit(False)
    if file_format == "json":
        parsed = F.from_json(F.col(RAW_RECORD), checked.string_schema(corrupt_column=False))
    else:
        ddl = ", ".join(f"{_q(n)} STRING" for n in checked.columns)
        parsed = F.from_csv(F.col(RAW_RECORD), ddl, options)
    text = parsed.getField(name)
    return F.col(RAW_RECORD).isNotNull() & text.isNotNull() & text.try_cast(target).isNull()
