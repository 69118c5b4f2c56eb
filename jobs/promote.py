"""`batchml promote`: the deployment gate. A challenger version becomes the model's
`champion` only when it beats the current champion on the same table version and split.

Both versions score the same rows in one pass (the joint frame is persisted for the
three aggregations that read it): each model's full figures, and the paired bootstrap of
the improvement, drawn on the joint cells of both models' bins so that every replicate
weighs the two models' rows alike. The decision, both metric sets, the table version and
the reason are appended to the registry's `decisions` table (the alias history `batchml
models show` prints); the replaced champion keeps the alias `previous_champion`, which
`--rollback` restores.

Exit codes: 0 promoted (or rolled back), 7 not promoted (kept, dry run that would not
promote, promotion disabled, nothing newer than the champion), others: errors.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field
from typing import Annotated, Any

import typer
from pyspark import StorageLevel
from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from batchml.jobs.app import JsonOption, emit, reports_errors, run_context
from batchml.lib.delta import delta_tables
from batchml.lib.evaluation.bins import EvalSpec, higher_is_better, interval
from batchml.lib.evaluation.model import evaluation_spec, figures_of, recorded_evaluation
from batchml.lib.evaluation.multiclass import multiclass_point
from batchml.lib.evaluation.paired import paired_difference
from batchml.lib.platform.errors import ConfigError, InputError
from batchml.lib.platform.logs import get_logger
from batchml.lib.platform.settings import Settings
from batchml.lib.scoring.model import (
    PREDICTION,
    PROBABILITIES,
    SCORE,
    model_threshold,
    row_key,
    scored,
    target_of,
)
from batchml.lib.tracking.registry import CHAMPION, ModelVersion, alias_holder, registry_of
from batchml.lib.tracking.registry import PREVIOUS_CHAMPION as PREVIOUS_CHAMPION

log = get_logger(__name__)
EXIT_NOT_PROMOTED = 7
MODES = ("enabled", "dry-run", "disabled")


@dataclass
class PromoteReport:
    """One promotion decision."""

    model: str
    action: str  # promoted | kept | rollback | would-promote | would-keep | disabled | noop
    promoted: bool
    reason: str
    challenger: int | None = None
    champion_before: int | None = None
    champion_after: int | None = None
    mode: str = "enabled"
    metric: str | None = None
    challenger_value: float | None = None
    champion_value: float | None = None
    improvement: float | None = None
    interval: list[float] | None = None
    table: str | None = None
    table_version: int | None = None
    split: str | None = None
    seconds: float = 0.0
    metrics: dict[str, Any] = field(default_factory=dict)
    would_promote: bool = False  # a dry run's verdict

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def main_metric(model: ModelVersion, kind: str) -> str:
    configured = evaluation_spec(model).metric
    if configured:
        return configured
    return {"binary": "areaUnderROC", "multiclass": "macro_f1"}.get(kind, "rmse")


def promote(
    spark: SparkSession,
    settings: Settings,
    name: str,
    *,
    challenger: int | None = None,
    mode: str | None = None,
    rollback: bool = False,
    table: str | None = None,
    split: str = "test",
) -> PromoteReport:
    started = time.perf_counter()
    if "@" in name:
        raise ConfigError(f"promote takes a model name, not {name!r}; use --challenger VERSION")
    tables = delta_tables(spark, settings)
    registry = registry_of(settings, tables)
    versions = registry.list(name)
    if not versions:
        raise InputError(f"no model {name!r} in the registry at {registry.root}")
    champion = alias_holder(versions, CHAMPION)
    if rollback:
        return _rollback(registry, name, versions, champion, started)
    candidate = registry.get(f"{name}@{challenger}" if challenger is not None else name)
    chosen = mode or evaluation_spec(candidate).promotion
    if chosen not in MODES:
        raise ConfigError(f"--mode {chosen!r}: one of {', '.join(MODES)}")
    report = PromoteReport(name, "noop", False, "", candidate.version, mode=chosen)
    report.champion_before = report.champion_after = champion.version if champion else None
    if chosen == "disabled":
        report.action, report.reason = "disabled", f"promotion of {name} is disabled"
        return _done(report, started)
    if champion is not None and champion.version == candidate.version:
        report.reason = (
            f"version {candidate.version} is already the champion; no newer challenger to promote"
        )
        return _done(report, started)
    # a first version on its own test split: the figures training recorded with its test
    # report (the same rows and model), not a second scoring of them
    # (evaluate's figures: conf's `thresholds` are bin edges there too, so its AUCs may
    # differ from promote's own binning by at most their recorded error bound)
    first = champion is None and table is None and split == "test"
    recorded = recorded_evaluation(candidate) if first else None
    if recorded is not None:
        target = None
        report.table, report.table_version, report.split = (
            recorded.table,
            recorded.table_version,
            recorded.split,
        )
    else:
        target = target_of(tables, settings, candidate, table, split)
        report.table, report.table_version = target.uri, target.version
        report.split = target.split
    conf = evaluation_spec(candidate)
    seed = int(candidate.manifest.get("seed", 42))
    label = candidate.manifest["feature_spec"]["label"]
    if champion is None:
        if recorded is not None:
            figures, kind = recorded.metrics, recorded.task
        else:
            assert target is not None
            frame, kind, classes, _, _ = scored(registry, tables, candidate, target, [])
            spec = EvalSpec(
                (model_threshold(candidate),),
                replicates=conf.bootstrap,
                seed=seed,
                key=row_key(candidate, frame),
            )
            figures = figures_of(frame, kind, classes, label, spec, target.rows_hint)
        metric = main_metric(candidate, kind)
        report.metric, report.challenger_value = metric, _value(figures, metric)
        report.metrics = {"challenger": _headline(figures)}
        report.reason = f"no champion yet: version {candidate.version} becomes the first"
        return _decide(registry, report, True, started, None)
    if champion.manifest.get("task") != candidate.manifest.get("task"):
        raise InputError(
            f"{name}: the champion (version {champion.version}) is a "
            f"{champion.manifest.get('task')} model and version {candidate.version} a "
            f"{candidate.manifest.get('task')} one; they cannot be compared"
        )
    assert target is not None  # recorded figures serve a first version only
    joint, kind, classes = _joint(registry, tables, champion, candidate, target, label)
    key = row_key(candidate, joint)
    metric = main_metric(candidate, kind)
    joint = joint.persist(StorageLevel.MEMORY_AND_DISK)
    try:
        sets = {}
        for role, model, prefix in (("champion", champion, "a"), ("challenger", candidate, "b")):
            frame = joint.select(
                F.col(f"`{label}`"),
                *([F.col(f"`{key}`")] if key else []),
                *[F.col(f"__{prefix}{c}").alias(c) for c in _outputs(joint, prefix)],
            )
            spec = EvalSpec(
                (model_threshold(model),), replicates=conf.bootstrap, seed=seed, key=key
            )
            sets[role] = figures_of(frame, kind, classes, label, spec, target.rows_hint)
        for role in sets:
            if _value(sets[role], metric) is None:
                known = [k for k, v in sets[role].items() if isinstance(v, float)]
                raise ConfigError(
                    f"models.{name}.evaluation.metric = {metric!r} is not a {kind} metric "
                    f"(known: {', '.join(known)})"
                )
        old, new = _value(sets["champion"], metric), _value(sets["challenger"], metric)
        report.metric, report.champion_value, report.challenger_value = metric, old, new
        sign = 1.0 if higher_is_better(metric) else -1.0
        assert old is not None and new is not None  # each set has the metric (checked above)
        report.improvement = sign * (new - old)
        if conf.require_significant or conf.bootstrap:
            report.interval = _paired(
                joint, label, kind, metric, (old, new), conf, seed, target, key
            )
    finally:
        joint.unpersist()
    report.metrics = {k: _headline(v) for k, v in sets.items()}
    better = report.improvement > 0 and report.improvement >= conf.min_improvement
    direction = "higher" if sign > 0 else "lower"
    summary = (
        f"{metric} {new:.6f} vs champion {old:.6f} ({direction} is better; "
        f"improvement {report.improvement:+.6f}, needed >= {conf.min_improvement:g}"
    )
    if report.interval:
        summary += f", 95% paired interval [{report.interval[0]:+.6f}, {report.interval[1]:+.6f}]"
    summary += ")"
    if not better:
        return _decide(registry, report, False, started, f"not better: {summary}")
    if conf.require_significant and not (report.interval and report.interval[0] > 0):
        return _decide(registry, report, False, started, f"not significant: {summary}")
    return _decide(registry, report, True, started, f"better: {summary}")


def _decide(
    registry, report: PromoteReport, promote_it: bool, started: float, reason
) -> PromoteReport:
    if reason:
        report.reason = reason
    if report.mode == "dry-run":
        report.action = "would-promote" if promote_it else "would-keep"
        report.promoted = False
        report.reason = f"dry run, nothing changed: {report.reason}"
        return _done(report, started, would=promote_it)
    report.action, report.promoted = ("promoted", True) if promote_it else ("kept", False)
    if promote_it:
        if report.champion_before is not None:
            registry.set_alias(report.model, report.champion_before, PREVIOUS_CHAMPION)
        registry.set_alias(report.model, report.challenger, CHAMPION)
        report.champion_after = report.challenger
    registry.record_decision(
        {
            "name": report.model,
            "action": report.action,
            "champion_before": report.champion_before,
            "champion_after": report.champion_after,
            "challenger": report.challenger,
            "table": report.table,
            "table_version": report.table_version,
            "split": report.split,
            "metric": report.metric,
            "reason": report.reason,
            "details": {
                "metrics": report.metrics,
                "improvement": report.improvement,
                "interval": report.interval,
                "challenger_value": report.challenger_value,
                "champion_value": report.champion_value,
            },
        }
    )
    return _done(report, started)


def _rollback(registry, name, versions, champion, started) -> PromoteReport:
    previous = alias_holder(versions, PREVIOUS_CHAMPION)
    if previous is None:
        raise InputError(f"{name} has no {PREVIOUS_CHAMPION} to roll back to")
    report = PromoteReport(name, "rollback", True, "", previous.version, mode="enabled")
    report.champion_before = champion.version if champion else None
    if champion is not None:
        registry.set_alias(name, champion.version, PREVIOUS_CHAMPION)
    registry.set_alias(name, previous.version, CHAMPION)
    report.champion_after = previous.version
    report.reason = (
        f"rolled back: champion {report.champion_before} -> {previous.version} "
        f"({PREVIOUS_CHAMPION} is now {report.champion_before})"
    )
    registry.record_decision(
        {
            "name": name,
            "action": "rollback",
            "champion_before": report.champion_before,
            "champion_after": report.champion_after,
            "challenger": previous.version,
            "reason": report.reason,
        }
    )
    return _done(report, started)


def _done(report: PromoteReport, started: float, would: bool = False) -> PromoteReport:
    report.seconds = round(time.perf_counter() - started, 3)
    log.info("promote", extra={"model": report.model, "action": report.action})
    report.would_promote = would
    return report


def _outputs(joint, prefix: str) -> list[str]:
    return [c for c in (SCORE, PREDICTION, PROBABILITIES) if f"__{prefix}{c}" in joint.columns]


def _joint(registry, tables, champion, candidate, target, label):
    """Both versions' scores side by side on the same rows: (frame, kind, classes)."""
    base = target.frame.columns
    first, kind, classes, _, _ = scored(registry, tables, champion, target, base)
    first = first.select(
        *[F.col(f"`{c}`") for c in base],
        *[
            F.col(c).alias(f"__a{c}")
            for c in (SCORE, PREDICTION, PROBABILITIES)
            if c in first.columns
        ],
    )
    kept = [*base, *[c for c in first.columns if c.startswith("__a")]]
    second_target = type(target)(first, target.uri, target.version, target.split, target.rows_hint)
    second, kind_b, _, _, _ = scored(registry, tables, candidate, second_target, kept)
    if kind_b != kind:
        raise InputError(f"{champion.name}: the champion is {kind} and the challenger {kind_b}")
    key = (candidate.manifest.get("feature_spec") or {}).get("key")
    ids = [F.col(f"`{key}`")] if key and key in second.columns and key != label else []
    columns = [
        F.col(f"`{label}`"),
        *ids,
        *[F.col(c) for c in second.columns if c.startswith("__a")],
    ]
    columns += [
        F.col(c).alias(f"__b{c}") for c in (SCORE, PREDICTION, PROBABILITIES) if c in second.columns
    ]
    return second.select(*columns), kind, classes


