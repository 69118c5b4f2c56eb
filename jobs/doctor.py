"""`batchml doctor`: can this machine run batchml, and how will it run it?"""

from __future__ import annotations

import os
import sys
import tempfile
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Annotated, Any

import typer
from pyspark.sql import SparkSession

from batchml.jobs.app import JsonOption, emit, fail, reports_errors, run_context
from batchml.lib.delta import connector_jar as delta_jar
from batchml.lib.delta.backend import session_backend
from batchml.lib.platform import storage
from batchml.lib.platform.config import ResolvedConfig
from batchml.lib.platform.errors import (
    EXIT_ENVIRONMENT,
    BatchmlError,
    EnvironmentProblem,
    first_line,
)
from batchml.lib.platform.runtime import (
    SUPPORTED_JAVA,
    java_info,
    machine_memory_bytes,
    memory_bytes,
    package_version,
)

PACKAGES = ("batchml", "pyspark", "delta-spark", "deltalake", "pyarrow", "pandas")
MEMORY_WARN_FRACTION = 0.75


@dataclass
class Check:
    """One line of the doctor's report."""

    name: str
    status: str  # ok | warn | fail
    detail: str


@dataclass
class DoctorReport:
    """Everything the doctor found; `ok` is false when any check failed."""

    checks: list[Check] = field(default_factory=list)
    facts: dict[str, object] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return all(check.status != "fail" for check in self.checks)

    def failure(self) -> Check | None:
        return next((check for check in self.checks if check.status == "fail"), None)

    def to_dict(self) -> dict[str, object]:
        return {"ok": self.ok, "checks": [asdict(c) for c in self.checks], "facts": self.facts}


def run(
    cfg: ResolvedConfig, start_spark: Callable[[], SparkSession], *, executors: bool = False
) -> DoctorReport:
    """Check Java, libraries, memory, the lakehouse root, Spark and the Delta backend (and,
    with `executors`, the Python the executors run).

    Spark is started (through `start_spark`) only when Java passed its check.
    """
    settings = cfg.settings
    report = DoctorReport()
    report.facts["python"] = f"{sys.version.split()[0]} ({sys.executable})"
    report.facts["env"] = cfg.env
    report.facts["config_layers"] = list(cfg.layers)
    for name in PACKAGES:
        report.facts[f"{name}_version"] = package_version(name)

    java_ok = _check_java(report)
    _check_memory(report, settings.spark.driver_memory)
    _check_lakehouse(report, settings.lakehouse.root)
    lake_failed = report.checks[-1].status == "fail" and storage.is_remote(settings.lakehouse.root)
    if lake_failed:  # Spark would fail on the same store (its event log is there)
        report.checks.append(Check("spark", "fail", "not started: the object store failed"))
    elif java_ok:
        _check_spark(report, start_spark, settings.delta.backend)
        if executors and report.ok:
            _check_executors(report, start_spark())
    else:
        report.checks.append(Check("spark", "fail", "not started: Java check failed"))
    return report


def _check_java(report: DoctorReport) -> bool:
    try:
        java = java_info()
    except EnvironmentProblem as exc:
        report.checks.append(Check("java", "fail", str(exc)))
        return False
    report.facts["java_path"] = java.path
    report.facts["java_version"] = java.version
    if java.major not in SUPPORTED_JAVA:
        supported = " and ".join(str(v) for v in SUPPORTED_JAVA)
        detail = f"Java {java.version} at {java.path}: runs, but Spark 4 is tested on {supported}"
        report.checks.append(Check("java", "warn", detail))
        return True
    report.checks.append(Check("java", "ok", f"Java {java.version} at {java.path}"))
    return True


def _check_memory(report: DoctorReport, driver_memory: str) -> None:
    driver = memory_bytes(driver_memory)
    machine = machine_memory_bytes()
    report.facts["driver_memory_bytes"] = driver
    report.facts["machine_memory_bytes"] = machine
    detail = f"driver memory {driver_memory} of {machine / 1024**3:.1f} GiB on this machine"
    if driver > machine:
        report.checks.append(Check("memory", "fail", f"{detail}: more than the machine has"))
    elif driver > MEMORY_WARN_FRACTION * machine:
        report.checks.append(Check("memory", "warn", f"{detail}: leaves little for the OS"))
    else:
        report.checks.append(Check("memory", "ok", detail))


def _check_lakehouse(report: DoctorReport, root: str) -> None:
    if storage.is_remote(root):
        _check_object_store(report, root)
        return
    path = Path(root).expanduser().resolve()
    report.facts["lakehouse_root"] = str(path)
    probe = path
    while not probe.exists():
        probe = probe.parent
    if not probe.is_dir():
        report.checks.append(Check("lakehouse", "fail", f"{path}: {probe} is not a directory"))
        return
    try:
        with tempfile.NamedTemporaryFile(dir=probe, prefix=".batchml-doctor-"):
            pass
    except OSError as exc:
        report.checks.append(Check("lakehouse", "fail", f"{path} is not writable: {exc}"))
        return
    state = "exists" if probe == path else f"will be created under {probe}"
    report.checks.append(Check("lakehouse", "ok", f"{path} is writable ({state})"))


