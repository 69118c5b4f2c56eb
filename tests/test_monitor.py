"""`batchml monitor`: drift against the stored training profile, appended to the
monitoring table, with a scheduler's exit code."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
from oracles import oracle_rows
from people import SCORING as CONF
from people import applicants, copy_lake, predict_run
from people import scoring_settings as settings_for
from pyspark.sql import SparkSession
from pyspark.sql import functions as F
from typer.testing import CliRunner

from batchml.jobs import monitor
from batchml.jobs.cli import app
from batchml.jobs.train import job as train_job
from batchml.lib.data.synthetic import agrawal
from batchml.lib.delta.embedded import EmbeddedDelta
from batchml.lib.monitoring.profiles import training_profile
from batchml.lib.monitoring.table import MONITORING_SCHEMA
from batchml.lib.platform.errors import InputError
from batchml.lib.tracking.registry import registry_of


@pytest.fixture(scope="module")
def lake(scoring_lake: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """`people` (3,000 rows) and `people_lr` version 1 trained on it."""
    return copy_lake(scoring_lake, tmp_path_factory.mktemp("monitor"))


def invoke(cli_globals, lake: Path, tmp_path: Path, *args: str, extra: str = ""):
    conf = tmp_path / "monitor.toml"
    conf.write_text(CONF.format(extra=extra))
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
    profile, source = training_profile(spark, tables, bare)
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
        training_profile(spark, tables, gone)


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


def test_the_new_batch_and_its_predictions_against_the_training_scores(
    spark: SparkSession, cli_globals, lake: Path, tmp_path: Path
) -> None:
    """`applicants` version 0: 1,000 rows like training's; version 1 adds 500 whose
    salary tripled. Both are scored (`predict`: full, then incremental). Monitoring the
    rows added after version 0 sees only the new batch, and its scores."""

    model = registry_of(settings_for(lake, tmp_path), None).get("people_lr@1")
    scores = model.manifest["score_profile"]
    assert (scores["column"], scores["split"]) == ("probability", "test")
    assert sum(scores["decile_counts"]) == model.manifest["rows"]["test"]

    # a lake of its own: the module's keeps its monitoring rows to the other tests
    own = tmp_path / "lake"
    own.mkdir()
    for name in ("people", "_registry"):
        (own / name).symlink_to(lake / name)
    settings = settings_for(own, tmp_path)
    tables = EmbeddedDelta(spark)
    tables.write(applicants(spark, 0, 1000), str(own / "applicants"))
    assert predict_run(spark, settings).rows_scored == 1000
    batch = applicants(spark, 1000, 1500).withColumn("salary", F.col("salary") * 3)
    tables.write(batch, str(own / "applicants"), mode="append")
    assert predict_run(spark, settings).mode == "incremental"

    def monitored(table: str, *args: str) -> dict:
        done = invoke(cli_globals, own, tmp_path, "people_lr", "--input", table, "--json", *args)
        assert done.exit_code in (0, 8), done.stderr
        return json.loads(done.stdout)

    new = monitored("applicants", "--since", "0")
    assert (new["rows"], new["scope"]) == (500, "rows added after version 0")
    assert new["predictions_table"] == str(own / "scores")
    assert new["features"]["salary"]["status"] == "drift"
    score = new["features"]["prediction:probability"]
    assert score["kind"] == "prediction" and score["null_rate"] == 0.0

    first = monitored("applicants@0")
    assert (first["rows"], first["scope"]) == (1000, "whole version")
    assert first["features"]["salary"]["status"] == "ok"
    clean = first["features"]["prediction:probability"]
    # this LR's probabilities are mostly saturated at 0 and 1 (tied deciles): the clean
    # batch's score PSI is not small, but the drifted one's is several times larger
    assert score["psi"] > 3 * clean["psi"] and score["ks"] > 3 * clean["ks"]

    rows = oracle_rows(str(own / "_monitoring"))
    ours = [r for r in rows if r["run_id"] == new["run_id"] and r["feature"].startswith("pred")]
    assert {(r["metric"], r["value"]) for r in ours} >= {("psi", score["psi"])}
    assert new["performance"] == []  # the input has no labels: nothing judged yet

    # the labels land in a table of their own: each scored batch is judged once
    truth = (  # the labels of the rows `applicants` drew (as it draws them)
        agrawal(spark, 1000, function=7, seed=3)
        .select("id", "label")
        .unionByName(
            agrawal(spark, 1500, function=7, seed=3).filter("id >= 1000").select("id", "label")
        )
    )
    tables.write(truth, str(own / "outcomes"))
    labelled = '[models.people_lr.monitoring]\nlabels = "outcomes"\nperiod = "input_version"'

    def judged(extra: str, code: int) -> dict:
        done = invoke(
            cli_globals, own, tmp_path, "people_lr", "--input", "applicants", "--json", extra=extra
        )
        assert done.exit_code == code, done.stderr
        return json.loads(done.stdout) if code != 4 else {"stderr": done.stderr}

    periods = {p["period"]: p for p in judged(labelled, 8)["performance"]}  # salaries drift
    assert {k: p["rows"] for k, p in periods.items()} == {"0": 1000, "1": 500}
    test_auc = model.metrics["test"]["areaUnderROC"]
    assert periods["0"]["baseline"] == test_auc
    assert abs(periods["0"]["value"] - test_auc) < 0.05 and periods["0"]["status"] == "ok"
    low, high = periods["0"]["interval"]
    assert low < periods["0"]["value"] < high
    assert periods["1"]["value"] < periods["0"]["value"] - 0.05
    assert periods["1"]["drop"] > 0.06 and periods["1"]["status"] == "drift"
    rows = [r for r in oracle_rows(str(own / "_monitoring")) if r["feature"] == "__performance__"]
    auc = {r["period"]: r["value"] for r in rows if r["metric"] == "areaUnderROC"}
    assert auc == {"0": periods["0"]["value"], "1": periods["1"]["value"]}
    assert judged(labelled, 8)["performance"] == []  # nothing judged twice

    # a labels table without the key is named, and nothing is appended
    tables.write(truth.drop("id"), str(own / "keyless"))
    before = tables.version(str(own / "_monitoring"))
    failed = judged(labelled.replace("outcomes", "keyless"), 4)["stderr"]
    assert failed.count("\n") == 1 and "keyless@0 lacks column(s) id" in failed
    assert tables.version(str(own / "_monitoring")) == before


def test_repeated_keys_never_multiply_rows(
    spark: SparkSession, cli_globals, lake: Path, tmp_path: Path
) -> None:
    """The same records twice in a batch (their labels in the input itself): each scored
    row meets one label, so the AUC is the one of the rows as scored. Keys with two labels,
    or a labels table for predictions whose key repeats, are refused by name."""
    from sklearn.metrics import roc_auc_score

    own = tmp_path / "lake"
    own.mkdir()
    for name in ("people", "_registry"):
        (own / name).symlink_to(lake / name)
    settings = settings_for(own, tmp_path)
    tables = EmbeddedDelta(spark)
    records = agrawal(spark, 400, function=7, seed=3)
    batch = records.unionByName(records.filter("id < 100"))  # 100 records twice
    tables.write(batch, str(own / "applicants"))
    assert predict_run(spark, settings).rows_scored == 500

    done = invoke(cli_globals, own, tmp_path, "people_lr", "--input", "applicants", "--json")
    assert done.exit_code in (0, 8), done.stderr
    [period] = json.loads(done.stdout)["performance"]
    scored = oracle_rows(str(own / "scores"))
    labels = {r["id"]: r["label"] for r in records.select("id", "label").collect()}
    expected = roc_auc_score([labels[r["id"]] for r in scored], [r["probability"] for r in scored])
    assert period["rows"] == len(scored) == 500  # joined on the key: 700 rows
    assert abs(period["value"] - expected) <= 1e-6, (period["value"], expected)

    # the same keys in a second batch, scored incrementally: judged on its own rows
    tables.write(records.filter("id < 150"), str(own / "applicants"), mode="append")
    assert predict_run(spark, settings).rows_scored == 150
    done = invoke(cli_globals, own, tmp_path, "people_lr", "--input", "applicants", "--json")
    [second] = json.loads(done.stdout)["performance"]  # period 0 was judged already
    again = [r for r in oracle_rows(str(own / "scores")) if r["input_version"] == 1]
    expected = roc_auc_score([labels[r["id"]] for r in again], [r["probability"] for r in again])
    assert (second["period"], second["rows"], len(again)) == ("1", 150, 150)
    assert abs(second["value"] - expected) <= 1e-6
    # the pipeline's decide step judges a third batch (keys of both earlier ones, twice
    # over) with the same function: one row per scored row
    twice = records.filter("id < 100")
    tables.write(twice.unionByName(twice), str(own / "applicants"), mode="append")
    assert predict_run(spark, settings).rows_scored == 200
    [third] = monitor.judge_performance(spark, settings, "people_lr", str(own / "applicants"))
    rows = [r for r in oracle_rows(str(own / "scores")) if r["input_version"] == 2]
    expected = roc_auc_score([labels[r["id"]] for r in rows], [r["probability"] for r in rows])
    assert (third["period"], third["rows"], len(rows)) == ("2", 200, 200)
    assert abs(third["value"] - expected) <= 1e-6
    # the over-time report draws what the monitoring table holds: the same figures
    from batchml.jobs.report import history_of
    from batchml.lib.monitoring.page import performance_rows

    drawn = {e["period"]: e for e in performance_rows(history_of(settings, "people_lr"))}
    assert (drawn["1"]["value"], drawn["1"]["rows"]) == (second["value"], 150)
    assert (drawn["0"]["value"], drawn["0"]["rows"]) == (period["value"], 500)
    assert (drawn["2"]["value"], drawn["2"]["rows"]) == (third["value"], 200)

    def refused(labels_table: str) -> str:
        extra = f'[models.people_lr.monitoring]\nlabels = "{labels_table}"'
        before = tables.version(str(own / "_monitoring"))
        failed = invoke(
            cli_globals, own, tmp_path, "people_lr", "--input", "applicants", extra=extra
        )
        assert failed.exit_code == 4, failed.stdout
        assert failed.stderr.count("\n") == 1
        assert tables.version(str(own / "_monitoring")) == before  # nothing appended
        return failed.stderr

    truth = records.select("id", "label")
    flipped = truth.filter("id = 7").withColumn("label", 1 - F.col("label"))
    tables.write(truth.unionByName(flipped), str(own / "two_labels"))
    message = refused("two_labels")
    assert "1 values of key id have more than one label (e.g. id=7)" in message
    tables.write(truth, str(own / "outcomes"))
    message = refused("outcomes")
    assert "200 values of key id are scored more than once in one period" in message  # 0, 2


def test_since_must_be_an_earlier_version(cli_globals, lake: Path, tmp_path: Path) -> None:
    done = invoke(cli_globals, lake, tmp_path, "people_lr", "--since", "3")
    assert done.exit_code == 4
    assert done.stderr.count("\n") == 1 and "--since 3" in done.stderr
    assert "people, which is at version 0 (it has no earlier version)" in done.stderr


def test_snapshots_corrected_labels_and_null_keys(
    spark: SparkSession, cli_globals, lake: Path, tmp_path: Path
) -> None:
    """A customer in two monthly snapshots with different labels: keyed by the customer
    alone the labels are ambiguous and refused; keyed by customer and month each scored
    row meets its own label. A labels table correcting some labels later is refused,
    unless labels_dedup = "latest" says which row counts (and the report says how many
    were set aside). A key null in every labelled row is refused."""
    import datetime as dt
    import shutil

    from sklearn.metrics import roc_auc_score

    own = tmp_path / "lake"
    own.mkdir()
    for name in ("people", "_registry"):
        (own / name).symlink_to(lake / name)
    tables = EmbeddedDelta(spark)
    january = agrawal(spark, 300, function=7, seed=3).withColumn("month", F.lit("2024-01"))
    february = agrawal(spark, 300, function=7, seed=4).withColumn("month", F.lit("2024-02"))
    tables.write(january.unionByName(february), str(own / "applicants"))
    by_month = 'key = ["id", "month"]'

    scored = predict_run(spark, settings_for(own, tmp_path))  # keyed by id alone
    assert (scored.rows_scored, scored.keys["duplicated"]) == (600, 300)
    truth = {
        (r["id"], r["month"]): r["label"]
        for r in january.unionByName(february).select("id", "month", "label").collect()
    }
    differ = sum(truth[(i, "2024-01")] != truth[(i, "2024-02")] for i in range(300))
    assert differ > 10

    def judged(extra: str, code: int) -> dict:
        before = tables.version(str(own / "_monitoring"))
        done = invoke(
            cli_globals, own, tmp_path, "people_lr", "--input", "applicants", "--json", extra=extra
        )
        assert done.exit_code == code or done.exit_code == code + 8 == 8, done.stderr
        if code == 0:
            return json.loads(done.stdout)
        assert done.stderr.count("\n") == 1
        assert tables.version(str(own / "_monitoring")) == before  # nothing appended
        return {"stderr": done.stderr}

    refused = judged("", 4)["stderr"]
    assert f"{differ} values of key id have more than one label" in refused
    assert 'labels_dedup = "latest"' in refused

    shutil.rmtree(own / "scores")  # another key: other columns
    by_both = predict_run(spark, settings_for(own, tmp_path, extra=by_month))
    assert (by_both.rows_scored, by_both.keys["duplicated"]) == (600, 0)
    [period] = judged(by_month, 0)["performance"]
    rows = oracle_rows(str(own / "scores"))
    expected = roc_auc_score(
        [truth[(r["id"], r["month"])] for r in rows], [r["probability"] for r in rows]
    )
    assert (period["rows"], len(rows)) == (600, 600)
    assert abs(period["value"] - expected) <= 1e-6

    # a labels table whose later rows correct ten labels

    first, later = dt.datetime(2024, 3, 1), dt.datetime(2024, 4, 1)
    outcomes = [(i, m, y, first) for (i, m), y in truth.items()]
    corrected = {(i, "2024-02"): 1 - truth[(i, "2024-02")] for i in range(10)}
    outcomes += [(i, m, y, later) for (i, m), y in corrected.items()]
    outcomes += [(None, "2024-01", 0, first), (None, "2024-01", 1, first)]  # meet no row
    schema = "id long, month string, label int, labelled_at timestamp"
    tables.write(spark.createDataFrame(outcomes, schema), str(own / "outcomes"))
    labelled = f'{by_month}\n[models.people_lr.monitoring]\nlabels = "outcomes"'
    shutil.rmtree(own / "_monitoring")  # judged afresh from the labels table
    tables.write(spark.createDataFrame([], MONITORING_SCHEMA), str(own / "_monitoring"))
    refused = judged(labelled, 4)["stderr"]
    assert "10 values of key id, month have more than one label (e.g. id=" in refused
    latest = f'{labelled}\nlabels_dedup = "latest"\nlabels_order_by = "labelled_at"'
    [period] = judged(latest, 0)["performance"]
    final = {**truth, **corrected}
    expected = roc_auc_score(
        [final[(r["id"], r["month"])] for r in rows], [r["probability"] for r in rows]
    )
    assert (period["rows"], period["labels_resolved"]) == (600, 10)
    assert abs(period["value"] - expected) <= 1e-6
    recorded = oracle_rows(str(own / "_monitoring"))
    assert [r["value"] for r in recorded if r["metric"] == "labels_resolved"] == [10.0]

    # one more correction after the period was judged: judged again, the report follows
    latest_of_all = dt.datetime(2024, 5, 1)
    fix = [(20, "2024-01", 1 - truth[(20, "2024-01")], latest_of_all)]
    tables.write(spark.createDataFrame(fix, schema), str(own / "outcomes"), mode="append")
    [again] = judged(latest, 0)["performance"]
    final[(20, "2024-01")] = fix[0][2]
    expected = roc_auc_score(
        [final[(r["id"], r["month"])] for r in rows], [r["probability"] for r in rows]
    )
    assert (again["rows"], again["labels_resolved"]) == (600, 11)
    assert abs(again["value"] - expected) <= 1e-6 and again["value"] != period["value"]
    assert judged(latest, 0)["performance"] == []  # nothing new: nothing judged
    from batchml.jobs.report import history_of
    from batchml.lib.monitoring.page import performance_rows

    [drawn] = performance_rows(history_of(settings_for(own, tmp_path), "people_lr"))
    assert (drawn["value"], drawn["rows"], drawn["labels_resolved"]) == (again["value"], 600, 11)

    tie = [(0, "2024-02", truth[(0, "2024-02")], later)]  # two labels at the latest time
    tables.write(spark.createDataFrame(tie, schema), str(own / "outcomes"), mode="append")
    refused = judged(latest, 4)["stderr"]
    assert "1 values of key id, month have more than one label at their latest labelled_at" in (
        refused
    )
    nameless = [(None, m, y, first) for (_, m), y in truth.items()]
    tables.write(spark.createDataFrame(nameless, schema), str(own / "outcomes"), mode="overwrite")
    refused = judged(labelled, 4)["stderr"]
    assert "key id, month is null in every labelled row" in refused
    unordered = f'{labelled}\nlabels_dedup = "latest"'
    done = invoke(cli_globals, own, tmp_path, "people_lr", extra=unordered)
    assert done.exit_code == 2 and done.stderr.count("\n") == 1
    assert "labels_order_by" in done.stderr
    orphan = f'{labelled}\nlabels_order_by = "labelled_at"'
    done = invoke(cli_globals, own, tmp_path, "people_lr", extra=orphan)
    assert done.exit_code == 2 and 'only with labels_dedup = "latest"' in done.stderr
