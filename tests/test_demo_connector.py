"""End to end on Delta's Spark connector: the demo (ingest -> features -> train ->
registry) with `delta.backend = "connector"`, its tables then read by the embedded
backend and by delta-rs, and a rerun that writes nothing."""

from __future__ import annotations

import json
from pathlib import Path

from deltalake import DeltaTable
from oracles import oracle_rows
from typer.testing import CliRunner

from batchml.jobs.cli import app
from batchml.lib.delta.embedded import EmbeddedDelta


def test_the_demo_on_the_connector_backend(spark, cli_globals, tmp_path: Path) -> None:
    lake = tmp_path / "lake"
    base = [*cli_globals, "--set", f'lakehouse.root="{lake}"', "--set", 'delta.backend="connector"']
    runner = CliRunner()
    first = runner.invoke(app, [*base, "demo", "--months", "1", "--json"])
    assert first.exit_code == 0, first.stderr
    report = json.loads(first.stdout)
    flights = report["tables"]["flights"]
    assert (flights["version"], flights["rows_written"], flights["rows_quarantined"]) == (
        0,
        27004,
        0,
    )
    assert report["tables"]["weather"]["rows_quarantined"] == 1
    assert (report["features"]["status"], report["features"]["rows"]) == ("written", 27004)
    assert {m["model"]: m["status"] for m in report["models"]} == {
        "flight_delay_lr": "trained",
        "flight_delay_xgb": "trained",
    }
    # what the connector wrote, read by the embedded backend and by delta-rs
    embedded = EmbeddedDelta(spark)
    for name, rows in (("flights", 27004), ("weather", 26114), ("flight_features", 27004)):
        uri = str(lake / name)
        read = embedded.read(uri)
        assert (read.version, read.df.count()) == (DeltaTable(uri).version(), rows), name
        assert len(oracle_rows(uri)) == rows, name
    quarantine = oracle_rows(str(lake / "weather_quarantine"))
    assert [row["failed_rules"] for row in quarantine] == [["max:wind_speed"]]
    # the registry the connector wrote, listed without Spark
    listed = runner.invoke(app, [*base, "models", "list", "--json"])
    assert listed.exit_code == 0, listed.stderr
    trained_on = {
        (v["name"], Path(v["training_table"]).name, v["training_version"])
        for v in json.loads(listed.stdout)["versions"]
    }
    assert trained_on == {
        ("flight_delay_lr", "flight_features", 0),
        ("flight_delay_xgb", "flight_features", 0),
    }
    # exactly once on the connector too: a rerun lands and writes nothing
    second = runner.invoke(app, [*base, "demo", "--months", "1", "--json"])
    assert second.exit_code == 0, second.stderr
    again = json.loads(second.stdout)
    assert {e["status"] for e in again["ingests"]} == {"skipped"}
    assert {m["status"] for m in again["models"]} == {"skipped"}
    assert DeltaTable(str(lake / "flights")).version() == 0
