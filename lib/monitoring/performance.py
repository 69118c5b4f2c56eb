"""Performance over time: a model version's predictions joined with the labels that
landed since, judged per period against the registered test metric.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from batchml.lib.delta import DeltaTables
from batchml.lib.delta.lakehouse import recorded_forms, split_version, table_location
from batchml.lib.evaluation.bins import higher_is_better
from batchml.lib.evaluation.over_time import by_period
from batchml.lib.features.keys import check_key_columns
from batchml.lib.monitoring.table import graded, recorded_periods
from batchml.lib.platform.errors import InputError
from batchml.lib.platform.settings import MonitoringSpec, PredictionSpec, Settings
from batchml.lib.scoring.model import SCORE
from batchml.lib.tracking.registry import ModelVersion


def predictions_of(
    settings: Settings, model: ModelVersion, input_uri: str
) -> PredictionSpec | None:
    """The `[predictions.*]` section scoring `input_uri` with this model's name, if any."""
    for section in settings.predictions.values():
        if section.model.partition("@")[0] != model.name:
            continue
        table, _ = split_version(section.input)
        if table_location(table, settings, relative_to=Path.cwd()) == input_uri:
            return section
    return None


def predictions_uri(
    settings: Settings, model: ModelVersion, input_uri: str, given: str | None
) -> str | None:
    """`--predictions`, else the configured predictions table of this model and input."""
    if given:
        return table_location(given, settings, relative_to=Path.cwd())
    section = predictions_of(settings, model, input_uri)
    return table_location(section.output, settings, relative_to=Path.cwd()) if section else None


def performance(
    tables: DeltaTables,
    settings: Settings,
    model: ModelVersion,
    predictions: str,
    input_uri: str,
    spec: MonitoringSpec,
    monitoring: str,
) -> list[dict[str, Any]]:
    """The headline metric per period of this model version's predictions of `input_uri`
    whose labels have landed (in the labels table of `[models.NAME.monitoring]`, else in
    the input's latest version), joined on the key; only periods not yet recorded in the
    monitoring table with the same labelled rows. Each has a status: its relative drop
    from the registered test metric against the degradation thresholds.

    Raises:
        InputError: the labels table or the predictions lack the key or the label.
    """
    task, classes = model.manifest.get("task"), model.manifest.get("classes")
    if task == "regression":
        score, metric = "prediction", "rmse"
    elif classes == 2:
        score, metric = "probability", "areaUnderROC"
    else:
        return []
    feature_spec = model.manifest.get("feature_spec") or {}
    section = predictions_of(settings, model, input_uri)
    key = (section.key if section and section.key else None) or (
        [feature_spec["key"]] if feature_spec.get("key") else []
    )
    label = feature_spec.get("label")
    if not key or not label:
        return []
    scored = tables.read(predictions)
    lacking = [c for c in [*key, score] if c not in scored.df.columns]
    if lacking:
        raise InputError(f"predictions table {scored.uri} lacks column(s) {', '.join(lacking)}")
    labels_uri = input_uri
    if spec.labels:
        labels_uri = table_location(spec.labels, settings, relative_to=Path.cwd())
    labels = tables.read(labels_uri)
    if label not in labels.df.columns and not spec.labels:
        return []  # the input holds no labels (yet): nothing to judge
    # the settings' check: labels_dedup comes with labels_order_by
    order_by = [spec.labels_order_by] if spec.labels_dedup and spec.labels_order_by else []
    lacking = [c for c in [*key, label, *order_by] if c not in labels.df.columns]
    if lacking:
        what = "labels table" if spec.labels else "input"
        raise InputError(
            f"{what} {labels.uri}@{labels.version} lacks column(s) {', '.join(lacking)} "
            f"(the key{', label' if spec.labels else ''}"
            f"{' and labels_order_by' if order_by else ''} of {model.name}); nothing appended"
        )
    date = section.partition_by if section else None
    if spec.period == "input_version" or not date:
        period = F.col("input_version").cast("string")
    else:
        period = F.date_trunc(spec.period, F.col(date)).cast("date").cast("string")
    rows = scored.df.filter(
        (F.col("model_name") == model.name)
        & (F.col("model_version") == model.version)
        & F.col("input_table").isin(*recorded_forms(input_uri, settings))
    ).select(*[F.col(f"`{c}`") for c in key], F.col(score).alias(SCORE), period.alias("__period"))
    known = one_label_per_key(
        labels.df, key, label, f"{labels.uri}@{labels.version}", latest_by=tuple(order_by)
    )
    if spec.labels:
        # a labels table says nothing of which of two scored rows with one key it labels
        _refuse_repeated_keys(rows, key, f"predictions of {model.name}@{model.version}")
    # each scored row meets exactly one label: never a row per pair of key copies
    joined = rows.join(known, key)
    resolved = {}
    if order_by:  # scored rows whose label was chosen among a key's several rows
        chosen = joined.filter(F.col("__set_aside") > 0).groupBy("__period").count().collect()
        resolved = {r["__period"]: int(r["count"]) for r in chosen}
    found = by_period(
        joined, "__label", SCORE, "__period", task=task, seed=int(model.manifest.get("seed", 42))
    )
    recorded = recorded_periods(tables, monitoring, model)
    baseline = (model.metrics.get("test") or model.metrics.get("validation") or {}).get(metric)
    out = []
    for entry in found:
        if entry["value"] is None or entry["rows"] < spec.min_period_rows:
            continue
        judged = recorded.get((entry["period"], entry["rows"]), set())
        if entry.get("positives") in judged or None in judged:
            continue  # these labels were judged (older runs did not record positives)
        entry["baseline"] = baseline
        if order_by:
            entry["labels_resolved"] = resolved.get(entry["period"], 0)
        entry["drop"] = None
        entry["status"] = "ok"
        if baseline:
            drop = (baseline - entry["value"]) / abs(baseline)
            entry["drop"] = drop if higher_is_better(metric) else -drop
            entry["status"] = graded(entry["drop"], spec.degradation_warn, spec.degradation_drift)
        out.append(entry)
    return out


