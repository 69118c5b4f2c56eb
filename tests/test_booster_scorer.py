"""xgboost pipelines scored on Arrow batches give xgboost.spark's own scores."""

from __future__ import annotations

import pytest
from pyspark.ml import Pipeline
from pyspark.ml.classification import LogisticRegression
from pyspark.ml.feature import (
    FeatureHasher,
    OneHotEncoder,
    SQLTransformer,
    StringIndexer,
    VectorAssembler,
)
from pyspark.sql import SparkSession
from xgboost.spark import SparkXGBClassifier, SparkXGBRegressor

from batchml.lib.booster_scorer import NotBooster, booster_classes, score


@pytest.fixture(scope="module")
def frame(spark: SparkSession):
    rows = [
        (i, float(i % 13), None if i % 5 == 0 else float(i % 7), f"k{i % 4}", i % 3)
        for i in range(150)
    ]
    return spark.createDataFrame(rows, "id long, a double, b double, tag string, label int")


def assembled(estimator, tag: str = "onehot"):
    """Numbers, and `tag` one-hot (SQL-readable blocks) or hashed (vectors only)."""
    if tag == "onehot":
        encode = [
            StringIndexer(inputCol="tag", outputCol="tag_i", handleInvalid="keep"),
            OneHotEncoder(inputCol="tag_i", outputCol="tag_v", handleInvalid="keep"),
        ]
    else:
        encode = [FeatureHasher(inputCols=["tag"], outputCol="tag_v", numFeatures=4)]
    return Pipeline(
        stages=[
            SQLTransformer(statement="SELECT *, CAST(label AS DOUBLE) AS y FROM __THIS__"),
            *encode,
            VectorAssembler(
                inputCols=["a", "tag_v", "b"], outputCol="features", handleInvalid="keep"
            ),
            estimator,
        ]
    )


@pytest.mark.parametrize(("classes", "tag"), [(2, "onehot"), (3, "onehot"), (2, "hashed")])
def test_classifiers_score_as_xgboost_spark_does(frame, classes: int, tag: str) -> None:
    # trained on three tags: the fourth is unseen when scoring (the one-hot's "other" slot)
    data = frame.withColumn("label", frame["label"] % classes)
    model = assembled(
        SparkXGBClassifier(label_col="y", n_estimators=4, max_depth=3, num_workers=1), tag
    ).fit(data.filter("tag != 'k3'"))
    assert booster_classes(model) == classes
    mine = {r["id"]: r for r in score(model, data, ["id", "tag"]).collect()}
    theirs = model.transform(data).collect()
    assert len(mine) == len(theirs) == 150
    for row in theirs:
        ours = mine[row["id"]]
        assert ours["tag"] == row["tag"]
        assert ours["prediction"] == row["prediction"]
        if classes == 2:
            assert ours["probability"] == pytest.approx(row["probability"][1], abs=1e-12)
        else:
            assert ours["probabilities"] == pytest.approx(list(row["probability"]), abs=1e-12)


def test_a_regressor_and_what_is_not_a_booster(frame) -> None:
    model = assembled(
        SparkXGBRegressor(label_col="a", n_estimators=4, max_depth=3, num_workers=1)
    ).fit(frame)
    assert booster_classes(model) == 0
    mine = {r["id"]: r["prediction"] for r in score(model, frame, ["id"]).collect()}
    theirs = {r["id"]: r["prediction"] for r in model.transform(frame).collect()}
    assert mine == pytest.approx(theirs, abs=1e-12)
    linear = assembled(LogisticRegression(labelCol="y", maxIter=3)).fit(frame.fillna({"b": 0.0}))
    with pytest.raises(NotBooster, match="LogisticRegressionModel"):
        score(linear, frame, ["id"])
    assert "probability" not in score(model, frame, ["id"]).columns
