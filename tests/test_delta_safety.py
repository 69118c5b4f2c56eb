"""The embedded writer never corrupts a table, and reads (on both backends) never change a value.

Failures are injected where they hurt: after delta-rs accepted a commit, between the
move and the commit, with a concurrent writer; every version is then checked with
delta-rs's QueryBuilder.
"""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pytest
from deltalake import DeltaTable, write_deltalake
from oracles import oracle_rows, spark_rows
from pyspark.sql import SparkSession

from batchml.lib.delta import embedded
from batchml.lib.delta.connector import ConnectorDelta
from batchml.lib.delta.embedded import STAGING_DIR, EmbeddedDelta
from batchml.lib.platform.errors import InputError


@pytest.fixture
def tables(spark: SparkSession) -> EmbeddedDelta:
    return EmbeddedDelta(spark)


def rows(spark: SparkSession, start: int, count: int):
    return spark.range(start, start + count).selectExpr("id", "CAST(id % 2 AS STRING) AS part")


def every_version_readable(uri: str) -> list[int]:
    """Row counts of each version as QueryBuilder reads them (fails if a file is gone)."""
    latest = DeltaTable(uri).version()
    return [len(oracle_rows(uri, version)) for version in range(latest + 1)]


def files_on_disk(uri: str) -> set[str]:
    return {
        p.relative_to(uri).as_posix()
        for p in Path(uri).rglob("*.parquet")
        if STAGING_DIR not in p.parts
    }


def test_a_failure_after_the_commit_keeps_the_committed_files(
    spark: SparkSession, tables: EmbeddedDelta, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    uri = str(tmp_path / "t")
    tables.write(rows(spark, 0, 4), uri, partition_by=["part"])

    def post_commit_read_fails(root: str, commit_id: str) -> int:
        raise OSError("log unreadable just after the commit")

    monkeypatch.setattr(embedded, "_our_version", post_commit_read_fails)
    with pytest.raises(OSError, match="log unreadable"):
        tables.write(rows(spark, 10, 4), uri)
    assert DeltaTable(uri).version() == 1  # the commit is in...
    assert every_version_readable(uri) == [4, 8]  # ...and every file it names is there
    assert not (Path(uri) / STAGING_DIR).exists()


def test_an_interrupt_after_the_commit_keeps_it_whole(
    spark: SparkSession, tables: EmbeddedDelta, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    uri = str(tmp_path / "t")
    tables.write(rows(spark, 0, 4), uri, partition_by=["part"])
    find = embedded.find_commit

    def interrupted(root: str, commit_id: str):
        find(root, commit_id)
        raise KeyboardInterrupt  # Ctrl-C in the window after the log entry was written

    monkeypatch.setattr(embedded, "find_commit", interrupted)
    with pytest.raises(KeyboardInterrupt):
        tables.write(rows(spark, 10, 4), uri)
    monkeypatch.undo()
    assert every_version_readable(uri) == [4, 8]


def test_a_failed_commit_removes_only_its_own_files(
    spark: SparkSession, tables: EmbeddedDelta, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    uri = str(tmp_path / "t")
    tables.write(rows(spark, 0, 4), uri, partition_by=["part"])
    before = files_on_disk(uri)
    foreign = Path(uri) / "part=0" / "another-writer-moved-this.parquet"
    foreign.write_bytes(b"PAR1 not committed yet")

    def commit_fails(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(EmbeddedDelta, "_commit", commit_fails)
    with pytest.raises(OSError, match="disk full"):
        tables.write(rows(spark, 10, 4), uri)
    assert files_on_disk(uri) == before | {foreign.relative_to(uri).as_posix()}
    assert DeltaTable(uri).version() == 0


def test_the_version_reported_is_ours_not_a_concurrent_writers(
    spark: SparkSession, tables: EmbeddedDelta, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    uri = str(tmp_path / "t")
    tables.write(rows(spark, 0, 4), uri)
    find = embedded.find_commit

    def someone_commits_first(root: str, commit_id: str):
        write_deltalake(root, pa.table({"id": [99], "part": ["x"]}), mode="append")
        return find(root, commit_id)

    monkeypatch.setattr(embedded, "find_commit", someone_commits_first)
    result = tables.write(rows(spark, 10, 2), uri)
    assert (result.version, DeltaTable(uri).version()) == (1, 2)


def test_two_writers_creating_one_table_both_land(
    spark: SparkSession, tables: EmbeddedDelta, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    uri = str(tmp_path / "new")
    move = embedded.move_into_place
    raced = []

    def the_other_writer_creates_it_first(staging, root, staged, moved):
        move(staging, root, staged, moved)
        if not raced:
            raced.append(True)
            write_deltalake(
                root,
                pa.table({"id": pa.array([7], pa.int64()), "part": ["1"]}),
                partition_by=["part"],
            )

    monkeypatch.setattr(embedded, "move_into_place", the_other_writer_creates_it_first)
    result = tables.write(rows(spark, 0, 4), uri, partition_by=["part"])
    assert result.committed and result.attempts == 2  # retried as an append to theirs
    assert every_version_readable(uri) == [1, 5]
    assert sorted(r["id"] for r in oracle_rows(uri)) == [0, 1, 2, 3, 7]


@pytest.mark.parametrize("backend", ["connector", "embedded"])
@pytest.mark.parametrize("writer", ["deltalake", "spark"])
def test_partition_values_read_as_the_log_says(
    spark: SparkSession, tmp_path: Path, writer: str, backend: str
) -> None:
    tables = ConnectorDelta(spark) if backend == "connector" else EmbeddedDelta(spark)
    uri = str(tmp_path / writer)
    values = ["ü[1]", "🚀 launch", "a%20b", "50%", "x/y", "é=e", "plain"]
    data = pa.table({"id": pa.array(range(len(values)), pa.int64()), "p": values})
    if writer == "deltalake":
        write_deltalake(uri, data, partition_by=["p"])
    else:
        tables.write(spark.createDataFrame(data.to_pandas()), uri, partition_by=["p"])
    read = tables.read(uri)
    assert spark_rows(read.df) == oracle_rows(uri)
    assert sorted(r["p"] for r in read.df.collect()) == sorted(values)
    assert [r["id"] for r in read.df.filter("p = 'ü[1]'").collect()] == [0]


def test_export_of_a_deltalake_table_with_non_ascii_partitions(
    spark: SparkSession, tmp_path: Path, cli_globals: list[str]
) -> None:
    import pyarrow.dataset as ds
    from typer.testing import CliRunner

    from batchml.jobs.cli import app

    uri = str(tmp_path / "dl")
    write_deltalake(uri, pa.table({"id": [1, 2], "p": ["ü[1]", "日本"]}), partition_by=["p"])
    out = tmp_path / "out"
    result = CliRunner().invoke(app, [*cli_globals, "table", "export", uri, "--to", str(out)])
    assert result.exit_code == 0, result.stderr
    exported = ds.dataset(str(out), format="parquet").to_table().to_pylist()
    assert sorted((r["id"], r["p"]) for r in exported) == [(1, "ü[1]"), (2, "日本")]


def test_a_version_with_missing_files_is_an_input_error(
    spark: SparkSession, tables: EmbeddedDelta, tmp_path: Path
) -> None:
    uri = str(tmp_path / "t")
    tables.write(rows(spark, 0, 4).coalesce(1), uri)
    tables.write(rows(spark, 4, 4).coalesce(1), uri)
    gone = sorted(files_on_disk(uri))[0]
    (Path(uri) / gone).unlink()
    with pytest.raises(InputError, match=rf"table {uri} version 1: data file .* is missing"):
        tables.read(uri)