def _paired(joint, label, kind, metric, point, conf, seed, target, key) -> list[float] | None:
    if kind == "multiclass":
        return _paired_multiclass(joint, label, metric, point, conf.bootstrap or 200, seed)
    score = SCORE if kind == "binary" else PREDICTION
    result = paired_difference(
        joint,
        label,
        (f"__a{score}", f"__b{score}"),
        kind,
        metric,
        point,
        replicates=conf.bootstrap or 200,
        seed=seed,
        rows_hint=target.rows_hint,
        key=key,
    )
    return result["interval"]


def _paired_multiclass(joint, label, metric, point, replicates, seed) -> list[float] | None:
    import numpy as np

    cells = (
        joint.groupBy(
            F.col(f"`{label}`").cast("int").alias("y"),
            F.col(f"__a{PREDICTION}").cast("int").alias("a"),
            F.col(f"__b{PREDICTION}").cast("int").alias("b"),
        )
        .count()
        .collect()
    )
    y = np.asarray([c["y"] for c in cells])
    a = np.asarray([c["a"] for c in cells])
    b = np.asarray([c["b"] for c in cells])
    n = np.asarray([c["count"] for c in cells], dtype=float)
    size = int(max(y.max(), a.max(), b.max())) + 1
    rng = np.random.default_rng(seed)
    draws = rng.poisson(np.broadcast_to(n, (replicates, n.size)))
    differences = []
    for w in draws:
        values = []
        for pred in (a, b):
            matrix = np.zeros((size, size))
            np.add.at(matrix, (y, pred), w)
            values.append(multiclass_point(matrix).get(metric, math.nan))
        differences.append(values[1] - values[0])
    return interval(np.asarray(differences, dtype=float))


