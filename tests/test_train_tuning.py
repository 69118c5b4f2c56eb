"""Training beyond one plain fit: xgboost.spark, early stopping, class weights, tuning,
the training profile, --reproduce, progress, and the bad inputs of each."""

from __future__ import annotations

import io
import json
import logging
import re
import threading
import time
from pathlib import Path

import people
import pytest
from pyspark.sql import SparkSession
from pyspark.sql import functions as F
from typer.testing import CliRunner

from batchml.jobs.cli import app
from batchml.jobs.train import fit as train_fit
from batchml.jobs.train import job as train_job
from batchml.jobs.train import plan as train_plan
from batchml.lib.data.synthetic import agrawal
from batchml.lib.delta.embedded import EmbeddedDelta
from batchml.lib.platform.config import load_config
from batchml.lib.platform.errors import EXIT_INPUT, EXIT_MISMATCH, ConfigError, InputError
from batchml.lib.platform.progress import Snapshot, progress, snapshot
from batchml.lib.tracking.registry import Registry
from batchml.lib.training.splits import with_split

PIPELINE = (
    people.pipeline()
    + """
"""
)


@pytest.fixture(scope="module")
def lake(spark: SparkSession, tmp_path_factory: pytest.TempPathFactory) -> Path:
    lake = tmp_path_factory.mktemp("tuning") / "lake"
    # function 7 is linear in salary, commission and loan; about a third are group A
    EmbeddedDelta(spark).write(agrawal(spark, 5000, function=7, seed=21), str(lake / "people"))
    return lake


def configure(tmp_path: Path, lake: Path, model: str):
    conf = tmp_path / "train.toml"
    conf.write_text(PIPELINE + '\n[models.m]\npipeline = "people"\n' + model)
    return load_config(conf_file=conf, overrides=[f'lakehouse.root="{lake}"'], environ={}).settings


def registry(spark, lake: Path) -> Registry:
    return Registry(str(lake / "_registry"), EmbeddedDelta(spark))


def test_xgboost_with_early_stopping_and_balanced_weights(spark, lake, tmp_path) -> None:
    config = configure(
        tmp_path,
        lake,
        """
algorithm = "xgboost_classifier"
params = { n_estimators = 300, max_depth = 3, learning_rate = 0.3, eval_metric = "logloss" }
early_stopping = true
class_weight = "balanced"
""",
    )
    report = train_job.run(spark, config, "m")
    assert report.metrics["test"]["areaUnderROC"] > 0.95
    stopped = report.early_stopping
    assert stopped["rounds_trained"] < 300  # it stopped
    assert stopped["rounds_trained"] == stopped["best_iteration"] + 1 + 10  # 10 patient rounds
    model = registry(spark, lake).load(f"m@{report.version}")
    booster = model.stages[-1]
    assert booster.getOrDefault("num_workers") == spark.sparkContext.defaultParallelism
    assert booster.getOrDefault("weightCol") == train_plan.WEIGHT
    manifest = registry(spark, lake).get(f"m@{report.version}").manifest
    assert manifest["persisted_training_data"] is False  # xgboost reads its input once
    assert manifest["versions"]["xgboost-cpu"] and manifest["code"]["package"]
    scored = model.transform(EmbeddedDelta(spark).read(str(lake / "people")).df.limit(20))
    assert scored.filter(F.col("prediction").isin(0.0, 1.0)).count() == 20


def test_gbt_early_stopping_keeps_fewer_trees(spark, lake, tmp_path) -> None:
    config = configure(
        tmp_path,
        lake,
        """
algorithm = "gbt_regressor"
params = { maxIter = 60, maxDepth = 4, stepSize = 0.5, validationTol = 0.01 }
early_stopping = true
""",
    )
    report = train_job.run(spark, config, "m")
    assert 1 <= report.early_stopping["trees"] < 60
    assert set(report.metrics["test"]) == {"rmse", "mae", "r2"}


