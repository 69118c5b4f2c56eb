"""`batchml monitor`: drift against the stored training profile, appended to the
monitoring table, with a scheduler's exit code."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
from oracles import oracle_rows
from pyspark.sql import SparkSession
from pyspark.sql import functions as F
from test_predict import CONF, settings_for
from typer.testing import CliRunner

from batchml.jobs import monitor
from batchml.jobs.cli import app
from batchml.jobs.train import job as train_job
from batchml.lib.delta.embedded import EmbeddedDelta
from batchml.lib.errors import InputError
from batchml.lib.registry import registry_of
from batchml.lib.synthetic import agrawal


@pytest.fixture(scope="module")
def lake(spark: SparkSession, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """`people` (3,000 rows) and `people_lr` version 1 trained on it."""
    root = tmp_path_factory.mktemp("monitor")
    lake = root / "lake"
    EmbeddedDelta(spark).write(agrawal(spark, 3000, function=7, seed=9), str(lake / "people"))
    train_job.run(spark, settings_for(lake, root), "people_lr")
    return lake


def invoke(cli_globals, lake: Path, tmp_path: Path, *args: str):
    conf = tmp_path / "monitor.toml"
    conf.write_text(CONF.format(extra=""))
    base = [*cli_globals, "--conf", str(conf), "--set", f'lakehouse.root="{lake}"']
    return CliRunner().invoke(app, [*base, "monitor", *args])


def test_the_training_data_is_ok_and_every_figure_is_appended(
    cli_globals, lake: Path, tmp_path: Path
) -> None:
    done = invoke(cli_globals, lake, tmp_path, "people_lr@1", "--json")
    assert done.exit_code == 0, done.stderr
    report = json.loads(done.stdout)
    assert (report["status"], report["rows"], report["profile_source"]) == ("ok", 3000, "stored")
    assert set(report["features"]) == {"salary", "commission", "loan", "age", "elevel"}
    assert report["features"]["salary"]["psi"] < 0.01
    rows = [r for r in oracle_rows(str(lake / "_monitoring")) if r["run_id"] == report["run_id"]]
    salary_psi = [r for r in rows if (r["feature"], r["metric"]) == ("salary", "psi")]
    assert [r["value"] for r in salary_psi] == [report["features"]["salary"]["psi"]]
    assert {r["input_version"] for r in rows} == {0}
    assert {r["model_version"] for r in rows} == {1}
    run_rows = [r for r in rows if r["feature"] == "__run__"]
    assert [(r["value"], r["status"]) for r in run_rows] == [(3000.0, "ok")]


def test_a_drifted_input_exits_8_and_names_unseen_levels(
    spark: SparkSession, cli_globals, lake: Path, tmp_path: Path
) -> None:
    drifted = str(tmp_path / "drifted")
    EmbeddedDelta(spark).write(
        agrawal(spark, 1000, function=7, seed=4)
        .withColumn("salary", F.col("salary") * 3)
        .withColumn("elevel", F.when(F.col("id") % 2 == 0, 9).otherwise(F.col("elevel"))),
        drifted,
    )
    done = invoke(cli_globals, lake, tmp_path, "people_lr", "--input", drifted)
    assert done.exit_code == 8, done.stderr
    assert "DRIFT" in done.stdout.splitlines()[0]
    salary = next(line for line in done.stdout.splitlines() if line.strip().startswith("salary"))
    assert salary.rstrip().endswith("drift")
    elevel = next(line for line in done.stdout.splitlines() if line.strip().startswith("elevel"))
    assert "unseen 500: 9" in elevel


def test_a_missing_feature_is_named_and_nothing_is_appended(
    spark: SparkSession, cli_globals, lake: Path, tmp_path: Path
) -> None:
    partial = str(tmp_path / "partial")
    EmbeddedDelta(spark).write(agrawal(spark, 50, function=7).drop("age", "loan"), partial)
    before = EmbeddedDelta(spark).version(str(lake / "_monitoring"))
    done = invoke(cli_globals, lake, tmp_path, "people_lr", "--input", partial)
    assert done.exit_code == 4
    assert done.stderr.count("\n") == 1 and "lacks feature column(s) loan, age" in done.stderr
    assert EmbeddedDelta(spark).version(str(lake / "_monitoring")) == before


def test_a_model_without_a_profile_is_profiled_by_time_travel(
    spark: SparkSession, lake: Path, tmp_path: Path
) -> None:
    settings = settings_for(lake, tmp_path)
    model = registry_of(settings, None).get("people_lr@1")
    bare = dataclasses.replace(
        model, manifest={k: v for k, v in model.manifest.items() if k != "training_profile"}
    )
    tables = EmbeddedDelta(spark)
    profile, source = monitor.training_profile(spark, tables, bare)
    assert source == "time travel"
    stored = model.manifest["training_profile"]
    assert profile["categorical"] == stored["categorical"]  # exact counts: the same rows
    again, before = profile["numeric"]["salary"], stored["numeric"]["salary"]
    assert (again["count"], again["mean"]) == (before["count"], pytest.approx(before["mean"]))
    # deciles from a KLL sketch (randomised compaction): equal within its rank error
    spread = before["deciles"][-1] - before["deciles"][0]
    for a, b in zip(again["deciles"], before["deciles"], strict=True):
        assert abs(a - b) < 0.03 * spread

    gone = dataclasses.replace(bare, training_table=str(tmp_path / "vacuumed"))
    with pytest.raises(InputError, match="registry-aware vacuum"):
        monitor.training_profile(spark, tables, gone)


def test_a_monitoring_table_with_another_schema_is_named(
    spark: SparkSession, cli_globals, tmp_path: Path
) -> None:
    lake = tmp_path / "lake"
    EmbeddedDelta(spark).write(agrawal(spark, 400, function=7, seed=9), str(lake / "people"))
    train_job.run(spark, settings_for(lake, tmp_path), "people_lr")
    EmbeddedDelta(spark).write(
        spark.createDataFrame([(1, "x")], "a int, b string"), str(lake / "_monitoring")
    )
    done = invoke(cli_globals, lake, tmp_path, "people_lr")
    assert done.exit_code == 4, done.stderr
    assert done.stderr.count("\n") == 1 and "_monitoring" in done.stderr
    assert EmbeddedDelta(spark).version(str(lake / "_monitoring")) == 0
