"""`batchml predict`: scoring a pinned input version with a registered model, written back
to Delta idempotently and incrementally, checked with delta-rs's QueryBuilder."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from deltalake import DeltaTable
from oracles import oracle_rows
from people import SCORING as CONF
from people import applicants, copy_lake
from people import predict_run as run
from people import scoring_settings as settings_for
from pyspark.sql import SparkSession
from pyspark.sql import functions as F
from typer.testing import CliRunner

from batchml.jobs.cli import app
from batchml.jobs.train import job as train_job
from batchml.lib.delta.connector import ConnectorDelta
from batchml.lib.delta.delta_log import open_snapshot
from batchml.lib.delta.embedded import EmbeddedDelta
from batchml.lib.platform.errors import ConfigError, InputError
from batchml.lib.tracking.registry import Registry

LINEAGE = ["model_name", "model_version", "input_table", "input_version", "run_id", "scored_at"]


@pytest.fixture(scope="module")
def lake(scoring_lake: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A lakehouse with the `people` training table and `people_lr` version 1 trained on it."""
    return copy_lake(scoring_lake, tmp_path_factory.mktemp("predict"))


def scored_ids(uri: str) -> list[int]:
    return sorted(r["id"] for r in oracle_rows(uri))


@pytest.mark.parametrize("backend", ["connector", "embedded"])
def test_full_rerun_incremental_and_rewritten_input(
    spark: SparkSession, lake: Path, tmp_path: Path, backend: str
) -> None:
    settings = settings_for(lake, tmp_path, backend)
    tables = ConnectorDelta(spark) if backend == "connector" else EmbeddedDelta(spark)
    lake_in, out = str(lake / "applicants"), str(lake / "scores")
    for leftover in (lake_in, out):  # the module's lake is shared by both backends
        if Path(leftover).exists():
            import shutil

            shutil.rmtree(leftover)
    tables.write(applicants(spark, 0, 400), lake_in)

    first = run(spark, settings)
    assert (first.mode, first.rows_scored, first.input_version) == ("full", 400, 0)
    assert first.columns == ["id", "age", "prediction", "probability", *LINEAGE]
    rows = oracle_rows(out)
    assert sorted(r["id"] for r in rows) == list(range(400))
    assert all(0.0 <= r["probability"] <= 1.0 for r in rows)
    assert all(r["prediction"] == float(r["probability"] > 0.5) for r in rows)
    assert {(r["model_name"], r["model_version"], r["input_version"]) for r in rows} == {
        ("people_lr", 1, 0)
    }
    assert {r["run_id"] for r in rows} == {first.run_id}
    # scored as one SQL expression, with the predictions the registered pipeline gives
    assert first.scorer == "sql"
    fitted = Registry(str(lake / "_registry")).load("people_lr@1")
    direct = fitted.transform(tables.read(lake_in).df).collect()
    assert {r["id"]: r["prediction"] for r in direct} == {r["id"]: r["prediction"] for r in rows}
    mine = {r["id"]: r["probability"] for r in rows}
    for row in direct:
        assert mine[row["id"]] == pytest.approx(float(row["probability"][1]), abs=1e-12)

    again = run(spark, settings)
    assert (again.mode, again.rows_scored, again.output_version) == ("skipped", 0, None)
    assert "already scored" in again.message
    assert tables.version(out) == 0

    tables.write(applicants(spark, 400, 700), lake_in)  # input version 1: new files only
    grown = run(spark, settings)
    assert (grown.mode, grown.rows_scored, grown.input_version) == ("incremental", 300, 1)
    assert scored_ids(out) == list(range(700))  # nothing scored twice
    by_version = {r["id"]: r["input_version"] for r in oracle_rows(out)}
    assert (by_version[0], by_version[699]) == (0, 1)

    tables.write(applicants(spark, 100, 250), lake_in, mode="overwrite")  # rows rewritten
    rewritten = run(spark, settings)
    assert (rewritten.mode, rewritten.rows_scored) == ("full", 150)
    assert "removed or rewritten" in rewritten.message
    assert scored_ids(out) == list(range(100, 250))  # this model's slice replaced

    # a model registered before scorers were saved beside it is compiled when loaded
    (
        Path(Registry(str(lake / "_registry")).get("people_lr@1").artifact_uri) / "scorer.json"
    ).unlink(missing_ok=True)
    forced = run(spark, settings, full=True)
    assert (forced.mode, forced.rows_scored, forced.scorer) == ("full", 150, "sql")
    assert scored_ids(out) == list(range(100, 250))


