"""`batchml pipeline`: one scheduled run from raw files to predictions, rerun-safe."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

import people
import pytest
from oracles import oracle_rows
from pyspark.sql import SparkSession
from pyspark.sql import functions as F
from typer.testing import CliRunner

from batchml.jobs import pipeline
from batchml.jobs.cli import app
from batchml.lib.data.synthetic import agrawal
from batchml.lib.monitoring.table import MONITORING_SCHEMA, monitoring_uri
from batchml.lib.platform.config import load_config
from batchml.lib.platform.errors import ConfigError
from batchml.lib.platform.settings import ScheduleSpec
from batchml.lib.tracking import runs
from batchml.lib.tracking.registry import registry_of

CONF = (
    """
[tables.people]
unique_key = ["id"]
policy = "quarantine"

[tables.people.columns]
id = { type = "int", nullable = false }
salary = { type = "double" }
commission = { type = "double" }
loan = { type = "double" }
age = { type = "int" }
elevel = { type = "int" }
label = { type = "int" }

[sources.people]
table = "people"
path = "raw/people/*.csv"
format = "csv"
options = { header = true }

[views.people_features]
table = "people_features"
sources = { people = "latest" }
incremental = true
sql = "SELECT id, salary, commission, loan, age, elevel, label FROM people"

"""
    + people.pipeline(view="people_features")
    + """
[models.people_lr]
pipeline = "people"
algorithm = "logistic_regression"
params = { maxIter = 20, regParam = 0.01 }

[models.people_lr.evaluation]
bootstrap = 50
report = false

[predictions.people_lr]
model = "people_lr"
input = "people_features"
output = "scores"