def one_label_per_key(
    labels_df: DataFrame,
    key: list[str],
    label: str,
    where: str,
    *,
    latest_by: tuple[str, ...] = (),
) -> DataFrame:
    """The labels as one row per key (`__label`), with how many of the key's label rows
    `latest_by` set aside (`__set_aside`): a key repeated with one label (the same record
    twice, or in two batches) is that label once; with `latest_by` (labels_dedup =
    "latest"), only a key's rows with the greatest value of that column count (a null
    there sorts oldest; rows without a label are not label rows).

    Raises:
        InputError: a key of floating-point type (equality is fragile), a key null in
            every labelled row, or keys with two or more different labels (which one a
            scored row has is unknown): the key columns, how many keys, and one of them.
    """
    check_key_columns(labels_df.schema, key, where)
    keys = [F.col(f"`{c}`") for c in key]
    labelled = labels_df.filter(F.col(f"`{label}`").isNotNull())
    kept = F.lit(True)
    if latest_by:
        from pyspark.sql import Window

        newest = Window.partitionBy(*keys).orderBy(F.col(f"`{latest_by[0]}`").desc_nulls_last())
        labelled = labelled.withColumn("__rank", F.rank().over(newest))
        kept = F.col("__rank") == 1
    current = F.when(kept, F.col(f"`{label}`"))
    grouped = labelled.groupBy(*keys).agg(
        F.min(current).alias("__label"),
        F.countDistinct(current).alias("__labels"),
        F.sum((~kept).cast("long")).alias("__set_aside"),
    )
    whole = functools.reduce(lambda a, b: a & b, [c.isNotNull() for c in keys])
    conflict = whole & (F.col("__labels") > 1)  # a null key meets no scored row
    found = grouped.agg(
        F.count(F.lit(1)).alias("groups"),
        F.sum(whole.cast("long")).alias("keyed"),
        F.sum(conflict.cast("long")).alias("conflicts"),
        F.first(F.when(conflict, F.struct(*keys)), ignorenulls=True).alias("example"),
    ).collect()[0]
    if found["groups"] and not found["keyed"]:
        raise InputError(
            f"{where}: key {', '.join(key)} is null in every labelled row; no scored row can "
            "meet its label; nothing appended"
        )
    if found["conflicts"]:
        example = ", ".join(f"{c}={found['example'][c]!r}" for c in key)
        at = f" at their latest {latest_by[0]}" if latest_by else ""
        remedy = "" if latest_by else ', or set labels_dedup = "latest" and labels_order_by'
        raise InputError(
            f"{where}: {found['conflicts']} values of key {', '.join(key)} have more than "
            f"one label{at} (e.g. {example}); performance needs one label per scored row: "
            f"key the predictions by columns that identify a row{remedy}; nothing appended"
        )
    return grouped.drop("__labels")


def _refuse_repeated_keys(rows_df: DataFrame, key: list[str], where: str) -> None:
    """Predictions whose key repeats within a period cannot be matched to a labels table."""
    repeated_df = (
        rows_df.groupBy(*[F.col(f"`{c}`") for c in key], "__period")
        .count()
        .filter(F.col("count") > 1)
    )
    keys, example = _offending_keys(repeated_df, key)
    if keys:
        raise InputError(
            f"{where}: {keys} values of key {', '.join(key)} are scored more than "
            f"once in one period (e.g. {example}); a labels table cannot say which row it "
            "labels: key the predictions by columns that identify a row; nothing appended"
        )


def _offending_keys(offending_df: DataFrame, key: list[str]) -> tuple[int, str]:
    """How many rows `offending_df` holds and one of their keys as `col=value` (one job)."""
    found = offending_df.agg(
        F.count(F.lit(1)).alias("keys"), F.first(F.struct(*key)).alias("example")
    ).collect()[0]
    if not found["keys"]:
        return 0, ""
    return found["keys"], ", ".join(f"{c}={found['example'][c]!r}" for c in key)
