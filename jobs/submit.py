"""`batchml submit` (what `./spark-submit.sh` runs): a job handed to spark-submit.

Builds (or reuses) dist/ — the wheel, the packed environment, the driver entry — checks
the master answers, then runs Spark's spark-submit and exits with its exit code, which
in client mode is the job's own.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import typer

from batchml.jobs.app import app, reports_errors, run_context
from batchml.lib.platform.config import load_config
from batchml.lib.platform.errors import ConfigError
from batchml.lib.platform.logs import get_logger
from batchml.lib.platform.redaction import redact_argv
from batchml.lib.platform.signals import Interrupted, Terminated
from batchml.lib.submit import launch as spark_submit
from batchml.lib.submit import packaging
from batchml.lib.submit.launch import STDERR_FILE

log = get_logger(__name__)
STOP_GRACE_SECONDS = 60  # a stopped driver's clean-up, before the group is killed

SUBMIT_HELP = """Hand a job to Spark's spark-submit (the same as ./spark-submit.sh).

batchml submit \\[--master M] \\[--deploy-mode client|cluster] \\[--env ENV]
\\[--conf-file FILE] \\[--delta connector|embedded] \\[--set KEY=VALUE]...
\\[--rebuild] \\[--dry-run] \\[other spark-submit options...] JOB \\[job options...]

The wheel and a packed Python environment are built into dist/ (reused while uv.lock
and the sources are unchanged) and shipped with --archives; executors run its
interpreter. --dry-run prints the spark-submit command instead of running it.

Exit code: the job's own in client mode; in cluster mode, non-zero when the
application failed.
"""


def job_names() -> list[str]:
    """The commands a submit can run: every `batchml` command but submit itself."""
    group = typer.main.get_command(app)
    # typed as a click.Command: an app of several commands is a click.Group
    return [name for name in group.commands if name != "submit"]  # type: ignore[attr-defined]


@reports_errors
def command(ctx: typer.Context) -> None:
    state = run_context(ctx)
    request = spark_submit.parse(list(ctx.args), job_names())
    # `batchml --env E --conf F --set K=V submit …` means the same as giving them to submit
    request.env = request.env or state.env
    if request.conf_file is None and state.conf_file is not None:
        if not state.conf_file.is_file():
            raise ConfigError(f"--conf {state.conf_file}: no such file")
        request.conf_file = state.conf_file.resolve()
    request.overrides = [*state.overrides, *request.overrides]
    cfg = load_config(env=request.env, conf_file=request.conf_file, overrides=request.overrides)
    settings = cfg.settings
    master = request.master or state.master or settings.spark.master
    if not master:
        raise ConfigError("no master: give --master (the config's spark.master is empty)")
    if request.delta == "connector" and request.deploy_mode == "client":
        from batchml.lib.delta import connector_jar

        jars = connector_jar.cached_jars(settings.delta.jar_cache)
    else:
        jars = None  # the cluster resolves --packages itself
    from batchml.lib.spark import s3a_jars as s3a
    from batchml.lib.spark.session import uses_s3

    s3a_cached = s3a_packages = None
    if uses_s3(settings):  # the driver and executors need S3A: shipped or resolved
        if request.deploy_mode == "client":
            s3a_cached = s3a.fetch(settings.storage.jar_cache)
        else:
            s3a_packages = (s3a.PACKAGES, s3a.EXCLUDES)
    script = spark_submit.spark_submit_path()
    if not request.dry_run:
        spark_submit.check_master(master)
    if master.startswith("local"):  # executors in this process: no environment to ship
        archive, entry = None, packaging.entry_file(packaging.project_root() / "dist")
    else:
        built = packaging.build(force=request.rebuild)
        archive, entry = built.archive, built.entry
    from batchml.lib.delta.connector_jar import CONNECTOR
    from batchml.lib.spark.session import QUIET_LOG4J

    argv = spark_submit.command(
        request,
        spark_submit=script,
        archive=archive,
        entry=entry,
        master=master,
        driver_memory=settings.spark.driver_memory,
        connector_jars=jars,
        connector_package=CONNECTOR,
        quiet_log4j=None if state.verbose else QUIET_LOG4J,
        s3a_jars=s3a_cached,
        s3a_packages=s3a_packages,
    )
    if request.dry_run:
        typer.echo(shlex.join(redact_argv(argv)))  # the command run gets the secrets
        return
    log.info(f"submitting {request.job} to {master} ({request.deploy_mode} mode)")
    environ = {
        key: value
        for key, value in os.environ.items()
        if key not in ("PYSPARK_PYTHON", "PYSPARK_DRIVER_PYTHON", "PYSPARK_GATEWAY_PORT")
    }
    if master.startswith("local") or spark_submit.loopback(master):
        environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")  # a cluster on this machine
    if request.deploy_mode == "client":
        code = _run_relaying_stderr(argv, environ)
    else:
        code = _run_forwarding_stops(argv, environ)
    if code != 0:
        log.info(f"spark-submit exited with {code}")
        raise typer.Exit(code)


def _run_relaying_stderr(argv: list[str], environ: dict[str, str]) -> int:
    """Run spark-submit with the driver's stderr in a file relayed to ours as it grows."""
    with tempfile.NamedTemporaryFile(prefix="batchml-driver-", suffix=".stderr") as sink:
        done = threading.Event()

        def relay() -> None:
            with open(sink.name, "rb") as source:
                while True:
                    chunk = source.read(65536)
                    if chunk:
                        sys.stderr.buffer.write(chunk)
                        sys.stderr.flush()
                    elif done.is_set():
                        return
                    else:
                        time.sleep(0.1)

        relaying = threading.Thread(target=relay, name="driver-stderr", daemon=True)
        relaying.start()
        try:
            return _run_forwarding_stops(argv, {**environ, STDERR_FILE: sink.name})
        finally:
            done.set()
            relaying.join(timeout=10)


def _run_forwarding_stops(argv: list[str], environ: dict[str, str]) -> int:
    """Run spark-submit in its own process group; a stop asked of this process (Ctrl-C,
    a scheduler's SIGTERM) is passed to the Python driver, which stops the way a job
    stops in-process (Spark jobs cancelled, nothing half-written kept) and exits 130 /
    143, which spark-submit passes on. The whole group is signalled when there is no
    driver process to find (cluster mode, no /proc), and killed after a grace period."""
    process = subprocess.Popen(argv, env=environ, start_new_session=True)
    try:
        return process.wait()
    except (KeyboardInterrupt, Interrupted, Terminated) as stop:
        forwarded = signal.SIGTERM if isinstance(stop, Terminated) else signal.SIGINT
        driver = _driver_pid(process.pid)
        with contextlib.suppress(ProcessLookupError):
            if driver is not None:
                os.kill(driver, forwarded)
            else:
                os.killpg(process.pid, forwarded)
        try:
            code = process.wait(timeout=STOP_GRACE_SECONDS)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait()
            raise stop from None
        raise typer.Exit(code) from None  # the driver said why on stderr


def _driver_pid(jvm_pid: int) -> int | None:
    """The Python driver spark-submit's JVM started (client mode), from /proc."""
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
            if int(fields[1]) != jvm_pid:
                continue
            command = (stat.parent / "cmdline").read_bytes()
        except (OSError, IndexError, ValueError):
            continue
        if packaging.ENTRY.encode() in command:
            return int(stat.parent.name)
    return None
