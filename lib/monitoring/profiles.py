"""The training side of drift: the model's stored profile of its training rows (or one
computed from the pinned training version), and its scores' profile compared with the
scores it wrote since (`prediction:<column>`).
"""

from __future__ import annotations

from typing import Any

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from batchml.lib.delta import DeltaTables
from batchml.lib.monitoring import drift
from batchml.lib.platform.errors import InputError
from batchml.lib.platform.logs import get_logger
from batchml.lib.platform.settings import FeaturePipelineSpec
from batchml.lib.scoring.model import SCORE
from batchml.lib.tracking.registry import ModelVersion
from batchml.lib.training.splits import with_split

log = get_logger(__name__)
PREDICTION_PREFIX = "prediction:"  # the feature name of the model's output in reports


def training_profile(
    spark: SparkSession, tables: DeltaTables, model: ModelVersion
) -> tuple[dict[str, Any], str]:
    """The stored profile, else one computed from the pinned training version.

    Raises:
        InputError: no stored profile and the training version's files are gone.
    """
    stored = model.manifest.get("training_profile")
    if stored:
        return stored, "stored"
    from batchml.lib.features.statistics import collect_stats, profile_of

    spec = FeaturePipelineSpec.model_validate(model.manifest.get("feature_spec") or {})
    where = f"{model.training_table}@{model.training_version}"
    log.info(f"{model.name}@{model.version} has no stored training profile: profiling {where}")
    try:
        frame = tables.read(model.training_table, version=model.training_version).df
        split = model.manifest.get("split") or {}
        if split.get("fractions") and split.get("key") in frame.columns:
            # the profile training stores is the training split's: the same rows here
            frame = with_split(
                frame, split["key"], split["fractions"], seed=int(split["seed"]), column="__s"
            )
            frame = frame.filter(F.col("__s") == "train").drop("__s")
        return profile_of(collect_stats(frame, spec, profile=True)), "time travel"
    except InputError as exc:
        raise InputError(
            f"{model.name}@{model.version} has no stored training profile and its training "
            f"data {where} cannot be read ({exc}); a registry-aware vacuum (`batchml table "
            "vacuum`) keeps the versions registered models were trained on"
        ) from None


def scored_rows(
    tables: DeltaTables,
    uri: str,
    model: ModelVersion,
    input_uri: str,
    versions: tuple[int | None, int],
    input_forms: list[str] | None = None,
) -> tuple[DataFrame, str] | None:
    """This model version's predictions of the input's versions (since, version], and
    the score column the model's score profile describes; None when there is nothing
    to compare (no profile, no such table).

    Raises:
        InputError: the predictions table lacks the lineage or the score column.
    """
    score = model.manifest.get("score_profile")
    if not score or not tables.exists(uri):
        return None
    frame = tables.read(uri).df
    needed = ["model_name", "model_version", "input_table", "input_version", score["column"]]
    missing = [c for c in needed if c not in frame.columns]
    if missing:
        raise InputError(f"predictions table {uri} lacks column(s) {', '.join(missing)}")
    since, version = versions
    rows = frame.filter(
        (F.col("model_name") == model.name)
        & (F.col("model_version") == model.version)
        & F.col("input_table").isin(*(input_forms or [input_uri]))
        & (F.col("input_version") <= version)
    )
    if since is not None:
        rows = rows.filter(F.col("input_version") > since)
    return rows.select(F.col(score["column"]).alias(SCORE)), score["column"]


def score_figures(
    spark: SparkSession, model: ModelVersion, scores: tuple[DataFrame, str]
) -> tuple[str, dict[str, Any]] | None:
    """The scores' drift figures against the training-time score profile (one pass over
    the score column), named `prediction:<column>`; None without scored rows."""
    score_profile = model.manifest["score_profile"]
    grid = drift.grids(spark, {SCORE: score_profile})
    summary = drift.input_profile(scores[0], {SCORE: grid[SCORE].edges}, [])[SCORE]
    if not summary.rows:
        return None
    figures = drift.numeric_drift(score_profile, summary, grid[SCORE].train_cdf)
    return f"{PREDICTION_PREFIX}{scores[1]}", {
        "kind": "prediction",
        "rows": summary.rows,
        **figures,
    }
