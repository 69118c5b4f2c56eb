"""One SparkSession for the whole test session, built the way the entrypoint builds it."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from pyspark.sql import SparkSession

from batchml.lib.delta import connector_jar
from batchml.lib.platform.config import load_config
from batchml.lib.spark.session import DELTA_CATALOG, DELTA_EXTENSION, build_session


@pytest.fixture(scope="session")
def lakehouse_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("lakehouse")


@pytest.fixture(scope="session")
def connector_jars() -> list[Path]:
    """Delta's Spark connector, fetched from Maven Central once per machine (the cache in
    `delta.jar_cache`); the test session runs with it, so both backends are tested."""
    return connector_jar.fetch(load_config(env="local", environ={}).settings.delta.jar_cache)


@pytest.fixture(scope="session")
def s3a_jars() -> list[Path]:
    """Hadoop's S3A and the AWS SDK modules it needs, fetched once per machine: the test
    session can reach the S3 server the object-store tests start."""
    from batchml.lib.spark import s3a_jars as s3a

    return s3a.fetch(load_config(env="local", environ={}).settings.storage.jar_cache)


@pytest.fixture(scope="session")
def session_overrides(
    lakehouse_root: Path, connector_jars: list[Path], s3a_jars: list[Path]
) -> list[str]:
    """The `--set` values the test session is built with.

    A command run in a test joins that session, and getOrCreate applies the joining
    builder's SQL settings to it: CLI tests pass these so the session stays as built.
    The session carries Delta's connector (jars, SQL extension, catalog); commands use
    the embedded backend unless a test asks for the connector.
    """
    jars = ",".join(str(jar) for jar in [*connector_jars, *s3a_jars])
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


# The suite runs on pytest-xdist workers (`-n` in pyproject.toml), a whole module to a
# worker (`--dist loadscope`: its module fixtures are built once), modules handed out in
# collection order. The longest modules go first, so none starts last and runs alone;
# ordered by their summed `--durations=0` figures (3 workers, 2026-12-07, C1 JVMs).
LONGEST_FIRST = [
    "test_object_store.py",
    "test_benchmarks.py",
    "test_train_tuning.py",
    "test_train.py",
    "test_submit.py",
    "test_ingest.py",
    "test_demo.py",
    "test_evaluate.py",
    "test_delta_processes.py",
    "test_monitor.py",
    "test_predict.py",
    "test_pipeline.py",
    "test_delta_io.py",
    "test_features.py",
    "test_delta_backends.py",
    "test_registry.py",
    "test_exit_codes.py",
]


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    rank = {name: place for place, name in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))  # stable: order kept


def pytest_configure(config: pytest.Config) -> None:
    # Spark hands timestamps to Python in the process's local zone: make that UTC,
    # like the session, so collected values compare with other readers.
    os.environ["TZ"] = "UTC"
    time.tzset()
    # Every JVM the suite starts through spark-submit (the session's, a command's in a
    # subprocess, a submitted driver) compiles with C1 alone and collects with the serial
    # collector: short-lived JVMs on tiny data spent a quarter of the suite's CPU in C2
    # compiles and G1's threads (tests/test_predict.py: 134 -> 100 CPU seconds). Java 17's
    # floating point is strict whatever compiles it: the same results, bit for bit.
    fast_start = "-XX:TieredStopAtLevel=1 -XX:+UseSerialGC"
    given = os.environ.get("SPARK_SUBMIT_OPTS", "")
    if fast_start not in given:
        os.environ["SPARK_SUBMIT_OPTS"] = f"{fast_start} {given}".strip()


@pytest.fixture(scope="session")
def s3_endpoint(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """An S3-compatible server on 127.0.0.1 (moto), up for the whole session."""
    from s3server import s3_server

    with s3_server(tmp_path_factory.mktemp("s3server")) as endpoint:
        yield endpoint


@pytest.fixture
def s3_bucket(s3_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """A new bucket on the test server, with the standard AWS variables pointing at it
    (as a user would export them); the storage layer reads them afresh."""
    from s3server import create_bucket, s3_environment

    from batchml.lib.platform import storage

    for name, value in s3_environment(s3_endpoint).items():
        monkeypatch.setenv(name, value)
    storage.reset()
    yield create_bucket(s3_endpoint)
    storage.reset()


@pytest.fixture(scope="session")
def scoring_lake(spark: SparkSession, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The scoring project's lakehouse (`tests/people.py`), trained once: modules copy it."""
    from people import build_scoring_lake

    return build_scoring_lake(spark, tmp_path_factory.mktemp("scoring-template"))
