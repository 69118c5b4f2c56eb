"""Delta's Spark connector jar: pinned to the locked delta-spark, fetched once, named errors."""

from __future__ import annotations

import tomllib
from importlib.metadata import version
from pathlib import Path

import pytest
from pyspark.sql import SparkSession

from batchml.lib.delta import connector_jar
from batchml.lib.platform.config import load_config
from batchml.lib.platform.errors import EnvironmentProblem
from batchml.lib.spark.jvm import class_loadable
from batchml.lib.spark.session import build_session, connector_jars, session_conf

ROOT = Path(__file__).resolve().parents[1]


def test_the_pinned_version_is_the_locked_delta_spark() -> None:
    lock = tomllib.loads((ROOT / "uv.lock").read_text())
    [locked] = [p["version"] for p in lock["package"] if p["name"] == "delta-spark"]
    assert connector_jar.DELTA_VERSION == locked == version("delta-spark")
    assert connector_jar.CONNECTOR.rsplit(":", 1) == ["io.delta:delta-spark_2.13", locked]


def test_the_cache_holds_the_connector_and_the_session_loads_it(
    connector_jars: list[Path], spark: SparkSession
) -> None:
    names = {jar.name for jar in connector_jars}
    assert set(connector_jar.REQUIRED_JARS) <= names
    cache = load_config(env="local", environ={}).settings.delta.jar_cache
    assert connector_jar.cached_jars(cache) == connector_jars  # a second fetch reads the cache
    assert connector_jar.fetch(cache) == connector_jars
    # (py4j answers any name with a JavaPackage: ask the class loader instead)
    assert class_loadable(spark, "org.apache.spark.sql.delta.DeltaLog")
    assert not class_loadable(spark, "org.apache.spark.sql.delta.NoSuchClass")
    assert spark.conf.get("spark.sql.extensions") == "io.delta.sql.DeltaSparkSessionExtension"


def test_auto_uses_a_cached_jar_and_never_fetches(tmp_path: Path) -> None:
    empty = load_config(
        environ={}, overrides=[f'delta.jar_cache="{tmp_path}"', 'delta.backend="auto"']
    ).settings
    assert connector_jars(empty) is None  # nothing cached: auto stays embedded, no download
    assert not (tmp_path / connector_jar.DELTA_VERSION / "jars").exists()
    cached = load_config(environ={}, overrides=['delta.backend="auto"']).settings
    jars = connector_jars(cached)
    assert jars is not None
    conf = session_conf(cached, connector_jars=jars)
    assert conf["spark.jars"].split(",") == [str(jar) for jar in jars]
    assert conf["spark.sql.catalog.spark_catalog"].endswith("DeltaCatalog")


def test_an_unpublished_version_is_named_and_nothing_is_cached(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(connector_jar, "DELTA_VERSION", "4.4.1")
    monkeypatch.setattr(connector_jar, "CONNECTOR", "io.delta:delta-spark_2.13:4.4.1")
    settings = load_config(
        environ={}, overrides=[f'delta.jar_cache="{tmp_path}"', 'delta.backend="connector"']
    ).settings
    with pytest.raises(EnvironmentProblem) as caught:
        build_session(settings)  # fails before any JVM of its own starts
    assert str(caught.value) == (
        "cannot fetch io.delta:delta-spark_2.13:4.4.1: io.delta#delta-spark_2.13;4.4.1 is "
        "not in Maven Central (is that version published?)"
    )
    assert caught.value.exit_code == 3
    assert connector_jar.cached_jars(str(tmp_path)) is None


def test_no_network_is_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # every connection through a proxy on a closed port: Maven Central is unreachable
    monkeypatch.setenv("JAVA_TOOL_OPTIONS", "-Dhttps.proxyHost=127.0.0.1 -Dhttps.proxyPort=9")
    with pytest.raises(EnvironmentProblem, match="Maven Central is not reachable"):
        connector_jar.fetch(str(tmp_path))
    assert connector_jar.cached_jars(str(tmp_path)) is None
