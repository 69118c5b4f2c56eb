"""End to end on Delta's Spark connector: the demo's landing, ingest and feature view with
`delta.backend = "connector"`, its tables then read by the embedded backend and by
delta-rs, and a rerun that writes nothing. (Training and the registry on the connector:
tests/test_train.py, whose settings leave `delta.backend = "auto"`, the connector in the
test session; the demo's models on the embedded backend: tests/test_demo.py.)"""

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
    first = runner.invoke(app, [*base, "demo", "--months", "1", "--no-train", "--json"])
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
    assert report["models"] == []  # --no-train
    # what the connector wrote, read by the embedded backend and by delta-rs
    embedded = EmbeddedDelta(spark)
    for name, rows in (("flights", 27004), ("weather", 26114), ("flight_features", 27004)):
        uri = str(lake / name)
        read = embedded.read(uri)
        assert (read.version, read.df.count()) == (DeltaTable(uri).version(), rows), name
        assert len(oracle_rows(uri)) == rows, name
    quarantine = oracle_rows(str(lake / "weather_quarantine"))
    assert [row["failed_rules"] for row in quarantine] == [["max:wind_speed"]]
    # exactly once on the connector too: a rerun lands and writes nothing
    second = runner.invoke(app, [*base, "demo", "--months", "1", "--no-train", "--json"])
    assert second.exit_code == 0, second.stderr
    again = json.loads(second.stdout)
    assert {e["status"] for e in again["ingests"]} == {"skipped"}
    assert DeltaTable(str(lake / "flights")).version() == 0
