"""The connector backend: Delta Lake's Spark connector, on the test session's classpath
(fetched from Maven Central once per machine, see conftest.py)."""

from __future__ import annotations

import json

import pytest
from pyspark.sql import SparkSession

from batchml.lib.delta import WriteToken, delta_tables
from batchml.lib.delta.connector import ConnectorDelta, write_options
from batchml.lib.delta.embedded import EmbeddedDelta
from batchml.lib.platform.config import load_config
from batchml.lib.platform.errors import InputError
from batchml.lib.spark.session import connector_loadable


def test_write_options_map_the_api_to_delta_options() -> None:
    mode, options = write_options(
        "replace", "month = '2013-01'", WriteToken("ingest", 4), True, {"job": "ingest"}
    )
    assert mode == "overwrite"
    assert options["replaceWhere"] == "month = '2013-01'"
    assert (options["txnAppId"], options["txnVersion"]) == ("ingest", "4")
    assert options["mergeSchema"] == "true"
    info = json.loads(options["userMetadata"])["batchml"]
    assert len(info.pop("commit_id")) == 32
    assert info == {
        "operation": "replace",
        "predicate": "month = '2013-01'",
        "job": "ingest",
        "token": "ingest@4",
    }
    assert write_options("append", None, None, False, {})[0] == "append"
    assert write_options("overwrite", None, None, False, {})[0] == "overwrite"
    with pytest.raises(InputError, match="needs replace_where"):
        write_options("replace", None, None, False, {})
    with pytest.raises(InputError, match="unknown write mode 'upsert'"):
        write_options("upsert", None, None, False, {})  # type: ignore[arg-type]


def test_factory_follows_delta_backend_setting(spark: SparkSession) -> None:
    assert connector_loadable(spark), "the test session is built with the connector jars"
    auto = load_config(environ={}).settings
    embedded = load_config(environ={}, overrides=["delta.backend=embedded"]).settings
    connector = load_config(environ={}, overrides=["delta.backend=connector"]).settings
    # (each wrapped so that the run being recorded notes what it reads and writes)
    assert isinstance(delta_tables(spark, auto).backend, ConnectorDelta)
    assert isinstance(delta_tables(spark, embedded).backend, EmbeddedDelta)
    assert isinstance(delta_tables(spark, connector).backend, ConnectorDelta)
