"""Delta Lake's Spark connector jar: one pinned version, resolved once, started offline.

The connector (`io.delta:delta-spark_2.13`) and its dependencies are resolved by Spark's
own Ivy (`spark-submit --packages`, which reaches Maven Central here) into a cache folder
per Delta version, once per machine. The folder then holds the jars and a `classpath.txt`
naming them; every later session puts those files on `spark.jars` and touches no network.
A cluster that already has the jar (on its classpath, or through `--packages`) needs
none of this.
"""

from __future__ import annotations

import fcntl
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

from batchml.lib.errors import EnvironmentProblem
from batchml.lib.logs import get_logger

log = get_logger(__name__)

# The one place the version is pinned: the same as the locked delta-spark Python package
# (tests/test_connector_jar.py checks uv.lock). Maven Central serves 4.4.0, not 4.4.1.
DELTA_VERSION = "4.4.0"
SCALA_VERSION = "2.13"
CONNECTOR = f"io.delta:delta-spark_{SCALA_VERSION}:{DELTA_VERSION}"
REQUIRED_JARS = (  # Ivy names each jar <organisation>_<artifact>-<version>.jar
    f"io.delta_delta-spark_{SCALA_VERSION}-{DELTA_VERSION}.jar",
    f"io.delta_delta-storage-{DELTA_VERSION}.jar",
)
CLASSPATH_FILE = "classpath.txt"
FETCH_TIMEOUT_SECONDS = 900


def cache_folder(root: str) -> Path:
    """Where this Delta version's jars are cached (`delta.jar_cache`/<version>)."""
    return Path(root).expanduser().resolve() / DELTA_VERSION


def cached_jars(root: str) -> list[Path] | None:
    """The cached connector jars, or None when they were never fetched (or went missing)."""
    folder = cache_folder(root)
    listing = folder / CLASSPATH_FILE
    if not listing.is_file():
        return None
    jars = [folder / "jars" / name for name in listing.read_text().split()]
    if not jars or not all(jar.is_file() for jar in jars):
        return None
    return jars


def fetch(root: str) -> list[Path]:
    """Resolve the connector and its dependencies into the cache (once), return the jars.

    Raises:
        EnvironmentProblem: Maven Central unreachable, the version not published, or
            spark-submit failing; the cache is left without a classpath (nothing half-done
            is used).
    """
    folder = cache_folder(root)
    folder.mkdir(parents=True, exist_ok=True)
    with (folder / ".lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # two first runs at once: one resolves
        jars = cached_jars(root)
        if jars is not None:
            return jars
        log.info(f"fetching Delta's Spark connector {CONNECTOR} into {folder} (first run only)")
        output = _resolve(folder)
        found = {jar.name for jar in (folder / "jars").glob("*.jar")}
        missing = [name for name in REQUIRED_JARS if name not in found]
        if missing:
            raise EnvironmentProblem(
                f"resolving {CONNECTOR} left no {missing[0]} in {folder / 'jars'}: "
                f"{_last_line(output)}"
            )
        listing = folder / f"{CLASSPATH_FILE}.tmp"
        listing.write_text("\n".join(sorted(found)) + "\n")
        listing.replace(folder / CLASSPATH_FILE)
        jars = cached_jars(root)
        assert jars is not None
        log.info(f"Delta connector cached: {len(jars)} jars in {folder / 'jars'}")
        return jars


def _resolve(folder: Path) -> str:
    """Run Spark's Ivy resolution of the connector into `folder`; returns its output."""
    import pyspark

    pyspark_home = Path(pyspark.__file__).resolve().parent
    environ = {**os.environ, "SPARK_HOME": str(pyspark_home), "PYSPARK_PYTHON": sys.executable}
    with tempfile.TemporaryDirectory() as scratch:
        nothing = Path(scratch) / "resolve_only.py"
        nothing.write_text("# spark-submit resolves --packages before it runs this\n")
        command = [
            str(pyspark_home / "bin" / "spark-submit"),
            "--master",
            "local[1]",
            "--packages",
            CONNECTOR,
            "--conf",
            f"spark.jars.ivy={folder}",
            str(nothing),
        ]
        try:
            done = subprocess.run(
                command,
                capture_output=True,
                text=True,
                env=environ,
                timeout=FETCH_TIMEOUT_SECONDS,
                check=False,
            )
        except subprocess.TimeoutExpired:
            raise EnvironmentProblem(
                f"resolving {CONNECTOR} took over {FETCH_TIMEOUT_SECONDS} s (network?)"
            ) from None
        except OSError as exc:
            raise EnvironmentProblem(f"spark-submit did not run: {exc}") from None
    output = done.stdout + done.stderr
    if done.returncode != 0:
        raise EnvironmentProblem(_why_unresolved(output))
    return output


_NOT_FOUND = re.compile(r"unresolved dependency: (\S+): not found")
# Ivy's words when Maven Central itself cannot be reached (other repositories it tries,
# such as spark-packages, may fail too without mattering)
_OFFLINE = re.compile(
    r"Host repo1\.maven\.org not found|repo1\.maven\.org\S*.*(refused|timed out|unreachable)",
    re.IGNORECASE,
)


def _why_unresolved(output: str) -> str:
    """One line saying why Ivy could not resolve the connector."""
    missing = _NOT_FOUND.search(output)
    unreachable = _OFFLINE.search(output)
    if unreachable:
        return (
            f"cannot fetch {CONNECTOR}: Maven Central is not reachable (offline, or a proxy "
            "in the way?); put the jar on the classpath yourself or use "
            "delta.backend = 'embedded'"
        )
    if missing:
        return (
            f"cannot fetch {CONNECTOR}: {missing.group(1)} is not in Maven Central "
            "(is that version published?)"
        )
    return f"cannot fetch {CONNECTOR}: spark-submit failed: {_last_line(output)}"


def _last_line(output: str) -> str:
    lines = [line.strip() for line in output.splitlines() if line.strip()]
    return lines[-1] if lines else "no output"