def test_bad_inputs_name_the_culprit_and_write_nothing(
    spark: SparkSession, lake: Path, tmp_path: Path
) -> None:
    settings = settings_for(lake, tmp_path)
    tables = EmbeddedDelta(spark)
    bad_in, out = str(tmp_path / "bad_in"), str(tmp_path / "bad_out")
    broken = applicants(spark, 0, 50).drop("loan").withColumn("age", F.col("age").cast("string"))
    tables.write(broken, bad_in)
    with pytest.raises(InputError) as caught:
        run(spark, settings, input=bad_in, output=out)
    message = str(caught.value)
    assert "missing columns loan (feature)" in message
    assert "mistyped columns age (model int, input string)" in message
    assert not Path(out).exists()

    good_in = str(tmp_path / "good_in")
    tables.write(applicants(spark, 0, 50), good_in)
    with pytest.raises(InputError, match="has no version 5"):
        run(spark, settings, input=f"{good_in}@5", output=out)
    with pytest.raises(InputError, match="model people_lr has no version 9"):
        run(spark, settings, model="people_lr@9", input=good_in, output=out)
    with pytest.raises(InputError, match="no model 'nobody'"):
        run(spark, settings, model="nobody", input=good_in, output=out)
    with pytest.raises(ConfigError, match=r"no \[predictions.nobody\] section"):
        run(spark, settings, model="nobody")
    with pytest.raises(ConfigError, match="must be a table version number"):
        run(spark, settings, input=f"{good_in}@latest", output=out)
    assert not Path(out).exists()


