"""Linear pipelines compiled to one SQL expression score exactly as MLlib does."""

from __future__ import annotations

import pytest
from pyspark.ml import Pipeline, PipelineModel
from pyspark.ml.classification import LogisticRegression
from pyspark.ml.feature import (
    Bucketizer,
    FeatureHasher,
    OneHotEncoder,
    SQLTransformer,
    StringIndexer,
    VectorAssembler,
)
from pyspark.ml.functions import vector_to_array
from pyspark.ml.regression import LinearRegression
from pyspark.sql import SparkSession

from batchml.lib.features.pipeline import fit_features
from batchml.lib.platform.settings import FeaturePipelineSpec
from batchml.lib.scoring.linear import LinearScorer, NotLinear, compile_pipeline

NAN = float("nan")


@pytest.fixture(scope="module")
def frames(spark: SparkSession):
    """Training rows, and scoring rows with what training never saw: unseen and null
    categories, null and NaN numbers, values beyond every bucket edge."""
    cities = ["nyc", "nyc", "sf", "la", "it's", "c:\\\\temp", None]
    train = [
        (i, (i % 17) * 0.5 if i % 9 else None, float(i % 4), cities[i % 7], i % 3, (i * 7) % 5 > 1)
        for i in range(120)
    ]
    score = [
        (1000, 3.0, 1.0, "nyc", 0, True),
        (1001, None, 2.0, "paris", 1, False),  # unseen city
        (1002, NAN, 0.0, None, 7, False),  # NaN, null city, unseen code
        (1003, 1e9, -1e9, "la", 2, True),  # beyond every bucket edge
        (1004, 2.5, None, "it's", None, False),  # a quote in a label, null code
    ]
    schema = "id long, a double, b double, city string, code int, y boolean"
    return (
        spark.createDataFrame(train, schema),
        spark.createDataFrame(train + score, schema),
    )


def mllib_scores(model: PipelineModel, frame, binary: bool = True) -> dict:
    columns = ["id", "prediction"]
    if binary:
        columns.append(vector_to_array("probability")[1].alias("probability"))
    return {r["id"]: r for r in model.transform(frame).select(*columns).collect()}


def assert_same(model: PipelineModel, frame, binary: bool = True) -> LinearScorer:
    scorer = LinearScorer.from_json(compile_pipeline(model).to_json())  # through its JSON
    assert scorer is not None
    theirs = mllib_scores(model, frame, binary)
    mine = {r["id"]: r for r in scorer.score(frame).collect()}
    assert mine.keys() == theirs.keys()
    for key, row in theirs.items():
        for column in ("prediction", "probability") if binary else ("prediction",):
            expected = pytest.approx(row[column], rel=1e-12, abs=1e-12, nan_ok=True)
            assert mine[key][column] == expected, (key, column)
    return scorer


def hand_built_stages(label: str = "label"):
    return [
        SQLTransformer(
            statement="SELECT *, CAST(y AS DOUBLE) AS label, a * 2 - 1 AS a2 FROM __THIS__"
        ),
        Bucketizer(
            splits=[-float("inf"), 1.0, 4.0, float("inf")],
            inputCol="a",
            outputCol="a_bucket",
            handleInvalid="keep",
        ),
        StringIndexer(
            inputCols=["city", "code"], outputCols=["city_i", "code_i"], handleInvalid="keep"
        ),
        OneHotEncoder(
            inputCols=["city_i", "code_i"],
            outputCols=["city_v", "code_v"],
            handleInvalid="keep",
            dropLast=False,
        ),
        VectorAssembler(
            inputCols=["a2", "city_v", "b", "a_bucket", "code_v"],
            outputCol="features",
            handleInvalid="keep",
        ),
    ]


def test_batchml_feature_pipeline_with_logistic_regression(frames) -> None:
    train, score = frames
    spec = FeaturePipelineSpec.model_validate(
        {
            "view": "v",
            "label": "y",
            "numeric": {
                "a": {"impute": "median", "indicator": True, "buckets": 3},
                "b": {"impute": None, "scale": False},
            },
            "categorical": {"city": {}, "code": {"top": 2}},
            "interactions": [["a", "b"]],
        }
    )
    features = fit_features(train, "p", spec).model
    labelled = train.withColumn("label", train["y"].cast("double"))
    lr = LogisticRegression(maxIter=30, regParam=0.01).fit(features.transform(labelled))
    model = PipelineModel(stages=[*features.stages, lr])
    scorer = assert_same(model, score)
    assert scorer.task == "binary_logistic"
    assert [t.get("categorical") for t in scorer.terms if "categorical" in t] == ["city", "code"]


def test_hand_built_stages_and_a_threshold(frames) -> None:
    train, score = frames
    stages = hand_built_stages()
    model = Pipeline(stages=[*stages, LogisticRegression(maxIter=20, threshold=0.3)]).fit(
        train.fillna({"a": 0.0})  # MLlib refuses to fit on NaN; scoring rows keep theirs
    )
    assert_same(model, score)


def test_linear_regression(frames) -> None:
    train, score = frames
    stages = hand_built_stages()
    model = Pipeline(stages=[*stages, LinearRegression(labelCol="b", maxIter=20)]).fit(
        train.fillna({"a": 0.0, "b": 0.0})
    )
    scorer = assert_same(model, score, binary=False)
    assert scorer.task == "linear_regression"
    assert "probability" not in scorer.score(score).columns


def test_what_it_cannot_express_is_named(spark, frames) -> None:
    train, _ = frames
    binary = SQLTransformer(statement="SELECT *, CAST(y AS DOUBLE) AS label FROM __THIS__")
    hashed = Pipeline(
        stages=[
            binary,
            FeatureHasher(inputCols=["city"], outputCol="features", numFeatures=8),
            LogisticRegression(maxIter=5),
        ]
    ).fit(train)
    with pytest.raises(NotLinear, match="FeatureHasher"):
        compile_pipeline(hashed)
    labelled = SQLTransformer(statement="SELECT *, CAST(code AS DOUBLE) AS label FROM __THIS__")
    multinomial = Pipeline(
        stages=[
            labelled,
            VectorAssembler(inputCols=["b"], outputCol="features", handleInvalid="keep"),
            LogisticRegression(maxIter=5),
        ]
    ).fit(train.fillna({"b": 0.0}))
    with pytest.raises(NotLinear, match="3 classes"):
        compile_pipeline(multinomial)


def test_an_unknown_format_is_not_used() -> None:
    assert LinearScorer.from_json('{"format": 99, "task": "x"}') is None
