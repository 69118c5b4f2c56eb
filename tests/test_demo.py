"""End to end: `batchml demo` on the built-in sample data, run twice."""

from __future__ import annotations

import json
from pathlib import Path

from deltalake import DeltaTable
from oracles import oracle_rows
from typer.testing import CliRunner

from batchml.jobs.cli import app


def test_demo_lands_and_ingests_then_reruns_as_a_noop(spark, cli_globals, tmp_path: Path) -> None:
    lake = tmp_path / "lake"
    args = [*cli_globals, "--set", f'lakehouse.root="{lake}"', "demo", "--months", "1-3", "--json"]
    runner = CliRunner()
    first = runner.invoke(app, args)
    assert first.exit_code == 0, first.stderr
    report = json.loads(first.stdout)
    assert (report["landed_files"], report["landed_new"]) == (4, 4)
    flights, weather = report["tables"]["flights"], report["tables"]["weather"]
    # January 2013 has 27,004 flights, February 24,951 and March 28,834; all kept
    assert (flights["version"], flights["rows_written"], flights["rows_quarantined"]) == (
        2,
        27004 + 24951 + 28834,
        0,
    )
    # one hourly reading has a 1,048 mph wind: the contract quarantines it
    assert (weather["rows_written"], weather["rows_quarantined"]) == (26114, 1)
    assert DeltaTable(str(lake / "flights")).version() == 2
    assert {e["source"] for e in report["ingests"]} == {"weather", "flights"}
    flight_versions = [e["table_version"] for e in report["ingests"] if e["source"] == "flights"]
    assert flight_versions == [0, 1, 2]
    assert (lake / "raw" / "flights" / "flights_2013_03.csv").exists()
    # the feature view joins each flight with its weather hour and labels it: January in
    # one full build, then February and March appended as they arrive
    features = report["tables"]["flight_features"]
    assert (features["version"], features["rows_written"]) == (2, 27004 + 24951 + 28834)
    assert (report["features"]["mode"], report["features"]["rows"]) == ("incremental", 28834)
    assert report["features"]["sources"]["flights"]["version"] == 2
    labels = (
        DeltaTable(str(lake / "flight_features"))
        .to_pyarrow_table(columns=["is_cancelled", "is_delayed", "temp"])
        .to_pylist()
    )
    cancelled = [r for r in labels if r["is_cancelled"]]
    assert cancelled and all(r["is_delayed"] == 1 for r in cancelled)
    assert {r["is_delayed"] for r in labels} == {0, 1}
    assert sum(r["temp"] is not None for r in labels) > 0.99 * len(labels)
    # both demo models trained on the feature table; boosted trees beat the linear model
    models = {m["model"]: m for m in report["models"]}
    assert {m: models[m]["status"] for m in models} == {
        "flight_delay_lr": "trained",
        "flight_delay_xgb": "trained",
    }
    lr_auc = models["flight_delay_lr"]["metrics"]["test"]["areaUnderROC"]
    xgb_auc = models["flight_delay_xgb"]["metrics"]["test"]["areaUnderROC"]
    assert lr_auc > 0.7 and xgb_auc > lr_auc + 0.02, (lr_auc, xgb_auc)
    # trained on January (feature table version 0); February and March scored as they came
    assert {m["model"]: m["version"] for m in report["models"]} == {
        "flight_delay_lr": 1,
        "flight_delay_xgb": 1,
    }
    assert [
        (p["month_file"], p["mode"], p["rows_scored"], p["output_version"])
        for p in report["predictions"]
    ] == [
        ("flights_2013_02.csv", "incremental", 24951, 0),
        ("flights_2013_03.csv", "incremental", 28834, 1),
    ]
    predicted = oracle_rows(str(lake / "flight_delay_predictions"))
    assert len(predicted) == 24951 + 28834
    assert len({r["flight_key"] for r in predicted}) == len(predicted)
    assert {r["flight_date"].month for r in predicted} == {2, 3}
    # each model's first version became its champion; both champions were evaluated on
    # the same test split and the better (boosted trees) scored the new months
    evaluations = {e["model"]: e for e in report["evaluations"]}
    assert {m: (e["version"], e["promotion"]) for m, e in evaluations.items()} == {
        "flight_delay_lr": (1, "promoted"),
        "flight_delay_xgb": (1, "promoted"),
    }
    for e in evaluations.values():
        low, high = e["interval"]
        assert low < e["areaUnderROC"] < high and Path(e["report"]).exists()
    assert evaluations["flight_delay_lr"]["rows"] == evaluations["flight_delay_xgb"]["rows"]
    assert report["scoring_model"] == "flight_delay_xgb"
    assert {(r["model_name"], r["model_version"]) for r in predicted} == {("flight_delay_xgb", 1)}
    assert all(0 <= r["probability"] <= 1 for r in predicted)
    assert len(report["predicted_rows"]) == 3

    fitted = runner.invoke(
        app,
        [
            *cli_globals,
            "--set",
            f'lakehouse.root="{lake}"',
            "features",
            "--fit",
            "flight_delay",
            "--json",
        ],
    )
    assert fitted.exit_code == 0, fitted.stderr
    described = json.loads(fitted.stdout)
    assert described["rows"] == 27004 + 24951 + 28834 and described["spark_jobs"] <= 4
    assert "carrier__onehot_UA" in described["slot_names"]
    assert described["stages"][-1] == "VectorAssembler"

    second = runner.invoke(app, args)
    assert second.exit_code == 0, second.stderr
    again = json.loads(second.stdout)
    assert again["landed_new"] == 0
    assert {e["status"] for e in again["ingests"]} == {"skipped"}
    assert DeltaTable(str(lake / "flights")).version() == 2
    assert DeltaTable(str(lake / "weather_quarantine")).version() == 0
    assert again["features"]["status"] == "skipped"
    assert DeltaTable(str(lake / "flight_features")).version() == 2
    assert [(m["status"], m["version"]) for m in again["models"]] == [("skipped", 1)] * 2
    assert [(p["mode"], p["rows_scored"]) for p in again["predictions"]] == [("skipped", 0)] * 2
    assert [e["promotion"] for e in again["evaluations"]] == ["noop", "noop"]
    registry_versions = DeltaTable(str(lake / "_registry" / "decisions")).version()
    assert registry_versions == 1  # two decisions of the first run; the rerun added none
    assert DeltaTable(str(lake / "flight_delay_predictions")).version() == 1

    # the scheduled command after the demo: every landed file is already in the table
    scheduled = runner.invoke(
        app, [*cli_globals, "--set", f'lakehouse.root="{lake}"', "ingest", "flights"]
    )
    assert scheduled.exit_code == 0, scheduled.stderr
    assert "no new files for source flights: 3 files already ingested; nothing written" in (
        scheduled.stdout
    )
    assert DeltaTable(str(lake / "flights")).version() == 2
    assert DeltaTable(str(lake / "flights")).to_pyarrow_table(columns=["month"]).num_rows == (
        27004 + 24951 + 28834
    )
