"""xgboost.spark's classifier, told how many classes the label has.

`SparkXGBClassifier.fit` counts the label's distinct values with a Spark job of its own
before it trains (to choose a binary or a multiclass objective). On batchml's training
data that job is a whole extra pass: the table read again, the feature stages, the
shuffle and the sort by key that fix each worker's rows. `train` already counted the
classes in the pass that fits the features, so it sets `classes` and the count runs on
a table of that many rows instead. Left unset, the fit is xgboost.spark's own.
"""

from __future__ import annotations

from pyspark.sql import DataFrame
from pyspark.sql import functions as F
from xgboost.spark import SparkXGBClassifier
from xgboost.spark.core import alias


class KnownClassesXGBClassifier(SparkXGBClassifier):
    """`SparkXGBClassifier` whose fit uses `classes` when set (0..classes-1 labels)."""

    classes: int | None = None

    def _get_distributed_train_params(self, dataset: DataFrame) -> dict:
        # xgboost.spark reads the dataset here only for the distinct count of the label
        if self.classes:
            labels = dataset.sparkSession.range(self.classes)
            dataset = labels.select(F.col("id").cast("double").alias(alias.label))
        return super()._get_distributed_train_params(dataset)
