"""xgboost models scored through the native booster on Arrow batches.

xgboost.spark's own transform hands each batch to Python as pandas: the assembled
vectors become a Series of per-row arrays that it stacks row by row, and its three
outputs (rawPrediction, prediction, probability) go back as Series of per-row arrays
turned into vectors. Scoring needs none of that. Here:

- when the feature stages are ones `linear_scorer.feature_layout` can read (batchml's
  own pipelines: SQL, buckets, indexed one-hot, assembler), Spark SQL computes one
  column per block of the assembled vector (a number, or the position of the hot slot
  of a one-hot block), so a row crosses to Python as ~one value per input column, not
  one per slot (283 for the benchmark's pipeline), and no MLlib vector is built;
- otherwise the feature stages run in the JVM and `vector_to_array` makes the features
  one Arrow list column;
- each Arrow batch (`mapInArrow`) becomes one dense (rows x slots) NumPy matrix without
  a per-row step, and the same model object xgboost.spark uses scores it (its
  `predict`: the booster's `inplace_predict` with the model's `missing` value and best
  iteration). Only the key and passthrough columns travel with it.

Python on the executors cannot be avoided for a booster: xgboost has no JVM scorer on
this classpath (xgboost4j is not shipped). The matrix holds the values of the dense
vector xgboost.spark scores (zeros where the vector has zeros, NaN for missing), and the
probabilities are computed as xgboost.spark computes them (expit of the float32 margin,
argmax over the classes), so the scores are the same; the tests compare both.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from pyspark.ml import PipelineModel
from pyspark.ml.feature import SQLTransformer
from pyspark.sql import DataFrame
from pyspark.sql import functions as F
from pyspark.sql import types as T

from batchml.lib.platform.logs import get_logger
from batchml.lib.platform.sqltext import identifier as _q
from batchml.lib.scoring.linear import NotLinear, block_sql, feature_layout

FEATURES = "__features"
BLOCK = "__block"
log = get_logger(__name__)


class NotBooster(Exception):
    """The pipeline does not end in an xgboost.spark model this scorer can run."""


def _final_booster(model: PipelineModel) -> tuple[Any, Any, int]:
    """(the xgboost.spark stage, its scikit-learn model, classes: 0 for a regressor)."""
    if not model.stages:
        raise NotBooster("the pipeline has no stages")
    final = model.stages[-1]
    if not type(final).__module__.startswith("xgboost."):
        # judged before importing xgboost.spark (and scikit-learn, scipy: ~1.5 s)
        raise NotBooster(f"the model stage is a {type(final).__name__}")
    try:
        from xgboost.spark import SparkXGBClassifierModel, SparkXGBRegressorModel
    except ImportError:  # pragma: no cover - xgboost is a dependency
        raise NotBooster("xgboost is not installed") from None
    if not isinstance(final, SparkXGBClassifierModel | SparkXGBRegressorModel):
        raise NotBooster(f"the model stage is a {type(final).__name__}")
    for setting in (
        "base_margin_col",
        "pred_contrib_col",
        "enable_sparse_data_optim",
    ):
        if final.isDefined(getattr(final, setting)) and final.getOrDefault(setting):
            raise NotBooster(f"the xgboost model sets {setting}")
    # the model object xgboost.spark's own transform scores with (no public accessor)
    sklearn = getattr(final, "_xgb_sklearn_model", None)
    if sklearn is None:
        raise NotBooster("the xgboost model has no booster loaded")
    if isinstance(final, SparkXGBClassifierModel):
        return final, sklearn, int(getattr(sklearn, "n_classes_", 2) or 2)
    return final, sklearn, 0


def feature_columns(final: Any) -> list[str]:
    """The columns an xgboost.spark model reads when it was trained on columns (the
    native encoding), else []."""
    if final.isDefined(final.features_cols) and final.getOrDefault(final.features_cols):
        return list(final.getOrDefault(final.features_cols))
    return []


def booster_classes(model: PipelineModel) -> int:
    """Classes of the pipeline's xgboost model (0: a regressor).

    Raises:
        NotBooster: the pipeline does not end in an xgboost.spark model.
    """
    return _final_booster(model)[2]


def score(model: PipelineModel, frame: DataFrame, keep: list[str]) -> DataFrame:
    """`keep` columns of `frame`, with `prediction` and `probability` (binary),
    `probabilities` (multiclass) or only `prediction` (regression).

    Raises:
        NotBooster: the pipeline does not end in an xgboost.spark model.
    """
    final, sklearn, classes = _final_booster(model)
    prepared, layout = _prepared(model, final, frame, keep)
    fields = [frame.schema[c] for c in keep]
    fields.append(T.StructField("prediction", T.DoubleType()))
    if classes == 2:
        fields.append(T.StructField("probability", T.DoubleType()))
    elif classes > 2:
        fields.append(T.StructField("probabilities", T.ArrayType(T.DoubleType())))
    schema = T.StructType(fields)

    def predict(batches: Iterator[Any]) -> Iterator[Any]:
        import numpy as np
        import pyarrow as pa
        from scipy.special import expit, softmax

        arrow_schema = None
        for batch in batches:
            rows = batch.num_rows
            if rows == 0:
                continue
            if layout is None:
                lists = batch.column(FEATURES)
                matrix = lists.flatten().to_numpy(zero_copy_only=False).reshape(rows, -1)
            else:
                matrix = _matrix(batch, layout, rows, np)
            outputs = [batch.column(name) for name in keep]
            if classes == 0:
                values = sklearn.predict(matrix, validate_features=False)
                outputs.append(pa.array(np.asarray(values, dtype=np.float64)))
            else:
                margins = sklearn.predict(matrix, output_margin=True, validate_features=False)
                if margins.ndim == 1:  # binary, as xgboost.spark computes it
                    one = expit(margins)
                    zero = 1.0 - one
                    outputs.append(pa.array((one > zero).astype(np.float64)))
                    outputs.append(pa.array(one.astype(np.float64)))
                else:
                    probabilities = softmax(margins, axis=1)
                    chosen = np.argmax(probabilities, axis=1).astype(np.float64)
                    outputs.append(pa.array(chosen))
                    flat = pa.array(probabilities.astype(np.float64).reshape(-1))
                    offsets = pa.array(np.arange(rows + 1, dtype=np.int32) * margins.shape[1])
                    outputs.append(pa.ListArray.from_arrays(offsets, flat))
            if arrow_schema is None:
                arrow_schema = pa.schema(
                    [pa.field(f.name, a.type) for f, a in zip(schema, outputs, strict=True)]
                )
            yield pa.RecordBatch.from_arrays(outputs, schema=arrow_schema)

    return prepared.mapInArrow(predict, schema)


def _prepared(
    model: PipelineModel, final: Any, frame: DataFrame, keep: list[str]
) -> tuple[DataFrame, list[tuple[bool, int]] | None]:
    """`keep` and the features as block columns with their layout (one_hot?, slots), or
    as one Arrow list column (layout None) when the feature stages cannot be read."""
    native = feature_columns(final)
    if native:  # trained on columns: the feature stages' numbers and category codes
        features = PipelineModel(stages=model.stages[:-1]).transform(frame)
        values = [F.col(_q(c)).cast("float").alias(f"{BLOCK}{i}") for i, c in enumerate(native)]
        return features.select(*[F.col(_q(c)) for c in keep], *values), [(False, 1)] * len(native)
    column = final.getOrDefault(final.featuresCol)
    try:
        statements, blocks = feature_layout(model.stages[:-1], column)
    except NotLinear as exc:
        log.info("booster features through MLlib vectors", extra={"why": str(exc)})
        return _through_vectors(model, frame, keep, column), None
    prepared = frame
    for statement in statements:
        prepared = SQLTransformer(statement=statement).transform(prepared)
    values = [F.expr(block_sql(b)).alias(f"{BLOCK}{i}") for i, b in enumerate(blocks)]
    prepared = prepared.select(*[F.col(_q(c)) for c in keep], *values)
    return prepared, [("categorical" in b, int(b["slots"])) for b in blocks]


def _through_vectors(model: PipelineModel, frame: DataFrame, keep: list[str], column: str):
    """The feature stages' vector as one Arrow list column (any feature stage)."""
    from pyspark.ml.functions import vector_to_array

    features = PipelineModel(stages=model.stages[:-1]).transform(frame)
    return features.select(
        *[F.col(_q(c)) for c in keep],
        vector_to_array(F.col(_q(column)), "float64").alias(FEATURES),
    )


def _matrix(batch: Any, layout: list[tuple[bool, int]], rows: int, np: Any) -> Any:
    """The dense feature matrix of a batch from its block columns: a numeric block's
    value in its slot, a one-hot block's 1.0 in its hot slot (0.0 elsewhere, as the
    dense vector xgboost.spark scores has). float32: what the booster reads anyway."""
    matrix = np.zeros((rows, sum(slots for _, slots in layout)), dtype=np.float32)
    offset = 0
    for i, (one_hot, slots) in enumerate(layout):
        values = batch.column(f"{BLOCK}{i}").to_numpy(zero_copy_only=False)
        if one_hot:
            hot = values >= 0
            matrix[np.nonzero(hot)[0], offset + values[hot]] = 1.0
        else:
            matrix[:, offset] = values
        offset += slots
    return matrix
