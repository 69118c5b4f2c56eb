"""Linear models scored as one Spark SQL expression, without MLlib's vectors.

`PipelineModel.transform` for a logistic regression builds a vector per row per stage:
the one-hot vectors, the assembled features, rawPrediction and probability, each through
a Scala UDF with boxing. For a linear model all of that collapses into one expression:

    margin = ((0 + w0 * x0) + w1 * x1) + ... + intercept

where a one-hot block contributes the weight of the slot its row falls in (a `CASE`
over the labels) and a bucketized column its bucket index times its weight. Spark
code-generates it into the scan; no vector is ever built.

`compile_pipeline` reads a fitted pipeline and returns a `LinearScorer` (plain data:
weights, labels, splits and the pipeline's own SQL statements, saved as JSON next to the
model in the registry), or None with the reason when a stage is outside what it can
express exactly (a FeatureHasher, a tree model, a multinomial model...): then the caller
runs MLlib. The terms are summed in slot order as MLlib's dot product does, and nulls
and NaNs become what VectorAssembler(handleInvalid="keep") and the indexers make of
them, so the scores equal MLlib's (the tests compare both on rows with nulls, NaNs and
unseen categories).
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from typing import Any

from pyspark.ml import PipelineModel
from pyspark.ml.classification import LogisticRegressionModel
from pyspark.ml.feature import (
    Bucketizer,
    OneHotEncoderModel,
    SQLTransformer,
    StringIndexerModel,
    VectorAssembler,
)
from pyspark.ml.regression import LinearRegressionModel
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from batchml.lib.platform.sqltext import identifier as _q

FORMAT = 1


class NotLinear(Exception):
    """The pipeline has a stage the scorer cannot express exactly."""


@dataclass(frozen=True)
class LinearScorer:
    """A fitted linear pipeline as data.

    `statements` are the pipeline's SQLTransformer statements, run first; each term of
    `terms` is one slot block of the assembled vector, in order:
      {"numeric": column, "weight": w}
      {"buckets": column, "splits": [...], "weight": w}
      {"categorical": column, "labels": [...], "weights": [w per label], "other": w}
        ("other": the weight of a null or unseen value's slot, None when it has none)
    """

    task: str  # "binary_logistic" | "linear_regression"
    intercept: float
    terms: list[dict[str, Any]]
    statements: list[str] = field(default_factory=list)
    threshold: float | None = None  # binary_logistic: probability above it -> 1.0

    def to_json(self) -> str:
        return json.dumps({"format": FORMAT, **asdict(self)}, allow_nan=True)

    @classmethod
    def from_json(cls, text: str) -> LinearScorer | None:
        """The scorer saved by `to_json` (None for a format this code does not know)."""
        data = json.loads(text)
        if data.pop("format", None) != FORMAT:
            return None
        return cls(**data)

    def score(self, df: DataFrame) -> DataFrame:
        """`df` with `prediction` (and `probability` of class 1 for a binary logistic
        regression) added; the pipeline's intermediate columns are not kept."""
        prepared = df
        for statement in self.statements:
            prepared = SQLTransformer(statement=statement).transform(prepared)
        # one SQL text, parsed by Spark in one call (a Column built term by term costs a
        # Py4J round trip per literal: a second for a few hundred labels); summed left
        # to right in slot order, as MLlib's dot product sums
        parts = ["0.0D", *(_term_sql(term) for term in self.terms), _double(self.intercept)]
        margin = F.expr(" + ".join(parts))
        # the margin is a column of its own, so the two outputs below share it
        scored = prepared.select(*[F.col(_q(c)) for c in df.columns], margin.alias("__margin"))
        if self.task == "linear_regression":
            return scored.withColumn("prediction", F.col("__margin")).drop("__margin")
        probability = F.lit(1.0) / (F.lit(1.0) + F.exp(-F.col("__margin")))
        scored = scored.withColumn("probability", probability).drop("__margin")
        # In Spark SQL NaN sorts above every number; MLlib's `p > threshold` is false for it
        above = ~F.isnan("probability") & (F.col("probability") > F.lit(self.threshold))
        return scored.withColumn("prediction", F.when(above, 1.0).otherwise(0.0))


def _double(value: float) -> str:
    """A double literal that round-trips exactly (weights are finite: checked)."""
    return f"({float(value)!r}D)"


def _string(value: str) -> str:
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


NAN_SQL = "CAST('NaN' AS DOUBLE)"


def block_sql(block: dict[str, Any]) -> str:
    """One block's value as Spark SQL: the slot's double for a numeric or a bucket
    block, the position of the hot slot within a one-hot block (-1: none)."""
    if "numeric" in block:
        # what VectorAssembler(handleInvalid="keep") puts in a slot: NaN for null
        return f"coalesce(CAST({_q(block['numeric'])} AS DOUBLE), {NAN_SQL})"
    if "buckets" in block:
        value = f"CAST({_q(block['buckets'])} AS DOUBLE)"
        splits = block["splits"]
        buckets = len(splits) - 1
        # Bucketizer(handleInvalid="keep"): NaN -> an extra bucket; a value equal to
        # the last split falls in the last bucket; null stays null (NaN once assembled)
        cases = [f"WHEN {value} IS NULL THEN {NAN_SQL}", f"WHEN isnan({value}) THEN {buckets}D"]
        cases += [
            f"WHEN {value} < {_double(upper)} THEN {position}D"
            for position, upper in enumerate(splits[1:-1])
        ]
        return f"CASE {' '.join(cases)} ELSE {buckets - 1}D END"
    labels = block["labels"]
    other = len(labels) if block["slots"] > len(labels) else -1
    if not labels:
        return str(other)
    pairs = ", ".join(f"{_string(label)}, {k}" for k, label in enumerate(labels))
    value = f"CAST({_q(block['categorical'])} AS STRING)"
    return f"coalesce(try_element_at(map({pairs}), {value}), {other})"


def _term_sql(term: dict[str, Any]) -> str:
    """One slot block's contribution to the margin, as Spark SQL."""
    if "numeric" in term or "buckets" in term:
        return f"({block_sql(term)} * {_double(term['weight'])})"
    labels, weights, other = term["labels"], term["weights"], term["other"]
    rest = _double(other if other is not None else 0.0)
    if not labels:
        return rest
    # A map constant, not a CASE: a CASE over hundreds of labels makes the generated
    # method too long for the JIT, and the whole scan runs interpreted (3x slower)
    pairs = ", ".join(
        f"{_string(label)}, {_double(weight)}"
        for label, weight in zip(labels, weights, strict=True)
    )
    value = f"CAST({_q(term['categorical'])} AS STRING)"
    return f"coalesce(try_element_at(map({pairs}), {value}), {rest})"


def compile_pipeline(model: PipelineModel) -> LinearScorer:
    """The scorer of a fitted pipeline ending in a linear model.

    Raises:
        NotLinear: naming the stage (or setting) it cannot express.
    """
    stages = list(model.stages)
    if not stages:
        raise NotLinear("the pipeline has no model stage")
    final = stages[-1]
    if isinstance(final, LogisticRegressionModel):
        if final.numClasses != 2:
            raise NotLinear(f"a logistic regression over {final.numClasses} classes")
        if final.isSet("thresholds"):
            raise NotLinear("a logistic regression with per-class thresholds")
        task, threshold = "binary_logistic", float(final.getThreshold())
    elif isinstance(final, LinearRegressionModel):
        task, threshold = "linear_regression", None
    else:
        raise NotLinear(f"the model stage is a {type(final).__name__}")
    weights = final.coefficients.toArray().tolist()
    intercept = float(final.intercept)
    statements, assembled = feature_layout(stages[:-1], final.getFeaturesCol())
    terms: list[dict[str, Any]] = []
    offset = 0
    for block in assembled:
        slots = block.pop("slots")
        block_weights = weights[offset : offset + slots]
        if "categorical" in block:
            count = len(block["labels"])
            block["weights"] = block_weights[:count]
            block["other"] = block_weights[count] if slots > count else None
        else:
            block["weight"] = block_weights[0]
        terms.append(block)
        offset += slots
    if offset != len(weights):
        raise NotLinear(f"the assembled vector has {offset} slots, the model {len(weights)}")
    if not all(math.isfinite(w) for w in [*weights, intercept]):
        raise NotLinear("a weight that is not a finite number")
    return LinearScorer(task, intercept, terms, statements, threshold)


def feature_layout(stages: list[Any], features: str) -> tuple[list[str], list[dict[str, Any]]]:
    """What the feature stages put in each slot of the assembled `features` vector:
    (the SQLTransformer statements that run first, the assembler's blocks in order).

    A block is {"numeric": column, "slots": 1}, {"buckets": column, "splits": [...],
    "slots": 1} or {"categorical": column, "labels": [...], "slots": n}: a one-hot block
    whose slot k is label k, and slot len(labels) (when there is one) null and unseen.

    Raises:
        NotLinear: a stage (or setting) it cannot express.
    """
    stages = list(stages)
    statements: list[str] = []
    while stages and isinstance(stages[0], SQLTransformer):
        statements.append(stages.pop(0).getStatement())
    buckets: dict[str, dict[str, Any]] = {}  # output column -> bucket term (no weight)
    indexed: dict[str, tuple[str, list[str]]] = {}  # index column -> (input, labels)
    onehot: dict[str, dict[str, Any]] = {}  # one-hot column -> categorical term and size
    assembled: list[dict[str, Any]] | None = None
    for stage in stages:
        name = type(stage).__name__
        if isinstance(stage, Bucketizer):
            if stage.getHandleInvalid() != "keep" or not stage.isSet("inputCol"):
                raise NotLinear("a Bucketizer other than single-column handleInvalid=keep")
            splits = [float(s) for s in stage.getSplits()]
            buckets[stage.getOutputCol()] = {"buckets": stage.getInputCol(), "splits": splits}
        elif isinstance(stage, StringIndexerModel):
            if stage.getHandleInvalid() != "keep":
                raise NotLinear("a StringIndexer other than handleInvalid=keep")
            pairs = (
                [(stage.getInputCol(), stage.getOutputCol())]
                if stage.isSet("inputCol")
                else list(zip(stage.getInputCols(), stage.getOutputCols(), strict=True))
            )
            for (source, target), labels in zip(pairs, stage.labelsArray, strict=True):
                # from_arrays_of_labels pads shorter arrays with nulls
                indexed[target] = (source, [label for label in labels if label is not None])
        elif isinstance(stage, OneHotEncoderModel):
            if stage.getHandleInvalid() != "keep":
                raise NotLinear("a OneHotEncoder other than handleInvalid=keep")
            sources = stage.getInputCols() if stage.isSet("inputCols") else [stage.getInputCol()]
            targets = stage.getOutputCols() if stage.isSet("outputCols") else [stage.getOutputCol()]
            for source, target, size in zip(sources, targets, stage.categorySizes, strict=True):
                if source not in indexed:
                    raise NotLinear(f"one-hot column {target} does not come from a StringIndexer")
                column, labels = indexed[source]
                # the indexer maps null and unseen values to index len(labels); the
                # encoder's vector has `size` slots (dropLast drops the last category)
                slots = size if stage.getDropLast() else size + 1
                if slots < len(labels):
                    raise NotLinear(f"one-hot {target} has fewer slots than labels")
                onehot[target] = {"categorical": column, "labels": labels, "slots": slots}
        elif isinstance(stage, VectorAssembler):
            if stage.getHandleInvalid() != "keep" or assembled is not None:
                raise NotLinear("a VectorAssembler other than one with handleInvalid=keep")
            if stage.getOutputCol() != features:
                raise NotLinear("the model does not read the assembler's output")
            assembled = []
            for column in stage.getInputCols():
                if column in onehot:
                    assembled.append(onehot[column])
                elif column in buckets:
                    assembled.append({**buckets[column], "slots": 1})
                elif column in indexed:
                    raise NotLinear(f"the index column {column} is assembled as a number")
                else:
                    assembled.append({"numeric": column, "slots": 1})
        else:
            raise NotLinear(f"a {name} stage")
    if assembled is None:
        raise NotLinear("no VectorAssembler before the model")
    return statements, assembled
