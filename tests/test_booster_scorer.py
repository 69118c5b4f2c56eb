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

from batchml.lib.scoring.booster import NotBooster, booster_classes, score


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


@pytest.mark.parametrize("classes", [2, 3])
def test_native_categories_score_as_xgboost_spark_does(spark: SparkSession, classes: int) -> None:
    """The native encoding (columns, category codes split natively), as `train` fits it:
    the scorer reads the same columns; an unseen level and missing numbers included."""
    from pyspark.ml import PipelineModel

    from batchml.lib.features.pipeline import fit_features
    from batchml.lib.platform.settings import FeaturePipelineSpec

    rows = [
        (i, float(i % 13), None if i % 5 == 0 else float(i % 7), f"k{i % 6}", f"t{i % 9}")
        for i in range(600)
    ]
    data = spark.createDataFrame(rows, "id long, a double, b double, tag string, tail string")
    # the label follows the level: only a categorical split separates k1/k4 from k2/k5
    data = data.selectExpr("*", f"CAST(substr(tag, 2) AS INT) % {classes} AS label")
    spec = FeaturePipelineSpec(
        view="v",
        label="label",
        numeric={"a": {"scale": True, "buckets": 3}, "b": {"impute": "median"}},  # not native
        categorical={"tag": {}},
        hashed={"tail": {"buckets": 4}},
        interactions=[["a", "b"]],
    )
    training = data.filter("tag != 'k5'")  # k5 unseen when scoring
    features = fit_features(training, "v", spec, encoding="native")
    columns = ["a__num", "b__num", "a__x__b", "tail__hashed", "a__bucket", "tag__index"]
    assert (features.columns, features.feature_types) == (columns, [*"qqqqq", "c"])
    booster = SparkXGBClassifier(
        features_col=features.columns,
        feature_types=features.feature_types,
        label_col="label",
        n_estimators=6,
        max_depth=3,
        num_workers=1,
    ).fit(features.model.transform(training))
    model = PipelineModel(stages=[*features.model.stages, booster])
    mine = {r["id"]: r for r in score(model, data, ["id"]).collect()}
    theirs = model.transform(data).collect()
    assert len(mine) == len(theirs) == 600
    for row in theirs:
        ours = mine[row["id"]]
        assert ours["prediction"] == row["prediction"]
        if classes == 2:
            assert ours["probability"] == pytest.approx(row["probability"][1], abs=1e-12)
        else:
            assert ours["probabilities"] == pytest.approx(list(row["probability"]), abs=1e-12)
    # raw numbers (no scaling), missing stays missing (no imputation), raw products
    coded = features.model.transform(data).filter("id IN (0, 5, 8)").orderBy("id").collect()
    assert [(r["a__num"], r["b__num"], r["a__x__b"]) for r in coded] == [
        (0.0, None, None),
        (5.0, None, None),
        (8.0, 1.0, 8.0),
    ]
    assert {r["tag"]: r["tag__index"] for r in features.model.transform(data).collect()}[
        "k5"
    ] == 5.0  # the unseen level: the code after the 5 known ones
    seen = [r for r in theirs if r["tag"] != "k5"]
    accuracy = sum(r["prediction"] == r["label"] for r in seen) / len(seen)
    assert accuracy > 0.95  # the level decides the label: categorical splits found it


@pytest.mark.parametrize("classes", [2, 3])
def test_a_classifier_told_its_classes_reads_its_data_once(frame, classes: int) -> None:
    from pyspark.ml.feature import VectorAssembler as Assembler
    from pyspark.sql import functions as F

    from batchml.lib.training.xgboost_spark import XGBClassifier

    context = frame.sparkSession.sparkContext
    fitted, reads = {}, {}
    for told in (None, classes):
        rows = context.accumulator(0)

        def seen(value, rows=rows):  # test instrumentation: counts the rows computed
            rows.add(1)
            return value

        counted = F.udf(seen, "double")
        data = Assembler(inputCols=["a"], outputCol="features").transform(
            frame.withColumn("y", counted((frame["label"] % classes).cast("double")))
        )
        booster = XGBClassifier(
            label_col="y", n_estimators=3, max_depth=2, num_workers=1, random_state=1
        )
        booster.classes = told
        fitted[told], reads[told] = booster.fit(data), rows
    # xgboost.spark's own fit computes the data twice (its distinct count of the label,
    # then the training); told the classes, once
    assert (reads[None].value, reads[classes].value) == (300, 150)
    objective = fitted[classes].get_booster().save_config()
    assert ("multi:softprob" in objective) == (classes == 3)
    model = fitted[classes].get_booster().save_raw("json")
    assert model == fitted[None].get_booster().save_raw("json")
