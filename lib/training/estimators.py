"""Estimators by name, their params validated against the estimator, and metrics.

Params are given under the estimator's own names (MLlib's, or xgboost.spark's, which
keep MLlib's names for the shared columns: `weightCol`, `validationIndicatorCol`); an
unknown one is an error naming it (with the closest real param), and a value of the
wrong type is refused by MLlib's type conversion or, for xgboost's untyped params, by
the expected types below.
"""

from __future__ import annotations

import difflib
import importlib
import logging
from typing import Any, Literal

from pyspark.ml import Estimator
from pyspark.ml.evaluation import (
    BinaryClassificationEvaluator,
    MulticlassClassificationEvaluator,
    RegressionEvaluator,
)
from pyspark.sql import functions as F

from batchml.lib.platform.errors import ConfigError, InputError

ALGORITHMS: dict[str, tuple[str, str]] = {
    "logistic_regression": ("pyspark.ml.classification:LogisticRegression", "classification"),
    "random_forest_classifier": (
        "pyspark.ml.classification:RandomForestClassifier",
        "classification",
    ),
    "gbt_classifier": ("pyspark.ml.classification:GBTClassifier", "classification"),
    "xgboost_classifier": ("batchml.lib.training.xgboost_spark:XGBClassifier", "classification"),
    "linear_regression": ("pyspark.ml.regression:LinearRegression", "regression"),
    "random_forest_regressor": ("pyspark.ml.regression:RandomForestRegressor", "regression"),
    "gbt_regressor": ("pyspark.ml.regression:GBTRegressor", "regression"),
    "xgboost_regressor": ("batchml.lib.training.xgboost_spark:XGBRegressor", "regression"),
}
RESERVED = {
    "featuresCol",
    "labelCol",
    "predictionCol",
    "probabilityCol",
    "rawPredictionCol",
    "weightCol",
    "validationIndicatorCol",
    "features_col",
    "label_col",
    "feature_types",  # the native encoding's, from the feature pipeline
}
# xgboost.spark params take any value; these are checked here so a typo fails before
# a barrier stage starts
XGB_TYPES: dict[str, type | tuple[type, ...]] = {
    **dict.fromkeys(
        [
            "n_estimators",
            "max_depth",
            "max_bin",
            "max_leaves",
            "num_parallel_tree",
            "early_stopping_rounds",
            "random_state",
            "num_workers",
            "verbosity",
        ],
        int,
    ),
    **dict.fromkeys(
        [
            "learning_rate",
            "subsample",
            "colsample_bytree",
            "colsample_bylevel",
            "colsample_bynode",
            "gamma",
            "reg_alpha",
            "reg_lambda",
            "min_child_weight",
            "max_delta_step",
            "scale_pos_weight",
            "base_score",
        ],
        (int, float),
    ),
    **dict.fromkeys(
        [
            "tree_method",
            "grow_policy",
            "eval_metric",
            "objective",
            "booster",
            "sampling_method",
            "importance_type",
        ],
        str,
    ),
    "verbose": bool,
}
# estimators that read their training data many times: worth persisting it for them
ITERATIVE = {
    "logistic_regression",
    "linear_regression",
    "gbt_classifier",
    "gbt_regressor",
    "random_forest_classifier",
    "random_forest_regressor",
}
EARLY_STOPPING = {"gbt_classifier", "gbt_regressor", "xgboost_classifier", "xgboost_regressor"}


def task_of(algorithm: str) -> str:
    """`classification` or `regression`."""
    return _lookup(algorithm)[1]


def is_xgboost(algorithm: str) -> bool:
    return algorithm.startswith("xgboost_")


def encoding_of(spec: Any) -> str:
    """How a model's features reach its estimator: its `encoding`, by default "native"
    for xgboost (columns, categories as codes) and "one_hot" (one vector) otherwise.

    Raises:
        ConfigError: "native" asked for an estimator that reads one vector.
    """
    if spec.encoding is None:
        return "native" if is_xgboost(spec.algorithm) else "one_hot"
    if spec.encoding == "native" and not is_xgboost(spec.algorithm):
        raise ConfigError(
            f'encoding = "native" needs an xgboost_* algorithm; {spec.algorithm} reads one '
            'assembled vector (encoding = "one_hot")'
        )
    return spec.encoding


def estimator(
    algorithm: str,
    params: dict[str, Any],
    *,
    label: str,
    features: str,
    seed: int,
    task_slots: int = 1,
    reproducing: bool = False,
) -> Estimator:
    """The named estimator with `params` set and checked.

    xgboost's `num_workers` defaults to the session's task slots and may not exceed
    them: its barrier stage cannot start with more workers than slots.

    Raises:
        InputError: an unknown algorithm, an unknown or reserved param, a wrong type.
    """
    cls = _estimator_class(algorithm)
    if is_xgboost(algorithm):
        model = cls(features_col=features, label_col=label)
    else:
        model = cls(featuresCol=features, labelCol=label)
    if is_xgboost(algorithm):
        logging.getLogger("XGBoost-PySpark").setLevel(logging.WARNING)
        model.set(model.getParam("random_state"), seed)
        model.set(model.getParam("num_workers"), max(1, task_slots))
        model.set(model.getParam("tree_method"), "hist")
        model.set(model.getParam("verbose"), False)
    elif model.hasParam("seed"):
        model.set(model.getParam("seed"), seed)
    for key, value in params.items():
        set_param(model, algorithm, key, value)
    if is_xgboost(algorithm):
        workers = model.getOrDefault(model.getParam("num_workers"))
        if workers > task_slots and reproducing:
            raise InputError(
                f"{algorithm}: cannot reproduce here: the version was trained with "
                f"num_workers = {workers}, which needs {workers} task slots, and this Spark "
                f"session has {task_slots}; rerun on a master with at least {workers}"
            )
        if workers > task_slots:
            raise InputError(
                f"{algorithm}: num_workers = {workers} is more than the {task_slots} task "
                "slots this Spark session has; its barrier stage could never start"
            )
    return model


