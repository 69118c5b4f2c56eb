"""Drift figures from a stored training profile and one pass over the input."""

from __future__ import annotations

import math

import pytest
from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from batchml.lib import drift
from batchml.lib.feature_pipeline import collect_stats, profile_of
from batchml.lib.settings import FeaturePipelineSpec
from batchml.lib.spark_metrics import mark, resources_since


def test_psi_and_jensen_shannon_by_hand() -> None:
    expected = 0.4 * math.log(1.8) + (-0.4) * math.log(0.2)
    assert drift.psi([50, 50], [90, 10]) == pytest.approx(expected, abs=1e-15)
    assert drift.psi([10, 20, 30], [1, 2, 3]) == pytest.approx(0.0, abs=1e-15)
    assert drift.jensen_shannon([5, 5], [5, 5]) == 0.0
    assert drift.jensen_shannon([10, 0], [0, 10]) == pytest.approx(1.0)
    # an empty bin on one side is floored, not infinite
    assert math.isfinite(drift.psi([10, 0], [5, 5]))


@pytest.fixture(scope="module")
def training(spark: SparkSession):
    """1,000 rows: x uniform on 0..999 (with 100 nulls), a level a/b/c."""
    df = spark.range(1000).select(
        F.when(F.col("id") % 10 == 0, None).otherwise(F.col("id").cast("double")).alias("x"),
        F.element_at(F.array(F.lit("a"), F.lit("b"), F.lit("c")), (F.col("id") % 3 + 1).cast("int"))
        .alias("level"),
        F.lit(1).alias("label"),
    )  # fmt: skip
    spec = FeaturePipelineSpec(
        view="v", label="label", numeric={"x": {}}, categorical={"level": {}}
    )
    return df, profile_of(collect_stats(df, spec, profile=True))


def test_the_training_data_itself_does_not_drift(spark: SparkSession, training) -> None:
    df, profile = training
    edges = {"x": profile["numeric"]["x"]["deciles"]}
    summaries = drift.input_profile(df, edges, ["level"])
    x = drift.numeric_drifts(spark, {"x": profile["numeric"]["x"]}, summaries)["x"]
    assert summaries["x"].rows == 1000 and summaries["x"].nulls == 100
    assert x["psi"] < 0.01 and x["ks"] < 0.02
    assert x["null_rate"] == pytest.approx(0.1) and x["null_rate_change"] == pytest.approx(0.0)
    assert x["mean_shift_sd"] == pytest.approx(0.0, abs=1e-9)
    level = drift.categorical_drift(profile["categorical"]["level"], summaries["level"])
    assert level["psi"] == pytest.approx(0.0, abs=1e-12) and level["js"] == 0.0
    assert (level["unseen_rows"], level["unseen_levels"]) == (0, [])


def test_a_shifted_input_drifts_and_new_levels_are_named(spark: SparkSession, training) -> None:
    _, profile = training
    shifted = spark.range(500).select(
        (F.col("id").cast("double") + 700).alias("x"),  # 700..1199: mostly the top deciles
        F.when(F.col("id") < 300, "a").when(F.col("id") < 450, "z").otherwise("y").alias("level"),
    )
    edges = {"x": profile["numeric"]["x"]["deciles"]}
    summaries = drift.input_profile(shifted, edges, ["level"])
    x = drift.numeric_drifts(spark, {"x": profile["numeric"]["x"]}, summaries)["x"]
    # bins the training deciles cut: everything at or above ~700 lands in the top 3 bins
    assert sum(summaries["x"].counts.get(b, 0) for b in (7, 8, 9)) == 500
    assert x["psi"] > 1.0
    assert 0.6 < x["ks"] < 0.75  # the true two-sample KS here is 0.7
    assert x["mean_shift_sd"] == pytest.approx((949.5 - 499.5) / 288.8, rel=0.02)
    assert x["null_rate_change"] == pytest.approx(-0.1)
    level = drift.categorical_drift(profile["categorical"]["level"], summaries["level"])
    assert (level["unseen_rows"], level["unseen_levels"]) == (200, ["z", "y"])
    assert level["js"] > 0.3 and level["psi"] > 1.0


def test_the_input_is_read_twice_and_no_more(spark: SparkSession, training, tmp_path) -> None:
    df, profile = training
    df.write.parquet(str(tmp_path / "input"))
    stored = spark.read.parquet(str(tmp_path / "input"))

    def bytes_read(action) -> int:
        before = mark(spark.sparkContext)
        action()
        return resources_since(spark.sparkContext, before)["input_bytes"]

    one_scan = bytes_read(lambda: stored.agg(F.sum(F.hash("x", "level"))).collect())
    edges = {"x": profile["numeric"]["x"]["deciles"]}
    profiled = bytes_read(lambda: drift.input_profile(stored, edges, ["level"]))
    # the two columns read twice (the stacked counts, the sketches) and no more; the
    # issue's target, one read, waits for fine bins in place of the sketches
    assert one_scan > 0 and profiled == 2 * one_scan


def test_tied_decile_edges_keep_the_tied_mass_in_one_bin(spark: SparkSession) -> None:
    """A feature that is 0 in 60% of rows: six decile edges are 0; the input's zeros must
    land in the same bin as the training's, or the data would drift from itself."""
    df = spark.range(2000).select(
        F.when(F.col("id") % 10 < 6, 0.0).otherwise(F.col("id").cast("double")).alias("x"),
        F.lit(1).alias("label"),
    )
    spec = FeaturePipelineSpec(view="v", label="label", numeric={"x": {}})
    profile = profile_of(collect_stats(df, spec, profile=True))["numeric"]["x"]
    assert profile["deciles"][:5] == [0.0] * 5
    summary = drift.input_profile(df, {"x": profile["deciles"]}, [])["x"]
    assert summary.counts[0] == 1200  # every zero in the first bin, as training counted
    assert drift.numeric_drift(profile, summary, None)["psi"] < 0.01
