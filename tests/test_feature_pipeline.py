"""The one-pass feature pipeline against the naive MLlib stages it replaces."""

from __future__ import annotations

from pathlib import Path

import pytest
from baselines import naive_pipeline
from pyspark.ml import PipelineModel
from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from batchml.lib.features.pipeline import fit_features
from batchml.lib.features.statistics import categorical_labels
from batchml.lib.platform.errors import InputError
from batchml.lib.platform.settings import FeaturePipelineSpec

SPEC = {
    "view": "v",
    "label": "y",
    "numeric": {"a": {"impute": "mean"}, "big": {"impute": "mean"}, "c": {}},
    "categorical": {"city": {}, "code": {}},
}


@pytest.fixture(scope="module")
def frame(spark: SparkSession):
    rows = []
    cities = ["nyc"] * 5 + ["sf"] * 3 + ["la"] * 3 + ["bos"] + [None]
    for i in range(200):
        a = None if i % 7 == 0 else (float("nan") if i % 11 == 0 else i * 0.37 - 20)
        big = 1e9 + (i % 13) * 0.001  # a large mean with a tiny spread
        rows.append((a, big, float(i % 5), cities[i % len(cities)], i % 3, i % 2))
    schema = "a double, big double, c double, city string, code int, y int"
    return spark.createDataFrame(rows, schema).withColumn("__row", F.monotonically_increasing_id())


def vectors(df, column="features"):
    rows = sorted(df.select("__row", column).collect(), key=lambda r: r["__row"])
    return {i: list(r[column].toArray()) for i, r in enumerate(rows)}


def test_single_pass_fit_equals_the_naive_mlib_pipeline(spark, frame) -> None:
    spec = FeaturePipelineSpec.model_validate(SPEC)
    fitted = fit_features(frame, "p", spec)
    ours = fitted.model.transform(frame)
    naive = naive_pipeline(spec).fit(frame).transform(frame)
    mine, theirs = vectors(ours), vectors(naive)
    assert len(mine) == 200
    for i in mine:
        # slot 1 ("big": mean 1e9, spread 0.004) is where double rounding shows: MLlib's
        # Summarizer and Spark SQL's var_samp each err by ~1e-6 relative on its variance
        assert mine[i][1] == pytest.approx(theirs[i][1], abs=1e-4), i  # in standard deviations
        assert mine[i][:1] + mine[i][2:] == pytest.approx(
            theirs[i][:1] + theirs[i][2:], rel=1e-9, abs=1e-9
        ), i
    assert fitted.spark_jobs <= 4
    assert fitted.stats.numeric["a"].count == 200 - len(
        [i for i in range(200) if i % 7 == 0 or i % 11 == 0]
    )
    assert fitted.slot_names[:3] == ["a__num", "big__num", "c__num"]
    assert "city__onehot_nyc" in fitted.slot_names


def test_variance_of_a_large_mean_column_stays_accurate(spark, frame) -> None:
    from fractions import Fraction

    spec = FeaturePipelineSpec.model_validate({**SPEC, "categorical": {}})
    stats = fit_features(frame, "p", spec).stats.numeric["big"]
    values = [Fraction(r["big"]) for r in frame.collect()]
    mean = sum(values) / len(values)
    variance = sum((v - mean) ** 2 for v in values) / (len(values) - 1)
    assert stats.mean == pytest.approx(float(mean), rel=1e-15)
    assert stats.variance == pytest.approx(float(variance), rel=1e-5)


def test_shifted_sums_with_rough_centres_match_exact_moments(spark, frame) -> None:
    from fractions import Fraction

    spec = FeaturePipelineSpec.model_validate({**SPEC, "categorical": {}})
    # centres as the Delta log would give them: mid-ranges, far from the mean on purpose
    stats = fit_features(frame, "p", spec, centres={"big": 1e9 + 0.01, "a": 40.0}).stats
    for column in ("big", "a"):
        values = [
            Fraction(r[column])
            for r in frame.collect()
            if r[column] is not None and r[column] == r[column]
        ]
        mean = sum(values) / len(values)
        variance = sum((v - mean) ** 2 for v in values) / (len(values) - 1)
        assert stats.numeric[column].mean == pytest.approx(float(mean), rel=1e-15)
        assert stats.numeric[column].variance == pytest.approx(float(variance), rel=1e-9)


