from __future__ import annotations

from pathlib import Path

import pytest
from pyspark.sql import SparkSession

from batchml.lib.delta.backend import choose_backend, session_backend
from batchml.lib.platform.config import load_config
from batchml.lib.platform.errors import EnvironmentProblem
from batchml.lib.spark.session import DELTA_EXTENSION, checkpoint_dir, session_conf


def test_session_fixture_has_the_settings_batchml_promises(spark: SparkSession) -> None:
    conf = spark.conf
    assert conf.get("spark.sql.session.timeZone") == "UTC"
    assert conf.get("spark.sql.parquet.outputTimestampType") == "TIMESTAMP_MICROS"
    assert conf.get("spark.sql.adaptive.enabled") == "true"
    assert conf.get("spark.sql.execution.arrow.pyspark.enabled") == "true"
    assert conf.get("spark.sql.shuffle.partitions") == "2"
    assert spark.sparkContext.master == "local[2]"
    assert spark.sparkContext.getConf().get("spark.ui.enabled") == "false"
    # set by build_session: <lakehouse.root>/_checkpoints of the run that last joined it
    checkpoints = spark.sparkContext.getCheckpointDir()
    assert checkpoints is not None and "/_checkpoints/" in checkpoints


def test_parquet_written_by_the_session_has_micros_timestamps_and_no_success_file(
    spark: SparkSession, tmp_path: Path
) -> None:
    import pyarrow.parquet as pq

    out = tmp_path / "ts"
    spark.sql("SELECT TIMESTAMP'2024-03-01 12:00:00' AS ts").write.parquet(str(out))
    assert not (out / "_SUCCESS").exists()
    files = list(out.glob("*.parquet"))
    assert files
    field = pq.read_schema(files[0]).field("ts")
    assert str(field.type) == "timestamp[us, tz=UTC]"


def test_session_conf_empty_master_is_left_to_spark_submit() -> None:
    settings = load_config(env="cluster", environ={}).settings
    conf = session_conf(settings)
    assert "spark.master" not in conf
    assert conf["spark.sql.shuffle.partitions"] == "200"


def test_session_conf_passes_user_settings_and_appends_java_options() -> None:
    settings = load_config(
        environ={},
        overrides=[
            'spark.conf."spark.driver.extraJavaOptions"="-Dfoo=1"',
            'spark.conf."spark.speculation"=true',
        ],
    ).settings
    conf = session_conf(settings, verbose=True)
    assert conf["spark.driver.extraJavaOptions"] == "-Duser.timezone=UTC -Dfoo=1"
    assert conf["spark.speculation"] == "true"
    assert "spark.sql.extensions" not in conf
    quiet = session_conf(settings)
    assert "log4j2.configurationFile" in quiet["spark.driver.extraJavaOptions"]


def test_session_conf_wires_delta_extension_when_connector_is_asked_for() -> None:
    settings = load_config(environ={}, overrides=["delta.backend=connector"]).settings
    assert session_conf(settings)["spark.sql.extensions"] == DELTA_EXTENSION
    packaged = load_config(
        environ={}, overrides=['spark.conf."spark.jars.packages"="io.delta:delta-spark_2.13:4.0.0"']
    ).settings
    assert session_conf(packaged)["spark.sql.extensions"] == DELTA_EXTENSION


def test_checkpoint_dir_defaults_under_the_lakehouse_and_keeps_uris() -> None:
    settings = load_config(environ={}, overrides=['lakehouse.root="/data/lake/"']).settings
    assert checkpoint_dir(settings) == "/data/lake/_checkpoints"
    # Spark's own folders may be on an object store (the lakehouse may not, yet)
    remote = load_config(
        environ={}, overrides=['spark.checkpoint_dir="s3a://bucket/checkpoints"']
    ).settings
    assert checkpoint_dir(remote) == "s3a://bucket/checkpoints"


def test_backend_choice() -> None:
    assert choose_backend("auto", loadable=True).name == "connector"
    assert choose_backend("auto", loadable=False).name == "embedded"
    assert choose_backend("embedded", loadable=True).name == "embedded"
    assert choose_backend("connector", loadable=True).name == "connector"
    with pytest.raises(EnvironmentProblem, match=r"delta\.backend = 'connector' but"):
        choose_backend("connector", loadable=False)


def test_this_session_has_the_connector_so_auto_picks_it(spark: SparkSession) -> None:
    choice = session_backend(spark, "auto")
    assert (choice.name, choice.connector_loadable) == ("connector", True)
    assert session_backend(spark, "embedded").name == "embedded"
