"""A real Spark standalone cluster on 127.0.0.1 for the submit tests: the master and one
worker that PySpark's own jars contain, in a temporary work dir, stopped by process id."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pyspark

START_TIMEOUT_SECONDS = 90


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@contextmanager
def standalone_cluster(workdir: Path, *, cores: int = 2, memory: str = "4g") -> Iterator[str]:
    """Start a master and one worker; yield the master URL; stop both at the end."""
    home = Path(pyspark.__file__).resolve().parent
    workdir.mkdir(parents=True, exist_ok=True)
    environ = {
        **os.environ,
        "SPARK_HOME": str(home),
        "SPARK_LOCAL_IP": "127.0.0.1",
        "SPARK_LOG_DIR": str(workdir / "logs"),
        "SPARK_WORKER_DIR": str(workdir / "work"),
        # scratch (shuffle, fetched archives) under the work dir too, removed with it
        "SPARK_LOCAL_DIRS": str(workdir / "local"),
        # the master and the worker compile with C1 and collect serially, as the suite's
        # other JVMs do (conftest.py: SPARK_SUBMIT_OPTS)
        "SPARK_DAEMON_JAVA_OPTS": "-XX:TieredStopAtLevel=1 -XX:+UseSerialGC",
    }
    port, ui = free_port(), free_port()
    master_url = f"spark://127.0.0.1:{port}"
    spark_class = str(home / "bin" / "spark-class")
    processes = []
    try:
        with (workdir / "master.log").open("wb") as log:
            processes.append(
                subprocess.Popen(
                    [spark_class, "org.apache.spark.deploy.master.Master", "--host", "127.0.0.1",
                     "--port", str(port), "--webui-port", str(ui)],
                    env=environ, stdout=log, stderr=subprocess.STDOUT,
                )
            )  # fmt: skip
        with (workdir / "worker.log").open("wb") as log:
            processes.append(
                subprocess.Popen(
                    [spark_class, "org.apache.spark.deploy.worker.Worker", "--host", "127.0.0.1",
                     "--cores", str(cores), "--memory", memory, "--work-dir",
                     str(workdir / "work"), "--webui-port", str(free_port()), master_url],
                    env=environ, stdout=log, stderr=subprocess.STDOUT,
                )
            )  # fmt: skip
        _wait_for_worker(ui, processes, workdir)
        yield master_url
    finally:
        for process in processes:  # spark-class execs java: the pid is the JVM's
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in processes:
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def drop_finished_apps(workdir: Path) -> None:
    """Remove the worker's directories of finished applications and drivers: each holds
    an unpacked copy of the shipped environment (about 1 GB), which the worker keeps."""
    for finished in [*(workdir / "work").glob("app-*"), *(workdir / "work").glob("driver-*")]:
        shutil.rmtree(finished, ignore_errors=True)


def _wait_for_worker(ui: int, processes: list[subprocess.Popen], workdir: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT_SECONDS
    while time.monotonic() < deadline:
        if any(p.poll() is not None for p in processes):
            raise RuntimeError(f"the standalone cluster exited; see {workdir}/*.log")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{ui}/json/", timeout=2) as page:
                if json.load(page).get("aliveworkers", 0) >= 1:
                    return
        except OSError:
            pass
        time.sleep(1)
    raise RuntimeError(f"no worker registered within {START_TIMEOUT_SECONDS} s; see {workdir}")