def test_class_weights_shift_predictions_to_the_rare_class(spark, lake, tmp_path) -> None:
    # with a quarter of the labels flipped the classes overlap, so weights move the boundary
    EmbeddedDelta(spark).write(
        agrawal(spark, 4000, function=7, noise=0.25, seed=5), str(lake / "noisy")
    )
    plain = configure(tmp_path, lake, 'algorithm = "logistic_regression"\n')
    heavy = configure(
        tmp_path, lake, 'algorithm = "logistic_regression"\nclass_weight = { "1" = 5.0 }\n'
    )
    positives = []
    for config in (plain, heavy):
        view = config.pipelines["people"].model_copy(update={"view": "noisy"})
        config = config.model_copy(update={"pipelines": {"people": view}})
        fitted = train_fit.fit(
            spark, config, train_plan.plan_from_settings(config, "m", None)
        ).fitted
        scored = fitted.transform(EmbeddedDelta(spark).read(str(lake / "noisy")).df)
        positives.append(scored.filter(F.col("prediction") == 1.0).count())
    assert positives[1] > positives[0] * 1.5, positives


def test_cross_validated_grid_search_records_every_candidate(spark, lake, tmp_path) -> None:
    config = configure(
        tmp_path,
        lake,
        """
algorithm = "logistic_regression"
params = { maxIter = 30 }
[models.m.tuning]
space = { regParam = [0.0, 0.5, 5.0], elasticNetParam = [0.0, 1.0] }
folds = 3
parallelism = 2
""",
    )
    report = train_job.run(spark, config, "m")
    tuning = report.tuning
    assert len(tuning["candidates"]) == 6
    assert {tuple(sorted(c["params"].items())) for c in tuning["candidates"]} == {
        (("elasticNetParam", e), ("regParam", r)) for r in (0.0, 0.5, 5.0) for e in (0.0, 1.0)
    }
    best = max(tuning["candidates"], key=lambda c: c["score"])
    assert tuning["best_params"] == best["params"]
    assert tuning["best_score"] == best["score"]
    assert best["params"]["regParam"] == 0.0  # a separable linear rule: no penalty wins
    assert all(c["std"] is not None for c in tuning["candidates"])
    assert report.params["regParam"] == 0.0
    manifest = registry(spark, lake).get(f"m@{report.version}").manifest
    assert manifest["tuning"]["candidates"] == tuning["candidates"]
    assert manifest["persisted_training_data"] is True


def test_multinomial_logistic_regression(spark, lake, tmp_path) -> None:
    people = EmbeddedDelta(spark).read(str(lake / "people")).df
    # three salary bands as the label: learnable from salary, a feature
    bands = people.withColumn(
        "label", F.when(F.col("salary") < 60000, 0).when(F.col("salary") < 110000, 1).otherwise(2)
    )
    EmbeddedDelta(spark).write(bands, str(lake / "bands"))
    config = configure(
        tmp_path,
        lake,
        'algorithm = "logistic_regression"\nparams = { maxIter = 200, family = "multinomial" }\n',
    )
    view = config.pipelines["people"].model_copy(update={"view": "bands"})
    config = config.model_copy(update={"pipelines": {"people": view}})
    report = train_job.run(spark, config, "m")
    assert set(report.metrics["test"]) == {"accuracy"}  # no binary AUCs for three classes
    assert report.metrics["test"]["accuracy"] > 0.9
    coefficients = registry(spark, lake).load(f"m@{report.version}").stages[-1]
    assert coefficients.numClasses == 3


def test_random_holdout_search_is_seeded(spark, lake, tmp_path) -> None:
    model = """
algorithm = "random_forest_classifier"
params = { numTrees = 5 }
[models.m.tuning]
strategy = "holdout"
method = "random"
samples = 3
metric = "areaUnderPR"
space = { maxDepth = { min = 2, max = 6, integer = true }, subsamplingRate = { min = 0.5, max = 1.0 } }
"""  # noqa: E501
    config = configure(tmp_path, lake, model)
    first = train_fit.fit(spark, config, train_plan.plan_from_settings(config, "m", None)).tuning
    second = train_fit.fit(spark, config, train_plan.plan_from_settings(config, "m", None)).tuning
    assert [c["params"] for c in first["candidates"]] == [c["params"] for c in second["candidates"]]
    for a, b in zip(first["candidates"], second["candidates"], strict=True):
        assert a["score"] == pytest.approx(b["score"], abs=1e-9), (a, b)
    assert len(first["candidates"]) == 3 and first["metric"] == "areaUnderPR"
    for candidate in first["candidates"]:
        assert isinstance(candidate["params"]["maxDepth"], int)
        assert 2 <= candidate["params"]["maxDepth"] <= 6
        assert 0.5 <= candidate["params"]["subsamplingRate"] <= 1.0


