"""Row-level data contracts: typed columns, rules, derived columns, evaluated in one pass.

A contract is checked against itself before Spark reads anything (unknown columns,
unknown types, rules that do not fit a type). Rows are then read as strings, cast with
`try_cast`, and every rule becomes a built-in Column expression that yields the rule's
name when the row breaks it; `failed_rules` gathers them all in a single projection.

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

from batchml.lib.errors import InputError, first_line
from batchml.lib.settings import ColumnContract, TableContract

RAW_RECORD = "_raw_record"
SOURCE_FILE = "_source_file"
FAILED_RULES = "failed_rules"
ORDERED_TYPES = (
    T.ByteType, T.ShortType, T.IntegerType, T.LongType, T.FloatType, T.DoubleType,
    T.DecimalType, T.DateType, T.TimestampType, T.TimestampNTZType, T.StringType,
)  # fmt: skip
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
    types: dict[str, T.DataType] = {}
    for name, column in contract.columns.items():
        types[name] = _parse_type(spark, where, name, column.type)
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


def _parse_type(spark: SparkSession, where: str, name: str, text: str) -> T.DataType:
    try:
        parsed = spark.createDataFrame([], f"`x` {text}").schema["x"].dataType
    except (ParseException, AnalysisException, ValueError) as exc:
        raise InputError(
            f"{where}: column {name} has unknown type {text!r} ({first_line(exc)})"
        ) from None
    if not isinstance(parsed, (*ORDERED_TYPES, T.BooleanType)):
        raise InputError(
            f"{where}: column {name} has type {text!r}; contracts take flat types "
            "(int, bigint, double, decimal(p,s), string, date, timestamp, boolean, ...)"
        )
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
def with_typed_columns(raw_df: DataFrame, checked: CheckedContract) -> DataFrame:
    """Cast each string column to its declared type, keeping the strings as `<col>__raw`."""
    typed = [F.col(_q(n)).try_cast(t).alias(n) for n, t in checked.types.items()]
    kept = [F.col(_q(n)).alias(_raw_name(n)) for n in checked.columns]
    extra = [c for c in (RAW_RECORD, SOURCE_FILE) if c in raw_df.columns]
    return raw_df.select(*typed, *kept, *[F.col(c) for c in extra])


def with_derived(df: DataFrame, checked: CheckedContract) -> DataFrame:
    """Add the derived columns in declaration order (later ones may use earlier ones)."""
    for name, expression in checked.contract.derived.items():
        df = df.withColumn(name, F.expr(expression))
    return df


def rule_columns(checked: CheckedContract, *, has_raw: bool) -> list[Column]:
    """One Column per rule: the rule's name when the row breaks it, else null."""
    rules: list[Column] = []
    if has_raw:
        rules.append(F.when(F.col(RAW_RECORD).isNotNull(), F.lit("malformed")))
    for name, column in checked.contract.columns.items():
        value, raw = F.col(_q(name)), F.col(_q(_raw_name(name)))
        rules.append(F.when(raw.isNotNull() & value.isNull(), F.lit(f"type:{name}")))
        if not column.nullable:
            rules.append(F.when(raw.isNull(), F.lit(f"not_null:{name}")))
        if column.min is not None:
            rules.append(F.when(value < F.lit(column.min), F.lit(f"min:{name}")))
        if column.max is not None:
            rules.append(F.when(value > F.lit(column.max), F.lit(f"max:{name}")))
        if column.allowed is not None:
            rules.append(F.when(~value.isin([*column.allowed]), F.lit(f"allowed:{name}")))
        if column.regex is not None:
            rules.append(F.when(~value.rlike(column.regex), F.lit(f"regex:{name}")))
    return rules


def with_failed_rules(df: DataFrame, checked: CheckedContract) -> DataFrame:
    """Add `failed_rules` (array of rule names, empty for a good row) in one projection.

    The unique-key rule needs the count of each key in the batch: a window over the key,
    the only shuffle a contract can add.
    """
    has_raw = RAW_RECORD in df.columns
    rules = rule_columns(checked, has_raw=has_raw)
    key = checked.contract.unique_key
    if key:
        key_count = F.count(F.lit(1)).over(Window.partitionBy(*[_q(k) for k in key]))
        # a key with a null part is no key (SQL semantics); not_null rules catch those
        complete = reduce(lambda a, b: a & b, [F.col(_q(k)).isNotNull() for k in key])
        rules.append(F.when(complete & (key_count > 1), F.lit("unique_key")))
    return df.withColumn(FAILED_RULES, F.array_compact(F.array(*rules)))


def good_rows(flagged_df: DataFrame, checked: CheckedContract) -> DataFrame:
    """Rows that broke no rule: typed columns, then the derived ones.

    Derived expressions run after the filter, so they only ever see values that passed
    every rule (under ANSI mode a bad value could otherwise fail the whole job).
    """
    good = flagged_df.filter(F.size(FAILED_RULES) == 0).select(
        *[F.col(_q(n)) for n in checked.columns]
    )
    return with_derived(good, checked)


def bad_rows(flagged_df: DataFrame, checked: CheckedContract) -> DataFrame:
    """Rows that broke a rule, as quarantine records: the raw record and the rules."""
    raw_json = F.to_json(F.struct(*[F.col(_q(_raw_name(n))).alias(n) for n in checked.columns]))
    raw = F.coalesce(F.col(RAW_RECORD), raw_json) if RAW_RECORD in flagged_df.columns else raw_json
    source = F.col(SOURCE_FILE) if SOURCE_FILE in flagged_df.columns else F.lit(None)
    return flagged_df.filter(F.size(FAILED_RULES) > 0).select(
        raw.alias("raw_record"),
        F.col(FAILED_RULES),
        source.cast("string").alias("source_file"),
    )


def _raw_name(name: str) -> str:
    return f"{name}__raw"


def _q(name: str) -> str:
    return "`" + name.replace("`", "``") + "`"