def _check_object_store(report: DoctorReport, root: str) -> None:
    """Write, read back and delete a probe object under the root: the endpoint, the
    bucket and the credentials all answer, or the one that does not is named."""
    config = storage.current()
    report.facts["lakehouse_root"] = root
    report.facts["storage_endpoint"] = config.endpoint or "the store's default"
    report.facts["storage_credentials"] = (
        "[storage] or AWS_* variables" if config.access_key else "the default chain"
    )
    try:
        seconds = storage.probe(root)
    except BatchmlError as exc:
        report.checks.append(Check("lakehouse", "fail", str(exc)))
        return
    detail = f"{root}: a probe object written, read and deleted in {seconds * 1000:.0f} ms"
    report.checks.append(Check("lakehouse", "ok", detail))


def _check_spark(
    report: DoctorReport, start_spark: Callable[[], SparkSession], backend_setting: str
) -> None:
    try:
        spark = start_spark()
    except BatchmlError as exc:
        report.checks.append(Check("spark", "fail", str(exc)))
        return
    report.facts["spark_version"] = spark.version
    report.facts["spark_master"] = spark.sparkContext.master
    report.facts["default_parallelism"] = spark.sparkContext.defaultParallelism
    report.checks.append(
        Check("spark", "ok", f"Spark {spark.version} on {spark.sparkContext.master}")
    )
    report.facts["pyspark_python"] = os.environ.get("PYSPARK_PYTHON")
    try:
        choice = session_backend(spark, backend_setting)
    except EnvironmentProblem as exc:
        report.checks.append(Check("delta_backend", "fail", first_line(exc)))
        return
    report.facts["delta_backend"] = choice.name
    report.facts["delta_connector_loadable"] = choice.connector_loadable
    detail = f"{choice.name} ({choice.reason})"
    if not choice.connector_loadable:
        detail += (
            f"; `batchml doctor --fetch-delta` caches {delta_jar.CONNECTOR} once, "
            "and `auto` then uses it"
        )
    report.checks.append(Check("delta_backend", "ok", detail))


def executor_pythons(spark: SparkSession) -> list[dict[str, str | None]]:
    """The Python each executor slot runs, with the versions of the packages jobs need.

    A Python function on the executors is the point here (it reports the interpreter that
    runs there): one task per slot, no data.
    """
    slots = max(1, spark.sparkContext.defaultParallelism)

    def probe(_rows: Any) -> Any:
        import platform
        import socket
        import sys as executor_sys
        from importlib import metadata

        def version(name: str) -> str | None:
            try:
                return metadata.version(name)
            except metadata.PackageNotFoundError:
                return None

        yield {
            "host": socket.gethostname(),
            "python": executor_sys.executable,
            "python_version": platform.python_version(),
            **{name: version(name) for name in ("batchml", "pyspark", "xgboost-cpu")},
        }

    found = spark.sparkContext.parallelize(range(slots), slots).mapPartitions(probe).collect()
    unique = {tuple(sorted(row.items())): row for row in found}
    return list(unique.values())


def _check_executors(report: DoctorReport, spark: SparkSession) -> None:
    try:
        pythons = executor_pythons(spark)
    except Exception as exc:  # a missing interpreter or package fails the tasks
        report.checks.append(Check("executors", "fail", f"Python did not run: {first_line(exc)}"))
        return
    report.facts["executor_pythons"] = pythons
    driver_version = package_version("batchml")
    stale = [p for p in pythons if p["batchml"] != driver_version]
    where = ", ".join(sorted({str(p["python"]) for p in pythons}))
    if stale:
        report.checks.append(
            Check(
                "executors",
                "fail",
                f"executors run batchml {stale[0]['batchml']} (driver {driver_version}): {where}",
            )
        )
    else:
        report.checks.append(Check("executors", "ok", f"Python on the executors: {where}"))


@reports_errors
def command(
    ctx: typer.Context,
    *,
    fetch_delta: Annotated[
        bool,
        typer.Option(
            "--fetch-delta",
            help="First fetch Delta's Spark connector jar into delta.jar_cache (once).",
        ),
    ] = False,
    executors: Annotated[
        bool,
        typer.Option(
            "--executors", help="Also run a task per executor slot: which Python runs there."
        ),
    ] = False,
    as_json: JsonOption = False,
) -> None:
    """Check Java, libraries, memory, the lakehouse root, Spark and the Delta backend."""
    state = run_context(ctx)
    if fetch_delta:
        delta_jar.fetch(state.config().settings.delta.jar_cache)
    report = run(state.config(), state.spark, executors=executors)
    emit(report.to_dict(), as_json, _render_doctor)
    failure = report.failure()
    if failure is not None:
        raise fail(f"{failure.name}: {failure.detail}", EXIT_ENVIRONMENT)


def _render_doctor(data: dict[str, Any]) -> str:
    marks = {"ok": "ok  ", "warn": "WARN", "fail": "FAIL"}
    lines = [f"[{marks[c['status']]}] {c['name']:<14} {c['detail']}" for c in data["checks"]]
    lines.append("")
    lines.extend(f"{key:<26} {value}" for key, value in data["facts"].items())
    return "\n".join(lines)