@pytest.mark.parametrize(
    ("model", "source"),
    [
        ('algorithm = "logistic_regression"\n', "queried"),
        # a booster's stages need no numeric statistic: they ride on its training pass,
        # which also reads the validation rows (early stopping) the profile leaves out
        (
            'algorithm = "xgboost_classifier"\nparams = { n_estimators = 3 }\n'
            "early_stopping = true\n",
            "observed",
        ),
    ],
    ids=["lr", "xgboost"],
)
def test_training_profile_matches_the_training_split(
    spark, lake, tmp_path, model: str, source: str
) -> None:
    config = configure(tmp_path, lake, model)
    trained = train_fit.fit(spark, config, train_plan.plan_from_settings(config, "m", None))
    assert trained.numeric_statistics == source
    profile = trained.profile  # what train registers as the manifest's training_profile
    people = EmbeddedDelta(spark).read(str(lake / "people")).df
    training = with_split(
        people, "id", {"train": 0.7, "validation": 0.15, "test": 0.15}, seed=42
    ).filter("split = 'train'")
    assert profile["rows"] == training.count() == trained.rows["train"]
    loan = profile["numeric"]["loan"]
    exact = training.agg(F.count("loan"), F.avg("loan"), F.stddev("loan")).collect()[0]
    assert loan["count"] == exact[0] and loan["nulls"] == 0
    assert loan["mean"] == pytest.approx(exact[1], rel=1e-12)
    assert loan["stddev"] == pytest.approx(exact[2], rel=1e-9)
    assert len(loan["deciles"]) == 9 and loan["deciles"] == sorted(loan["deciles"])
    assert sum(loan["decile_counts"]) == loan["count"]
    rows = training.count()
    for k, edge in enumerate(loan["deciles"], start=1):  # KLL rank error is about 1.3%
        below = training.filter(F.col("loan") <= edge).count()
        assert below / rows == pytest.approx(k / 10, abs=0.03)
    for bin_count in loan["decile_counts"]:
        assert bin_count == pytest.approx(rows / 10, abs=rows * 0.03)
    assert loan["kll_sketch"] and len(loan["kll_sketch"]) < 20_000
    levels = {str(r[0]): r[1] for r in training.groupBy("elevel").count().collect()}
    assert profile["categorical"]["elevel"]["levels"] == levels


def test_reproduce_retrains_from_the_manifest(spark, cli_globals, lake, tmp_path) -> None:
    configure(tmp_path, lake, 'algorithm = "logistic_regression"\nparams = { maxIter = 20 }\n')
    base = [
        *cli_globals,
        "--conf",
        str(tmp_path / "train.toml"),
        "--set",
        f'lakehouse.root="{lake}"',
    ]
    trained = CliRunner().invoke(app, [*base, "train", "m", "--json"])
    assert trained.exit_code == 0, trained.stderr
    version = json.loads(trained.stdout)["version"]
    shown = CliRunner().invoke(app, [*base, "models", "show", f"m@{version}"])
    assert shown.exit_code == 0, shown.stderr
    assert (
        "split           train 0.7 / validation 0.15 / test 0.15 by hash of id, seed 42"
        in shown.stdout
    )
    assert "params          maxIter=20" in shown.stdout
    assert "profile         4 numeric, 1 categorical features" in shown.stdout
    # the config changed since: --reproduce must follow the manifest, not the config
    other = tmp_path / "other.toml"
    other.write_text(PIPELINE + '\n[models.m]\npipeline = "people"\nalgorithm = "gbt_regressor"\n')
    before = len(registry(spark, lake).list())
    result = CliRunner().invoke(
        app,
        [
            *cli_globals,
            "--conf",
            str(other),
            "--set",
            f'lakehouse.root="{lake}"',
            "train",
            "--reproduce",
            f"m@{version}",
            "--json",
        ],
    )
    assert result.exit_code == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["match"] is True and data["differences"] == {}
    assert data["reproduced"]["test"]["areaUnderROC"] == pytest.approx(
        data["registered"]["test"]["areaUnderROC"], abs=1e-9
    )
    assert len(registry(spark, lake).list()) == before  # reproducing registers nothing
    missing = CliRunner().invoke(app, [*base, "train", "--reproduce", "m@999"])
    assert missing.exit_code == EXIT_INPUT
    assert "has no version 999" in missing.stderr
    # a version whose registered metrics are not what its manifest trains: exit 6
    registered = registry(spark, lake).get(f"m@{version}")
    doctored = json.loads(json.dumps(registered.manifest))
    doctored["metrics"]["test"]["areaUnderROC"] -= 0.01
    bad = registry(spark, lake).register("m", registry(spark, lake).load(f"m@{version}"), doctored)
    differs = CliRunner().invoke(app, [*base, "train", "--reproduce", f"m@{bad.version}"])
    assert differs.exit_code == EXIT_MISMATCH == 6, differs.stderr
    assert "metrics DIFFER" in differs.stdout.splitlines()[0]
    flagged = [line for line in differs.stdout.splitlines() if line.endswith("<- differs")]
    assert len(flagged) == 1 and flagged[0].lstrip().startswith("test.areaUnderROC:")


