"""Which Delta backend a session uses, and why."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from pyspark.sql import SparkSession

from batchml.lib.platform.errors import EnvironmentProblem
from batchml.lib.spark.session import connector_loadable

BackendName = Literal["connector", "embedded"]


@dataclass(frozen=True)
class BackendChoice:
    """The backend chosen for a session and the reason, for logs and `batchml doctor`."""

    name: BackendName
    reason: str
    connector_loadable: bool


def choose_backend(setting: str, loadable: bool) -> BackendChoice:
    """Apply `delta.backend` to whether the connector classes are loadable.

    Raises:
        EnvironmentProblem: `connector` was asked for but its classes are not loadable.
    """
    if setting == "embedded":
        return BackendChoice("embedded", "delta.backend = 'embedded' in config", loadable)
    if setting == "connector":
        if not loadable:
            raise EnvironmentProblem(
                "delta.backend = 'connector' but Delta Lake's Spark connector classes are not "
                "on the classpath (add io.delta:delta-spark_2.13 with --packages, or use "
                "delta.backend = 'auto')"
            )
        return BackendChoice("connector", "delta.backend = 'connector' in config", loadable)
    if loadable:
        return BackendChoice(
            "connector", "auto: Delta's Spark connector classes are loadable", True
        )
    return BackendChoice(
        "embedded",
        "auto: Delta's Spark connector classes are not on the classpath; "
        "delta-rs handles the log, Spark the data",
        False,
    )


def session_backend(spark: SparkSession, setting: str) -> BackendChoice:
    """The backend for this session under `delta.backend = setting`."""
    return choose_backend(setting, connector_loadable(spark))
