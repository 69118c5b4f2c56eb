"""Training on synthetic data whose best achievable score is known, then registering."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import people
import pytest
from pyspark.sql import SparkSession
from typer.testing import CliRunner

from batchml.jobs.cli import app
from batchml.jobs.train import fit as train_fit
from batchml.jobs.train import job as train_job
from batchml.jobs.train import plan as train_plan
from batchml.lib.data.synthetic import agrawal
from batchml.lib.delta.embedded import EmbeddedDelta
from batchml.lib.platform.config import load_config
from batchml.lib.platform.errors import ConfigError, InputError
from batchml.lib.tracking.registry import Registry

CONF = (
    people.pipeline(for_format=True)
    + """
[models.people_lr]
pipeline = "people"
algorithm = "{algorithm}"
params = {params}
"""
)


@pytest.fixture(scope="module")
def lake(spark: SparkSession, tmp_path_factory: pytest.TempPathFactory) -> Path:
    lake = tmp_path_factory.mktemp("train") / "lake"
    # function 7: group A when 0.67 (salary + commission) - 0.2 loan - 20000 > 0 (linear)
    EmbeddedDelta(spark).write(agrawal(spark, 6000, function=7, seed=9), str(lake / "people"))
    return lake


def settings(
    tmp_path: Path, lake: Path, algorithm="logistic_regression", params="{ maxIter = 50 }"
):
    conf = tmp_path / "train.toml"
    conf.write_text(CONF.format(algorithm=algorithm, params=params))
    return load_config(conf_file=conf, overrides=[f'lakehouse.root="{lake}"'], environ={}).settings


def test_logistic_regression_learns_a_linear_agrawal_function(spark, lake, tmp_path) -> None:
    registry = Registry(str(lake / "_registry"), EmbeddedDelta(spark))
    before = [v.version for v in registry.list("people_lr")]
    report = train_job.run(spark, settings(tmp_path, lake), "people_lr", config_hash="h1")
    assert report.version == max(before, default=0) + 1
    assert [v.version for v in registry.list("people_lr")] == [*before, report.version]
    assert report.metrics["test"]["areaUnderROC"] > 0.98
    assert sum(report.rows.values()) == 6000
    assert report.rows["train"] == pytest.approx(4200, abs=200)
    registered = registry.get(f"people_lr@{report.version}")
    assert (registered.training_table, registered.training_version) == (str(lake / "people"), 0)
    assert registered.manifest["split"] == {
        "key": "id",
        "fractions": {"train": 0.7, "validation": 0.15, "test": 0.15},
        "seed": 42,
    }
    assert registered.manifest["config_hash"] == "h1"
    rows = EmbeddedDelta(spark).read(str(lake / "people")).df.limit(5)
    scored = registry.load(f"people_lr@{report.version}").transform(rows)
    assert {r["prediction"] for r in scored.collect()} <= {0.0, 1.0}


def test_same_config_and_table_version_give_the_same_metrics(spark, lake, tmp_path) -> None:
    config = settings(tmp_path, lake, "gbt_classifier", "{ maxIter = 10, maxDepth = 3 }")
    first = train_job.run(spark, config, "people_lr")
    second = train_job.run(spark, config, "people_lr")
    assert second.version == first.version + 1
    for part, metrics in first.metrics.items():  # "equal to 1e-9", as the training issue asks
        assert second.metrics[part] == pytest.approx(metrics, abs=1e-9)
    assert first.metrics["test"]["areaUnderROC"] > 0.9


@pytest.mark.parametrize(
    ("algorithm", "params", "error", "message"),
    [
        ("logistic_regresion", "{}", InputError, "did you mean 'logistic_regression'"),
        ("logistic_regression", "{ maxIters = 5 }", InputError, "has no param 'maxIters'"),
        ("logistic_regression", '{ maxIter = "many" }', InputError, "param maxIter = 'many'"),
        ("logistic_regression", '{ labelCol = "x" }', InputError, "param labelCol is set by"),
    ],
)
def test_bad_models_leave_the_registry_unchanged(
    spark, lake, tmp_path, algorithm, params, error, message
) -> None:
    registry = Registry(str(lake / "_registry"), EmbeddedDelta(spark))
    before = len(registry.list())
    with pytest.raises(error, match=message):
        train_job.run(spark, settings(tmp_path, lake, algorithm, params), "people_lr")
    assert len(registry.list()) == before


def test_unknown_model_and_bad_split(spark, lake, tmp_path) -> None:
    config = settings(tmp_path, lake)
    with pytest.raises(ConfigError, match="unknown model 'nope'"):
        train_job.run(spark, config, "nope")
    bad = config.model_copy(
        update={
            "models": {
                "people_lr": config.models["people_lr"].model_copy(
                    update={"split": {"train": 0.9, "test": 0.2}}
                )
            }
        }
    )
    with pytest.raises(InputError, match=r"add up to 1\.1"):
        train_job.run(spark, bad, "people_lr")


def test_train_command(spark, cli_globals, lake, tmp_path) -> None:
    settings(tmp_path, lake)
    result = CliRunner().invoke(
        app,
        [
            *cli_globals,
            "--conf",
            str(tmp_path / "train.toml"),
            "--set",
            f'lakehouse.root="{lake}"',
            "train",
            "people_lr",
            "--json",
        ],
    )
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout)["metrics"]["test"]["areaUnderROC"] > 0.98


def test_reproduce_on_another_master_gives_the_same_metrics(spark, lake, tmp_path) -> None:
    # the table in several files, so that the two sessions read it in other partitions
    people = EmbeddedDelta(spark).read(str(lake / "people")).df
    EmbeddedDelta(spark).write(people.repartition(5), str(lake / "people_files"))
    conf = tmp_path / "models.toml"
    conf.write_text(
        CONF.format(algorithm="logistic_regression", params="{ maxIter = 20 }").replace(
            'view = "people"', 'view = "people_files"'
        )
        + """