def test_a_crash_before_the_commit_then_a_rerun_writes_once(
    spark: SparkSession, lake: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = settings_for(lake, tmp_path)
    source, out = str(tmp_path / "in"), str(tmp_path / "out")
    EmbeddedDelta(spark).write(applicants(spark, 0, 80), source)
    commit = EmbeddedDelta._commit

    def killed_before_commit(self, root, *args, **kwargs):
        if root.endswith("/out"):  # the Parquet files are written; the commit never comes
            raise KeyboardInterrupt
        return commit(self, root, *args, **kwargs)

    with monkeypatch.context() as patched:
        patched.setattr(EmbeddedDelta, "_commit", killed_before_commit)
        with pytest.raises(KeyboardInterrupt):
            run(spark, settings, input=source, output=out)
    assert not EmbeddedDelta(spark).exists(out)
    rerun = run(spark, settings, input=source, output=out)
    assert (rerun.mode, rerun.rows_scored) == ("full", 80)
    assert scored_ids(out) == list(range(80))
    assert run(spark, settings, input=source, output=out).mode == "skipped"


def test_retention_drops_old_date_partitions_in_one_commit(
    spark: SparkSession, lake: Path, tmp_path: Path
) -> None:
    settings = settings_for(lake, tmp_path, extra='partition_by = "day"\nretention_days = 3')
    source, out = str(tmp_path / "in"), str(tmp_path / "out")
    EmbeddedDelta(spark).write(applicants(spark, 0, 100), source)
    report = run(spark, settings, input=source, output=out)
    assert report.retention_removed_files > 0
    days = sorted({str(r["day"]) for r in oracle_rows(out)})
    assert days == ["2013-01-07", "2013-01-08", "2013-01-09", "2013-01-10"]
    # one file per date, however many tasks scored (the input has several files)
    assert len(DeltaTable(source).file_uris()) > 1
    files = open_snapshot(out).add_actions().column("partition.day").to_pylist()
    assert sorted(str(d) for d in files) == days
    assert EmbeddedDelta(spark).version(out) == 1  # the write, then one retention commit
    history = EmbeddedDelta(spark).history(out)
    assert history[0]["batchml"]["job"] == "predict-retention"


def test_predict_command_json_and_exit_codes(
    spark: SparkSession, lake: Path, tmp_path: Path, cli_globals: list[str]
) -> None:
    conf = tmp_path / "predict.toml"
    conf.write_text(CONF.format(extra=""))
    source, out = str(tmp_path / "in"), str(tmp_path / "out")
    EmbeddedDelta(spark).write(applicants(spark, 0, 30), source)
    base = [*cli_globals, "--conf", str(conf), "--set", f'lakehouse.root="{lake}"']
    runner = CliRunner()
    args = ["predict", "people_lr@1", "--input", source, "--output", out]
    result = runner.invoke(app, [*base, *args, "--json"])
    assert result.exit_code == 0, result.stderr
    data = json.loads(result.stdout)
    assert (data["mode"], data["rows_scored"], data["output_version"]) == ("full", 30, 0)
    text = runner.invoke(app, [*base, *args])
    assert text.exit_code == 0 and "skipped" in text.stdout
    missing = runner.invoke(app, [*base, "predict", "people_lr", "--input", str(tmp_path / "no")])
    assert missing.exit_code == 4
    assert missing.stderr.count("\n") == 1 and "no Delta table" in missing.stderr


def test_since_scores_only_rows_added_after_a_version(
    spark: SparkSession, lake: Path, tmp_path: Path
) -> None:
    settings = settings_for(lake, tmp_path)
    tables = EmbeddedDelta(spark)
    source, out = str(tmp_path / "in"), str(tmp_path / "out")
    tables.write(applicants(spark, 0, 100), source)  # the training era: not to be scored
    tables.write(applicants(spark, 100, 130), source)
    first = run(spark, settings, input=source, output=out, since=0)
    assert (first.mode, first.rows_scored) == ("incremental", 30)
    assert scored_ids(out) == list(range(100, 130))
    tables.write(applicants(spark, 130, 140), source)
    assert run(spark, settings, input=source, output=out, since=0).rows_scored == 10
    assert scored_ids(out) == list(range(100, 140))
    with pytest.raises(InputError, match="--since 9 is after"):
        run(spark, settings, input=source, output=str(tmp_path / "other"), since=9)


def test_empty_inputs_are_no_ops_and_an_incompatible_output_is_named(
    spark: SparkSession, lake: Path, tmp_path: Path
) -> None:
    settings = settings_for(lake, tmp_path)
    tables = EmbeddedDelta(spark)
    source, out = str(tmp_path / "in"), str(tmp_path / "out")
    tables.write(applicants(spark, 0, 20).limit(0), source)
    empty = run(spark, settings, input=source, output=out)
    assert (empty.mode, empty.rows_scored) == ("skipped", 0)
    assert "is empty; nothing written" in empty.message and not Path(out).exists()

    tables.write(applicants(spark, 0, 20), source)
    assert run(spark, settings, input=source, output=out).rows_scored == 20
    tables.write(applicants(spark, 0, 20).limit(0), source)  # a commit that adds no file
    nothing = run(spark, settings, input=source, output=out)
    assert nothing.mode == "skipped" and "no rows added" in nothing.message
    assert tables.version(out) == 0

    other = str(tmp_path / "other_out")
    tables.write(spark.createDataFrame([(1, "x")], "id long, note string"), other)
    with pytest.raises(InputError, match=r"missing columns note") as caught:
        run(spark, settings, input=source, output=other)
    assert "extra columns age" in str(caught.value)
    assert tables.version(other) == 0


def test_an_xgboost_model_scores_the_same_as_its_pipeline(
    spark: SparkSession, lake: Path, tmp_path: Path
) -> None:
    settings = settings_for(lake, tmp_path)
    train_job.run(spark, settings, "people_xgb")
    source, out = str(tmp_path / "in"), str(tmp_path / "out")
    EmbeddedDelta(spark).write(applicants(spark, 0, 60), source)
    report = run(spark, settings, model="people_xgb", input=source, output=out)
    assert (report.mode, report.rows_scored, report.scorer) == ("full", 60, "arrow")
    rows = {r["id"]: r for r in oracle_rows(out)}
    fitted = Registry(str(lake / "_registry")).load("people_xgb")
    direct = fitted.transform(EmbeddedDelta(spark).read(source).df).collect()
    for row in direct:
        assert rows[row["id"]]["probability"] == pytest.approx(row["probability"][1], abs=1e-12)
        assert rows[row["id"]]["prediction"] == row["prediction"]


def test_repeated_and_null_keys_are_counted_and_refused_when_unique(
    spark: SparkSession, lake: Path, tmp_path: Path
) -> None:
    """The key is counted over the scored rows: repeats and null keys are in the report;
    `unique_key = true` refuses them (in the batch, or already in this model's
    predictions) and a key column null on every row is refused always, nothing
    written. A floating-point key and a composite key with a missing column are named."""
    tables = EmbeddedDelta(spark)
    source, out = str(tmp_path / "in"), str(tmp_path / "out")
    batch = applicants(spark, 0, 60)
    twice = batch.filter("id < 5")
    nulls = batch.filter("id >= 57").withColumn("id", F.lit(None).cast("long"))
    tables.write(batch.filter("id < 57").unionByName(twice).unionByName(nulls), source)
    settings = settings_for(lake, tmp_path)
    counted = run(spark, settings, input=source, output=out)
    assert counted.rows_scored == 65  # every row scored once: 57 + 5 again + 3 nulls
    keys = counted.keys
    assert (keys["rows"], keys["distinct"], keys["duplicated"]) == (65, 57, 5)
    assert (keys["duplicate_rows"], keys["null_rows"]) == (5, 3)
    assert keys["example"].startswith("id=") and int(keys["example"][3:]) < 5
    assert "key id: 5 keys on more than one row (5 extra rows" in counted.message
    assert "3 rows with a null key" in counted.message

    uncounted = settings_for(lake, tmp_path, extra="count_keys = false")
    skipped = run(spark, uncounted, input=source, output=str(tmp_path / "uncounted"))
    assert (skipped.rows_scored, skipped.keys) == (65, {})
    assert "key id" not in skipped.message
    with pytest.raises(ConfigError, match="unique_key = true needs count_keys"):
        settings_for(lake, tmp_path, extra="count_keys = false\nunique_key = true")

    strict = settings_for(lake, tmp_path, extra="unique_key = true")
    unique_out = str(tmp_path / "unique_out")
    with pytest.raises(InputError) as caught:
        run(spark, strict, input=source, output=unique_out)
    assert "5 values of key id are on more than one row (e.g. id=" in str(caught.value)
    assert "predictions.unique_key" in str(caught.value)
    assert not Path(unique_out).exists()

    tables.write(batch.filter("id < 57").unionByName(nulls), str(tmp_path / "nulls_only"))
    clean = str(tmp_path / "clean")
    tables.write(batch.filter("id < 40"), clean)
    assert run(spark, strict, input=clean, output=unique_out).rows_scored == 40
    rescored = run(spark, strict, input=clean, output=unique_out, full=True)
    assert (rescored.mode, rescored.rows_scored) == ("full", 40)  # replaces its own keys
    tables.write(batch.filter("id >= 38"), clean)  # ids 38 and 39 arrive again
    before = tables.version(unique_out)
    with pytest.raises(InputError) as caught:
        run(spark, strict, input=clean, output=unique_out)
    assert "2 new rows have a key people_lr's predictions already hold" in str(caught.value)
    assert tables.version(unique_out) == before
    # without unique_key the same append is taken, and counted over the new rows
    grown = run(spark, settings, input=clean, output=unique_out)
    assert (grown.mode, grown.rows_scored, grown.keys["duplicated"]) == ("incremental", 22, 0)

    with pytest.raises(InputError, match="3 rows have a null in key id"):
        run(spark, strict, input=str(tmp_path / "nulls_only"), output=unique_out)
    empty_key = str(tmp_path / "empty_key")
    tables.write(batch.withColumn("id", F.lit(None).cast("long")), empty_key)
    nowhere = str(tmp_path / "nowhere")
    with pytest.raises(InputError, match="key column id is null in all 60 rows"):
        run(spark, settings, input=empty_key, output=nowhere)
    floating = str(tmp_path / "floating")
    tables.write(batch.withColumn("weight", F.col("id") / 3), floating)
    weighted = settings_for(lake, tmp_path, extra='key = ["id", "weight"]')
    with pytest.raises(InputError, match="key column weight is floating-point"):
        run(spark, weighted, input=floating, output=nowhere)
    composite = settings_for(lake, tmp_path, extra='key = ["id", "branch"]')
    with pytest.raises(InputError, match=r"missing columns branch \(key\)"):
        run(spark, composite, input=clean, output=nowhere)
    assert not Path(nowhere).exists()


def test_repeated_key_refusals_are_one_line_exit_4(
    spark: SparkSession, lake: Path, tmp_path: Path, cli_globals: list[str]
) -> None:
    conf = tmp_path / "predict.toml"
    conf.write_text(CONF.format(extra="unique_key = true"))
    source, out = str(tmp_path / "in"), str(tmp_path / "out")
    rows = applicants(spark, 0, 20)
    EmbeddedDelta(spark).write(rows.unionByName(rows.filter("id = 3")), source)
    base = [*cli_globals, "--conf", str(conf), "--set", f'lakehouse.root="{lake}"']
    done = CliRunner().invoke(
        app, [*base, "predict", "people_lr", "--input", source, "--output", out]
    )
    assert done.exit_code == 4
    assert done.stderr.count("\n") == 1
    assert "1 values of key id are on more than one row (e.g. id=3)" in done.stderr
    assert not Path(out).exists()