def test_metric_comparison_flags_differences() -> None:
    same = train_job.compare_metrics({"test": {"auc": 0.8}}, {"test": {"auc": 0.8 + 1e-12}})
    assert same == {}
    differs = train_job.compare_metrics({"test": {"auc": 0.8, "pr": 0.5}}, {"test": {"auc": 0.81}})
    assert differs["test.auc"] == pytest.approx(0.01)
    assert differs["test.pr"] == float("inf")


@pytest.mark.parametrize(
    ("model", "error", "message"),
    [
        (
            'algorithm = "logistic_regression"\n[models.m.tuning]\nspace = { regParm = [0.1] }\n',
            InputError,
            "tuning.space: logistic_regression has no param 'regParm'",
        ),
        (
            'algorithm = "logistic_regression"\n[models.m.tuning]\nspace = { maxIter = ["x"] }\n',
            InputError,
            "param maxIter = 'x'",
        ),
        (
            'algorithm = "logistic_regression"\n[models.m.tuning]\nmethod = "grid"\n'
            "space = { regParam = { min = 0.0, max = 1.0 } }\n",
            ConfigError,
            "a grid needs lists",
        ),
        (
            'algorithm = "logistic_regression"\nearly_stopping = true\n',
            ConfigError,
            "logistic_regression cannot stop early",
        ),
        (
            'algorithm = "gbt_regressor"\nclass_weight = "balanced"\n',
            ConfigError,
            "class_weight needs a classifier",
        ),
        (
            'algorithm = "xgboost_classifier"\nparams = { num_workers = 64 }\n',
            InputError,
            "num_workers = 64 is more than the",
        ),
        (
            'algorithm = "xgboost_classifier"\nparams = { max_depth = "deep" }\n',
            InputError,
            "param max_depth = 'deep' has the wrong type",
        ),
        (
            'algorithm = "xgboost_classifier"\nparams = { n_estimatorz = 5 }\n',
            InputError,
            "did you mean 'n_estimators'",
        ),
        (
            'algorithm = "logistic_regression"\nsplit = { train = 0.8, validation = 0.0, '
            "test = 0.2 }\n",
            ConfigError,
            "split leaves validation empty",
        ),
        (
            'algorithm = "logistic_regression"\nclass_weight = { "7" = 2.0 }\n',
            InputError,
            "class_weight names label values the training split does not have: 7",
        ),
        (
            'algorithm = "logistic_regression"\n[models.m.tuning]\nmetric = "auc"\n'
            "space = { regParam = [0.1] }\n",
            InputError,
            "unknown classification metric 'auc'",
        ),
    ],
)
def test_bad_training_specs_leave_the_registry_unchanged(
    spark, lake, tmp_path, model, error, message
) -> None:
    before = len(registry(spark, lake).list())
    with pytest.raises(error, match=message):
        train_job.run(spark, configure(tmp_path, lake, model), "m")
    assert len(registry(spark, lake).list()) == before


