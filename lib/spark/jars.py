"""Jars from Maven Central, resolved once per machine into a cache and started offline.

Spark's own Ivy (`spark-submit --packages`, which reaches Maven Central here) resolves a
set of packages and their dependencies into a cache folder, once; the folder then holds
the jars and a `classpath.txt` naming them, and every later session puts those files on
`spark.jars` without touching the network. Delta's connector (`lib/delta/connector_jar.py`)
and Hadoop's S3A filesystem (`lib/spark/s3a_jars.py`) are fetched this way.
"""

from __future__ import annotations

import fcntl
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

from batchml.lib.platform.errors import EnvironmentProblem
from batchml.lib.platform.logs import get_logger

log = get_logger(__name__)

CLASSPATH_FILE = "classpath.txt"
FETCH_TIMEOUT_SECONDS = 900


def cached(folder: Path) -> list[Path] | None:
    """The jars cached in `folder`, or None when never fetched (or some went missing)."""
    listing = folder / CLASSPATH_FILE
    if not listing.is_file():
        return None
    jars = [folder / "jars" / name for name in listing.read_text().split()]
    if not jars or not all(jar.is_file() for jar in jars):
        return None
    return jars


def fetch(
    folder: Path,
    packages: str,
    required: tuple[str, ...],
    *,
    what: str,
    excludes: str | None = None,
    offline_hint: str = "",
) -> list[Path]:
    """Resolve `packages` (Maven coordinates, comma-separated) into `folder` once and
    return the jars; `required` are jar names (Ivy's `<org>_<artifact>-<version>.jar`)
    that must be among them.

    Raises:
        EnvironmentProblem: Maven Central unreachable, a version not published, or
            spark-submit failing; the cache is left without a classpath (nothing
            half-done is used).
    """
    folder.mkdir(parents=True, exist_ok=True)
    with (folder / ".lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # two first runs at once: one resolves
        jars = cached(folder)
        if jars is not None:
            return jars
        log.info(f"fetching {what} ({packages}) into {folder} (first run only)")
        output = _resolve(folder, packages, excludes, offline_hint)
        found = {jar.name for jar in (folder / "jars").glob("*.jar")}
        missing = [name for name in required if name not in found]
        if missing:
            raise EnvironmentProblem(
                f"resolving {packages} left no {missing[0]} in {folder / 'jars'}: "
                f"{last_line(output)}"
            )
        listing = folder / f"{CLASSPATH_FILE}.tmp"
        listing.write_text("\n".join(sorted(found)) + "\n")
        listing.replace(folder / CLASSPATH_FILE)
        jars = cached(folder)
        assert jars is not None
        log.info(f"{what} cached: {len(jars)} jars in {folder / 'jars'}")
        return jars


def _resolve(folder: Path, packages: str, excludes: str | None, offline_hint: str) -> str:
    """Run Spark's Ivy resolution of `packages` into `folder`; returns its output."""
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
            packages,
            "--conf",
            f"spark.jars.ivy={folder}",
        ]
        if excludes:
            command += ["--exclude-packages", excludes]
        command.append(str(nothing))
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
                f"resolving {packages} took over {FETCH_TIMEOUT_SECONDS} s (network?)"
            ) from None
        except OSError as exc:
            raise EnvironmentProblem(f"spark-submit did not run: {exc}") from None
    output = done.stdout + done.stderr
    if done.returncode != 0:
        raise EnvironmentProblem(why_unresolved(output, packages, offline_hint))
    return output


_NOT_FOUND = re.compile(r"unresolved dependency: (\S+): not found")
# Ivy's words when Maven Central itself cannot be reached (other repositories it tries,
# such as spark-packages, may fail too without mattering)
_OFFLINE = re.compile(
    r"Host repo1\.maven\.org not found|repo1\.maven\.org\S*.*(refused|timed out|unreachable)",
    re.IGNORECASE,
)


def why_unresolved(output: str, packages: str, offline_hint: str = "") -> str:
    """One line saying why Ivy could not resolve `packages`."""
    missing = _NOT_FOUND.search(output)
    unreachable = _OFFLINE.search(output)
    if unreachable:
        hint = f"; {offline_hint}" if offline_hint else ""
        return (
            f"cannot fetch {packages}: Maven Central is not reachable (offline, or a proxy "
            f"in the way?){hint}"
        )
    if missing:
        return (
            f"cannot fetch {packages}: {missing.group(1)} is not in Maven Central "
            "(is that version published?)"
        )
    return f"cannot fetch {packages}: spark-submit failed: {last_line(output)}"


def last_line(output: str) -> str:
    lines = [line.strip() for line in output.splitlines() if line.strip()]
    return lines[-1] if lines else "no output"
