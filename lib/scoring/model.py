"""A registered model version applied to rows: what it reads, the checks before it
scores, how it scores (SQL, Arrow or MLlib), and the columns the jobs take from it.

`predict` writes `scored_columns`; `evaluate`, `promote` and `monitor` read `scored`, a
frame with the label, `__score` (a binary classifier's class-1 probability),
`__prediction` and `__probabilities` (multiclass).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pyspark.sql import DataFrame
from pyspark.sql import functions as F
from pyspark.sql import types as T

from batchml.lib.delta import DeltaTables
from batchml.lib.delta.lakehouse import split_version, table_location
from batchml.lib.platform.errors import ConfigError, InputError
from batchml.lib.platform.logs import get_logger
from batchml.lib.platform.settings import Settings
from batchml.lib.tracking.registry import ModelVersion, Registry
from batchml.lib.training.splits import with_split

log = get_logger(__name__)

SPLITS = ("test", "validation", "train", "all")
SCORE, PREDICTION, PROBABILITIES = "__score", "__prediction", "__probabilities"


@dataclass
class Target:
    """The rows to evaluate: a table version, filtered to a split."""

    frame: DataFrame
    uri: str
    version: int
    split: str
    rows_hint: int | None


def target_of(
    tables: DeltaTables,
    settings: Settings,
    model: ModelVersion,
    table_ref: str | None,
    split: str,
) -> Target:
    """The table version and split to evaluate (default: the training table's pinned
    version, test split)."""
    if split not in SPLITS:
        raise ConfigError(f"--split {split!r}: one of {', '.join(SPLITS)}")
    if table_ref:
        name, version = split_version(table_ref)
        uri = table_location(name, settings, relative_to=Path.cwd())
    else:
        uri, version = model.training_table, model.training_version
    read = tables.read(uri, version=version)
    frame, hint = read.df, read.rows
    if split != "all":
        recorded = model.manifest.get("split") or {}
        fractions = recorded.get("fractions") or {}
        if split not in fractions:
            have = ", ".join(fractions) or "none recorded"
            raise InputError(
                f"{model.name}@{model.version} has no {split!r} split (splits: {have}); "
                "use --split all"
            )
        key = recorded["key"]
        if key not in frame.columns:
            raise InputError(f"split key {key} is not a column of {read.uri}@{read.version}")
        frame = with_split(frame, key, fractions, seed=int(recorded["seed"]), column="__split")
        frame = frame.filter(F.col("__split") == split).drop("__split")
        hint = int(hint * fractions[split]) if hint is not None else None
    return Target(frame, read.uri, read.version, split, hint)


def feature_columns(manifest: dict[str, Any]) -> list[str]:
    """The input columns the model's feature pipeline reads."""
    spec = manifest.get("feature_spec") or {}
    columns: list[str] = []
    for group in ("numeric", "categorical", "hashed"):
        columns.extend(spec.get(group) or {})
    return columns


def check_input(
    schema: T.StructType,
    needed: dict[str, str],
    trained_types: dict[str, str],
    uri: str,
    version: int,
) -> None:
    """Every column the model and the output need is in the input, with the type the model
    was trained on. One error lists every problem; nothing is written.

    `needed` maps a column to why it is needed (feature, key, passthrough, partition).
    """
    present = {f.name: f.dataType.simpleString() for f in schema}
    missing = [f"{c} ({why})" for c, why in needed.items() if c not in present]
    mistyped = [
        f"{c} (model {trained_types[c]}, input {present[c]})"
        for c in needed
        if c in present and c in trained_types and present[c] != trained_types[c]
    ]
    problems = []
    if missing:
        problems.append(f"missing columns {', '.join(missing)}")
    if mistyped:
        problems.append(f"mistyped columns {', '.join(mistyped)}")
    if problems:
        raise InputError(f"input {uri}@{version}: {'; '.join(problems)}; nothing was written")


def trained_types(tables: DeltaTables, model: ModelVersion) -> dict[str, str]:
    """Column types of the model's training table at its pinned version ({} when that
    version cannot be read any more: then only presence is checked)."""
    try:
        read = tables.read(model.training_table, version=model.training_version)
    except InputError as exc:
        log.warning(
            "training table version unreadable; checking input columns by name only",
            extra={"table": model.training_table, "reason": str(exc)},
        )
        return {}
    return {f.name: f.dataType.simpleString() for f in read.df.schema}


def model_classes(model: ModelVersion, fitted) -> int:
    """Label values of a classifier (0 for a regressor)."""
    if model.manifest.get("task") != "classification":
        return 0
    recorded = model.manifest.get("classes")
    if recorded:
        return int(recorded)
    stage = fitted.stages[-1]
    counted = getattr(stage, "numClasses", None)
    return int(counted) if counted else 2


