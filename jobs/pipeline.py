"""`batchml pipeline NAME`: one scheduled run, declared in `[schedules.NAME]`.

Steps, in order, under one run id (the runs table's):
1. ingest every source's new raw files (exactly once: the ingest ledger);
2. materialise every feature view (incremental views append only new rows);
3. monitor the champion on the rows its input gained since it was last monitored (or
   since its training version): feature drift, its scores' drift, and the performance
   of earlier predictions whose labels have landed;
4. decide whether to retrain: no champion yet, drift (of the features now, or of the
   scores the previous run compared after predicting), degradation, or a champion older
   than `retrain_every` (each enabled or not in the schedule);
5. retrain, then promote when the challenger beats the champion on the same holdout
   (evaluation and the paired bootstrap of `batchml promote`);
6. predict the rows the champion has not scored (incremental).

Every step is skipped when its output for this data already exists, so a rerun after
a crash (a kill mid-train) continues where it stopped and writes nothing twice: ingest
skips ledgered files, features skip a view already at its sources' versions, monitoring
a version already monitored reuses the recorded verdict, a model already trained on
the same table version with the same config is not trained again, promotion of the
champion itself is a no-op, and predictions carry an idempotency token. The run's row in
the runs table holds every step's action and reason (`summary`).
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import typer
from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from batchml.jobs import features, ingest, monitor, predict, promote
from batchml.jobs.app import JsonOption, emit, reports_errors, run_context
from batchml.lib.delta import DeltaTables, delta_tables
from batchml.lib.delta.lakehouse import recorded_forms, split_version, table_location
from batchml.lib.monitoring.table import RUN_ROW, monitoring_uri
from batchml.lib.platform.errors import ConfigError
from batchml.lib.platform.logs import get_logger
from batchml.lib.platform.settings import ScheduleSpec, Settings, duration_seconds
from batchml.lib.tracking import runs
from batchml.lib.tracking.registry import ModelVersion, registry_of

log = get_logger(__name__)


@dataclass
class Step:
    """One step of a pipeline run: what it did and why."""

    step: str  # ingest | features | monitor | decide | train | promote | predict
    target: str
    action: str  # ran | skipped | failed
    reason: str
    details: dict[str, Any] = field(default_factory=dict)


@dataclass
class PipelineReport:
    """A pipeline run: its steps, the retrain decision, the champion before and after."""

    schedule: str
    run_id: str
    model: str
    steps: list[Step] = field(default_factory=list)
    retrain: bool = False
    retrain_reasons: list[str] = field(default_factory=list)
    champion_before: int | None = None
    champion_after: int | None = None
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def schedule_of(settings: Settings, name: str | None) -> tuple[str, ScheduleSpec]:
    """The named schedule, or the only one; every section it names must exist.

    Raises:
        ConfigError: no such schedule, or it names an unknown source, view, model or
            predictions section.
    """
    if name is None:
        if len(settings.schedules) != 1:
            known = ", ".join(sorted(settings.schedules)) or "none"
            raise ConfigError(f"pipeline: name a schedule (sections [schedules.*]: {known})")
        name = next(iter(settings.schedules))
    spec = settings.schedules.get(name)
    if spec is None:
        known = ", ".join(sorted(settings.schedules)) or "none"
        raise ConfigError(f"pipeline {name}: no [schedules.{name}] section (sections: {known})")
    checks: list[tuple[str, str, dict[str, Any]]] = [
        *(("sources", s, settings.sources) for s in spec.sources),
        *(("views", v, settings.views) for v in spec.views),
        ("models", spec.model, settings.models),
        ("predictions", spec.predictions or spec.model, settings.predictions),
    ]
    for section, key, known_sections in checks:
        if key not in known_sections:
            raise ConfigError(
                f"schedules.{name} names [{section}.{key}], which is not in the config"
            )
    return name, spec


def run(
    spark: SparkSession,
    settings: Settings,
    name: str | None = None,
    *,
    config_hash: str = "",
    resolved_config: dict[str, Any] | None = None,
    now: datetime | None = None,
    earlier_hashes: tuple[str, ...] = (),
) -> PipelineReport:
    """One scheduled run (see the module doc)."""
    started = time.perf_counter()
    name, spec = schedule_of(settings, name)
    report = PipelineReport(name, runs.run_id(), spec.model)
    tables = delta_tables(spark, settings)
    section = settings.predictions[spec.predictions or spec.model]
    input_uri = table_location(split_version(section.input)[0], settings, relative_to=Path.cwd())
    total = len(spec.sources) + len(spec.views) + 5
    position = 0

    def progress(step: str, target: str) -> None:
        nonlocal position
        position += 1
        log.info(f"pipeline {name} {position}/{total}: {step} {target}")

    def done(step: Step) -> None:
        report.steps.append(step)
        runs.note_summary(report.to_dict())  # kept even when a later step fails
        log.info(f"  {step.step} {step.target}: {step.action} ({step.reason})")

    for source in spec.sources:
        progress("ingest", source)
        ingested = ingest.run(spark, settings, ingest.IngestRequest(source))
        wrote = ingested.status not in ("skipped",)
        reason = ingested.message or f"{ingested.rows_written} rows written"
        details = {
            "rows_written": ingested.rows_written,
            "rows_quarantined": ingested.rows_quarantined,
            "table_version": ingested.table_version,
        }
        done(Step("ingest", source, "ran" if wrote else "skipped", reason, details))
    for view in spec.views:
        progress("features", view)
        built = features.run(spark, settings, view)
        wrote = built.status == "written"
        reason = built.message or f"{built.rows} rows, version {built.version}"
        details = {"version": built.version, "rows": built.rows}
        done(Step("features", view, "ran" if wrote else "skipped", reason, details))

    registry = registry_of(settings, tables)
    champion = registry.champion(spec.model)
    report.champion_before = champion.version if champion else None
    current = tables.version(input_uri)
    output_uri = table_location(section.output, settings, relative_to=Path.cwd())
    # the rows new to this model line: after the input version its predictions reached,
    # else after the champion's training data
    last_scored = predict.last_run(tables, output_uri, spec.model)
    batch_start = int(last_scored["input_version"]) if last_scored else None
    if batch_start is None and champion is not None:
        batch_start = _trained_version(champion, input_uri)

    progress("monitor", f"{spec.model}@champion")
    verdict: dict[str, Any] = {}
    if champion is None:
        done(Step("monitor", spec.model, "skipped", "no champion yet"))
    elif current is None:
        done(Step("monitor", spec.model, "skipped", f"no input table {input_uri} yet"))
    else:
        ignore = settings.models[spec.model].monitoring.ignore
        last = last_monitored(
            tables,
            monitoring_uri(settings),
            champion,
            input_uri,
            ignore,
            recorded_forms(input_uri, settings),
        )
        watched = last["input_version"] if last else batch_start  # monitored up to here
        if watched is not None and watched >= current and not last:
            done(
                Step(
                    "monitor",
                    spec.model,
                    "skipped",
                    f"no rows after {input_uri}@{watched}, which the champion has seen",
                )
            )
        elif last and last["input_version"] >= current:
            verdict = _unless_acted_on(last, registry.list(spec.model))
            done(
                Step(
                    "monitor",
                    spec.model,
                    "skipped",
                    f"{input_uri}@{current} already monitored (run {last['run_id']}): "
                    f"{last['status']}",
                    verdict,
                )
            )
        else:
            since = watched if watched is not None and watched < current else None
            drift_report = monitor.monitor(
                spark, settings, f"{spec.model}@{champion.version}", input_uri, since=since
            )
            verdict = {
                "run_id": drift_report.run_id,
                "input_version": drift_report.input_version,
                "status": drift_report.status,
                "drifted": sorted(
                    f
                    for f, v in drift_report.features.items()
                    if v["status"] == "drift" and not v.get("ignored")
                ),
                "degraded": sorted(
                    p["period"] for p in drift_report.performance if p["status"] == "drift"
                ),
                "top_psi": sorted(
                    (
                        [f, round(v["psi"], 4)]
                        for f, v in drift_report.features.items()
                        if v.get("psi") is not None and not v.get("ignored")
                    ),
                    key=lambda fv: -fv[1],
                )[:3],
            }
            done(
                Step(
                    "monitor",
                    spec.model,
                    "ran",
                    f"{drift_report.rows} rows ({drift_report.scope}): {drift_report.status}",
                    verdict,
                )
            )

    monitored = report.steps[-1].action == "ran"
    if champion is not None and current is not None and not monitored:
        # no new rows to look at, but labels of earlier predictions may have landed
        periods = monitor.judge_performance(
            spark, settings, f"{spec.model}@{champion.version}", input_uri
        )
        dropped = [p["period"] for p in periods if p["status"] == "drift"]
        if periods:
            verdict = {**verdict, "degraded": sorted({*verdict.get("degraded", []), *dropped})}
            done(
                Step(
                    "performance",
                    spec.model,
                    "ran",
                    f"{len(periods)} newly labelled period(s) judged",
                    {"periods": periods},
                )
            )

    if champion is not None:
        # the scores of the batch scored last run (compared after that run's predict)
        scores = drifted_scores(
            tables,
            monitoring_uri(settings),
            champion,
            input_uri,
            registry.list(spec.model),
            recorded_forms(input_uri, settings),
        )
        if scores:
            verdict = {**verdict, "scores_drifted": scores}

    progress("decide", spec.model)
    reasons = retrain_reasons(spec, champion, verdict, now or datetime.now(UTC))
    report.retrain, report.retrain_reasons = bool(reasons), reasons
    done(Step("decide", spec.model, "ran", "; ".join(reasons) if reasons else "keep the champion"))

    progress("train", spec.model)
    if report.retrain:
        train_version = batch_start if spec.train_on == "before_batch" else None
        version = _train(
            spark,
            settings,
            spec.model,
            train_version,
            config_hash,
            resolved_config,
            earlier_hashes,
        )
        if champion is not None and version["version"] == champion.version:
            version["reason"] = (
                f"the champion (version {champion.version}) was trained on that table version "
                "with this config: no newer labelled rows to learn from"
            )
        done(Step("train", spec.model, version["action"], version["reason"], version))
        progress("promote", spec.model)
        if champion is not None and version["version"] == champion.version:
            done(Step("promote", spec.model, "skipped", "nothing new to promote"))
        else:
            decision = promote.promote(spark, settings, spec.model, challenger=version["version"])
            done(
                Step(
                    "promote",
                    spec.model,
                    decision.action,
                    decision.reason,
                    {"champion_after": decision.champion_after},
                )
            )
    else:
        done(Step("train", spec.model, "skipped", "no retrain needed"))
        progress("promote", spec.model)
        done(Step("promote", spec.model, "skipped", "nothing trained"))

    progress("predict", section.model)
    champion = registry.champion(spec.model)
    report.champion_after = champion.version if champion else None
    if champion is None:
        done(Step("predict", spec.model, "skipped", "no champion to score with"))
    else:
        # a new champion scores the rows new to the model line; the same champion goes on
        # incrementally from its own last run
        if batch_start is None:
            batch_start = _trained_version(champion, input_uri)
        request = predict.PredictRequest(
            f"{spec.predictions or spec.model}@{champion.version}", since=batch_start
        )
        scored = predict.run(spark, settings, request)
        done(
            Step(
                "predict",
                spec.model,
                "ran" if scored.mode != "skipped" else "skipped",
                scored.message,
                {
                    "rows_scored": scored.rows_scored,
                    "mode": scored.mode,
                    "output_version": scored.output_version,
                },
            )
        )
        if scored.rows_scored:
            # monitoring ran before these rows were scored: their scores are compared now
            found = monitor.score_drift(
                spark, settings, f"{spec.model}@{champion.version}", input_uri, batch_start
            )
            if found is not None:
                ks = f", KS {found['ks']:.3f}" if found.get("ks") is not None else ""
                reason = (
                    f"{found['feature']} of {found['rows']} rows: PSI {found['psi']:.3f}{ks}: "
                    f"{found['status']}"
                )
                done(Step("scores", spec.model, "ran", reason, found))
    report.seconds = round(time.perf_counter() - started, 2)
    runs.note_summary(report.to_dict())
    return report


def _unless_acted_on(verdict: dict[str, Any], versions: list[ModelVersion]) -> dict[str, Any]:
    """A recorded verdict, reused by a rerun: its drift and degradation no longer call for
    a retrain when a version was registered after it (the retrain it called for ran; a
    crash before registration leaves none, and the rerun retrains)."""
    at = _aware(verdict["monitored_at"])
    later = [v.version for v in versions if _aware(v.created_at) > at]
    if not later:
        return verdict
    return {**verdict, "drifted": [], "degraded": [], "acted_on_by": later[0]}


def _aware(moment: datetime) -> datetime:
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def _trained_version(model: ModelVersion, input_uri: str) -> int | None:
    """The input version the model was trained on, when its input is its training table:
    the rows after it are new to the model."""
    return model.training_version if model.training_table == input_uri else None


def last_monitored(
    tables: DeltaTables,
    monitoring: str,
    model: ModelVersion,
    input_uri: str,
    ignore: list[str] | tuple[str, ...] = (),
    input_forms: list[str] | None = None,
) -> dict[str, Any] | None:
    """The newest monitoring run of this model version on this input: its input
    version, status, and the features (`ignore`d ones aside) and periods it found
    drifted."""
    if not tables.exists(monitoring):
        return None
    ours = tables.read(monitoring).df.filter(
        (F.col("model") == model.name)
        & (F.col("model_version") == model.version)
        & F.col("input_table").isin(*(input_forms or [input_uri]))
        & ((F.col("feature") == RUN_ROW) | (F.col("status") == "drift"))
    )
    found = ours.select(
        "run_id", "monitored_at", "input_version", "feature", "kind", "period"
    ).collect()
    marks = [r for r in found if r["feature"] == RUN_ROW]
    if not marks:
        return None
    newest = max(marks, key=lambda r: (r["input_version"], r["run_id"]))
    statuses = ours.filter(
        (F.col("run_id") == newest["run_id"]) & (F.col("feature") == RUN_ROW)
    ).select("status")
    same = [r for r in found if r["run_id"] == newest["run_id"] and r["feature"] != RUN_ROW]
    return {
        "run_id": newest["run_id"],
        "input_version": newest["input_version"],
        "status": statuses.collect()[0]["status"],
        "monitored_at": newest["monitored_at"],
        # the scores compared after predicting are acted on by the next run (drifted_scores)
        "drifted": sorted(
            {r["feature"] for r in same if r["kind"] not in ("performance", "prediction")}
            - set(ignore)
        ),
        "degraded": sorted({r["period"] for r in same if r["kind"] == "performance"}),
    }


def drifted_scores(
    tables: DeltaTables,
    monitoring: str,
    model: ModelVersion,
    input_uri: str,
    versions: list[ModelVersion],
    input_forms: list[str] | None = None,
) -> list[str]:
    """The runs in which this model version's scores of this input drifted from its
    training-time score profile (compared after predicting, so acted on by the next
    run), unless a version was registered since (the retrain they called for ran)."""
    if not tables.exists(monitoring):
        return []
    found = (
        tables.read(monitoring)
        .df.filter(
            (F.col("model") == model.name)
            & (F.col("model_version") == model.version)
            & F.col("input_table").isin(*(input_forms or [input_uri]))
            & (F.col("kind") == "prediction")
            & (F.col("status") == "drift")
        )
        .select("run_id", "monitored_at")
        .distinct()
        .collect()
    )
    newest = max((_aware(v.created_at) for v in versions), default=None)
    return sorted(
        r["run_id"] for r in found if newest is None or _aware(r["monitored_at"]) > newest
    )


def retrain_reasons(
    spec: ScheduleSpec, champion: ModelVersion | None, verdict: dict[str, Any], now: datetime
) -> list[str]:
    """Why to retrain (empty: keep the champion)."""
    if champion is None:
        return ["no champion yet"]
    reasons = []
    if spec.retrain_on_drift and verdict.get("drifted"):
        reasons.append(f"drift in {', '.join(verdict['drifted'][:5])}")
    if spec.retrain_on_drift and verdict.get("scores_drifted"):
        reasons.append(f"its scores drifted (run {verdict['scores_drifted'][-1]})")
    if spec.retrain_on_degradation and verdict.get("degraded"):
        reasons.append(f"performance dropped in {', '.join(verdict['degraded'][:5])}")
    if spec.retrain_every:
        age = (now - champion.created_at).total_seconds()
        if age >= duration_seconds(spec.retrain_every):
            reasons.append(
                f"the champion is {age / 86400:.1f} days old (retrain_every {spec.retrain_every})"
            )
    return reasons


def _train(
    spark: SparkSession,
    settings: Settings,
    model: str,
    table_version: int | None,
    config_hash: str,
    resolved_config: dict[str, Any] | None,
    earlier_hashes: tuple[str, ...] = (),
) -> dict[str, Any]:
    """Train the model unless a version of it was already trained on the same table
    version with the same config (a rerun after a crash past registration; its config
    hash as this or an earlier batchml computed it)."""
    from batchml.jobs.train import job, plan

    model_plan = plan.plan_from_settings(settings, model, table_version)
    tables = delta_tables(spark, settings)
    version = table_version if table_version is not None else tables.version(model_plan.table_uri)
    for existing in reversed(registry_of(settings, tables).list(model)):
        same = (existing.training_table, existing.training_version)
        if same == (model_plan.table_uri, version) and existing.config_hash in (
            config_hash,
            *earlier_hashes,
        ):
            return {
                "action": "skipped",
                "reason": f"version {existing.version} was trained on {model_plan.table_uri}"
                f"@{version} with this config",
                "version": existing.version,
            }
    trained = job.run(
        spark,
        settings,
        model,
        config_hash=config_hash,
        resolved_config=resolved_config,
        table_version=table_version,
    )
    return {
        "action": "ran",
        "reason": f"version {trained.version} on "
        f"{trained.training_table}@{trained.training_version}",
        "version": trained.version,
        "metrics": trained.metrics,
    }


def render(data: dict[str, Any]) -> str:
    lines = [
        f"pipeline {data['schedule']} (run {data['run_id']}, {data['seconds']} s): "
        f"{data['model']} champion {data['champion_before']} -> {data['champion_after']}"
    ]
    for step in data["steps"]:
        lines.append(
            f"  {step['step']:<9} {step['target']:<24} {step['action']:<9} {step['reason']}"
        )
    return "\n".join(lines)


@reports_errors
def command(
    ctx: typer.Context,
    name: Annotated[
        str | None,
        typer.Argument(help="The [schedules.NAME] section (default: the only one)."),
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """One scheduled run: ingest, features, monitor, retrain when needed, promote, predict."""
    state = run_context(ctx)
    config = state.config()
    report = run(
        state.spark(),
        config.settings,
        name,
        config_hash=config.config_hash(),
        resolved_config=config.redacted(),
        earlier_hashes=config.earlier_config_hashes(),
    )
    emit(report.to_dict(), as_json, render)
