"""The session of a test's child process (a separate writer, a killed job, another master).

Workers run as scripts from tests/, so they import this module by its plain name.
"""

from __future__ import annotations

from pathlib import Path

from pyspark.sql import SparkSession

from batchml.lib.platform.config import load_config
from batchml.lib.platform.settings import Settings
from batchml.lib.spark.session import build_session


def child_session(
    lakehouse: str,
    *,
    conf: str | None = None,
    shuffle_partitions: int = 1,
    driver_memory: str = "700m",
    extra: tuple[str, ...] = (),
) -> tuple[Settings, SparkSession]:
    """A small `local[1]` session over `lakehouse` (plus a config file and `--set`s)."""
    cfg = load_config(
        conf_file=Path(conf) if conf else None,
        overrides=[
            'spark.master="local[1]"',
            f"spark.shuffle_partitions={shuffle_partitions}",
            f'spark.driver_memory="{driver_memory}"',
            f'lakehouse.root="{lakehouse}"',
            *extra,
        ],
        environ={},
    )
    return cfg.settings, build_session(cfg.settings)
