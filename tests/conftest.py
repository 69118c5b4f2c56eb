"""One SparkSession for the whole test session, built the way the entrypoint builds it."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest
from pyspark.sql import SparkSession

from batchml.lib.config import load_config
from batchml.lib.spark import build_session


@pytest.fixture(scope="session")
def lakehouse_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("lakehouse")


@pytest.fixture(scope="session")
def session_overrides(lakehouse_root: Path) -> list[str]:
    """The `--set` values the test session is built with.

    A command run in a test joins that session, and getOrCreate applies the joining
    builder's SQL settings to it: CLI tests pass these so the session stays as built.
    """
    return [
        'spark.master="local[2]"',
        "spark.shuffle_partitions=2",
        "spark.driver_memory=1g",
        f'lakehouse.root="{lakehouse_root}"',
        'spark.conf."spark.default.parallelism"=2',
        'spark.conf."spark.sql.warehouse.dir"="' + str(lakehouse_root / "_warehouse") + '"',
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
