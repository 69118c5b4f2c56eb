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
    # January is history; February and March arrive later, through `batchml pipeline`
    flights, weather = report["tables"]["flights"], report["tables"]["weather"]
    assert (flights["version"], flights["rows_written"], flights["rows_quarantined"]) == (
        0,
        27004,
        0,
    )
    # one hourly reading has a 1,048 mph wind: the contract quarantines it
    assert (weather["rows_written"], weather["rows_quarantined"]) == (26114, 1)
    # January 2013 has 27,004 flights, February 24,951 and March 28,834; all kept, one
    # version per month
    assert DeltaTable(str(lake / "flights")).version() == 2
    months = DeltaTable(str(lake / "flights")).to_pyarrow_table(columns=["month"])
    assert months.num_rows == 27004 + 24951 + 28834
    assert {e["source"] for e in report["ingests"]} == {"weather", "flights"}
    assert (lake / "raw" / "flights" / "flights_2013_03.csv").exists()
    # the feature view joins each flight with its weather hour and labels it: January in
    # one full build, then February and March appended as they arrive
    assert (report["features"]["version"], report["features"]["rows"]) == (0, 27004)
    assert DeltaTable(str(lake / "flight_features")).version() == 2
    labels = (
        DeltaTable(str(lake / "flight_features"))
        .to_pyarrow_table(columns=["is_cancelled", "is_delayed", "temp"])
        .to_pylist()
    )
    assert len(labels) == 27004 + 24951 + 28834
    cancelled = [r for r in labels if r["is_cancelled"]]
    assert cancelled and all(r["is_delayed"] == 1 for r in cancelled)
    assert {r["is_delayed"] for r in labels} == {0, 1}
    assert sum(r["temp"] is not None for r in labels) > 0.99 * len(labels)
    # both demo models trained on January; boosted trees beat the linear model
    models = {m["model"]: m for m in report["models"]}
    assert {m: (models[m]["status"], models[m]["version"]) for m in models} == {
        "flight_delay_lr": ("trained", 1),
        "flight_delay_xgb": ("trained", 1),
    }
    lr_auc = models["flight_delay_lr"]["metrics"]["test"]["areaUnderROC"]
    xgb_auc = models["flight_delay_xgb"]["metrics"]["test"]["areaUnderROC"]
    assert lr_auc > 0.7 and xgb_auc > lr_auc + 0.02, (lr_auc, xgb_auc)
    # each model's first version became its champion; both champions were evaluated on
    # the same test split and the better (boosted trees) runs the later months
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
    # each later month: ingested, monitored against the champion, scored; February's
    # performance judged once its labels came (at March's run), March's at the end
    played = report["months"]
    assert [(m["month"], m["rows"], m["scored"]) for m in played] == [
        (2, 24951, 24951),
        (3, 28834, 28834),
    ]
    assert all(m["status"] in ("ok", "warn", "drift") and m["top_psi"] for m in played)
    assert all(0.6 < m["auc"] < 0.9 for m in played), played
    # February's drift cannot be learnt from yet (its labels are not known when it is
    # scored): no retrain on January again
    assert played[0]["retrained"] is False and played[0]["champion"] == 1
    champion = played[-1]["champion"]
    predicted = oracle_rows(str(lake / "flight_delay_predictions"))
    assert {(r["model_name"], r["model_version"]) for r in predicted} == {
        ("flight_delay_xgb", champion)
    }
    # a new champion's first predictions replace the model's slice (March alone)
    expected = 24951 + 28834 if champion == 1 else 28834
    assert len(predicted) == expected == len({r["flight_key"] for r in predicted})
    assert {r["flight_date"].month for r in predicted} <= {2, 3}
    assert all(0 <= r["probability"] <= 1 for r in predicted)
    assert len(report["predicted_rows"]) == 3
    assert Path(report["report"]).exists() and report["where"]["over-time report"]
    monitored = [r for r in oracle_rows(str(lake / "_monitoring")) if r["feature"] == "__run__"]
    assert sorted(r["input_version"] for r in monitored) == [1, 2]
    before = {
        name: DeltaTable(str(lake / name)).version()
        for name in ("_monitoring", "flight_delay_predictions", "_registry/decisions")
    }

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
    assert [m["status"] for m in again["models"]] == ["skipped"] * 2  # nothing trained
    assert [e["promotion"] for e in again["evaluations"]] == ["noop", "noop"]
    assert again["months"] == played
    after = {name: DeltaTable(str(lake / name)).version() for name in before}
    assert after == before  # nothing monitored, scored or decided twice

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
