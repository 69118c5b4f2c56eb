"""The private Spark and xgboost.spark APIs batchml relies on, each called for real: a
Spark or xgboost upgrade that removes or changes one fails here, by name, before any job
misbehaves."""

from __future__ import annotations

from pathlib import Path

import pytest
from pyspark.sql import Observation, SparkSession
from pyspark.sql import functions as F

from batchml.lib.spark import jvm
from batchml.lib.training import xgboost_spark


def test_hadoop_filesystem_lists_a_folder_as_spark_sees_it(
    spark: SparkSession, tmp_path: Path
) -> None:
    (tmp_path / "a.json").write_text("{}")
    (tmp_path / "b.txt").write_text("hello")
    fs, path = jvm.hadoop_filesystem(spark, str(tmp_path))
    assert sorted(s.getPath().getName() for s in fs.listStatus(path)) == ["a.json", "b.txt"]
    _, text_path = jvm.hadoop_filesystem(spark, str(tmp_path / "b.txt"))
    assert jvm.read_text(spark, fs, text_path) == "hello"
    conf = jvm.hadoop_conf(spark)
    conf.set("batchml.test.key", "on")
    assert jvm.hadoop_conf(spark).get("batchml.test.key") == "on"


def test_task_and_memory_figures_come_from_the_jvm(spark: SparkSession) -> None:
    assert jvm.running_tasks(spark) == 0  # nothing runs between tests
    storage = jvm.storage_memory(spark)
    heap = int(jvm.jvm(spark).java.lang.Runtime.getRuntime().maxMemory())
    assert storage is not None and 0 < storage < heap
    spark.range(1000).selectExpr("sum(id)").collect()
    # the heap pools' peaks summed, capped at the heap's size (the bean's, a survivor
    # space above Runtime's): the sum passed it in a long session (CI, 1.42 GB of 1 GB)
    beans = jvm.jvm(spark).java.lang.management.ManagementFactory
    size = int(beans.getMemoryMXBean().getHeapMemoryUsage().getMax())
    assert 0 < jvm.peak_heap(spark.sparkContext) <= size


def test_an_observation_is_done_only_after_its_action(spark: SparkSession) -> None:
    observed = Observation("internals")
    frame = spark.range(10).observe(observed, F.count(F.lit(1)).alias("rows"))
    assert not jvm.observation_done(observed)
    assert not jvm.observation_done(None)
    frame.collect()
    assert jvm.observation_done(observed)
    assert observed.get == {"rows": 10}


def test_bucketize_sends_the_splits_as_one_array(spark: SparkSession) -> None:
    frame = spark.createDataFrame([(-5.0,), (0.5,), (1.5,), (9.0,), (float("nan"),)], ["x"])
    out = jvm.bucketize(frame, "x", [float("-inf"), 0.0, 1.0, float("inf")], "b")
    assert out is not None
    assert [r["b"] for r in out.orderBy("x").collect()] == [0.0, 1.0, 2.0, 2.0, 3.0]


def test_the_status_store_reads_a_jobs_stages_and_tasks(spark: SparkSession) -> None:
    sc = spark.sparkContext
    before = max(sc.statusTracker().getJobIdsForGroup(None), default=-1)
    spark.range(0, 100, numPartitions=3).write.format("noop").mode("overwrite").save()
    jobs = [j for j in sc.statusTracker().getJobIdsForGroup(None) if j > before]
    assert len(jobs) == 1
    store = jvm.StatusStore(sc)
    stages = store.job(jobs[0])["stageIds"]
    attempts = [a for s in stages for a in store.stage_attempts(s) if a["status"] != "SKIPPED"]
    assert sum(a["numCompleteTasks"] for a in attempts) == 3  # one per partition
    assert "driver" in {e["id"] for e in store.executors()}


def test_classes_and_the_gateway(spark: SparkSession) -> None:
    assert jvm.class_loadable(spark, "org.apache.spark.SparkContext")
    assert not jvm.class_loadable(spark, "org.example.NoSuchClass")
    assert jvm.gateway_running()


def test_xgboost_spark_still_has_every_hooked_private_method(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert xgboost_spark.missing_hooks() == []
    # the check can fail: a hook xgboost.spark does not have, or one with other parameters
    monkeypatch.setitem(xgboost_spark.PRIVATE_HOOKS, "_gone_in_a_later_release", ())
    monkeypatch.setitem(xgboost_spark.PRIVATE_HOOKS, "_fit", ("frame",))
    assert xgboost_spark.missing_hooks() == [
        "SparkXGBClassifier._fit(dataset)",
        "SparkXGBClassifier._gone_in_a_later_release is gone",
        "SparkXGBRegressor._fit(dataset)",
        "SparkXGBRegressor._gone_in_a_later_release is gone",
    ]
