from __future__ import annotations

import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from pyspark.sql import SparkSession
from typer.testing import CliRunner

from batchml.jobs.cli import app
from batchml.lib.delta.embedded import EmbeddedDelta


@pytest.fixture(scope="module")
def flights(spark: SparkSession, tmp_path_factory: pytest.TempPathFactory) -> Path:
    uri = tmp_path_factory.mktemp("cli") / "flights"
    tables = EmbeddedDelta(spark)
    schema = "id int, carrier string, delay double"
    tables.write(
        spark.createDataFrame([(1, "UA", 3.0), (2, None, None)], schema),
        str(uri),
        partition_by=["carrier"],
        commit_info={"job": "test", "run_id": "r1"},
    )
    tables.write(spark.createDataFrame([(3, "AA", -1.5)], schema), str(uri))
    return uri


def invoke(cli_globals: list[str], *args: str):
    return CliRunner().invoke(app, [*cli_globals, "table", *args])


def test_show_json(cli_globals, flights: Path) -> None:
    result = invoke(cli_globals, "show", str(flights), "--json", "--limit", "5")
    assert result.exit_code == 0, result.stderr
    shown = json.loads(result.stdout)
    assert (shown["version"], shown["row_count"]) == (1, 3)
    assert [f["name"] for f in shown["schema"]] == ["id", "carrier", "delay"]
    assert sorted(r["id"] for r in shown["rows"]) == [1, 2, 3]


def test_show_a_version_as_text(cli_globals, flights: Path) -> None:
    result = invoke(cli_globals, "show", str(flights), "--version", "0")
    assert result.exit_code == 0, result.stderr
    assert result.stdout.splitlines()[0] == f"{flights}  version 0  rows 2"
    assert "carrier" in result.stdout and "NULL" in result.stdout


def test_show_by_name_under_the_lakehouse_root(cli_globals, spark, lakehouse_root: Path) -> None:
    EmbeddedDelta(spark).write(spark.range(4), str(lakehouse_root / "numbers"))
    result = invoke(cli_globals, "show", "numbers", "--json")
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout)["row_count"] == 4


def test_history(cli_globals, flights: Path) -> None:
    result = invoke(cli_globals, "history", str(flights), "--json")
    assert result.exit_code == 0, result.stderr
    commits = json.loads(result.stdout)["commits"]
    assert [c["version"] for c in commits] == [1, 0]
    assert commits[1]["batchml"] == {
        "operation": "append",
        "job": "test",
        "run_id": "r1",
        "commit_id": commits[1]["batchml"]["commit_id"],
    }
    text = invoke(cli_globals, "history", str(flights), "--limit", "1")
    assert text.exit_code == 0
    assert len(text.stdout.strip().splitlines()) == 2


@pytest.mark.parametrize("file_format", ["parquet", "csv"])
def test_export(cli_globals, flights: Path, tmp_path: Path, file_format: str) -> None:
    target = tmp_path / "out"
    result = invoke(
        cli_globals,
        "export",
        str(flights),
        "--to",
        str(target),
        "--format",
        file_format,
        "--version",
        "0",
        "--json",
    )
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout)["version"] == 0
    if file_format == "parquet":
        ids = sorted(pq.read_table(target).column("id").to_pylist())
    else:
        lines = [p.read_text().splitlines() for p in target.glob("*.csv")]
        ids = sorted(int(row.split(",")[0]) for part in lines for row in part[1:])
    assert ids == [1, 2]


def test_vacuum_dry_run(cli_globals, flights: Path) -> None:
    result = invoke(cli_globals, "vacuum", str(flights), "--dry-run", "--json")
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout) == {
        "uri": str(flights),
        "dry_run": True,
        "files": [],
        "staging_dirs": [],
        "kept_versions": [],
    }


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["show", "/nonexistent/table"], 4, "no Delta table at /nonexistent/table"),
        (["show", "{flights}", "--version", "5"], 4, "has no version 5 (latest is 1)"),
        (["show", "{flights}", "--timestamp", "2001-01-01"], 4, "has no version as of 2001-01-01"),
        (["show", "{flights}", "--timestamp", "yesterday"], 2, "--timestamp 'yesterday'"),
        (["show", "{flights}", "--version", "0", "--timestamp", "2001-01-01"], 2, "not both"),
        (["export", "{flights}", "--to", "{flights}"], 4, "already exists"),
        (["export", "{flights}", "--to", "/tmp/x", "--format", "xml"], 2, "unknown export format"),
        (["vacuum", "{flights}", "--retain-hours", "-1"], 2, "--retain-hours must be 0 or more"),
        (["vacuum", "{flights}", "--retain-hours", "0.9"], 2, "--retain-hours 0.9 is under 168"),
    ],
)
def test_bad_input_is_one_line_with_exit_code(cli_globals, flights, args, code, message) -> None:
    result = invoke(cli_globals, *[a.format(flights=flights) for a in args])
    assert result.exit_code == code, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("batchml: error: ")
    assert message in lines[0]


