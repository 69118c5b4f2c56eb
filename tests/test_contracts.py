"""Data contracts: checked before Spark reads anything, rules evaluated per row."""

from __future__ import annotations

import pytest
from chispa import assert_df_equality
from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from batchml.lib.ingest.contracts import (
    FAILED_RULES,
    check_contract,
    good_condition,
    good_rows,
    output_schema,
    quarantine_rows,
    rule_names,
    with_key_count,
)
from batchml.lib.ingest.sources import find_batch, read_raw
from batchml.lib.platform.errors import InputError
from batchml.lib.platform.settings import TableContract


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


CSV_ROWS = """id,code,amount,day
1,AA,10.50,2013-01-02
2,UA,,
,aa,100.01,2012-12-31
x,AA,ten,2013-02-30
3,DL,1,2013-01-01
4,AA,1,2013-01-01
4,UA,2,2013-01-01
4,UA
"""


def read_orders(spark: SparkSession, tmp_path, checked):
    path = tmp_path / "orders.csv"
    path.write_text(CSV_ROWS)
    batch = find_batch(str(path))
    return with_key_count(read_raw(spark, batch, "csv", {"header": "true"}, checked), checked)


def test_every_rule_is_named_for_the_rows_that_break_it(spark: SparkSession, tmp_path) -> None:
    checked = check_contract(spark, "orders", contract())
    raw_df = read_orders(spark, tmp_path, checked)
    bad = quarantine_rows(raw_df, checked, "csv", {"header": "true"})
    got = bad.select("raw_record", FAILED_RULES)
    expected = spark.createDataFrame(
        [
            (
                '{"code":"aa","amount":100.01,"day":"2012-12-31"}',
                ["not_null:id", "allowed:code", "regex:code", "max:amount", "min:day"],
            ),
            ("x,AA,ten,2013-02-30", ["type:id", "type:amount", "type:day"]),
            ('{"id":3,"code":"DL","amount":1.00,"day":"2013-01-01"}', ["allowed:code"]),
            ('{"id":4,"code":"AA","amount":1.00,"day":"2013-01-01"}', ["unique_key"]),
            ('{"id":4,"code":"UA","amount":2.00,"day":"2013-01-01"}', ["unique_key"]),
            ("4,UA", ["malformed", "unique_key"]),
        ],
        "raw_record string, failed_rules array<string>",
    )
    assert_df_equality(got, expected, ignore_row_order=True, ignore_nullable=True)
    assert {r["source_file"] for r in bad.collect()} == {f"{tmp_path}/orders.csv"}

    good = good_rows(raw_df, checked)
    assert good.schema.fieldNames() == ["id", "code", "amount", "day", "amount_x2"]
    assert sorted((r["id"], str(r["amount_x2"])) for r in good.collect()) == [
        (1, "21.00"),
        (2, "None"),
    ]
    counts = raw_df.agg(F.sum((~good_condition(raw_df, checked)).cast("int"))).collect()[0][0]
    assert counts == 6


def test_rule_names_list_every_rule_of_the_contract(spark: SparkSession) -> None:
    checked = check_contract(spark, "orders", contract())
    assert rule_names(checked, has_raw=True) == [
        "malformed",
        "type:id",
        "not_null:id",
        "min:id",
        "type:code",
        "allowed:code",
        "regex:code",
        "type:amount",
        "max:amount",
        "type:day",
        "min:day",
        "unique_key",
    ]