def set_param(model: Estimator, algorithm: str, key: str, value: Any) -> None:
    """Set one param by name, refusing an unknown, reserved or mistyped one."""
    model.set(*checked_param(model, algorithm, key, value))


def checked_param(model: Estimator, algorithm: str, key: str, value: Any) -> tuple[Any, Any]:
    """The `(Param, converted value)` pair for `key = value` on `model`."""
    if key in RESERVED:
        raise InputError(f"{algorithm}: param {key} is set by batchml; leave it out")
    if not model.hasParam(key):
        names = [p.name for p in model.params]
        hint = difflib.get_close_matches(key, names, n=1)
        suggestion = f" (did you mean {hint[0]!r}?)" if hint else ""
        raise InputError(f"{algorithm} has no param {key!r}{suggestion}")
    param = model.getParam(key)
    expected = XGB_TYPES.get(key) if is_xgboost(algorithm) else None
    if expected is not None and (
        isinstance(value, bool) != (expected is bool) or not isinstance(value, expected)
    ):
        raise InputError(
            f"{algorithm}: param {key} = {value!r} has the wrong type "
            f"(expected {getattr(expected, '__name__', 'a number')})"
        )
    try:
        return param, param.typeConverter(value)
    except (TypeError, ValueError) as exc:
        raise InputError(
            f"{algorithm}: param {key} = {value!r} has the wrong type ({exc})"
        ) from None


def default_metric(task: str, classes: int) -> str:
    """The metric tuning optimises when the config names none."""
    if task == "regression":
        return "rmse"
    return "areaUnderROC" if classes == 2 else "f1"


def evaluator(task: str, label: str, metric: str, classes: int = 2):
    """The MLlib evaluator computing `metric`, or an error naming the known metrics."""
    make: type[RegressionEvaluator] | type[MulticlassClassificationEvaluator]
    if task == "regression":
        known = ["rmse", "mse", "mae", "r2", "var"]
        make = RegressionEvaluator
    elif metric in ("areaUnderROC", "areaUnderPR"):
        if classes != 2:
            raise InputError(f"metric {metric} needs two classes, the label has {classes}")
        # PySpark types metricName as a Literal: `metric` is one of the two
        return BinaryClassificationEvaluator(labelCol=label, metricName=metric)  # type: ignore[arg-type]
    else:
        known = [
            "f1",
            "accuracy",
            "weightedPrecision",
            "weightedRecall",
            "logLoss",
            "areaUnderROC",
            "areaUnderPR",
        ]
        make = MulticlassClassificationEvaluator
    if metric not in known:
        hint = difflib.get_close_matches(metric, known, n=1)
        suggestion = f" (did you mean {hint[0]!r}?)" if hint else ""
        raise InputError(f"unknown {task} metric {metric!r}{suggestion}; known: {', '.join(known)}")
    # PySpark types metricName as a Literal: `metric` is one of `known` (checked above)
    return make(labelCol=label, metricName=metric)  # type: ignore[arg-type]


def class_weights(
    counts: dict[Any, int], setting: Literal["balanced"] | dict[str, float] | None
) -> dict[Any, float]:
    """A weight per label value: `balanced` gives rows / (classes x rows of the class)."""
    if setting is None:
        return {}
    if setting == "balanced":
        total = sum(counts.values())
        return {value: total / (len(counts) * n) for value, n in counts.items()}
    by_name = {str(_label_text(value)): value for value in counts}
    unknown = [name for name in setting if name not in by_name]
    if unknown:
        raise InputError(
            f"class_weight names label values the training split does not "
            f"have: {', '.join(unknown)} (labels: {', '.join(by_name)})"
        )
    bad = [name for name, weight in setting.items() if not weight > 0]
    if bad:
        raise InputError(f"class_weight must be positive: {', '.join(bad)}")
    return {by_name[name]: float(weight) for name, weight in setting.items()}


def weight_column(label: str, weights: dict[Any, float]) -> F.Column:
    """The weight of each row from its label (1 for a class without a weight)."""
    column = None
    for value, weight in weights.items():
        hit = F.col(label) == F.lit(value)
        column = F.when(hit, F.lit(weight)) if column is None else column.when(hit, F.lit(weight))
    return F.lit(1.0) if column is None else column.otherwise(F.lit(1.0))


def _label_text(value: Any) -> str:
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _lookup(algorithm: str) -> tuple[str, str]:
    if algorithm not in ALGORITHMS:
        hint = difflib.get_close_matches(algorithm, list(ALGORITHMS), n=1)
        suggestion = f" (did you mean {hint[0]!r}?)" if hint else ""
        raise InputError(
            f"unknown algorithm {algorithm!r}{suggestion}; known: {', '.join(ALGORITHMS)}"
        )
    return ALGORITHMS[algorithm]


def _estimator_class(algorithm: str) -> type:
    module, name = _lookup(algorithm)[0].split(":")
    return getattr(importlib.import_module(module), name)