[schedules.nightly]
sources = ["people"]
views = ["people_features"]
model = "people_lr"
"""
)
COLUMNS = ["id", "salary", "commission", "loan", "age", "elevel", "label"]


def land(spark: SparkSession, folder: Path, name: str, start: int, stop: int, salary=1.0):
    """Rows [start, stop) of one Agrawal draw as one raw CSV batch (tiny: collected)."""
    rows = (
        agrawal(spark, stop, function=7, seed=9)
        .filter(F.col("id") >= start)
        .withColumn("salary", F.col("salary") * salary)
        .select(*COLUMNS)
        .orderBy("id")
        .collect()
    )
    folder.mkdir(parents=True, exist_ok=True)
    with (folder / name).open("w", newline="") as out:
        writer = csv.writer(out)
        writer.writerow(COLUMNS)
        writer.writerows([[row[c] for c in COLUMNS] for row in rows])


@pytest.fixture
def project(tmp_path: Path) -> dict:
    conf = tmp_path / "pipeline.toml"
    conf.write_text(CONF)
    lake = tmp_path / "lake"
    return {"conf": conf, "lake": lake, "raw": lake / "raw" / "people"}


def invoke(cli_globals, project: dict) -> dict:
    root = f'lakehouse.root="{project["lake"]}"'
    conf = ["--conf", str(project["conf"]), "--set", root]
    args = [*cli_globals, *conf, "pipeline", "nightly", "--json"]
    done = CliRunner().invoke(app, args)
    assert done.exit_code == 0, done.stderr
    return json.loads(done.stdout)


def settings_of(project: dict):
    root = f'lakehouse.root="{project["lake"]}"'
    return load_config(conf_file=project["conf"], overrides=[root]).settings


def steps(report: dict) -> dict[str, tuple[str, str]]:
    return {s["step"]: (s["action"], s["reason"]) for s in report["steps"]}


def test_batches_arrive_drift_retrains_and_a_rerun_writes_nothing(
    spark: SparkSession, cli_globals, project: dict
) -> None:
    lake = project["lake"]
    land(spark, project["raw"], "b1.csv", 0, 1500)
    first = invoke(cli_globals, project)
    did = steps(first)
    assert did["ingest"][0] == did["features"][0] == "ran"
    assert did["monitor"] == ("skipped", "no champion yet")
    assert first["retrain_reasons"] == ["no champion yet"]
    assert did["train"][0] == "ran" and did["promote"][0] == "promoted"
    assert (first["champion_before"], first["champion_after"]) == (None, 1)
    assert did["predict"][0] == "skipped"  # every row is the champion's training data

    again = invoke(cli_globals, project)
    assert [s["action"] for s in again["steps"]] == ["skipped"] * 3 + ["ran"] + ["skipped"] * 3
    assert again["retrain"] is False
    settings = settings_of(project)
    assert [v.version for v in registry_of(settings).list("people_lr")] == [1]

    # a drifted batch: monitored alone, a retrain on the grown table, scored once
    land(spark, project["raw"], "b2.csv", 1500, 2300, salary=3.0)
    second = invoke(cli_globals, project)
    did = steps(second)
    assert (
        did["monitor"][0] == "ran" and "800 rows (rows added after version 0)" in did["monitor"][1]
    )
    assert any(r.startswith("drift in") and "salary" in r for r in second["retrain_reasons"])
    # retrained on the grown table, the challenger scores the drifted rows far better
    # (test AUC 0.94 vs 0.84, the paired interval above 0): promoted
    assert did["train"][0] == "ran" and did["promote"][0] == "promoted", did["promote"]
    scores = oracle_rows(str(lake / "scores"))
    assert sorted(r["id"] for r in scores) == list(range(1500, 2300))
    assert (second["champion_before"], second["champion_after"]) == (1, 2)
    assert {r["model_version"] for r in scores} == {2}
    recorded = runs.get_run(str(lake / "_runs"), second["run_id"])
    summary = json.loads(recorded["summary"])
    assert [s["step"] for s in summary["steps"]] == [s["step"] for s in second["steps"]]
    assert recorded["job"] == "pipeline" and summary["retrain"] is True
    monitored = [r for r in oracle_rows(str(lake / "_monitoring")) if r["feature"] == "__run__"]
    assert [r["run_id"] for r in monitored] == [second["run_id"]]  # the pipeline's run id
    # monitoring ran before the batch was scored: its scores are compared after predict
    assert did["scores"][0] == "ran" and "prediction:probability of 800 rows" in did["scores"][1]
    compared = [
        r
        for r in oracle_rows(str(lake / "_monitoring"))
        if r["kind"] == "prediction" and r["metric"] == "rows"
    ]
    assert [(r["run_id"], r["value"]) for r in compared] == [(second["run_id"], 800.0)]

    # no new rows; the scored batch's labels are in the input: its period is judged
    third = invoke(cli_globals, project)
    judged = steps(third)["performance"]
    assert judged[0] == "ran" and judged[1].startswith("1 newly labelled period")
    fourth = invoke(cli_globals, project)  # nothing new at all: nothing written
    assert all(s["action"] == "skipped" for s in fourth["steps"] if s["step"] != "decide")
    assert "performance" not in steps(fourth)
    assert len(oracle_rows(str(lake / "scores"))) == 800
    people = oracle_rows(str(lake / "people"))
    assert len(people) == 2300 and len({r["id"] for r in people}) == 2300

    # the page over time, from the monitoring and runs tables
    root = f'lakehouse.root="{lake}"'
    args = ["--conf", str(project["conf"]), "--set", root, "report", "monitoring", "people_lr"]
    done = CliRunner().invoke(app, [*args, "--json"])
    assert done.exit_code == 0, done.stderr
    page = json.loads(done.stdout)
    assert (page["monitoring_runs"], page["periods"], page["runs"]) == (1, 1, 5)
    plots = {"drift_heatmap.png", "performance.png", "rows_scored.png", "resources.png"}
    assert set(page["plots"]) == plots and page["events"] >= 3  # registered 1, 2; champion
    text = Path(page["report"]).read_text()
    assert "people_lr over time" in text and text.count("<img") == 4
    assert Path(page["report"]).parent == lake / "_reports" / "monitoring" / "people_lr"
    unknown = CliRunner().invoke(app, [*args[:-1], "nobody"])
    assert unknown.exit_code == 4 and "no model 'nobody'" in unknown.stderr


def test_a_run_killed_mid_train_continues_where_it_stopped(
    spark: SparkSession, cli_globals, project: dict
) -> None:
    lake = project["lake"]
    land(spark, project["raw"], "b1.csv", 0, 1200)
    invoke(cli_globals, project)
    land(spark, project["raw"], "b2.csv", 1200, 2000, salary=3.0)
    conf = ["--conf", str(project["conf"]), "--set", f'lakehouse.root="{lake}"']
    command = [sys.executable, "-m", "batchml.jobs.cli", *cli_globals, *conf, "pipeline", "nightly"]
    # Spark's scratch in the test's folder: the killed JVM cannot delete it
    scratch = {**os.environ, "SPARK_LOCAL_DIRS": str(lake.parent / "spark_local")}
    process = subprocess.Popen(
        command,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
        env=scratch,
    )
    seen = []
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline:
        line = process.stderr.readline()
        seen.append(line)
        assert line or process.poll() is None, "".join(seen)[-3000:]
        if "/7: train people_lr" in line:
            break
    time.sleep(2.0)  # inside the fit
    os.killpg(process.pid, signal.SIGKILL)
    process.wait(timeout=60)
    settings = settings_of(project)
    assert [v.version for v in registry_of(settings).list("people_lr")] == [1]
    assert not (lake / "scores").exists()

    resumed = invoke(cli_globals, project)
    did = steps(resumed)
    assert did["ingest"][0] == did["features"][0] == did["monitor"][0] == "skipped"
    assert "already monitored" in did["monitor"][1] and resumed["retrain"] is True
    assert did["train"][0] == "ran" and did["predict"][0] == "ran"
    assert [v.version for v in registry_of(settings).list("people_lr")] == [1, 2]
    ids = Counter(r["id"] for r in oracle_rows(str(lake / "scores")))
    assert sorted(ids) == list(range(1200, 2000)) and set(ids.values()) == {1}
    assert len(oracle_rows(str(lake / "people"))) == 2000


def test_unknown_schedules_and_sections_are_named(project: dict) -> None:
    settings = load_config(conf_file=project["conf"], overrides=[]).settings
    with pytest.raises(
        ConfigError, match=r"no \[schedules.daily\] section \(sections: demo, nightly\)"
    ):
        pipeline.schedule_of(settings, "daily")
    broken = settings.model_copy(
        update={"schedules": {"x": ScheduleSpec(model="people_lr", views=["nope"])}}
    )
    with pytest.raises(ConfigError, match=r"schedules.x names \[views.nope\]"):
        pipeline.schedule_of(broken, None)


def test_retrain_reasons_by_age_drift_and_degradation(spark: SparkSession, project: dict) -> None:
    from batchml.lib.tracking.registry import ModelVersion

    now = datetime(2026, 12, 5, tzinfo=UTC)
    champion = ModelVersion("m", 1, now - timedelta(days=31), "lr", "", "t", 0, "", {}, {})
    spec = ScheduleSpec(model="m", retrain_every="30d", retrain_on_degradation=False)
    verdict = {"drifted": ["salary"], "degraded": ["2013-05-01"]}
    assert pipeline.retrain_reasons(spec, champion, verdict, now) == [
        "drift in salary",
        "the champion is 31.0 days old (retrain_every 30d)",
    ]
    young = pipeline.retrain_reasons(spec, champion, {}, now - timedelta(days=2))
    assert young == []
    with pytest.raises(ValueError, match="retrain_every"):
        ScheduleSpec(model="m", retrain_every="30 days")


def test_drifted_scores_call_for_a_retrain_until_a_version_is_registered(
    spark: SparkSession, project: dict
) -> None:
    from batchml.lib.delta import delta_tables
    from batchml.lib.tracking.registry import ModelVersion

    settings = settings_of(project)
    tables = delta_tables(spark, settings)
    uri = monitoring_uri(settings)
    start = datetime(2026, 12, 1, 3)

    def row(run: str, version: int, hours: int, status: str, kind: str = "prediction"):
        when = start + timedelta(hours=hours)
        feature = "prediction:probability" if kind == "prediction" else "salary"
        return (run, when, "m", version, "t", 2, feature, kind, "psi", 0.4, status, None)

    rows = [
        row("r1", 1, 0, "drift"),  # before version 2 was registered: acted on
        row("r2", 2, 5, "ok"),
        row("r3", 2, 6, "drift", kind="numeric"),  # a feature: the monitor step's business
        row("r4", 2, 7, "drift"),
        row("r5", 2, 8, "drift"),
    ]
    tables.write(spark.createDataFrame(rows, MONITORING_SCHEMA), uri)

    def version(n: int, hours: int) -> ModelVersion:
        created = (start + timedelta(hours=hours)).replace(tzinfo=UTC)
        return ModelVersion("m", n, created, "lr", "", "t", 0, "", {}, {})

    first, second = version(1, -1), version(2, 1)
    assert pipeline.drifted_scores(tables, uri, first, "t", [first]) == ["r1"]
    assert pipeline.drifted_scores(tables, uri, second, "t", [first, second]) == ["r4", "r5"]
    assert pipeline.drifted_scores(tables, uri, second, "other", [first, second]) == []
    third = version(3, 9)  # registered after them: the retrain they called for ran
    assert pipeline.drifted_scores(tables, uri, second, "t", [first, second, third]) == []
    spec = ScheduleSpec(model="m")
    reasons = pipeline.retrain_reasons(spec, second, {"scores_drifted": ["r4", "r5"]}, start)
    assert reasons == ["its scores drifted (run r5)"]
    quiet = ScheduleSpec(model="m", retrain_on_drift=False)
    assert pipeline.retrain_reasons(quiet, second, {"scores_drifted": ["r5"]}, start) == []
