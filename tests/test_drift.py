"""Drift figures from a stored training profile and one pass over the input."""

from __future__ import annotations

import math

import pytest
from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from batchml.lib.features.statistics import collect_stats, profile_of
from batchml.lib.monitoring import drift
from batchml.lib.platform.settings import FeaturePipelineSpec
from batchml.lib.spark.metrics import mark, resources_since


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
    numeric = {"x": profile["numeric"]["x"]}
    fine = drift.grids(spark, numeric)
    summaries = drift.input_profile(df, {"x": fine["x"].edges}, ["level"])
    x = drift.numeric_drifts(numeric, summaries, fine)["x"]
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
    numeric = {"x": profile["numeric"]["x"]}
    fine = drift.grids(spark, numeric)
    summaries = drift.input_profile(shifted, {"x": fine["x"].edges}, ["level"])
    x = drift.numeric_drifts(numeric, summaries, fine)["x"]
    # bins the training deciles cut: everything at or above ~700 lands in the top 3 bins
    deciles = drift.coarse_counts(summaries["x"], numeric["x"]["deciles"])
    assert sum(deciles[7:]) == 500 and len(deciles) == 10
    assert x["psi"] > 1.0
    assert 0.6 < x["ks"] < 0.75  # the true two-sample KS here is 0.7
    assert x["mean_shift_sd"] == pytest.approx((949.5 - 499.5) / 288.8, rel=0.02)
    assert x["null_rate_change"] == pytest.approx(-0.1)
    level = drift.categorical_drift(profile["categorical"]["level"], summaries["level"])
    assert (level["unseen_rows"], level["unseen_levels"]) == (200, ["z", "y"])
    assert level["js"] > 0.3 and level["psi"] > 1.0


def test_the_input_is_read_once(spark: SparkSession, training, tmp_path) -> None:
    df, profile = training
    df.write.parquet(str(tmp_path / "input"))
    stored = spark.read.parquet(str(tmp_path / "input"))

    def bytes_read(action) -> int:
        before = mark(spark.sparkContext)
        action()
        return resources_since(spark.sparkContext, before)["input_bytes"]

    one_scan = bytes_read(lambda: stored.agg(F.sum(F.hash("x", "level"))).collect())
    fine = drift.grids(spark, {"x": profile["numeric"]["x"]})  # reads no data
    profiled = bytes_read(lambda: drift.input_profile(stored, {"x": fine["x"].edges}, ["level"]))
    assert one_scan > 0 and profiled == one_scan


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
    fine = drift.grids(spark, {"x": profile})["x"]
    summary = drift.input_profile(df, {"x": fine.edges}, [])["x"]
    assert summary.counts[0] == 1200  # every zero in the first bin, as training counted
    assert drift.coarse_counts(summary, profile["deciles"])[0] == 1200
    figures = drift.numeric_drift(profile, summary, fine.train_cdf)
    assert figures["psi"] < 0.01 and figures["ks"] < 0.02


def test_fine_bins_count_a_value_on_an_edge_below_it(spark: SparkSession) -> None:
    df = spark.createDataFrame([(v,) for v in (1.0, 2.0, 2.0, 2.5, 3.0, 7.0, None)], "x double")
    summary = drift.input_profile(df, {"x": [3.0, 2.0, 2.0]}, [])["x"]  # sorted, distinct
    assert summary.edges == [2.0, 3.0]
    assert (summary.counts, summary.nulls, summary.rows) == ({0: 3, 1: 2, 2: 1}, 1, 7)
    assert drift.coarse_counts(summary, [2.0, 2.0, 3.0]) == [3, 0, 2, 1]


def test_ks_on_the_fine_bins_is_close_to_the_exact_two_sample_statistic(
    spark: SparkSession,
) -> None:
    """Training: uniform 0..9999; input: 0.5 * that + 2000 (a squeeze and a shift). The
    exact KS, max over x of |F_train(x) - F_input(x)|, is 0.3 (at x = 7000 and at 2000)."""
    train = spark.range(10000).select(F.col("id").cast("double").alias("x"), F.lit(1).alias("y"))
    spec = FeaturePipelineSpec(view="v", label="y", numeric={"x": {}})
    profile = profile_of(collect_stats(train, spec, profile=True))["numeric"]["x"]
    fine = drift.grids(spark, {"x": profile})["x"]
    assert 95 <= len(fine.edges) <= 108 and fine.edges == sorted(set(fine.edges))
    squeezed = train.select((F.col("x") * 0.5 + 2000).alias("x"))
    summary = drift.input_profile(squeezed, {"x": fine.edges}, [])["x"]
    assert drift.numeric_drift(profile, summary, fine.train_cdf)["ks"] == pytest.approx(
        0.3, abs=0.02
    )


def test_a_profile_without_a_sketch_keeps_its_deciles(spark: SparkSession) -> None:
    profile = {"deciles": [1.0, 1.0, 5.0], "decile_counts": [10, 0, 30, 60], "count": 100,
               "nulls": 0, "mean": 4.0, "stddev": 2.0, "kll_sketch": None}  # fmt: skip
    fine = drift.grids(spark, {"x": profile})["x"]
    assert fine.edges == [1.0, 5.0] and fine.train_cdf == [0.1, 0.4]
