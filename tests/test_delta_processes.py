"""Writers in separate processes: concurrent commits lose nothing, a killed one leaves no trace."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from deltalake import DeltaTable
from oracles import oracle_rows
from pyspark.sql import SparkSession

from batchml.lib.delta import WriteToken
from batchml.lib.delta.connector import ConnectorDelta
from batchml.lib.delta.embedded import STAGING_DIR, EmbeddedDelta

WORKER = Path(__file__).with_name("delta_worker.py")


def start(
    action: str, uri: Path, tag: str, count: int, lakehouse: Path, backend: str = "embedded"
) -> subprocess.Popen:
    # Spark's scratch (shuffle, spills) beside the worker's lakehouse: a killed JVM cannot
    # delete it, and in /tmp it would outlive the test (600 MB a run)
    scratch = {**os.environ, "SPARK_LOCAL_DIRS": str(lakehouse / "_spark_local")}
    return subprocess.Popen(
        [sys.executable, str(WORKER), action, str(uri), tag, str(count), str(lakehouse), backend],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # its own process group: the JVM dies with it
        env=scratch,
    )


def seed(spark: SparkSession, uri: Path) -> None:
    df = spark.createDataFrame([("seed", 0, "")], "tag string, n long, h string")
    EmbeddedDelta(spark).write(df, str(uri), partition_by=["tag"])


@pytest.mark.parametrize("backend", ["connector", "embedded"])
def test_concurrent_writers_lose_no_commit(
    spark: SparkSession, tmp_path: Path, backend: str
) -> None:
    uri = tmp_path / "shared"
    seed(spark, uri)
    workers = [
        start("append", uri, "a", 2, tmp_path / "lh_a", backend),
        start("append", uri, "b", 2, tmp_path / "lh_b", backend),
        start("replace", uri, "c", 2, tmp_path / "lh_c", backend),
    ]
    outputs = [w.communicate(timeout=300) for w in workers]
    for worker, (_, err) in zip(workers, outputs, strict=True):
        assert worker.returncode == 0, err[-2000:]
    results = [json.loads(line) for out, _ in outputs for line in out.splitlines()]

    assert len(results) == 6 and all(r["committed"] for r in results)
    assert sorted(r["version"] for r in results) == list(range(1, 7))  # every version once
    assert DeltaTable(str(uri)).version() == 6
    rows = EmbeddedDelta(spark).read(str(uri)).df
    counts = {r["tag"]: r["count"] for r in rows.groupBy("tag").count().collect()}
    assert counts == {"seed": 1, "a": 10, "b": 10, "c": 5}  # replace keeps its last round
    assert sorted(r["n"] for r in rows.filter("tag = 'c'").collect()) == [100, 101, 102, 103, 104]
    assert len(oracle_rows(str(uri))) == 26
    assert len(oracle_rows(str(uri))) == ConnectorDelta(spark).read(str(uri)).df.count()
    print("commit attempts per write:", [r["attempts"] for r in results])


def test_writer_killed_mid_write_leaves_the_table_as_it_was(
    spark: SparkSession, tmp_path: Path
) -> None:
    uri = tmp_path / "crash"
    seed(spark, uri)
    before = oracle_rows(str(uri))
    worker = start("slow", uri, "big", 1, tmp_path / "lh_slow")
    staging = uri / STAGING_DIR
    deadline = time.monotonic() + 120
    while not any(staging.glob("*/*")) and time.monotonic() < deadline:
        if worker.poll() is not None:
            raise AssertionError(f"worker ended early: {worker.stderr.read()[-2000:]}")
        time.sleep(0.1)
    time.sleep(1.0)  # Spark is writing its Parquet files now
    os.killpg(worker.pid, signal.SIGKILL)
    worker.wait(timeout=60)

    assert worker.returncode == -signal.SIGKILL
    assert DeltaTable(str(uri)).version() == 0
    assert oracle_rows(str(uri)) == before
    tables = EmbeddedDelta(spark)
    assert tables.read(str(uri)).df.count() == 1
    assert any(staging.iterdir())  # the half-written files are there, invisible
    cleaned = tables.vacuum(str(uri), retain_hours=0)
    assert len(cleaned.staging_dirs) == 1
    assert not staging.exists()
    assert tables.read(str(uri)).df.count() == 1


def test_connector_writer_killed_mid_write_then_rerun_with_its_token(
    spark: SparkSession, tmp_path: Path
) -> None:
    """Delta's connector writes its files straight into the table's folders and commits
    at the end: a kill leaves files no commit names, the table as it was, and the token
    uncommitted, so the rerun writes once and the next rerun is a no-op."""
    uri = tmp_path / "crash"
    seed(spark, uri)
    before = oracle_rows(str(uri))
    worker = start("slow", uri, "big", 1, tmp_path / "lh_slow", "connector")
    deadline = time.monotonic() + 180
    while not any(uri.glob("tag=big/*.parquet")) and time.monotonic() < deadline:
        if worker.poll() is not None:
            raise AssertionError(f"worker ended early: {worker.stderr.read()[-2000:]}")
        time.sleep(0.1)
    time.sleep(1.0)  # Spark is writing its Parquet files now
    os.killpg(worker.pid, signal.SIGKILL)
    worker.wait(timeout=60)

    assert worker.returncode == -signal.SIGKILL
    assert DeltaTable(str(uri)).version() == 0
    assert oracle_rows(str(uri)) == before
    assert data_files(uri) - referenced(uri)  # half-written, in no commit
    tables, token = ConnectorDelta(spark), WriteToken("worker-big", 1)
    assert not tables.has_token(str(uri), token)
    rerun = spark.range(0, 1000).selectExpr("'big' AS tag", "id AS n", "'' AS h")
    first = tables.write(rerun, str(uri), token=token)
    again = tables.write(rerun, str(uri), token=token)
    assert (first.committed, first.version, first.rows_added) == (True, 1, 1000)
    assert (again.committed, again.version) == (False, 1)
    assert len(oracle_rows(str(uri))) == 1001
    cleaned = tables.vacuum(str(uri), retain_hours=0)
    assert cleaned.files and data_files(uri) == referenced(uri)
    assert tables.read(str(uri)).df.count() == 1001


def wait_for(worker: subprocess.Popen, text: str, timeout: float = 180) -> None:
    """Read the worker's stdout until a line holds `text`."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = worker.stdout.readline()
        if text in line:
            return
        if not line and worker.poll() is not None:
            raise AssertionError(f"worker ended early: {worker.stderr.read()[-2000:]}")
    raise AssertionError(f"worker never printed {text!r}")


