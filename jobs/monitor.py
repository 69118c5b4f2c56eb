"""`batchml monitor`: drift of a scoring input against a model's training snapshot.

The training side comes from the profile stored in the model's manifest (no pass over
the training data); a model registered without one is profiled from its pinned training
version by time travel (and the report says so). The input is read once (`lib/drift.py`).
Every figure is appended to the monitoring Delta table (`<lakehouse>/_monitoring`): one
row per feature and metric, with the model version, the input table and version, the
run id and a status from the thresholds in `[models.NAME.monitoring]`.

Exit codes: 0 when no feature drifted (warnings included), 8 when one did (a scheduler's
cue to retrain).
"""

from __future__ import annotations

import functools
import time
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import typer
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T

from batchml.jobs.app import JsonOption, ModelRefArg, RunContext, emit, reports_errors
from batchml.jobs.predict import split_version
from batchml.lib import drift, evaluation, runs
from batchml.lib.delta import DeltaTables, delta_tables
from batchml.lib.errors import InputError
from batchml.lib.keys import check_key_columns
from batchml.lib.lakehouse import lake_name, recorded_forms, resolve_path, table_location
from batchml.lib.logs import get_logger
from batchml.lib.registry import ModelVersion, registry_of
from batchml.lib.settings import FeaturePipelineSpec, MonitoringSpec, PredictionSpec, Settings
from batchml.lib.splits import with_split

log = get_logger(__name__)
EXIT_DRIFT = 8
SCORE = "__score"
PREDICTION_PREFIX = "prediction:"  # the feature name of the model's output in reports
STATUS_ORDER = {"ok": 0, "warn": 1, "drift": 2}
MONITORING_SCHEMA = T.StructType(
    [
        T.StructField("run_id", T.StringType()),
        T.StructField("monitored_at", T.TimestampType()),
        T.StructField("model", T.StringType()),
        T.StructField("model_version", T.LongType()),
        T.StructField("input_table", T.StringType()),
        T.StructField("input_version", T.LongType()),
        T.StructField("feature", T.StringType()),
        T.StructField("kind", T.StringType()),
        T.StructField("metric", T.StringType()),
        T.StructField("value", T.DoubleType()),
        T.StructField("status", T.StringType()),
        T.StructField("period", T.StringType()),  # performance rows: the period judged
    ]
)
PERFORMANCE = "__performance__"  # the feature name of performance rows
RUN_ROW = "__run__"  # the feature name of a run's own row (rows read, the run's status)


@dataclass
class MonitorReport:
    """One monitoring run: per feature its figures and status, and the run's status."""

    run_id: str
    model: str
    model_version: int
    input_table: str
    input_version: int
    rows: int
    profile_source: str  # "stored" | "time travel"
    status: str
    scope: str = "whole version"  # or "rows added after version N" (--since)
    predictions_table: str | None = None  # where the compared scores came from
    features: dict[str, dict[str, Any]] = field(default_factory=dict)
    # the headline metric of each newly labelled period of the predictions
    performance: list[dict[str, Any]] = field(default_factory=list)
    degraded: bool = False  # a period dropped past degradation_drift
    monitoring_table: str = ""
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def monitoring_uri(settings: Settings) -> str:
    return resolve_path("_monitoring", settings)


def monitoring_spec(settings: Settings, model: ModelVersion) -> MonitoringSpec:
    """The thresholds: the model's current `[models.NAME.monitoring]`, else defaults."""
    spec = settings.models.get(model.name)
    return spec.monitoring if spec is not None else MonitoringSpec()


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
    from batchml.lib.feature_pipeline import collect_stats, profile_of

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


def status_of(figures: dict[str, Any], spec: MonitoringSpec) -> dict[str, str]:
    """ok | warn | drift for each figure that has thresholds."""
    limits = {
        "psi": (spec.psi_warn, spec.psi_drift),
        "ks": (spec.ks_warn, spec.ks_drift),
        "js": (spec.js_warn, spec.js_drift),
        "null_rate_change": (spec.null_rate_warn, spec.null_rate_drift),
        "mean_shift_sd": (spec.mean_shift_warn, spec.mean_shift_drift),
    }
    out = {}
    for metric, (warn, drifted) in limits.items():
        value = figures.get(metric)
        if value is None:
            continue
        out[metric] = _graded(abs(value), warn, drifted)
    return out


