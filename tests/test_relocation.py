"""A lakehouse copied elsewhere (`cp -a`) is the same lakehouse: its registry loads its own
models, its records name its own tables, and nothing is trained, scored or ingested again.

One lake is built (a training table, a model version, its predictions and monitoring, a
feature view), copied with sizes and times kept, and the original removed, so nothing can
quietly keep reading the old place.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import people
from oracles import oracle_rows
from pyspark.ml.functions import vector_to_array
from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from batchml.jobs import features, monitor, predict
from batchml.jobs.train import job as train_job
from batchml.lib.data.synthetic import agrawal
from batchml.lib.delta.embedded import EmbeddedDelta
from batchml.lib.tracking.registry import registry_of

CONF = (
    """
[views.people_view]
table = "people_features"
sources = { people = "latest" }
sql = "SELECT * FROM people"

"""
    + people.pipeline(view="people_view", numeric=("salary", "age"))
    + """
[models.people_lr]
pipeline = "people"
algorithm = "logistic_regression"
params = { maxIter = 20 }

[predictions.people_lr]
model = "people_lr"
input = "applicants"
output = "scores"
"""
)


def test_a_copied_lakehouse_reads_its_own_records(spark: SparkSession, tmp_path: Path) -> None:
    conf = tmp_path / "people.toml"
    conf.write_text(CONF)
    lake = tmp_path / "here" / "lake"
    settings = people.settings_for(lake, conf)
    tables = EmbeddedDelta(spark)
    tables.write(agrawal(spark, 2000, function=7, seed=9), str(lake / "people"))
    tables.write(agrawal(spark, 300, function=7, seed=3).drop("label"), str(lake / "applicants"))
    built = features.run(spark, settings, "people_view")
    assert built.status == "written"
    trained = train_job.run(spark, settings, "people_lr")
    scored = predict.run(spark, settings, predict.PredictRequest("people_lr"))
    assert (scored.mode, scored.rows_scored) == ("full", 300)
    watched = monitor.monitor(spark, settings, "people_lr@1", "applicants")

    copy = tmp_path / "there" / "lake"
    shutil.copytree(lake, copy, copy_function=shutil.copy2)
    shutil.rmtree(tmp_path / "here")
    moved = people.settings_for(copy, conf)

    # every location recorded in the copy is relative, or is the copy's own
    old_place = str(lake).encode()
    created_at = re.compile(rb'"location":"file://' + re.escape(old_place) + rb'[^"]*"')
    naming_old = [
        str(path.relative_to(copy))
        for path in copy.rglob("*")
        if path.is_file() and old_place in created_at.sub(b"", path.read_bytes())
    ]
    assert naming_old == []

    registry = registry_of(moved, tables)
    version = registry.get("people_lr@1")
    assert version.artifact_uri.startswith(f"{copy}/_registry/")
    assert (version.training_table, version.manifest["training_table"]) == (
        str(copy / "people_features"),
        str(copy / "people_features"),
    )
    # the copy's model scores as the original did
    model = registry.load(version)
    probabilities = (
        model.transform(tables.read(str(copy / "applicants")).df)
        .select("id", vector_to_array("probability")[1].alias("p"))
        .orderBy("id")
        .collect()
    )
    recorded = {r["id"]: r["probability"] for r in oracle_rows(str(copy / "scores"))}
    assert [round(r["p"], 12) for r in probabilities] == [
        round(recorded[r["id"]], 12) for r in probabilities
    ]
    assert {r["input_table"] for r in oracle_rows(str(copy / "scores"))} == {"applicants"}

    # nothing is done twice on the copy
    again = features.run(spark, moved, "people_view")
    assert again.status == "skipped", again.message
    rescored = predict.run(spark, moved, predict.PredictRequest("people_lr"))
    assert rescored.mode == "skipped", rescored.message
    assert len(oracle_rows(str(copy / "scores"))) == 300
    rows = [r for r in oracle_rows(str(copy / "_monitoring")) if r["run_id"] == watched.run_id]
    assert {r["input_table"] for r in rows} == {"applicants"}
    reproduced = train_job.reproduce(spark, moved, "people_lr@1")
    assert reproduced.training_table == str(copy / "people_features")
    assert reproduced.match, reproduced.differences
    assert trained.version == 1


def test_records_of_earlier_versions_still_resolve(spark: SparkSession, tmp_path: Path) -> None:
    """Rows registered before locations were relative hold absolute paths: they still
    load where they are."""
    from batchml.lib.tracking.registry import Registry

    conf = tmp_path / "people.toml"
    conf.write_text(CONF)
    lake = tmp_path / "lake"
    settings = people.settings_for(lake, conf)
    tables = EmbeddedDelta(spark)
    tables.write(agrawal(spark, 1000, function=7, seed=9), str(lake / "people"))
    features.run(spark, settings, "people_view")
    train_job.run(spark, settings, "people_lr")
    versions = str(lake / "_registry/versions")
    rows_df = tables.read(versions).df
    absolute_df = rows_df.withColumn(
        "artifact_uri", F.concat(F.lit(f"{lake}/_registry/"), F.col("artifact_uri"))
    ).withColumn("training_table", F.concat(F.lit(f"{lake}/"), F.col("training_table")))
    tables.write(absolute_df, versions, mode="overwrite")
    assert {r["training_table"] for r in oracle_rows(versions)} == {str(lake / "people_features")}
    version = Registry(str(lake / "_registry"), tables).get("people_lr@1")
    assert version.training_table == str(lake / "people_features")
    assert Path(version.artifact_uri, "model").is_dir()
    assert registry_of(settings, tables).load(version) is not None

    # ...and copied elsewhere, the original gone, they name the copy's own places
    copy = tmp_path / "copy" / "lake"
    shutil.copytree(lake, copy, copy_function=shutil.copy2)
    shutil.rmtree(lake)
    registry = registry_of(people.settings_for(copy, conf), tables)
    moved = registry.get("people_lr@1")
    assert moved.artifact_uri.startswith(f"{copy}/_registry/artifacts/people_lr/")
    assert moved.training_table == str(copy / "people_features")
    assert registry.pinned_table_versions() == {str(copy / "people_features"): {0}}
    assert registry.load(moved) is not None
