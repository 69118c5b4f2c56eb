"""lib/evaluation/'s figures from one aggregation against scikit-learn and MLlib's exact
evaluator; its error bounds and bootstrap intervals against brute force."""

from __future__ import annotations

import numpy as np
import pytest
from pyspark.ml.evaluation import BinaryClassificationEvaluator
from pyspark.ml.functions import array_to_vector
from pyspark.sql import SparkSession
from pyspark.sql import functions as F
from sklearn.metrics import (
    brier_score_loss,
    confusion_matrix,
    f1_score,
    log_loss,
    precision_score,
    recall_score,
)

from batchml.lib.evaluation.binary import evaluate_binary
from batchml.lib.evaluation.bins import EvalSpec, curves, sample_edges
from batchml.lib.evaluation.over_time import by_period
from batchml.lib.evaluation.regression import evaluate_regression
from batchml.lib.platform.errors import InputError


def binary_metrics(frame, label, p, threshold=0.5, thresholds=(), replicates=0):
    spec = EvalSpec(thresholds=(threshold, *thresholds), replicates=replicates)
    return evaluate_binary(frame.withColumn("__p", p), label, "__p", spec)


@pytest.fixture(scope="module")
def scored(spark: SparkSession):
    """Scores with ties (rounded to 3 decimals), exact 0 and 1, and a label that follows
    them loosely."""
    p = F.round(F.rand(7), 3)
    return (
        spark.range(6000, numPartitions=3)
        .select(p.alias("p"), F.rand(8).alias("u"))
        .select(
            F.when(F.col("p") < 0.01, 0.0)
            .when(F.col("p") > 0.99, 1.0)
            .otherwise(F.col("p"))
            .alias("p"),
            (F.col("u") < F.col("p")).cast("int").alias("label"),
        )
        .cache()
    )


def test_figures_match_scikit_learn_and_mllib(scored) -> None:
    figures = binary_metrics(scored, "label", F.col("p"), threshold=0.5, thresholds=(0.3,))
    rows = scored.collect()
    y = np.array([r["label"] for r in rows])
    p = np.array([r["p"] for r in rows])
    assert (figures["rows"], figures["positives"]) == (6000, int(y.sum()))
    assert figures["log_loss"] == pytest.approx(log_loss(y, np.clip(p, 1e-15, 1 - 1e-15)))
    assert figures["brier"] == pytest.approx(brier_score_loss(y, p), rel=1e-12)
    for cut, at in zip((0.5, 0.3), figures["thresholds"], strict=True):
        predicted = (p > cut).astype(int)
        assert at["threshold"] == cut
        assert at["precision"] == pytest.approx(precision_score(y, predicted), rel=1e-12)
        assert at["recall"] == pytest.approx(recall_score(y, predicted), rel=1e-12)
        assert at["f1"] == pytest.approx(f1_score(y, predicted), rel=1e-12)
        tn, fp, fn, tp = confusion_matrix(y, predicted).ravel()
        assert at["confusion"] == {"tp": tp, "fp": fp, "fn": fn, "tn": tn}
    assert figures["f1"] == figures["thresholds"][0]["f1"]
    vectors = scored.select("label", array_to_vector(F.array(1 - F.col("p"), "p")).alias("v"))
    for name in ("areaUnderROC", "areaUnderPR"):
        exact = BinaryClassificationEvaluator(
            labelCol="label", rawPredictionCol="v", metricName=name, numBins=0
        ).evaluate(vectors)
        assert figures[name] == pytest.approx(exact, abs=1e-9), name  # ties: same bins
    # the F1-best threshold: no threshold on the score grid does better
    best = max(f1_score(y, (p >= t).astype(int)) for t in np.unique(p))
    assert figures["best_f1"] == pytest.approx(best, rel=1e-12)
    calibration = figures["calibration"]
    assert [c["from"] for c in calibration] == [k / 10 for k in range(10)]
    assert sum(c["rows"] for c in calibration) == 6000
    first = p < 0.1
    assert calibration[0]["observed_rate"] == pytest.approx(y[first].mean(), rel=1e-12)
    assert calibration[0]["mean_predicted"] == pytest.approx(p[first].mean(), rel=1e-12)


def test_bad_thresholds_and_no_rows(scored) -> None:
    with pytest.raises(InputError, match=r"threshold 1\.5 is outside"):
        binary_metrics(scored, "label", F.col("p"), thresholds=(1.5,))
    with pytest.raises(InputError, match="no labelled, scored rows"):
        binary_metrics(scored.limit(0), "label", F.col("p"))