def test_vacuum_keeps_the_versions_registered_models_were_trained_on(
    spark, cli_globals, tmp_path: Path
) -> None:
    from pyspark.ml import PipelineModel
    from pyspark.ml.feature import SQLTransformer

    from batchml.lib.tracking.registry import Registry

    lake = tmp_path / "lake"
    table = lake / "features"
    tables = EmbeddedDelta(spark)
    tables.write(spark.range(10).coalesce(1), str(table))  # version 0: trained on
    tables.write(spark.range(20).coalesce(1), str(table), mode="overwrite")  # version 1
    tables.write(spark.range(30).coalesce(1), str(table), mode="overwrite")  # version 2
    model = PipelineModel(stages=[SQLTransformer(statement="SELECT * FROM __THIS__")])
    Registry(str(lake / "_registry"), tables).register(
        "m", model, {"algorithm": "sql", "training_table": str(table), "training_version": 0}
    )
    args = [
        *cli_globals,
        "--set",
        f'lakehouse.root="{lake}"',
        "table",
        "vacuum",
        str(table),
        "--retain-hours",
        "0",
        "--force",
        "--json",
    ]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["kept_versions"] == [0]
    assert len(report["files"]) == 1  # version 1's file; version 0's survives
    assert tables.read(str(table), version=0).df.count() == 10
    assert tables.read(str(table)).df.count() == 30


def test_table_names_resolve_through_their_contract_path(
    spark, cli_globals, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    lake = tmp_path / "lake"
    conf = tmp_path / "trips.toml"
    conf.write_text(
        '[tables.trips]\npath = "custom/trips_v2"\n[tables.trips.columns]\nid = { type = "long" }\n'
    )
    tables = EmbeddedDelta(spark)
    tables.write(spark.range(3), str(lake / "custom" / "trips_v2"))
    tables.write(spark.range(5), str(lake / "trips"))  # where a bare name would point
    base = [*cli_globals, "--conf", str(conf), "--set", f'lakehouse.root="{lake}"', "table"]
    shown = CliRunner().invoke(app, [*base, "show", "trips", "--json"])
    assert shown.exit_code == 0, shown.stderr
    data = json.loads(shown.stdout)
    assert (data["uri"], data["row_count"]) == (str(lake / "custom" / "trips_v2"), 3)
    # a path typed on the command line is relative to the working directory
    elsewhere = CliRunner().invoke(app, [*base, "history", "custom/trips_v2", "--json"])
    assert elsewhere.exit_code == 4  # the test's cwd has no custom/trips_v2
    monkeypatch.chdir(lake)
    relative = CliRunner().invoke(app, [*base, "history", "custom/trips_v2", "--json"])
    assert relative.exit_code == 0, relative.stderr
    assert json.loads(relative.stdout)["uri"] == str(lake / "custom" / "trips_v2")


def test_table_location_is_the_one_resolver(tmp_path: Path) -> None:
    from batchml.lib.delta.lakehouse import table_location
    from batchml.lib.platform.config import load_config

    conf = tmp_path / "t.toml"
    conf.write_text(
        '[tables.t]\npath = "elsewhere/t"\n[tables.t.columns]\nid = { type = "long" }\n'
    )
    lake = tmp_path / "lake"
    settings = load_config(
        conf_file=conf, overrides=[f'lakehouse.root="{lake}"'], environ={}
    ).settings
    assert table_location("t", settings) == str(lake / "elsewhere" / "t")
    assert table_location("u", settings) == str(lake / "u")
    assert table_location("a/b", settings) == str(lake / "a" / "b")  # config paths
    assert table_location("a/b", settings, relative_to=tmp_path) == str(tmp_path / "a" / "b")
    assert table_location("t", settings, relative_to=tmp_path) == str(lake / "elsewhere" / "t")
    assert table_location("/abs/t", settings, relative_to=tmp_path) == "/abs/t"
    assert table_location("s3://bucket/t", settings, relative_to=tmp_path) == "s3://bucket/t"


def test_show_refuses_what_no_backend_here_can_read(cli_globals, tmp_path: Path) -> None:
    from test_delta_io import write_log

    root = tmp_path / "mapped"
    configuration = {"delta.columnMapping.mode": "name", "delta.columnMapping.maxColumnId": "1"}
    mapping = {"delta.columnMapping.id": 1, "delta.columnMapping.physicalName": "col-1"}
    write_log(root, {"minReaderVersion": 2, "minWriterVersion": 5}, configuration, metadata=mapping)
    # delta-rs would read the Parquet columns by their logical names: the metadata path
    # hands the table to the Delta backend, and the embedded one refuses it in one line
    result = invoke(cli_globals, "show", str(root))
    assert result.exit_code == 4
    assert "uses column mapping" in result.stderr and len(result.stderr.splitlines()) == 1
    history = invoke(cli_globals, "history", str(root), "--json")
    assert history.exit_code == 0, history.stderr
    assert [c["version"] for c in json.loads(history.stdout)["commits"]] == [0]