def _graded(size: float, warn: float, drifted: float) -> str:
    return "drift" if size >= drifted else "warn" if size >= warn else "ok"


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
    order_by = [spec.labels_order_by] if spec.labels_dedup else []
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
    found = evaluation.by_period(
        joined, "__label", SCORE, "__period", task=task, seed=int(model.manifest.get("seed", 42))
    )
    recorded = _recorded_periods(tables, monitoring, model)
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
            entry["drop"] = drop if evaluation.higher_is_better(metric) else -drop
            entry["status"] = _graded(entry["drop"], spec.degradation_warn, spec.degradation_drift)
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


def _recorded_periods(
    tables: DeltaTables, monitoring: str, model: ModelVersion
) -> dict[tuple[str, int], set[int | None]]:
    """(period, labelled rows) already judged for this model version -> the positives
    each time (None: not recorded, as before positives were). A period is judged again
    when its labelled rows or its positives changed (labels landed, or were corrected)."""
    judged: dict[tuple[str, int], set[int | None]] = {}
    if not tables.exists(monitoring):
        return judged
    frame = tables.read(monitoring).df
    if "period" not in frame.columns:
        return judged  # another schema: the append names it
    rows = frame.filter(
        (F.col("feature") == PERFORMANCE)
        & (F.col("model") == model.name)
        & (F.col("model_version") == model.version)
        & F.col("metric").isin("rows", "positives")
    ).select("run_id", "period", "metric", "value")
    runs: dict[tuple[str, str], dict[str, int]] = {}
    for r in rows.collect():
        runs.setdefault((r["run_id"], r["period"]), {})[r["metric"]] = int(r["value"])
    for (_, period), found in runs.items():
        if "rows" in found:
            judged.setdefault((period, found["rows"]), set()).add(found.get("positives"))
    return judged


def monitor(
    spark: SparkSession,
    settings: Settings,
    model_ref: str,
    input_ref: str | None = None,
    *,
    since: int | None = None,
    predictions: str | None = None,
) -> MonitorReport:
    """Drift of an input table version (or of the rows added to it after version `since`)
    against the model's training snapshot, and of its predictions' scores against the
    scores at training; every figure appended to the monitoring table.

    Raises:
        InputError: unknown model or table version, a feature absent from the input, a
            monitoring table with another schema.
    """
    started = time.monotonic()
    tables = delta_tables(spark, settings)
    model = registry_of(settings, None).get(model_ref)
    if input_ref:
        name, version = split_version(input_ref)
        uri = table_location(name, settings, relative_to=Path.cwd())
    else:
        uri, version = model.training_table, None  # the training table as it is now
    read = tables.read(uri, version=version)
    frame, scope = read.df, "whole version"
    if since is not None:
        if not 0 <= since < read.version:
            earlier = (
                f"give a version from 0 to {read.version - 1}"
                if read.version
                else "it has no earlier version"
            )
            raise InputError(
                f"--since {since}: rows added after it must come from a later version of "
                f"{read.uri}, which is at version {read.version} ({earlier})"
            )
        added = tables.read_added(read.uri, since, read.version)
        if added is None:
            log.info(f"files of {read.uri} were rewritten after version {since}: whole version")
        else:
            frame, scope = added.df, f"rows added after version {since}"
    profile, source = training_profile(spark, tables, model)
    numeric = profile.get("numeric") or {}
    categorical = profile.get("categorical") or {}
    missing = [c for c in [*numeric, *categorical] if c not in frame.columns]
    if missing:
        raise InputError(
            f"{read.uri}@{read.version} lacks feature column(s) {', '.join(missing)} "
            f"of {model.name}@{model.version}"
        )
    binned = {c: p for c, p in numeric.items() if p.get("deciles")}
    fine = drift.grids(spark, binned)
    summaries = drift.input_profile(frame, {c: g.edges for c, g in fine.items()}, list(categorical))
    spec = monitoring_spec(settings, model)
    features: dict[str, dict[str, Any]] = {}
    numeric_figures = drift.numeric_drifts(binned, summaries, fine)
    for column, figures in numeric_figures.items():
        features[column] = {"kind": "numeric", **figures}
    for column in categorical:
        figures = drift.categorical_drift(categorical[column], summaries[column])
        features[column] = {"kind": "categorical", **figures}
    scored_in = predictions_uri(settings, model, read.uri, predictions)
    scores = None
    if scored_in:
        scores = scored_rows(
            tables,
            scored_in,
            model,
            read.uri,
            (since, read.version),
            recorded_forms(read.uri, settings),
        )
    compared = _score_figures(spark, model, scores) if scores is not None else None
    if compared is not None:
        features[compared[0]] = compared[1]
    for figures in features.values():
        statuses = status_of(figures, spec)
        figures["statuses"] = statuses
        figures["status"] = max(statuses.values(), key=STATUS_ORDER.get, default="ok")
    for name in spec.ignore:
        if name in features:
            features[name]["ignored"] = True  # reported, not judged
    periods: list[dict[str, Any]] = []
    if scored_in and tables.exists(scored_in):
        periods = performance(
            tables, settings, model, scored_in, read.uri, spec, monitoring_uri(settings)
        )
    judged = [f["status"] for name, f in features.items() if name not in spec.ignore]
    overall = max(
        [*judged, *(p["status"] for p in periods)],
        key=STATUS_ORDER.get,
        default="ok",
    )
    rows = next(iter(summaries.values())).rows if summaries else 0
    report = MonitorReport(
        run_id=runs.run_id(),
        model=model.name,
        model_version=model.version,
        input_table=read.uri,
        input_version=read.version,
        rows=rows,
        profile_source=source,
        status=overall,
        scope=scope,
        predictions_table=scored_in if scores is not None or periods else None,
        features=features,
        performance=periods,
        degraded=any(p["status"] == "drift" for p in periods),
        monitoring_table=monitoring_uri(settings),
    )
    _append(tables, report, lake_name(report.input_table, settings))
    report.seconds = round(time.monotonic() - started, 2)
    return report


