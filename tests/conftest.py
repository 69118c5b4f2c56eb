"""One SparkSession for the whole test session, built the way the entrypoint builds it."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest
from pyspark.sql import SparkSession

from batchml.lib.config import load_config
from batchml.lib.delta import connector_jar
from batchml.lib.spark import DELTA_CATALOG, DELTA_EXTENSION, build_session


@pytest.fixture(scope="session")
def lakehouse_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("lakehouse")


@pytest.fixture(scope="session")
def connector_jars() -> list[Path]:
    """Delta's Spark connector, fetched from Maven Central once per machine (the cache in
    `delta.jar_cache`); the test session runs with it, so both backends are tested."""
    return connector_jar.fetch(load_config(env="local", environ={}).settings.delta.jar_cache)


@pytest.fixture(scope="session")
def session_overrides(lakehouse_root: Path, connector_jars: list[Path]) -> list[str]:
    """The `--set` values the test session is built with.

    A command run in a test joins that session, and getOrCreate applies the joining
    builder's SQL settings to it: CLI tests pass these so the session stays as built.
    The session carries Delta's connector (jars, SQL extension, catalog); commands use
    the embedded backend unless a test asks for the connector.
    """
    jars = ",".join(str(jar) for jar in connector_jars)
    return [
        'spark.master="local[2]"',
        "spark.shuffle_partitions=2",
        "spark.driver_memory=1g",
        f'lakehouse.root="{lakehouse_root}"',
        'spark.conf."spark.default.parallelism"=2',
        'spark.conf."spark.sql.warehouse.dir"="' + str(lakehouse_root / "_warehouse") + '"',
        'delta.backend="embedded"',
        f'spark.conf."spark.jars"="{jars}"',
        f'spark.conf."spark.sql.extensions"="{DELTA_EXTENSION}"',
        f'spark.conf."spark.sql.catalog.spark_catalog"="{DELTA_CATALOG}"',
    ]


@pytest.fixture(scope="session")
def cli_globals(session_overrides: list[str]) -> list[str]:
    """Global CLI options that make a command join the test session unchanged."""
    return [arg for value in session_overrides for arg in ("--set", value)]


@pytest.fixture(scope="session")
def spark(session_overrides: list[str]) -> SparkSession:
    cfg = load_config(env="local", overrides=session_overrides)
    session = build_session(cfg.settings)
    yield session
    session.stop()


def pytest_configure(config: pytest.Config) -> None:
    # Spark hands timestamps to Python in the process's local zone: make that UTC,
    # like the session, so collected values compare with other readers.
    os.environ["TZ"] = "UTC"
    time.tzset()
