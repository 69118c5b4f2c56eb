"""batchml's xgboost estimators train on Arrow batches and give xgboost.spark's booster."""

from __future__ import annotations

import json

import pytest
from pyspark.ml.feature import VectorAssembler
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from batchml.lib.training.xgboost_spark import XGBClassifier, XGBRegressor


@pytest.fixture(scope="module")
def data(spark: SparkSession) -> DataFrame:
    """2 partitions by key, sorted: numbers with nulls, a category code, a weight and a
    validation flag; the label depends on the category and on `a`."""
    rows = []
    for i in range(1200):
        code = float(i % 6)
        a = float((i * 37) % 101) / 10.0
        b = None if i % 9 == 0 else float((i * 11) % 17)
        label = 1.0 if (code in (1.0, 4.0)) != (a > 7.5) else 0.0
        rows.append((i, a, b, code, label, 1.0 + (i % 3), i % 5 == 0))
    frame = spark.createDataFrame(
        rows, "id long, a double, b double, code double, label double, w double, valid boolean"
    )
    return frame.repartition(2, "id").sortWithinPartitions("id")


def boosters(make, frame: DataFrame, **params):
    """The estimator fitted on the Arrow path and on xgboost.spark's own."""
    fitted = {}
    for arrow in (True, False):
        estimator = make(**params)
        estimator.arrow = arrow
        fitted[arrow] = estimator.fit(frame)
    return fitted[True], fitted[False]


def test_columns_with_categories_weights_and_early_stopping(data: DataFrame) -> None:
    params = {
        "label_col": "label",
        "features_col": ["a", "b", "code"],
        "feature_types": ["q", "q", "c"],
        "weight_col": "w",
        "validation_indicator_col": "valid",
        "early_stopping_rounds": 3,
        "n_estimators": 60,
        "max_depth": 3,
        "learning_rate": 0.3,
        "max_bin": 16,
        "num_workers": 2,
        "random_state": 3,
    }
    mine, theirs = boosters(XGBClassifier, data, **params)
    booster = mine.get_booster()
    assert booster.save_raw("json") == theirs.get_booster().save_raw("json")
    assert booster.best_iteration == theirs.get_booster().best_iteration
    assert booster.num_boosted_rounds() < 60  # it stopped early, on the validation rows
    # the training summary: the same metric, round by round, on both evaluation sets
    assert mine.training_summary.train_objective_history
    assert mine.training_summary.train_objective_history == (
        theirs.training_summary.train_objective_history
    )
    assert mine.training_summary.validation_objective_history == (
        theirs.training_summary.validation_objective_history
    )
    # without the training rows' metric each round: the same booster, no train history
    quiet = XGBClassifier(**params)
    quiet.evaluate_training = False
    fitted = quiet.fit(data)
    assert fitted.get_booster().save_raw("json") == booster.save_raw("json")
    assert fitted.training_summary.train_objective_history == {}
    assert fitted.training_summary.validation_objective_history == (
        theirs.training_summary.validation_objective_history
    )
    config = json.loads(booster.save_config())
    assert config["learner"]["objective"]["name"] == "binary:logistic"
    # and it learned the category: the scores separate the labels
    scored = mine.transform(data.filter(~F.col("valid"))).select("label", "prediction")
    assert scored.filter(F.col("label") == F.col("prediction")).count() / scored.count() > 0.95


def test_a_vector_column_and_a_regressor(data: DataFrame) -> None:
    frame = VectorAssembler(
        inputCols=["a", "b", "code"], outputCol="features", handleInvalid="keep"
    ).transform(data)
    for make, label in ((XGBRegressor, "a"), (XGBClassifier, "y")):
        mine, theirs = boosters(
            make,
            frame.withColumn("y", F.col("code") % 3),
            label_col=label,
            features_col="features",
            n_estimators=5,
            max_depth=3,
            num_workers=2,
        )
        assert mine.get_booster().save_raw("json") == theirs.get_booster().save_raw("json")
    assert json.loads(mine.get_booster().save_config())["learner"]["objective"]["name"] == (
        "multi:softprob"
    )


def test_a_failing_worker_is_one_error_and_the_next_fit_trains(data: DataFrame) -> None:
    from py4j.protocol import Py4JJavaError

    bad = XGBClassifier(
        label_col="label", features_col=["a", "b"], num_workers=2, n_estimators=2, max_bin=1
    )
    with pytest.raises(Py4JJavaError, match="max_bin` must be equal to or greater than 2"):
        bad.fit(data)  # xgboost refuses max_bin 1 inside the tasks: the stage fails, no hang
    good = XGBClassifier(label_col="label", features_col=["a", "b"], num_workers=2, n_estimators=2)
    assert good.fit(data).get_booster().num_boosted_rounds() == 2


def test_data_cut_by_the_caller_is_computed_once(data: DataFrame) -> None:
    context = data.sparkSession.sparkContext
    reads = {}
    for laid_out in (False, True):
        rows = context.accumulator(0)

        def seen(value, rows=rows):  # test instrumentation: counts the rows computed
            rows.add(1)
            return value

        counted = data.withColumn("a", F.udf(seen, "double")("a"))
        cut = counted.repartition(2, "id").sortWithinPartitions("id")  # as train cuts it
        booster = XGBClassifier(
            label_col="label", features_col=["a", "b"], num_workers=2, n_estimators=2
        )
        booster.classes, booster.laid_out = 2, laid_out
        booster.fit(cut)
        reads[laid_out] = rows.value
    # xgboost.spark counts the partitions through DataFrame.rdd: under adaptive execution
    # that runs the shuffle once more; told the data is cut, once
    assert reads == {False: 2400, True: 1200}


def test_data_said_to_be_cut_into_fewer_partitions_fails_instead_of_waiting(data) -> None:
    from py4j.protocol import Py4JJavaError

    booster = XGBClassifier(label_col="label", features_col=["a", "b"], num_workers=2)
    booster.laid_out = True  # but it is one partition: one worker would wait for another
    with pytest.raises(Py4JJavaError, match="2 xgboost workers need 2 partitions, not 1"):
        booster.fit(data.repartition(1))