def test_regression_figures_match_scikit_learn(spark: SparkSession) -> None:
    from sklearn.metrics import mean_absolute_error, r2_score, root_mean_squared_error

    numbers = spark.range(4000, numPartitions=3).select(
        (F.col("id") % 50).cast("double").alias("label"),
        ((F.col("id") % 50) + F.randn(9) * 2).alias("prediction"),
    )
    with_null = numbers.union(spark.createDataFrame([(None, 1.0)], numbers.schema))
    figures = regression_metrics(with_null, "label", "prediction")
    rows = numbers.collect()
    y = np.array([r["label"] for r in rows])
    p = np.array([r["prediction"] for r in rows])
    assert figures["rows"] == 4000  # the row without a label is not counted
    assert figures["rmse"] == pytest.approx(root_mean_squared_error(y, p), rel=1e-9)
    assert figures["mae"] == pytest.approx(mean_absolute_error(y, p), rel=1e-9)
    assert figures["r2"] == pytest.approx(r2_score(y, p), rel=1e-9)
    nonzero = y != 0
    assert figures["mape_rows_left_out"] == int((~nonzero).sum()) == 80
    assert figures["mape"] == pytest.approx(
        np.mean(np.abs((p - y)[nonzero] / y[nonzero])), rel=1e-9
    )
    residuals = np.sort(p - y)
    for q, value in figures["residual_quantiles"].items():
        q = float(q)
        rank = np.searchsorted(residuals, value, side="right") / len(residuals)
        assert abs(rank - q) <= 1e-3, q  # a sketch: within its rank error
    with pytest.raises(InputError, match="no rows with both label and a prediction"):
        regression_metrics(numbers.limit(0), "label", "prediction")


def regression_metrics(frame, label, prediction):
    return evaluate_regression(frame, label, prediction, EvalSpec(replicates=0))


def test_error_bound_holds_on_coarse_bins_and_bootstrap_covers() -> None:
    """The binning bound covers the real error of few, wide bins; the Poisson draw from
    cell counts gives the spread of row-level Poisson weights (brute force, numpy)."""
    from sklearn.metrics import roc_auc_score

    rng = np.random.default_rng(3)
    p = rng.beta(2, 3, 5000)
    y = (rng.random(5000) < p).astype(int)
    edges = np.quantile(p, np.arange(1, 20) / 20)
    index = np.searchsorted(edges, p, side="right")
    pos = np.bincount(index, weights=y, minlength=20)
    n = np.bincount(index, minlength=20)
    c = curves(pos, n - pos)
    exact = roc_auc_score(y, p)
    assert abs(float(c["roc"]) - exact) <= float(c["roc_bound"])
    assert float(c["roc_bound"]) < 0.05
    # bootstrap spread: cells drawn vs 300 row-level Poisson replicates
    fine = np.unique(p)
    index = np.searchsorted(fine, p)
    pos = np.bincount(index, weights=y, minlength=fine.size)
    n = np.bincount(index, minlength=fine.size)
    drawn = curves(
        rng.poisson(np.broadcast_to(pos, (300, pos.size)).astype(float)),
        rng.poisson(np.broadcast_to(n - pos, (300, n.size)).astype(float)),
    )["roc"]
    rows = rng.poisson(1.0, (300, p.size))
    brute = [roc_auc_score(y, p, sample_weight=w) for w in rows]
    assert np.std(drawn) == pytest.approx(np.std(brute), rel=0.2)
    assert np.mean(drawn) == pytest.approx(exact, abs=0.003)


def test_sampled_edges_with_a_repeated_key_are_not_all_or_nothing(spark: SparkSession) -> None:
    """The edges' sample is chosen by a hash of the key and the value: with a key null on
    every row (or one customer on many rows) the draw still keeps about the share asked
    for, on every seed — not every row or none."""
    frame = spark.range(50_000).select(
        F.lit(None).cast("string").alias("k"), (F.col("id") / 50_000).alias("v")
    )
    targets = np.arange(1, 10) / 10
    for seed in range(5):
        # rows_hint 10M: a 2% share of these 50,000 rows (about 1,000) is drawn
        edges = sample_edges(frame, F.col("v"), 10, rows_hint=10_000_000, seed=seed, key="k")
        assert edges.size == 9, (seed, edges)
        assert np.abs(edges - targets).max() < 0.05, (seed, edges)


def test_auc_per_period_is_exact_with_ties(spark: SparkSession) -> None:
    """Per period, ROC AUC equals scikit-learn's to 1e-9 — ties (scores rounded to two
    decimals, many rows per score) counted half — and the interval holds it."""
    from sklearn.metrics import roc_auc_score

    rng = np.random.default_rng(5)
    y = rng.integers(0, 2, 4000)
    p = np.round(np.clip(0.3 * y + rng.normal(0.35, 0.2, 4000), 0, 1), 2)
    period = np.where(np.arange(4000) < 2500, "a", "b")
    rows = [(str(t), float(s), int(label)) for t, s, label in zip(period, p, y, strict=True)]
    frame = spark.createDataFrame(rows, "period string, score double, label int")
    found = {e["period"]: e for e in by_period(frame, "label", "score", "period", task="binary")}
    for name, mask in (("a", period == "a"), ("b", period == "b")):
        expected = roc_auc_score(y[mask], p[mask])
        assert found[name]["rows"] == int(mask.sum())
        assert abs(found[name]["value"] - expected) <= 1e-9
        low, high = found[name]["interval"]
        assert low < found[name]["value"] < high
