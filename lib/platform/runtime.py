"""Facts about the machine a job runs on: Java, memory, library versions."""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

from batchml.lib.platform.errors import EnvironmentProblem

MIN_JAVA = 17
SUPPORTED_JAVA = (17, 21)  # Spark 4's tested LTS releases; newer ones run, with a warning
_VERSION = re.compile(r'version "([^"]+)"')
_MEMORY = re.compile(r"^(\d+)([kmgt]?)$", re.IGNORECASE)
_UNITS = {"": 1, "k": 1024, "m": 1024**2, "g": 1024**3, "t": 1024**4}


@dataclass(frozen=True)
class JavaInfo:
    """The java binary Spark will launch and its version."""

    path: str
    version: str
    major: int


def find_java(environ: Mapping[str, str] | None = None) -> str | None:
    """The java binary Spark uses: `$JAVA_HOME/bin/java`, else `java` on PATH."""
    environ = os.environ if environ is None else environ
    java_home = environ.get("JAVA_HOME")
    if java_home:
        candidate = Path(java_home) / "bin" / "java"
        return str(candidate) if candidate.exists() else None
    return shutil.which("java", path=environ.get("PATH"))


def java_info(environ: Mapping[str, str] | None = None) -> JavaInfo:
    """Locate Java and read its version.

    Raises:
        EnvironmentProblem: Java is missing, does not run, or is older than 17.
    """
    environ = os.environ if environ is None else environ
    path = find_java(environ)
    if path is None:
        where = "JAVA_HOME" if environ.get("JAVA_HOME") else "PATH"
        raise EnvironmentProblem(
            f"Java not found (looked in {where}): install Java 17 or 21 and put it on PATH "
            "or set JAVA_HOME"
        )
    try:
        probe = subprocess.run(
            [path, "-version"], capture_output=True, text=True, timeout=30, check=False
        )
    except OSError as exc:
        raise EnvironmentProblem(f"Java at {path} does not run: {exc}") from None
    match = _VERSION.search(probe.stderr + probe.stdout)
    if probe.returncode != 0 or not match:
        raise EnvironmentProblem(
            f"Java at {path} does not report a version (exit {probe.returncode})"
        )
    version = match.group(1)
    parts = version.split(".")
    leading = re.match(r"\d+", parts[0])
    if leading is None:
        raise EnvironmentProblem(f"Java at {path} reports version {version!r}, not a number")
    major = int(parts[1] if parts[0] == "1" else leading.group(0))
    if major < MIN_JAVA:
        raise EnvironmentProblem(
            f"Java {version} at {path} is too old: Spark 4 needs Java 17 or 21"
        )
    return JavaInfo(path, version, major)


def memory_bytes(size: str) -> int:
    """'2g' -> 2147483648 (JVM memory-size syntax, no unit = bytes)."""
    match = _MEMORY.match(size.strip())
    if not match:
        raise ValueError(f"not a memory size: {size!r}")
    return int(match.group(1)) * _UNITS[match.group(2).lower()]


def machine_memory_bytes() -> int:
    """Physical memory of this machine."""
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def package_version(name: str) -> str | None:
    """Installed version of a distribution, or None when it is not installed."""
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def process_alive(host: str, pid: int) -> bool | None:
    """Whether process `pid` of machine `host` still runs: None when `host` is another
    machine (nothing to ask there)."""
    if host != socket.gethostname():
        return None
    try:
        os.kill(pid, 0)  # signal 0: only asks whether the process exists
    except ProcessLookupError:
        return False
    except PermissionError:  # it exists, as another user's
        return True
    return True