def test_bad_tables_leave_the_registry_unchanged(spark, lake, tmp_path) -> None:
    config = configure(tmp_path, lake, 'algorithm = "logistic_regression"\n')
    before = len(registry(spark, lake).list())
    with pytest.raises(InputError, match="version 7"):
        train_job.run(spark, config, "m", table_version=7)
    empty = lake / "empty_people"
    people = EmbeddedDelta(spark).read(str(lake / "people")).df
    EmbeddedDelta(spark).write(people.limit(0), str(empty))
    view = config.pipelines["people"].model_copy(update={"view": "empty_people"})
    with pytest.raises(InputError, match=r"training split of .*empty_people@0 has no labelled"):
        train_job.run(spark, config.model_copy(update={"pipelines": {"people": view}}), "m")
    missing = config.pipelines["people"].model_copy(
        update={"numeric": {**config.pipelines["people"].numeric, "bonus": {}}}
    )
    with pytest.raises(InputError, match="numeric column bonus is not in view people"):
        train_job.run(spark, config.model_copy(update={"pipelines": {"people": missing}}), "m")
    no_label = config.pipelines["people"].model_copy(update={"label": "outcome"})
    with pytest.raises(InputError, match="column outcome is not in"):
        train_job.run(spark, config.model_copy(update={"pipelines": {"people": no_label}}), "m")
    one_class = lake / "one_class"
    EmbeddedDelta(spark).write(people.withColumn("label", F.lit(1)), str(one_class))
    single = config.pipelines["people"].model_copy(update={"view": "one_class"})
    with pytest.raises(InputError, match="label label has a single class"):
        train_job.run(spark, config.model_copy(update={"pipelines": {"people": single}}), "m")
    assert len(registry(spark, lake).list()) == before


def test_progress_logs_lines_when_not_a_terminal(spark, caplog) -> None:
    slow = spark.range(0, 6_000_000, 1, 2).select(F.max(F.sha2(F.col("id").cast("string"), 512)))
    with (
        caplog.at_level(logging.INFO, logger="batchml.lib.platform.progress"),
        progress(spark, "slow work", interval=0.2, terminal=False),
    ):
        slow.collect()
    lines = [r.getMessage() for r in caplog.records if r.name == "batchml.lib.platform.progress"]
    assert len(lines) >= 3 and all(line.startswith("slow work: ") for line in lines), lines
    assert re.fullmatch(r"slow work: finished, [12] Spark jobs, 0:\d\d", lines[-1]), lines


def test_snapshot_shows_the_running_stage_of_its_job_group(spark) -> None:
    # Spark's status store learns of a job a moment after it starts: poll until it does,
    # then cancel the (long) job
    group, started = "snapshot-test", time.monotonic()
    context = spark.sparkContext
    failures: list[BaseException] = []

    def work() -> None:
        context.setJobGroup(group, "long hashing", interruptOnCancel=True)
        try:
            spark.range(0, 60_000_000, 1, 2).select(
                F.max(F.sha2(F.col("id").cast("string"), 512))
            ).collect()
        except Exception as exc:  # cancelled below
            failures.append(exc)

    worker = threading.Thread(target=work)
    worker.start()
    seen = None
    while time.monotonic() - started < 120 and worker.is_alive():
        state = snapshot(spark, group, started)
        if state.stage is not None:
            seen = state
            break
        time.sleep(0.2)
    context.cancelJobGroup(group)
    worker.join(timeout=60)
    assert seen is not None, "the stage never showed"
    assert re.fullmatch(r"stage \d+ \(collect\)", seen.stage)
    assert seen.tasks_total == 2 and seen.tasks_done == 0 and seen.jobs_running == 1
    assert failures  # the job was cancelled, not finished