def test_median_imputation_indicator_and_persistence(spark, frame, tmp_path: Path) -> None:
    spec = FeaturePipelineSpec.model_validate(
        {**SPEC, "numeric": {"a": {"impute": "median", "indicator": True, "scale": False}}}
    )
    fitted = fit_features(frame, "p", spec)
    clean = [r["a"] for r in frame.collect() if r["a"] is not None and r["a"] == r["a"]]
    exact_median = sorted(clean)[len(clean) // 2]
    assert fitted.stats.numeric["a"].median == pytest.approx(exact_median, abs=1.0)
    out = fitted.model.transform(frame).select("a", "a__num", "a__is_missing").collect()
    for row in out:
        missing = row["a"] is None or row["a"] != row["a"]
        assert row["a__is_missing"] == float(missing)
        assert row["a__num"] == (fitted.stats.numeric["a"].median if missing else row["a"])
    path = str(tmp_path / "model")
    fitted.model.write().save(path)
    loaded = PipelineModel.load(path)  # plain PySpark loads and runs it
    assert vectors(loaded.transform(frame)) == vectors(fitted.model.transform(frame))


def test_top_n_and_min_frequency_fold_levels_into_the_extra_slot(spark, frame) -> None:
    assert categorical_labels([("nyc", 5), ("la", 3), ("sf", 3), ("bos", 1)], 2, 1) == ["nyc", "la"]
    assert categorical_labels([("nyc", 5), ("la", 3), ("bos", 1)], None, 2) == ["nyc", "la"]
    spec = FeaturePipelineSpec.model_validate(
        {**SPEC, "numeric": {}, "categorical": {"city": {"top": 2}}}
    )
    fitted = fit_features(frame, "p", spec)
    assert fitted.slot_names == [
        "city__onehot_nyc",
        "city__onehot_la",
        "city__onehot___unknown",
    ]
    out = fitted.model.transform(frame.filter("city IN ('sf', 'bos') OR city IS NULL"))
    assert {tuple(r["features"].toArray()) for r in out.collect()} == {(0.0, 0.0, 1.0)}


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({"numeric": {"nope": {}}}, "numeric column nope is not in view v"),
        ({"numeric": {"city": {}}, "categorical": {}}, "numeric transforms need a number"),
        (
            {"numeric": {"a": {}}, "categorical": {"a": {}}},
            "column a is both numeric and categorical",
        ),
        ({"label": "z"}, "label column z is not in view v"),
        ({"numeric": {"y": {}}}, "label column y is also a feature"),
    ],
)
def test_spec_errors_are_named_before_spark_runs(spark, frame, spec, message) -> None:
    with pytest.raises(InputError, match=message):
        fit_features(frame, "p", FeaturePipelineSpec.model_validate({**SPEC, **spec}))


def test_buckets_interactions_and_a_label_of_nulls(spark, frame) -> None:
    spec = FeaturePipelineSpec.model_validate(
        {
            **SPEC,
            "numeric": {"c": {"buckets": 4, "scale": False}, "a": {}},
            "categorical": {},
            "interactions": [["a", "c"]],
        }
    )
    fitted = fit_features(frame, "p", spec)
    # c is 0..4, 40 rows each: the quartiles are 1, 2 and 3 (the median among them)
    assert fitted.stats.numeric["c"].quantiles == (1.0, 2.0, 3.0)
    out = fitted.model.transform(frame).select("a__num", "c__num", "a__x__c", "c__bucket").collect()
    assert all(r["a__x__c"] == pytest.approx(r["a__num"] * r["c__num"]) for r in out)
    buckets = {r["c__num"]: r["c__bucket"] for r in out}
    assert buckets == {0.0: 0.0, 1.0: 1.0, 2.0: 2.0, 3.0: 3.0, 4.0: 3.0}
    assert fitted.slot_names == ["c__num", "a__num", "a__x__c", "c__bucket"]
    with pytest.raises(InputError, match="interaction a x city needs numeric features"):
        fit_features(frame, "p", spec.model_copy(update={"interactions": [["a", "city"]]}))
    nulls = frame.withColumn("y", F.lit(None).cast("int"))
    with pytest.raises(InputError, match="label column y of view v holds only nulls"):
        fit_features(nulls, "p", spec)