def score_with(
    registry: Registry,
    model: ModelVersion,
    frame: DataFrame,
    keep: list[str],
    fitted: Any = None,
) -> tuple[DataFrame, int, str]:
    """`frame` scored by the model: (scored frame, classes, how: sql, arrow or mllib).

    - A linear model runs as one code-generated SQL expression (`lib/scoring/linear.py`:
      the same scores as its MLlib stages), from the scorer saved at registration,
      without loading the MLlib stages at all.
    - An xgboost model runs its feature stages in the JVM and the booster on Arrow
      batches (`lib/scoring/booster.py`: the same scores as xgboost.spark's pandas
      transform). What each saves: benchmarks/RESULTS.md, "Batch scoring end to end".
    - Anything else runs its pipeline's own transform.

    `fitted`: the version's pipeline, already loaded (then it is what scores).
    """
    from batchml.lib.scoring import booster as booster_scorer
    from batchml.lib.scoring.linear import NotLinear, compile_pipeline

    scorer = registry.scorer(model) if fitted is None else None
    if scorer is None:  # registered before scorers were saved, or not linear
        fitted = fitted if fitted is not None else registry.load(model)
        try:
            scorer = compile_pipeline(fitted)
        except NotLinear as exc:
            log.info("no linear scorer", extra={"why": str(exc)})
    if scorer is not None:
        classes = 2 if scorer.task == "binary_logistic" else 0
        return scorer.score(frame), classes, "sql"
    try:
        scored = booster_scorer.score(fitted, frame, keep)
        return scored, booster_scorer.booster_classes(fitted), "arrow"
    except booster_scorer.NotBooster as exc:
        log.info("scoring with the pipeline's stages", extra={"why": str(exc)})
    return fitted.transform(frame), model_classes(model, fitted), "mllib"


def scored_columns(
    scored: DataFrame,
    classes: int,
    keep: list[str],
    lineage: dict[str, Any],
) -> DataFrame:
    """What a consumer needs: keys and passthrough columns, the prediction, the positive
    class's probability (binary) or every class's (multiclass), and lineage. No vectors.
    `vector_to_array` runs in the JVM (no Python UDF)."""
    from pyspark.ml.functions import vector_to_array

    columns = [F.col(f"`{c}`") for c in keep]
    columns.append(F.col("prediction").cast("double").alias("prediction"))
    probability = scored.schema["probability"].dataType if "probability" in scored.columns else None
    if classes == 2 and isinstance(probability, T.DoubleType):
        columns.append(F.col("probability"))  # a scorer's: already class 1's
    elif classes == 2:
        columns.append(vector_to_array(F.col("probability"))[1].alias("probability"))
    elif classes > 2 and "probabilities" in scored.columns:
        columns.append(F.col("probabilities"))
    elif classes > 2:
        columns.append(vector_to_array(F.col("probability")).alias("probabilities"))
    columns.extend(F.lit(value).alias(name) for name, value in lineage.items())
    return scored.select(*columns)


def scored(
    registry: Registry,
    tables: DeltaTables,
    model: ModelVersion,
    target: Target,
    keep: list[str],
    fitted: Any = None,
) -> tuple[DataFrame, str, int, str, list[tuple[str, float]]]:
    """`target` scored by `model`, with the columns evaluation reads: the label and
    `keep`, `__score` (class 1's probability, binary), `__prediction` and
    `__probabilities` (multiclass). Returns (frame, task, classes, scorer, weights)."""
    from pyspark.ml.functions import vector_to_array

    from batchml.lib.evaluation.page import pipeline_weights, scorer_weights

    label = (model.manifest.get("feature_spec") or {}).get("label")
    if not label:
        raise InputError(f"{model.name}@{model.version} has no label in its manifest")
    needed = {c: "feature" for c in feature_columns(model.manifest)}
    needed.setdefault(label, "label")
    for column in keep:
        needed.setdefault(column, "slice")
    check_input(
        target.frame.schema, needed, trained_types(tables, model), target.uri, target.version
    )
    key = (model.manifest.get("feature_spec") or {}).get("key")
    key_column = [key] if key and key in target.frame.columns else []
    columns = list(dict.fromkeys([label, *key_column, *keep]))
    scorer = registry.scorer(model)  # its weights name the report's terms
    if scorer is None and fitted is None:
        fitted = registry.load(model)  # loaded once: it scores and gives the weights
    frame, classes, how = score_with(registry, model, target.frame, columns, fitted)
    task = "regression" if model.manifest.get("task") == "regression" else "classification"
    outputs = [F.col(f"`{c}`") for c in columns]
    outputs.append(F.col("prediction").cast("double").alias(PREDICTION))
    if task == "classification":
        probability = (
            frame.schema["probability"].dataType if "probability" in frame.columns else None
        )
        if classes == 2 and isinstance(probability, T.DoubleType):
            outputs.append(F.col("probability").alias(SCORE))
        elif classes == 2:
            outputs.append(vector_to_array(F.col("probability"))[1].alias(SCORE))
        elif "probabilities" in frame.columns:
            outputs.append(F.col("probabilities").alias(PROBABILITIES))
        elif "probability" in frame.columns:
            outputs.append(vector_to_array(F.col("probability")).alias(PROBABILITIES))
    weights: list[tuple[str, float]] = []
    try:
        weights = (
            scorer_weights(scorer) if scorer is not None else pipeline_weights(fitted, target.frame)
        )
    except Exception as exc:  # weights are for the report: never fail an evaluation
        log.info("no feature weights for the report", extra={"why": str(exc)})
    kind = "regression" if task == "regression" else ("binary" if classes == 2 else "multiclass")
    return frame.select(*outputs), kind, classes, how, weights


def row_key(model: ModelVersion, frame: DataFrame) -> str | None:
    """The model's row key when the scored frame has it (it chooses the edges' sample)."""
    key = (model.manifest.get("feature_spec") or {}).get("key")
    return key if key and key in frame.columns else None


def model_threshold(model: ModelVersion) -> float:
    value = (model.manifest.get("params") or {}).get("threshold")
    return float(value) if isinstance(value, (int, float)) else 0.5
