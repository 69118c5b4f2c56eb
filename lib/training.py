"""Estimators by name, their params validated against MLlib, and holdout metrics.

Params are given under MLlib's own names; an unknown one is an error naming it (with the
closest real param), and MLlib's own type conversion rejects a value of the wrong type.
"""

from __future__ import annotations

import difflib
from typing import Any

from pyspark.ml import Estimator
from pyspark.ml.classification import (
    GBTClassifier,
    LogisticRegression,
    RandomForestClassifier,
)
from pyspark.ml.evaluation import (
    BinaryClassificationEvaluator,
    MulticlassClassificationEvaluator,
    RegressionEvaluator,
)
from pyspark.ml.regression import GBTRegressor, LinearRegression, RandomForestRegressor
from pyspark.sql import DataFrame

from batchml.lib.errors import InputError

ALGORITHMS: dict[str, tuple[type, str]] = {
    "logistic_regression": (LogisticRegression, "classification"),
    "random_forest_classifier": (RandomForestClassifier, "classification"),
    "gbt_classifier": (GBTClassifier, "classification"),
    "linear_regression": (LinearRegression, "regression"),
    "random_forest_regressor": (RandomForestRegressor, "regression"),
    "gbt_regressor": (GBTRegressor, "regression"),
}
RESERVED = {"featuresCol", "labelCol", "predictionCol", "probabilityCol", "rawPredictionCol"}


def task_of(algorithm: str) -> str:
    """`classification` or `regression`."""
    return _lookup(algorithm)[1]


def estimator(
    algorithm: str, params: dict[str, Any], *, label: str, features: str, seed: int
) -> Estimator:
    """The named MLlib estimator with `params` set and checked.

    Raises:
        InputError: an unknown algorithm, an unknown or reserved param, a wrong type.
    """
    cls, _ = _lookup(algorithm)
    model = cls(featuresCol=features, labelCol=label)
    if model.hasParam("seed"):
        model.set(model.getParam("seed"), seed)
    names = [p.name for p in model.params]
    for key, value in params.items():
        if key in RESERVED:
            raise InputError(f"{algorithm}: param {key} is set by batchml; leave it out")
        if not model.hasParam(key):
            hint = difflib.get_close_matches(key, names, n=1)
            suggestion = f" (did you mean {hint[0]!r}?)" if hint else ""
            raise InputError(f"{algorithm} has no param {key!r}{suggestion}")
        param = model.getParam(key)
        try:
            model.set(param, param.typeConverter(value))
        except (TypeError, ValueError) as exc:
            raise InputError(
                f"{algorithm}: param {key} = {value!r} has the wrong type ({exc})"
            ) from None
    return model


def holdout_metrics(
    scored: DataFrame, task: str, label: str, *, binary: bool = True
) -> dict[str, float]:
    """Metrics of scored rows: accuracy (and AUCs for two classes), or RMSE, MAE and R²."""
    if task == "regression":
        return {
            name: float(RegressionEvaluator(labelCol=label, metricName=name).evaluate(scored))
            for name in ("rmse", "mae", "r2")
        }
    metrics = {
        "accuracy": float(
            MulticlassClassificationEvaluator(labelCol=label, metricName="accuracy").evaluate(
                scored
            )
        )
    }
    for name in ("areaUnderROC", "areaUnderPR") if binary else ():
        metrics[name] = float(
            BinaryClassificationEvaluator(labelCol=label, metricName=name).evaluate(scored)
        )
    return metrics


def _lookup(algorithm: str) -> tuple[type, str]:
    if algorithm not in ALGORITHMS:
        hint = difflib.get_close_matches(algorithm, list(ALGORITHMS), n=1)
        suggestion = f" (did you mean {hint[0]!r}?)" if hint else ""
        raise InputError(
            f"unknown algorithm {algorithm!r}{suggestion}; known: {', '.join(ALGORITHMS)}"
        )
    return ALGORITHMS[algorithm]