@pytest.mark.parametrize(
    "label",
    [
        "y",
        "CAST(y AS DOUBLE) / 4 AS y",
        "CAST(CAST(y AS DOUBLE) / 10 AS FLOAT) AS y",
        "CAST(y = 1 AS BOOLEAN) AS y",
        "concat('k', CAST(y AS STRING)) AS y",
    ],
)
def test_label_counts_come_from_the_categories_pass(spark, frame, label: str) -> None:
    from batchml.lib.features.statistics import collect_stats

    data = frame.selectExpr("a", "big", "c", "city", "code", label)
    spec = FeaturePipelineSpec.model_validate(SPEC)
    jobs = spark.sparkContext.statusTracker()
    group = f"labels-{abs(hash(label))}"
    spark.sparkContext.setJobGroup(group, "label counts")
    try:
        stats = collect_stats(data, spec, label_counts=True)
        with_labels = len(jobs.getJobIdsForGroup(group))
        plain = collect_stats(data, spec)
    finally:
        spark.sparkContext.setJobGroup(None, None)
    expected = {r["y"]: r["count"] for r in data.groupBy("y").count().collect()}
    assert stats.labels == expected  # the same values, typed as Spark returns them
    assert {type(v) for v in stats.labels} == {type(v) for v in expected}
    assert sum(stats.labels.values()) == 200
    assert stats.categorical == plain.categorical and plain.labels is None
    assert with_labels == len(jobs.getJobIdsForGroup(group)) - with_labels  # no job more


def test_the_profile_sketch_skips_nulls_and_nans(spark, frame) -> None:
    from batchml.lib.features.statistics import collect_stats

    spec = FeaturePipelineSpec.model_validate(SPEC)
    sketch, deciles, _ = collect_stats(frame, spec, profile=True).sketches["a"]
    values = [r["a"] for r in frame.select("a").collect()]
    real = sorted(v for v in values if v is not None and v == v)
    assert len(real) < len(values) - 20  # the fixture has both nulls and NaNs
    held = spark.createDataFrame([(sketch,)], "k binary")
    counted = held.select(F.expr("kll_sketch_get_n_double(k)")).first()[0]
    assert counted == len(real)
    assert real[0] <= min(deciles) and max(deciles) <= real[-1]  # no NaN among them


def test_numeric_statistics_observed_on_another_pass_equal_their_query(spark, frame) -> None:
    from batchml.lib.features.statistics import collect_stats, profile_of

    data = frame.withColumn("part", F.when(F.col("__row") % 3 == 0, "other").otherwise("mine"))
    mine = F.col("part") == "mine"
    spec = FeaturePipelineSpec.model_validate(SPEC)
    fitted = fit_features(
        data, "p", spec, profile=True, encoding="native", defer_numeric=True, where=mine
    )
    described = data.filter(mine)
    exact = collect_stats(described, spec, profile=True)
    # the stacked pass alone built the stages: rows and categories, no numeric statistic
    assert fitted.pending is not None and fitted.stats.numeric == {}
    assert (fitted.stats.rows, fitted.stats.labelled) == (exact.rows, exact.labelled) == (133, 133)
    assert fitted.stats.categorical == exact.categorical
    # the observation rides on a pass over every row (here: the stages, a shuffle)
    observed = fitted.model.transform(fitted.pending.observe(data))
    assert observed.repartition(2, "code").count() == 200
    assert fitted.pending.finish(fitted.stats, described) == "observed"
    ours, theirs = profile_of(fitted.stats), profile_of(exact)
    for column in spec.numeric:
        got, want = ours["numeric"][column], theirs["numeric"][column]
        for key in ("count", "nulls", "deciles", "decile_counts"):  # 133 values: KLL exact
            assert got[key] == want[key], (column, key)
        assert got["mean"] == pytest.approx(want["mean"], rel=1e-12)
        assert got["stddev"] == pytest.approx(want["stddev"], rel=1e-9)
    assert ours["categorical"] == theirs["categorical"]


