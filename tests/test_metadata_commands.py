"""Commands that read only metadata answer without a JVM and exit cleanly.

Each runs as its own process, as a user runs it: with JAVA_HOME pointing nowhere, a
command that started Spark would exit 3 (no Java). Run twice each: delta-rs's Python
filesystem once crashed the interpreter at exit (abort or segfault, 5 runs in 8).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from pyspark.ml import PipelineModel
from pyspark.ml.feature import SQLTransformer
from pyspark.sql import SparkSession

from batchml.lib.delta.embedded import EmbeddedDelta
from batchml.lib.tracking.registry import Registry


@pytest.fixture(scope="module")
def lake(spark: SparkSession, tmp_path_factory: pytest.TempPathFactory) -> Path:
    lake = tmp_path_factory.mktemp("metadata") / "lake"
    tables = EmbeddedDelta(spark)
    rows = [(1, "UA", "2013-01-01 05:00:00"), (2, None, None), (3, "AA", "2013-01-02 06:30:00")]
    df = spark.createDataFrame(rows, "id int, carrier string, at string")
    df = df.withColumn("at", df["at"].cast("timestamp"))
    tables.write(df.filter("id < 3"), str(lake / "trips"), partition_by=["carrier"])
    tables.write(df.filter("id = 3"), str(lake / "trips"))
    model = PipelineModel(stages=[SQLTransformer(statement="SELECT * FROM __THIS__")])
    registry = Registry(str(lake / "_registry"), tables)
    manifest = {"algorithm": "sql", "training_table": str(lake / "trips"), "training_version": 1}
    registry.register("m", model, {**manifest, "metrics": {"test": {"auc": 0.75}}})
    registry.set_alias("m", 1, "champion")
    return lake


def batchml(lake: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "JAVA_HOME": str(lake / "no-java"), "BATCHML_ENV": "local"}
    command = [sys.executable, "-m", "batchml.jobs.cli", "--set", f'lakehouse.root="{lake}"']
    return subprocess.run(
        [*command, *args], capture_output=True, text=True, env=env, timeout=120, check=False
    )


@pytest.mark.parametrize("attempt", [1, 2])
def test_models_list_and_show_need_no_jvm(lake: Path, attempt: int) -> None:
    listed = batchml(lake, "models", "list", "--json")
    assert listed.returncode == 0, listed.stderr
    [version] = json.loads(listed.stdout)["versions"]
    assert (version["name"], version["version"], version["aliases"]) == ("m", 1, ["champion"])
    assert (version["training_table"], version["training_version"]) == (str(lake / "trips"), 1)
    shown = batchml(lake, "models", "show", "m@champion")
    assert shown.returncode == 0, shown.stderr
    assert shown.stdout.startswith("m version 1 (sql), registered ")
    assert "test: auc 0.7500" in shown.stdout


@pytest.mark.parametrize("attempt", [1, 2])
def test_table_show_and_history_need_no_jvm(lake: Path, attempt: int) -> None:
    shown = batchml(lake, "table", "show", "trips", "--json")
    assert shown.returncode == 0, shown.stderr
    data = json.loads(shown.stdout)
    assert (data["uri"], data["version"], data["row_count"]) == (str(lake / "trips"), 1, 3)
    assert [(f["name"], f["type"]) for f in data["schema"]] == [
        ("id", "int"),
        ("carrier", "string"),
        ("at", "timestamp"),
    ]
    assert sorted(data["rows"], key=lambda r: r["id"]) == [
        {"id": 1, "carrier": "UA", "at": "2013-01-01 05:00:00"},
        {"id": 2, "carrier": None, "at": None},
        {"id": 3, "carrier": "AA", "at": "2013-01-02 06:30:00"},
    ]
    old = batchml(lake, "table", "show", "trips", "--version", "0", "--limit", "0", "--json")
    assert old.returncode == 0, old.stderr
    assert (json.loads(old.stdout)["row_count"], json.loads(old.stdout)["rows"]) == (2, [])
    history = batchml(lake, "table", "history", "trips", "--limit", "1", "--json")
    assert history.returncode == 0, history.stderr
    [commit] = json.loads(history.stdout)["commits"]
    assert (commit["version"], commit["batchml"]["operation"]) == (1, "append")


def test_a_command_that_needs_spark_says_so(lake: Path) -> None:
    # the same environment, a command that must start Spark: the JAVA_HOME trick holds
    result = batchml(lake, "table", "export", "trips", "--to", str(lake / "out"))
    assert result.returncode == 3
    assert result.stderr.startswith("batchml: error: Java not found (looked in JAVA_HOME)")
