"""Delta Lake's Spark connector jar: one pinned version, resolved once, started offline.

The connector (`io.delta:delta-spark_2.13`) and its dependencies are resolved by Spark's
own Ivy into a cache folder per Delta version, once per machine (`lib/spark/jars.py`); every
later session puts those jars on `spark.jars` and touches no network. A cluster that
already has the jar (on its classpath, or through `--packages`) needs none of this.
"""

from __future__ import annotations

from pathlib import Path

from batchml.lib.spark import jars

# The one place the version is pinned: the same as the locked delta-spark Python package
# (tests/test_connector_jar.py checks uv.lock). Maven Central serves 4.4.0, not 4.4.1.
DELTA_VERSION = "4.4.0"
SCALA_VERSION = "2.13"
CONNECTOR = f"io.delta:delta-spark_{SCALA_VERSION}:{DELTA_VERSION}"
REQUIRED_JARS = (  # Ivy names each jar <organisation>_<artifact>-<version>.jar
    f"io.delta_delta-spark_{SCALA_VERSION}-{DELTA_VERSION}.jar",
    f"io.delta_delta-storage-{DELTA_VERSION}.jar",
)


def cache_folder(root: str) -> Path:
    """Where this Delta version's jars are cached (`delta.jar_cache`/<version>)."""
    return Path(root).expanduser().resolve() / DELTA_VERSION


def cached_jars(root: str) -> list[Path] | None:
    """The cached connector jars, or None when they were never fetched (or went missing)."""
    return jars.cached(cache_folder(root))


def fetch(root: str) -> list[Path]:
    """Resolve the connector and its dependencies into the cache (once), return the jars.

    Raises:
        EnvironmentProblem: Maven Central unreachable, the version not published, or
            spark-submit failing; the cache is left without a classpath.
    """
    return jars.fetch(
        cache_folder(root),
        CONNECTOR,
        REQUIRED_JARS,
        what=f"Delta's Spark connector {CONNECTOR}",
        offline_hint="put the jar on the classpath yourself or use delta.backend = 'embedded'",
    )