def test_progress_draws_a_bar_on_a_terminal(spark) -> None:
    stream = io.StringIO()
    with progress(spark, "bar", stream=stream, terminal=True):
        # a job that waits (1.5 s a task), not one that computes: redrawn every 0.5 s
        spark.range(0, 4, 1, 2).selectExpr(
            "reflect('java.lang.Thread', 'sleep', CAST(750 AS BIGINT))"
        ).collect()
    drawn = stream.getvalue()
    assert "\r\033[Kbar [" in drawn and drawn.endswith("\r\033[K")  # drawn, then cleared
    half = Snapshot(
        jobs_done=3, jobs_running=1, stage="stage 7 (fit)", tasks_done=5, tasks_total=10, seconds=75
    )
    assert (
        half.bar("train m")
        == "train m [############------------] 5/10 stage 7 (fit) · jobs 3 · 1:15"
    )
    assert half.line("train m") == "train m: stage 7 (fit), tasks 5/10, 3 Spark jobs done, 1:15"


def test_one_pass_holdout_metrics_agree_with_mllib_evaluators(spark) -> None:
    from pyspark.ml.evaluation import (
        BinaryClassificationEvaluator,
        MulticlassClassificationEvaluator,
        RegressionEvaluator,
    )
    from pyspark.ml.functions import array_to_vector

    from batchml.lib.evaluation.holdout import holdout_metrics

    p = F.rand(3)
    scored = (
        spark.range(20000, numPartitions=3)
        .select(
            (F.rand(4) < p).cast("int").alias("label"),
            (p > 0.4).cast("double").alias("prediction"),
            array_to_vector(F.array(1 - p, p)).alias("probability"),
        )
        .cache()
    )
    rows, metrics = holdout_metrics(scored, "classification", "label")
    assert rows == 20000
    for name in ("areaUnderROC", "areaUnderPR"):  # MLlib exact (numBins 0) vs 10,000 bins
        exact = BinaryClassificationEvaluator(
            labelCol="label", rawPredictionCol="probability", metricName=name, numBins=0
        ).evaluate(scored)
        assert metrics[name] == pytest.approx(exact, abs=2e-4), name
    accuracy = MulticlassClassificationEvaluator(labelCol="label", metricName="accuracy")
    assert metrics["accuracy"] == pytest.approx(accuracy.evaluate(scored), abs=1e-12)
    numbers = spark.range(5000).select(
        (F.col("id") % 97).cast("double").alias("label"),
        ((F.col("id") % 97) + F.randn(5) * 3).alias("prediction"),
    )
    rows, metrics = holdout_metrics(numbers, "regression", "label")
    assert rows == 5000
    for name in ("rmse", "mae", "r2"):
        exact = RegressionEvaluator(labelCol="label", metricName=name).evaluate(numbers)
        assert metrics[name] == pytest.approx(exact, rel=1e-9), name


def test_training_data_is_persisted_only_when_it_fits_in_storage_memory(spark) -> None:
    assert train_fit._fits_in_storage(spark, 10_000, 23)
    assert not train_fit._fits_in_storage(spark, 10_000_000_000, 23)  # 3.4 TB estimated


def test_reproduce_still_works_after_vacuum_removed_newer_versions(
    spark, cli_globals, lake, tmp_path
) -> None:
    people = EmbeddedDelta(spark).read(str(lake / "people")).df
    table = lake / "people_v"
    EmbeddedDelta(spark).write(people, str(table))  # version 0: the model trains on it
    configure(tmp_path, lake, 'algorithm = "logistic_regression"\nparams = { maxIter = 15 }\n')
    conf = tmp_path / "train.toml"
    conf.write_text(conf.read_text().replace('view = "people"', 'view = "people_v"'))
    base = [*cli_globals, "--conf", str(conf), "--set", f'lakehouse.root="{lake}"']
    trained = CliRunner().invoke(app, [*base, "train", "m", "--json"])
    assert trained.exit_code == 0, trained.stderr
    version = json.loads(trained.stdout)["version"]
    for _ in range(2):  # newer versions replace every file of version 0
        EmbeddedDelta(spark).write(people.limit(100), str(table), mode="overwrite")
    vacuumed = CliRunner().invoke(
        app, [*base, "table", "vacuum", str(table), "--retain-hours", "0", "--force", "--json"]
    )
    assert vacuumed.exit_code == 0, vacuumed.stderr
    assert json.loads(vacuumed.stdout)["kept_versions"] == [0]
    again = CliRunner().invoke(app, [*base, "train", "--reproduce", f"m@{version}", "--json"])
    assert again.exit_code == 0, again.stderr
    assert json.loads(again.stdout)["match"] is True