def referenced(uri: Path) -> set[str]:
    return {Path(p).relative_to(uri).as_posix() for p in DeltaTable(str(uri)).file_uris()}


def data_files(uri: Path) -> set[str]:
    return {
        p.relative_to(uri).as_posix() for p in uri.rglob("*.parquet") if STAGING_DIR not in p.parts
    }


@pytest.mark.parametrize(
    ("point", "version_after"), [("staging", 0), ("moved", 0), ("committed", 1)]
)
def test_sigterm_inside_a_write_leaves_a_whole_table(
    spark: SparkSession, tmp_path: Path, point: str, version_after: int
) -> None:
    uri = tmp_path / "stopped"
    seed(spark, uri)
    worker = start(f"pause-{point}", uri, "x", 1, tmp_path / "lh")
    wait_for(worker, f"AT {point}")
    if point == "staging":  # let Spark start writing its files
        deadline = time.monotonic() + 120
        while not any((uri / STAGING_DIR).glob("*/*")) and time.monotonic() < deadline:
            time.sleep(0.1)
        time.sleep(1.0)
    worker.send_signal(signal.SIGTERM)
    worker.wait(timeout=120)

    assert worker.returncode == 143, worker.stderr.read()[-2000:]
    assert DeltaTable(str(uri)).version() == version_after
    for version in range(version_after + 1):  # every version whole, by another reader
        assert len(oracle_rows(str(uri), version)) == [1, 6][version]
    left = sorted(str(p.relative_to(uri)) for p in (uri / STAGING_DIR).rglob("*"))
    assert not (uri / STAGING_DIR).exists(), left  # staging cleaned up
    assert data_files(uri) == referenced(uri)  # nothing half-written left in the table


def test_vacuum_keeps_what_a_running_writer_moved_but_has_not_committed(
    spark: SparkSession, tmp_path: Path
) -> None:
    uri = tmp_path / "busy"
    seed(spark, uri)
    worker = start("pause-moved", uri, "x", 1, tmp_path / "lh")
    try:
        wait_for(worker, "AT moved")
        pending = data_files(uri) - referenced(uri)
        assert pending  # moved into the table, not yet committed
        result = EmbeddedDelta(spark).vacuum(str(uri), retain_hours=0)
        assert not set(result.files) & pending and result.staging_dirs == []
        assert pending <= data_files(uri) and any((uri / STAGING_DIR).iterdir())
    finally:
        worker.send_signal(signal.SIGTERM)
        worker.wait(timeout=120)
    # the writer is gone now: what it left is vacuum's to remove
    assert data_files(uri) == referenced(uri)
    EmbeddedDelta(spark).vacuum(str(uri), retain_hours=0)
    assert not (uri / STAGING_DIR).exists()
