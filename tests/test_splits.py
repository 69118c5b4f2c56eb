"""Deterministic hash splits: the same key always lands in the same split and fold."""

from __future__ import annotations

import pytest
from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from batchml.lib.platform.errors import InputError
from batchml.lib.training.splits import with_fold, with_split


@pytest.fixture(scope="module")
def keyed(spark: SparkSession):
    return spark.range(60_000).select(F.concat(F.lit("k"), F.col("id")).alias("key"), "id")


def assignment(df, column):
    return {r["key"]: r[column] for r in df.select("key", column).collect()}


def test_split_does_not_depend_on_partitioning_or_order(keyed) -> None:
    first = assignment(with_split(keyed, "key", seed=7), "split")
    shuffled = keyed.repartition(7, "id").orderBy(F.desc("id"))
    second = assignment(with_split(shuffled, "key", seed=7), "split")
    assert first == second
    assert assignment(with_split(keyed, "key", seed=8), "split") != first


def test_split_fractions_are_met(keyed) -> None:
    counts = {
        r["split"]: r["count"]
        for r in with_split(keyed, "key", {"train": 0.6, "validation": 0.1, "test": 0.3})
        .groupBy("split")
        .count()
        .collect()
    }
    assert set(counts) == {"train", "validation", "test"}
    assert counts["train"] / 60_000 == pytest.approx(0.6, abs=0.01)
    assert counts["validation"] / 60_000 == pytest.approx(0.1, abs=0.01)
    assert counts["test"] / 60_000 == pytest.approx(0.3, abs=0.01)


def test_folds_are_even_stable_and_cut_across_splits(keyed) -> None:
    both = with_fold(with_split(keyed, "key", seed=3), "key", 5, seed=3)
    folds = {r["fold"]: r["count"] for r in both.groupBy("fold").count().collect()}
    assert sorted(folds) == [0, 1, 2, 3, 4]
    assert all(abs(n / 60_000 - 0.2) < 0.01 for n in folds.values())
    per_split = both.filter("split = 'train'").groupBy("fold").count().collect()
    assert len(per_split) == 5
    again = with_fold(keyed.repartition(3), "key", 5, seed=3)
    assert assignment(again, "fold") == assignment(both, "fold")


def test_rows_repeating_a_key_land_in_one_split_and_fold(spark: SparkSession) -> None:
    """A customer's snapshots (one key, different rows) are never both trained on and
    tested on: every copy of a key gets the same split and fold."""
    snapshots = spark.range(3000).select(
        (F.col("id") % 500).cast("string").alias("customer"), F.col("id").alias("row")
    )
    split = with_fold(with_split(snapshots, "customer", seed=3), "customer", 4, seed=3)
    per_key = split.groupBy("customer").agg(
        F.countDistinct("split").alias("splits"),
        F.countDistinct("fold").alias("folds"),
        F.count(F.lit(1)).alias("rows"),
    )
    found = per_key.agg(F.max("splits"), F.max("folds"), F.min("rows"), F.count(F.lit(1)))
    assert tuple(found.first()) == (1, 1, 6, 500)
    assert {r["split"] for r in split.select("split").distinct().collect()} == {
        "train",
        "validation",
        "test",
    }


def test_a_null_key_has_one_split_and_one_fold(spark: SparkSession) -> None:
    df = spark.createDataFrame([(None,), (None,), ("a",)], "key string")
    rows = with_fold(with_split(df, "key"), "key", 3).filter("key IS NULL").collect()
    assert len({(r["split"], r["fold"]) for r in rows}) == 1


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda df: with_split(df, "key", {"train": 0.8, "test": 0.3}), "add up to 1.1, not 1"),
        (lambda df: with_split(df, "key", {"train": 1.2, "test": -0.2}), "must not be negative"),
        (lambda df: with_split(df, "nope"), "split key nope is not a column"),
        (lambda df: with_fold(df, "key", 1), "at least 2 folds"),
    ],
)
def test_bad_split_definitions(keyed, call, message) -> None:
    with pytest.raises(InputError, match=message):
        call(keyed)