def predictions_uri(
    settings: Settings, model: ModelVersion, input_uri: str, given: str | None
) -> str | None:
    """`--predictions`, else the configured predictions table of this model and input."""
    if given:
        return table_location(given, settings, relative_to=Path.cwd())
    section = predictions_of(settings, model, input_uri)
    return table_location(section.output, settings, relative_to=Path.cwd()) if section else None


def _score_figures(
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


def score_drift(
    spark: SparkSession, settings: Settings, model_ref: str, input_uri: str, since: int | None
) -> dict[str, Any] | None:
    """Only the scores part of `monitor`: this version's scores of the input rows after
    version `since` against its training-time score profile, appended to the monitoring
    table (no `__run__` row). For a scheduled run, which monitors before it scores."""
    tables = delta_tables(spark, settings)
    model = registry_of(settings, None).get(model_ref)
    scored_in = predictions_uri(settings, model, input_uri, None)
    version = tables.version(input_uri)
    if not scored_in or version is None or not tables.exists(scored_in):
        return None
    scores = scored_rows(
        tables, scored_in, model, input_uri, (since, version), recorded_forms(input_uri, settings)
    )
    compared = _score_figures(spark, model, scores) if scores is not None else None
    if compared is None:
        return None
    name, figures = compared
    statuses = status_of(figures, monitoring_spec(settings, model))
    figures["statuses"] = statuses
    figures["status"] = max(statuses.values(), key=STATUS_ORDER.get, default="ok")
    report = MonitorReport(
        runs.run_id(),
        model.name,
        model.version,
        input_uri,
        version,
        figures["rows"],
        "-",
        figures["status"],
        features={name: figures},
        monitoring_table=monitoring_uri(settings),
    )
    _append(tables, report, lake_name(report.input_table, settings), run_row=False)
    return {"feature": name, **figures}


def judge_performance(
    spark: SparkSession, settings: Settings, model_ref: str, input_uri: str
) -> list[dict[str, Any]]:
    """Only the performance part of `monitor`: the periods of this model version's
    predictions of `input_uri` whose labels landed since they were last judged, appended
    to the monitoring table (no `__run__` row: no drift was looked at). For a scheduled
    run with no new input rows, where labels may still have landed."""
    tables = delta_tables(spark, settings)
    model = registry_of(settings, None).get(model_ref)
    scored_in = predictions_uri(settings, model, input_uri, None)
    version = tables.version(input_uri)
    if not scored_in or not tables.exists(scored_in) or version is None:
        return []
    spec = monitoring_spec(settings, model)
    periods = performance(
        tables, settings, model, scored_in, input_uri, spec, monitoring_uri(settings)
    )
    if periods:
        status = max((p["status"] for p in periods), key=STATUS_ORDER.get)
        report = MonitorReport(
            runs.run_id(),
            model.name,
            model.version,
            input_uri,
            version,
            0,
            "-",
            status,
            performance=periods,
            monitoring_table=monitoring_uri(settings),
        )
        _append(tables, report, lake_name(report.input_table, settings), run_row=False)
    return periods


def _append(
    tables: DeltaTables, report: MonitorReport, input_name: str, *, run_row: bool = True
) -> None:
    """The report's figures as monitoring rows, the input by its lake name."""
    now = datetime.now(UTC)
    base = (
        report.run_id,
        now,
        report.model,
        report.model_version,
        input_name,
        report.input_version,
    )
    rows = []
    if run_row:
        rows.append((*base, RUN_ROW, "run", "rows", float(report.rows), report.status, None))
    for feature, figures in report.features.items():
        for metric, value in figures.items():
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                status = figures["statuses"].get(metric)
                rows.append((*base, feature, figures["kind"], metric, float(value), status, None))
    for entry in report.performance:
        low, high = entry["interval"] or (None, None)
        for metric, value, status in (
            (entry["metric"], entry["value"], entry["status"]),
            (f"{entry['metric']}_lower", low, None),
            (f"{entry['metric']}_upper", high, None),
            ("rows", float(entry["rows"]), None),
            ("positives", entry.get("positives"), None),
            ("labels_resolved", entry.get("labels_resolved"), None),
        ):
            if value is not None:
                row = (PERFORMANCE, "performance", metric, float(value), status, entry["period"])
                rows.append((*base, *row))
    tables.write(
        tables.spark.createDataFrame(rows, MONITORING_SCHEMA),
        report.monitoring_table,
        commit_info={"job": "monitor", "model": report.model, "run_id": report.run_id},
    )


def render(data: dict[str, Any]) -> str:
    lines = [
        f"{data['model']}@{data['model_version']} vs {data['input_table']}@"
        f"{data['input_version']} ({data['rows']} rows, {data['scope']}; training profile: "
        f"{data['profile_source']}): {data['status'].upper()}",
        f"  {'feature':<24} {'kind':<11} {'PSI':>7} {'KS/JS':>7} {'nulls Δ':>8} "
        f"{'mean Δ sd':>9}  status",
    ]
    for feature, f in data["features"].items():
        second = f.get("js") if f["kind"] == "categorical" else f.get("ks")
        extra = ""
        if f.get("unseen_levels"):
            extra = f"  unseen {f['unseen_rows']}: {', '.join(map(str, f['unseen_levels']))}"
        lines.append(
            f"  {feature:<24} {f['kind']:<11} {f['psi']:>7.3f} {_num(second):>7} "
            f"{f['null_rate_change']:>+8.3f} {_num(f.get('mean_shift_sd')):>9}  "
            f"{f['status']}{' (ignored)' if f.get('ignored') else ''}{extra}"
        )
    for entry in data.get("performance") or []:
        low, high = entry["interval"] or (None, None)
        drop = "" if entry.get("drop") is None else f", {entry['drop']:+.1%} vs test"
        if entry.get("labels_resolved"):
            drop += f"; {entry['labels_resolved']} older label rows set aside"
        lines.append(
            f"  performance {entry['period']}: {entry['metric']} {entry['value']:.4f} "
            f"[{_num(low)}, {_num(high)}] on {entry['rows']} labelled rows{drop}  "
            f"{entry['status']}"
        )
    lines.append(f"  appended to {data['monitoring_table']} (run {data['run_id']})")
    return "\n".join(lines)


def _num(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


@reports_errors
def command(
    ctx: typer.Context,
    model: ModelRefArg,
    *,
    input_table: Annotated[
        str | None,
        typer.Option(
            "--input",
            metavar="TABLE[@VERSION]",
            help="The scoring input (default: the model's training table, latest version).",
        ),
    ] = None,
    since: Annotated[
        int | None,
        typer.Option(
            "--since",
            metavar="VERSION",
            help="Only the rows added to the input after this version (the new batch).",
        ),
    ] = None,
    predictions: Annotated[
        str | None,
        typer.Option(
            metavar="TABLE",
            help="The predictions table whose scores of this input to compare (default: "
            "the [predictions] section of this model and input).",
        ),
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Drift of a scoring input against the model's training snapshot (exit 8: drift)."""
    state: RunContext = ctx.find_object(RunContext)
    report = monitor(
        state.spark(),
        state.config().settings,
        model,
        input_table,
        since=since,
        predictions=predictions,
    )
    emit(report.to_dict(), as_json, render)
    if report.status == "drift":
        raise typer.Exit(EXIT_DRIFT)
