"""Tables another engine left broken, on both backends: each defect is built in
`tmp_path` (a data file deleted, a checkpoint gone, a gap in the log, an empty schema)
and must fail as one named input error, the same on both backends, with nothing changed.
Before, the connector failed with a Py4J stack trace (`calling oNNN.parquet`) or a bare
error class, and the embedded backend with delta-rs's kernel error text."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from deltalake import DeltaTable
from pyspark.sql import SparkSession
from typer.testing import CliRunner

from batchml.lib.delta import DeltaTables
from batchml.lib.delta.connector import ConnectorDelta
from batchml.lib.delta.defects import log_problem, parse_listing
from batchml.lib.delta.embedded import EmbeddedDelta
from batchml.lib.platform.errors import InputError


@pytest.fixture(params=["connector", "embedded"])
def tables(request: pytest.FixtureRequest, spark: SparkSession) -> DeltaTables:
    return ConnectorDelta(spark) if request.param == "connector" else EmbeddedDelta(spark)


def commit(log_dir: Path, version: int) -> Path:
    return log_dir / f"{version:020d}.json"


def state(root: Path) -> dict[str, bytes]:
    """Every file of the table and its bytes: a failed read must change none."""
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def three_versions(spark: SparkSession, tables: DeltaTables, uri: str) -> list[str]:
    """Versions 0-2, one file each; the file each version added (relative paths)."""
    added = []
    for start in (0, 10, 20):
        before = set(DeltaTable(uri).file_uris()) if tables.exists(uri) else set()
        tables.write(spark.range(start, start + 3).coalesce(1), uri)
        (new,) = set(DeltaTable(uri).file_uris()) - before
        added.append(Path(new.removeprefix("file://")).name)
    return added


def read_and_collect(tables: DeltaTables, uri: str, **kwargs: int) -> list[int]:
    """A read plus an action, as a job does them (the connector fails lazily on its own)."""
    return sorted(row["id"] for row in tables.read(uri, **kwargs).df.collect())


def test_a_deleted_data_file_names_table_version_and_file(
    spark: SparkSession, tables: DeltaTables, tmp_path: Path
) -> None:
    uri = str(tmp_path / "t")
    added = three_versions(spark, tables, uri)
    (tmp_path / "t" / added[1]).unlink()
    before = state(tmp_path / "t")

    for version in (2, 1):
        with pytest.raises(InputError) as raised:
            read_and_collect(tables, uri, version=version)
        assert str(raised.value) == (
            f"table {uri} version {version}: data file {added[1]} is missing (deleted or "
            "vacuumed); read another version or restore the file"
        )
    assert read_and_collect(tables, uri, version=0) == [0, 1, 2]  # it did not need the file
    assert state(tmp_path / "t") == before


def test_a_checkpoint_listing_a_deleted_file_names_it(
    spark: SparkSession, tables: DeltaTables, tmp_path: Path
) -> None:
    uri = str(tmp_path / "t")
    added = three_versions(spark, tables, uri)
    DeltaTable(uri).create_checkpoint()  # version 2's files now come from the checkpoint
    log_dir = tmp_path / "t" / "_delta_log"
    for version in (0, 1):  # the log cleaned up behind the checkpoint
        commit(log_dir, version).unlink()
    (tmp_path / "t" / added[0]).unlink()
    before = state(tmp_path / "t")

    with pytest.raises(InputError) as raised:
        read_and_collect(tables, uri)
    assert str(raised.value) == (
        f"table {uri} version 2: data file {added[0]} is missing (deleted or vacuumed); "
        "read another version or restore the file"
    )
    assert state(tmp_path / "t") == before


def test_a_gap_in_the_log_names_the_missing_commit(
    spark: SparkSession, tables: DeltaTables, tmp_path: Path
) -> None:
    uri = str(tmp_path / "t")
    three_versions(spark, tables, uri)
    commit(tmp_path / "t" / "_delta_log", 1).unlink()
    before = state(tmp_path / "t")

    message = (
        f"table {uri}: its log has a gap: commit 00000000000000000001.json (version 1) is "
        "missing, so version 2 cannot be rebuilt; restore the file from a backup"
    )
    for kwargs in ({}, {"version": 0}):  # every read pins its version against the latest
        with pytest.raises(InputError) as raised:
            read_and_collect(tables, uri, **kwargs)
        assert str(raised.value) == message
    assert state(tmp_path / "t") == before


def test_a_missing_checkpoint_with_the_commits_before_it_gone_is_named(
    spark: SparkSession, tables: DeltaTables, tmp_path: Path
) -> None:
    uri = str(tmp_path / "t")
    three_versions(spark, tables, uri)
    DeltaTable(uri).create_checkpoint()
    log_dir = tmp_path / "t" / "_delta_log"
    for version in (0, 1):
        commit(log_dir, version).unlink()
    tables.write(spark.range(30, 33).coalesce(1), uri)  # version 3, on the checkpoint
    (log_dir / "00000000000000000002.checkpoint.parquet").unlink()
    assert json.loads((log_dir / "_last_checkpoint").read_text())["version"] == 2
    before = state(tmp_path / "t")

    with pytest.raises(InputError) as raised:
        read_and_collect(tables, uri)
    assert str(raised.value) == (
        f"table {uri}: checkpoint _delta_log/00000000000000000002.checkpoint.parquet "
        "(version 2, named in _delta_log/_last_checkpoint) is missing and the commits "
        "before it are gone too, so version 3 cannot be rebuilt; restore the checkpoint file"
    )
    assert state(tmp_path / "t") == before


def test_a_stale_checkpoint_hint_over_a_whole_log_still_reads(
    spark: SparkSession, tables: DeltaTables, tmp_path: Path
) -> None:
    """`_last_checkpoint` naming a checkpoint that is gone, every commit still there: the
    connector lists the log and reads it; the embedded backend does too (delta-rs alone
    trusts the hint and refuses the table)."""
    uri = str(tmp_path / "t")
    three_versions(spark, tables, uri)
    DeltaTable(uri).create_checkpoint()
    (tmp_path / "t" / "_delta_log" / "00000000000000000002.checkpoint.parquet").unlink()
    before = state(tmp_path / "t")

    read = tables.read(uri)
    assert read.version == 2
    assert sorted(row["id"] for row in read.df.collect()) == [0, 1, 2, 10, 11, 12, 20, 21, 22]
    assert state(tmp_path / "t") == before


def write_empty_schema_table(root: Path) -> None:
    """A first commit whose schema has no field, as another engine may leave it."""
    (root / "_delta_log").mkdir(parents=True)
    actions = [
        {"protocol": {"minReaderVersion": 1, "minWriterVersion": 2}},
        {
            "metaData": {
                "id": "e0",
                "format": {"provider": "parquet", "options": {}},
                "schemaString": json.dumps({"type": "struct", "fields": []}),
                "partitionColumns": [],
                "configuration": {},
                "createdTime": 0,
            }
        },
        {"commitInfo": {"timestamp": int(time.time() * 1000), "operation": "CREATE TABLE"}},
    ]
    commit(root / "_delta_log", 0).write_text("\n".join(json.dumps(a) for a in actions) + "\n")


def test_an_empty_schema_is_named(tables: DeltaTables, tmp_path: Path) -> None:
    root = tmp_path / "empty"
    write_empty_schema_table(root)
    before = state(root)

    with pytest.raises(InputError) as raised:
        tables.read(str(root)).df.collect()
    assert str(raised.value) == (
        f"table {root} version 0 has an empty schema (no columns), so there is nothing to "
        "read; another engine created it without columns"
    )
    assert state(root) == before


def test_export_on_the_connector_names_a_deleted_file_in_one_line(
    spark: SparkSession, tmp_path: Path, cli_globals: list[str]
) -> None:
    from batchml.jobs.cli import app

    uri = str(tmp_path / "t")
    added = three_versions(spark, ConnectorDelta(spark), uri)
    (tmp_path / "t" / added[2]).unlink()
    out = tmp_path / "out"
    connector = ["--set", 'delta.backend="connector"']

    result = CliRunner().invoke(
        app, [*cli_globals, *connector, "table", "export", uri, "--to", str(out)]
    )
    assert result.exit_code == 4, result.stderr
    assert result.stderr.strip().splitlines() == [
        f"batchml: error: table {uri} version 2: data file {added[2]} is missing (deleted or "
        "vacuumed); read another version or restore the file"
    ]
    assert "Traceback" not in result.output and "Py4J" not in result.output
    assert not out.exists()


@pytest.mark.parametrize("defect", ["gap", "empty"])
def test_table_show_names_log_defects(
    spark: SparkSession, tmp_path: Path, cli_globals: list[str], defect: str
) -> None:
    """`table show` reads the log with delta-rs whatever the backend: the same names."""
    from batchml.jobs.cli import app

    root = tmp_path / "t"
    if defect == "gap":
        three_versions(spark, EmbeddedDelta(spark), str(root))
        commit(root / "_delta_log", 1).unlink()
        expected = f"table {root}: its log has a gap: commit 00000000000000000001.json"
    else:
        write_empty_schema_table(root)
        expected = f"table {root} version 0 has an empty schema (no columns)"

    result = CliRunner().invoke(app, [*cli_globals, "table", "show", str(root)])
    assert result.exit_code == 4, result.stderr
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith(f"batchml: error: {expected}")


def test_the_log_listing_knows_checkpoint_forms_and_gaps() -> None:
    names = [
        "00000000000000000000.json",
        "00000000000000000004.checkpoint.0000000001.0000000002.parquet",  # part 2 gone
        "00000000000000000003.checkpoint.parquet",
        "00000000000000000004.json",
        "00000000000000000006.json",
        "00000000000000000006.crc",
        "_last_checkpoint",
    ]
    listing = parse_listing(names, '{"version": 4, "size": 9, "parts": 2}')
    assert (listing.commits, listing.checkpoints) == ({0, 4, 6}, {3})
    assert listing.stale_hint and listing.missing_commits() == [5]
    assert log_problem("t", listing) == (
        "table t: its log has a gap: commit 00000000000000000005.json (version 5) is "
        "missing, so version 6 cannot be rebuilt; restore the file from a backup"
    )
    whole = parse_listing([*names, "00000000000000000005.json"], None)
    assert whole.missing_commits() == [] and log_problem("t", whole) is None