def _value(figures: dict[str, Any], metric: str) -> float | None:
    value = figures.get(metric)
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def _headline(figures: dict[str, Any]) -> dict[str, Any]:
    keep = {
        k: v for k, v in figures.items() if isinstance(v, (int, float)) and not isinstance(v, bool)
    }
    keep["intervals"] = (figures.get("bootstrap") or {}).get("intervals", {})
    return keep


def render(data: dict[str, Any]) -> str:
    head = {
        "promoted": f"promoted {data['model']}@{data['challenger']} to champion",
        "rollback": f"rolled {data['model']} back to version {data['champion_after']}",
        "kept": f"kept {data['model']}@{data['champion_before']} as champion",
        "would-promote": f"dry run: would promote {data['model']}@{data['challenger']}",
        "would-keep": f"dry run: would keep {data['model']}@{data['champion_before']}",
        "disabled": f"promotion disabled for {data['model']}",
        "noop": f"nothing to promote for {data['model']}",
    }[data["action"]]
    where = ""
    if data.get("table"):
        where = f" (on {data['table']}@{data['table_version']}, {data['split']} split)"
    return f"{head}{where}: {data['reason']}"


@reports_errors
def command(
    ctx: typer.Context,
    model: Annotated[str, typer.Argument(metavar="MODEL", help="A registered model's name.")],
    *,
    challenger: Annotated[
        int | None,
        typer.Option("--challenger", min=1, metavar="VERSION", help="Default: the latest version."),
    ] = None,
    mode: Annotated[
        str | None,
        typer.Option(
            "--mode",
            metavar="enabled|dry-run|disabled",
            help="Default: the model's evaluation.promotion in conf.",
        ),
    ] = None,
    rollback: Annotated[
        bool, typer.Option("--rollback", help="Make the previous champion champion again.")
    ] = False,
    table: Annotated[
        str | None,
        typer.Option(
            "--table",
            metavar="TABLE[@VERSION]",
            help="Compare on this table (default: the challenger's training table and version).",
        ),
    ] = None,
    split: Annotated[str, typer.Option("--split", help="test, validation, train or all.")] = "test",
    as_json: JsonOption = False,
) -> None:
    """Promote a challenger to champion only when it beats the champion (exit 7: kept)."""
    state = run_context(ctx)
    report = promote(
        state.spark(),
        state.config().settings,
        model,
        challenger=challenger,
        mode=mode,
        rollback=rollback,
        table=table,
        split=split,
    )
    emit(report.to_dict(), as_json, render)
    if not (report.promoted or report.would_promote):
        raise typer.Exit(EXIT_NOT_PROMOTED)