[models.people_gbt]
pipeline = "people"
algorithm = "gbt_classifier"
params = { maxIter = 5, maxDepth = 3 }

[models.people_rf]
pipeline = "people"
algorithm = "random_forest_classifier"
params = { numTrees = 5, maxDepth = 4, subsamplingRate = 0.7 }

[models.people_xgb]
pipeline = "people"
algorithm = "xgboost_classifier"
params = { n_estimators = 5, max_depth = 3 }
"""
    )
    config = load_config(
        conf_file=conf, overrides=[f'lakehouse.root="{lake}"'], environ={}
    ).settings
    refs = []
    for name in ("people_lr", "people_gbt", "people_rf", "people_xgb"):
        report = train_job.run(spark, config, name)
        refs.append(f"{name}@{report.version}")
    manifest = Registry(str(lake / "_registry"), EmbeddedDelta(spark)).get(refs[2]).manifest
    assert manifest["training_partitions"] == 2
    worker = Path(__file__).with_name("reproduce_worker.py")
    done = subprocess.run(
        [sys.executable, str(worker), str(conf), str(lake), *refs],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    results = {r["ref"]: r for r in map(json.loads, done.stdout.splitlines())}
    for ref in refs[:3]:
        assert results[ref].get("match") is True, results[ref]
    assert results[refs[3]]["exit_code"] == 4
    assert (
        "cannot reproduce here: the version was trained with num_workers = 2"
        in (results[refs[3]]["error"])
    )


@pytest.mark.parametrize("rows", [2000, 5])
def test_boosters_train_on_a_one_file_table_of_any_size(spark, tmp_path, rows) -> None:
    lake = tmp_path / "lake"
    EmbeddedDelta(spark).write(
        agrawal(spark, rows, function=7, seed=3).coalesce(1), str(lake / "people")
    )
    # One file, one row group, cut into two read splits (as a big file is on a cluster):
    # Spark reads two partitions, one of them empty.
    size = sum(f.stat().st_size for f in (lake / "people").glob("*.parquet"))
    conf = tmp_path / "xgb.toml"
    conf.write_text(
        CONF.format(algorithm="xgboost_classifier", params="{ max_bin = 64, n_estimators = 20 }")
        + "early_stopping = true\n"
    )
    config = load_config(
        conf_file=conf, overrides=[f'lakehouse.root="{lake}"'], environ={}
    ).settings
    saved = {k: spark.conf.get(k) for k in SPLIT_CONF}
    spark.conf.set("spark.sql.files.maxPartitionBytes", str(int(size * 0.75)))
    spark.conf.set("spark.sql.files.openCostInBytes", "1024")
    try:
        read = EmbeddedDelta(spark).read(str(lake / "people")).df
        assert read.rdd.getNumPartitions() == 2
        if rows == 5:  # too few rows to train: a one-line error naming the cause
            with pytest.raises(InputError) as caught:
                train_job.run(spark, config, "people_lr")
            assert "\n" not in str(caught.value)
            return
        report = train_job.run(spark, config, "people_lr")
    finally:
        for key, value in saved.items():
            spark.conf.set(key, value)
    assert report.metrics["test"]["areaUnderROC"] > 0.9
    assert report.params["num_workers"] == 2
    registered = Registry(str(lake / "_registry"), EmbeddedDelta(spark)).get(
        f"people_lr@{report.version}"
    )
    assert registered.manifest["encoding"] == "native"  # xgboost's default


def test_native_encoding_is_for_xgboost_and_one_hot_stays_available(spark, lake, tmp_path) -> None:
    from batchml.lib.scoring.booster import feature_columns

    def config(algorithm: str, params: str, encoding: str):
        conf = tmp_path / f"{encoding}.toml"
        conf.write_text(
            CONF.format(algorithm=algorithm, params=params) + f'encoding = "{encoding}"\n'
        )
        return load_config(conf_file=conf, overrides=[f'lakehouse.root="{lake}"'], environ={})

    registry = Registry(str(lake / "_registry"), EmbeddedDelta(spark))
    before = len(registry.list())
    linear = config("logistic_regression", "{ maxIter = 5 }", "native").settings
    refused = r'models\.people_lr\.encoding = "native" needs an xgboost'
    with pytest.raises(ConfigError, match=refused):
        train_job.run(spark, linear, "people_lr")
    assert len(registry.list()) == before
    fits = {}
    for encoding in ("one_hot", "native"):
        boosted = config("xgboost_classifier", "{ n_estimators = 30, max_depth = 3 }", encoding)
        report = train_job.run(spark, boosted.settings, "people_lr")
        version = registry.get(f"people_lr@{report.version}")
        fits[encoding] = (report.metrics["test"]["areaUnderROC"], version)
    one_hot, native = fits["one_hot"][1], fits["native"][1]
    assert (one_hot.manifest["encoding"], native.manifest["encoding"]) == ("one_hot", "native")
    final = registry.load(native).stages[-1]
    assert feature_columns(final) == [
        "salary__num", "commission__num", "loan__num", "age__num", "elevel__index"
    ]  # fmt: skip
    assert final.getOrDefault("feature_types") == ["q", "q", "q", "q", "c"]
    assert feature_columns(registry.load(one_hot).stages[-1]) == []
    assert fits["native"][0] > 0.95 and fits["one_hot"][0] > 0.95
    # the holdout is scored through the booster scorer, once: its figures are those of
    # xgboost.spark's own transform of the test split
    from pyspark.ml.evaluation import BinaryClassificationEvaluator
    from pyspark.ml.functions import vector_to_array
    from pyspark.sql import functions as F

    from batchml.lib.training.splits import with_split

    table = EmbeddedDelta(spark).read(str(lake / "people")).df
    split = {"train": 0.7, "validation": 0.15, "test": 0.15}  # the default
    test = with_split(table, "id", split, seed=42, column="__split")
    for auc, version in fits.values():
        scored = registry.load(version).transform(test.filter("__split = 'test'"))
        expected = BinaryClassificationEvaluator(labelCol="label").evaluate(scored)
        assert auc == pytest.approx(expected, abs=2e-4)
        accuracy = scored.select(F.avg((F.col("prediction") == F.col("label")).cast("double")))
        assert version.manifest["metrics"]["test"]["accuracy"] == accuracy.first()[0]
        profile = version.manifest["score_profile"]
        mean = scored.select(F.avg(vector_to_array("probability")[1])).first()[0]
        assert (profile["column"], profile["split"]) == ("probability", "test")
        assert profile["count"] == scored.count() == version.manifest["rows"]["test"]
        assert profile["mean"] == pytest.approx(mean, rel=1e-9)


SPLIT_CONF = ("spark.sql.files.maxPartitionBytes", "spark.sql.files.openCostInBytes")


def test_xgboost_gets_only_workers_that_hold_rows(spark) -> None:
    from types import SimpleNamespace

    from pyspark.sql import functions as F

    ids = spark.range(200).withColumn(
        train_plan.SPLIT, F.when(F.col("id") % 5 == 0, "validation").otherwise("train")
    )
    one_side = ids.filter("pmod(hash(id), 2) = 0")  # every row hashes to worker 0 of 2
    plan = SimpleNamespace(partitions=None, model="m")
    assert train_fit._workers_with_data(ids, "id", 2, plan, validation=True) == 2
    assert train_fit._workers_with_data(one_side, "id", 2, plan, validation=True) == 1
    train_only = ids.filter(F.col(train_plan.SPLIT) == "train")
    assert train_fit._workers_with_data(train_only, "id", 2, plan, validation=False) == 2
    with pytest.raises(InputError, match="m: no worker gets training and validation rows"):
        train_fit._workers_with_data(train_only, "id", 2, plan, validation=True)
    recorded = SimpleNamespace(partitions=2, model="m")  # reproducing: no silent change
    with pytest.raises(InputError, match="recorded num_workers = 2 leaves a worker without"):
        train_fit._workers_with_data(one_side, "id", 2, recorded, validation=True)
    # counted in the feature fit's stacked pass: the same answers, a job only to try fewer
    tracker = spark.sparkContext.statusTracker()
    for frame, workers in ((ids, 2), (one_side, 1)):
        counted = {
            r["k"]: r["count"]
            for r in frame.groupBy(train_fit._worker_of("id", 2).alias("k")).count().collect()
        }
        group = f"counted-{workers}"
        spark.sparkContext.setJobGroup(group, "workers counted")
        try:
            found = train_fit._workers_with_data(
                frame, "id", 2, plan, validation=True, counted=counted
            )
        finally:
            spark.sparkContext.setJobGroup(None, None)
        assert found == workers
        jobs = len(tracker.getJobIdsForGroup(group))
        assert jobs == 0 if workers == 2 else jobs >= 1


def test_native_encoding_with_every_level_of_a_category_dropped(spark, lake, tmp_path) -> None:
    # min_frequency above every level's count: the indexer has no labels, every row gets
    # the one "other" code; the booster still trains, registers and scores the same way
    from batchml.lib.scoring.booster import score

    conf = tmp_path / "rare.toml"
    text = CONF.format(algorithm="xgboost_classifier", params="{ n_estimators = 5 }")
    conf.write_text(text.replace("elevel = {}", "elevel = { min_frequency = 1000000 }"))
    settings = load_config(conf_file=conf, overrides=[f'lakehouse.root="{lake}"'], environ={})
    report = train_job.run(spark, settings.settings, "people_lr")
    registry = Registry(str(lake / "_registry"), EmbeddedDelta(spark))
    fitted = registry.load(registry.get(f"people_lr@{report.version}"))
    table = EmbeddedDelta(spark).read(str(lake / "people")).df.limit(300)
    from pyspark.ml import PipelineModel

    features = PipelineModel(stages=fitted.stages[:-1]).transform(table)
    codes = {r[0] for r in features.select("elevel__index").collect()}
    indexer = [s for s in fitted.stages if s.hasParam("inputCol") and s.getInputCol() == "elevel"]
    assert indexer[0].labels == [] and codes == {0.0}
    ours = {r["id"]: r["probability"] for r in score(fitted, table, ["id"]).collect()}
    theirs = {r["id"]: r["probability"][1] for r in fitted.transform(table).collect()}
    assert len(ours) == 300 and all(ours[k] == pytest.approx(theirs[k], abs=1e-12) for k in ours)
    assert report.metrics["test"]["areaUnderROC"] > 0.9
