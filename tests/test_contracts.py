"""Data contracts: checked before Spark reads anything, rules evaluated per row."""

from __future__ import annotations

import pytest
from chispa import assert_df_equality
from pyspark.sql import SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T

from batchml.lib.contracts import (
    FAILED_RULES,
    RAW_RECORD,
    check_contract,
    good_rows,
    output_schema,
    with_failed_rules,
    with_typed_columns,
)
from batchml.lib.errors import InputError
from batchml.lib.settings import TableContract


def contract(**overrides) -> TableContract:
    spec = {
        "columns": {
            "id": {"type": "int", "nullable": False, "min": 1},
            "code": {"type": "string", "regex": "^[A-Z]{2}$", "allowed": ["AA", "UA"]},
            "amount": {"type": "decimal(6,2)", "max": 100},
            "day": {"type": "date", "min": "2013-01-01"},
        },
        "derived": {"amount_x2": "amount * 2"},
        "unique_key": ["id"],
    }
    spec.update(overrides)
    return TableContract.model_validate(spec)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"columns": {"a": {"type": "integr"}}}, "column a has unknown type 'integr'"),
        ({"columns": {"a": {"type": "array<int>"}}}, "contracts take flat types"),
        ({"columns": {"a": {"type": "boolean", "min": 1}}}, "cannot take min/max"),
        ({"columns": {"a": {"type": "int", "regex": "x"}}}, "cannot take a regex"),
        ({"columns": {"a": {"type": "string", "regex": "("}}}, "has a bad regex"),
        ({"columns": {"a": {"type": "int", "max": "ten"}}}, "compares it with the string 'ten'"),
        ({"unique_key": ["nope"]}, "unique_key names unknown columns nope"),
        ({"unique_key": ["amount_x2"]}, "unique_key names unknown columns amount_x2"),
        ({"partition_by": ["month"]}, "partition_by names unknown columns month"),
        ({"derived": {"bad": "no_such_col + 1"}}, "derived column bad = 'no_such_col + 1'"),
        ({"derived": {"id": "1"}}, "derived columns id repeat raw columns"),
    ],
)
def test_contract_errors_name_table_and_column(spark: SparkSession, overrides, message) -> None:
    with pytest.raises(InputError) as caught:
        check_contract(spark, "orders", contract(**overrides))
    assert "contract of table orders" in str(caught.value)
    assert message in str(caught.value)


def test_output_schema_has_typed_then_derived_columns(spark: SparkSession) -> None:
    checked = check_contract(spark, "orders", contract())
    assert output_schema(spark, checked).simpleString() == (
        "struct<id:int,code:string,amount:decimal(6,2),day:date,amount_x2:decimal(8,2)>"
    )


def test_every_rule_flags_its_rows_in_one_projection(spark: SparkSession) -> None:
    checked = check_contract(spark, "orders", contract())
    rows = [
        ("1", "AA", "10.50", "2013-01-02", None),  # good
        ("2", "UA", None, None, None),  # good: nulls where allowed
        (None, "aa", "100.01", "2012-12-31", None),  # not_null, regex, allowed, max, min
        ("x", "AA", "ten", "2013-02-30", None),  # three type failures
        ("3", "DL", "1", "2013-01-01", None),  # allowed only
        ("4", "AA", "1", "2013-01-01", None),  # duplicate id ...
        ("4", "UA", "2", "2013-01-01", None),  # ... twice
        (None, None, None, None, "4,UA,broken,line"),  # malformed (and not_null)
    ]
    raw_df = spark.createDataFrame(rows, checked.string_schema(corrupt_column=True))
    flagged = with_failed_rules(with_typed_columns(raw_df, checked), checked)
    got = flagged.select(
        F.col("id__raw").alias("id"), F.col("code__raw").alias("code"), FAILED_RULES
    )
    expected = spark.createDataFrame(
        [
            ("1", "AA", []),
            ("2", "UA", []),
            (None, "aa", ["not_null:id", "allowed:code", "regex:code", "max:amount",
                          "min:day"]),
            ("x", "AA", ["type:id", "type:amount", "type:day"]),
            ("3", "DL", ["allowed:code"]),
            ("4", "AA", ["unique_key"]),
            ("4", "UA", ["unique_key"]),
            (None, None, ["malformed", "not_null:id"]),
        ],
        "id string, code string, failed_rules array<string>",
    )  # fmt: skip
    assert_df_equality(got, expected, ignore_row_order=True, ignore_nullable=True)

    good = good_rows(flagged, checked)
    assert good.schema.fieldNames() == ["id", "code", "amount", "day", "amount_x2"]
    assert sorted((r["id"], str(r["amount_x2"])) for r in good.collect()) == [
        (1, "21.00"),
        (2, "None"),
    ]


def test_typed_columns_keep_the_raw_strings(spark: SparkSession) -> None:
    checked = check_contract(spark, "orders", contract(derived={}, unique_key=[]))
    raw_df = spark.createDataFrame(
        [("7", "AA", "1.5", "2013-01-05")], checked.string_schema(corrupt_column=False)
    )
    typed = with_typed_columns(raw_df, checked)
    assert RAW_RECORD not in typed.columns
    row = typed.collect()[0]
    assert (row["id"], row["id__raw"], str(row["amount"])) == (7, "7", "1.50")
    assert typed.schema["day"].dataType == T.DateType()