def test_numeric_statistics_not_observed_whole_are_queried(spark, frame) -> None:
    from batchml.lib.features.statistics import collect_stats, profile_of

    spec = FeaturePipelineSpec.model_validate(SPEC)
    exact = collect_stats(frame, spec, profile=True)
    # no action ran on the observed frame (a failed fit): a query of its own, no wait
    fitted = fit_features(frame, "p", spec, profile=True, encoding="native", defer_numeric=True)
    fitted.pending.observe(frame)
    assert fitted.pending.finish(fitted.stats, frame) == "queried"
    assert fitted.stats.numeric == exact.numeric and fitted.stats.rows == 200
    # the observed rows are not the rows the stacked pass counted (a stage run twice)
    again = fit_features(frame, "p", spec, profile=True, encoding="native", defer_numeric=True)
    again.pending.observe(frame).union(frame).collect()
    again.stats.rows = 199  # what a count of the rows would be if they were not all seen
    assert again.pending.finish(again.stats, frame) == "queried"
    assert again.stats.rows == 200 and again.stats.numeric == exact.numeric
    # a median imputation does not hold the native encoding back (it imputes nothing)
    median = FeaturePipelineSpec.model_validate(
        {**SPEC, "numeric": {**SPEC["numeric"], "c": {"impute": "median"}}}
    )
    medians = fit_features(frame, "p", median, profile=True, encoding="native", defer_numeric=True)
    medians.model.transform(medians.pending.observe(frame)).collect()
    assert medians.pending.finish(medians.stats, frame) == "observed"
    assert medians.stats.numeric["c"].count == exact.numeric["c"].count
    # buckets need their quantiles before the pass: the numeric aggregate runs first
    # a column of only nulls: no quantiles of its empty sketch, and no error
    empty = frame.withColumn("a", F.lit(None).cast("double"))
    blank = fit_features(empty, "p", spec, profile=True, encoding="native", defer_numeric=True)
    blank.model.transform(blank.pending.observe(empty)).collect()
    assert blank.pending.finish(blank.stats, empty) == "observed"
    assert profile_of(blank.stats)["numeric"]["a"]["deciles"] == []
    assert profile_of(collect_stats(empty, spec, profile=True))["numeric"]["a"]["deciles"] == []
    bucketed = FeaturePipelineSpec.model_validate(
        {**SPEC, "numeric": {**SPEC["numeric"], "c": {"buckets": 3}}}
    )
    first = fit_features(frame, "p", bucketed, encoding="native", defer_numeric=True)
    assert first.pending is None and first.stats.numeric["c"].quantiles


def test_extra_values_are_counted_in_the_stacked_pass(spark, frame) -> None:
    from batchml.lib.features.statistics import collect_stats

    spec = FeaturePipelineSpec.model_validate(SPEC)
    worker = F.concat_ws(":", F.expr("CAST(pmod(__row, 2) AS STRING)"), F.col("city"))
    stats = collect_stats(frame, spec, extra={"w": worker}, where=F.col("code") == 1)
    grouped = frame.groupBy(worker.alias("k")).count().collect()
    assert stats.extra["w"] == {r["k"]: r["count"] for r in grouped}  # over every row
    only = frame.filter("code = 1")
    assert stats.rows == only.count() and stats.categorical == collect_stats(only, spec).categorical


def test_medians_and_bucket_edges_are_the_same_every_run(spark) -> None:
    # Spark's KLL sketch compacts at random: fitted on it, two runs of the same data
    # imputed different medians and cut different buckets (a model not reproducible)
    rows = spark.range(20_000, numPartitions=2).selectExpr(
        "CAST(sin(id) * 1000 AS DOUBLE) AS a", "CAST(id % 2 AS INT) AS y"
    )
    spec = FeaturePipelineSpec.model_validate(
        {"view": "v", "label": "y", "numeric": {"a": {"impute": "median", "buckets": 5}}}
    )
    first, second = (fit_features(rows, "p", spec, profile=True).stats for _ in range(2))
    assert first.numeric["a"] == second.numeric["a"]
    values = sorted(r["a"] for r in rows.collect())
    exact = [values[int(len(values) * k / 5)] for k in range(1, 5)]
    spread = values[-1] - values[0]
    for edge, want in zip(first.numeric["a"].quantiles, exact, strict=True):
        assert abs(edge - want) < 0.005 * spread  # an approximate quantile, near the edge
    assert abs(first.numeric["a"].median - values[len(values) // 2]) < 0.005 * spread
