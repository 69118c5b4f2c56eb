"""The runs table: every job run recorded with its inputs, outputs, outcome and the
resources Spark measured."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import pytest
from deltalake import DeltaTable
from oracles import oracle_rows
from pyspark.sql import SparkSession
from typer.testing import CliRunner

from batchml.jobs.cli import app
from batchml.lib.spark.metrics import mark, resources_since
from batchml.lib.tracking import runs


@pytest.fixture
def runs_table(tmp_path: Path) -> Path:
    return tmp_path / "runs"


def invoke(cli_globals: list[str], runs_table: Path, *args: str):
    return CliRunner().invoke(app, [*cli_globals, "--set", f'runs.table="{runs_table}"', *args])


def recorded(cli_globals, runs_table: Path) -> list[dict]:
    listed = invoke(cli_globals, runs_table, "runs", "list", "--json")
    assert listed.exit_code == 0, listed.stderr
    return json.loads(listed.stdout)["runs"]


def test_a_job_run_is_recorded_with_what_it_wrote_and_cost(
    cli_globals, runs_table: Path, tmp_path: Path
) -> None:
    target = tmp_path / "friedman"
    done = invoke(
        cli_globals, runs_table, "generate", "friedman", "--rows", "300", "--to", str(target)
    )
    assert done.exit_code == 0, done.stderr
    [run] = recorded(cli_globals, runs_table)
    assert (run["job"], run["status"], run["exit_code"], run["error"]) == (
        "generate",
        "succeeded",
        0,
        None,
    )
    assert run["arguments"]["options"]["rows"] == 300
    assert run["writes"] == [{"table": str(target), "version": 0, "committed": True}]
    assert run["master"] == "local[2]" and run["app_id"].startswith("local-")
    # the bytes Spark counted as written are the table's data files, exactly
    parquet = sum(f.stat().st_size for f in target.glob("*.parquet"))
    assert run["output_bytes"] == parquet
    assert run["jobs"] >= 1 and run["tasks"] >= run["stages"] >= 1
    assert run["failed_tasks"] == 0
    # task time fits in the run (two task slots), and a task's CPU time in its run time
    # (each rounded to the millisecond): units or sums gone wrong break one of these
    assert run["task_time_ms"] <= run["duration_s"] * 1000 * 2
    assert run["executor_cpu_time_ms"] <= run["task_time_ms"] + run["tasks"]
    assert run["jvm_gc_time_ms"] <= run["task_time_ms"] + run["tasks"]
    assert run["driver_peak_heap_bytes"] > 1 << 20  # a JVM's heap holds megabytes
    assert run["executor_peak_heap_bytes"] is None  # local mode: the driver is the executor
    assert run["gpu"] is None
    assert Path(run["event_log"].removeprefix("file://")).exists()

    shown = invoke(cli_globals, runs_table, "runs", "show", run["run_id"][:8])
    assert shown.exit_code == 0, shown.stderr
    assert f"run {run['run_id']}  generate  succeeded (exit 0)" in shown.stdout
    assert f"wrote {target}@0" in shown.stdout
    assert "executor CPU time" in shown.stdout and "GPU                          none used" in (
        shown.stdout
    )


def test_tables_under_the_lakehouse_are_recorded_relative_to_it(
    cli_globals, runs_table: Path, lakehouse_root: Path
) -> None:
    name = f"runs_relative_{uuid.uuid4().hex[:8]}"
    done = invoke(cli_globals, runs_table, "generate", "friedman", "--rows", "50", "--to", name)
    assert done.exit_code == 0, done.stderr
    [row] = [r for r in oracle_rows(str(runs_table)) if name in r["arguments"]]
    # in the table: the lake's own name for it, so a moved lakehouse's runs name its tables
    assert json.loads(row["writes"]) == [{"table": name, "version": 0, "committed": True}]
    assert not row["event_log"].startswith(("/", "file:"))
    shown = invoke(cli_globals, runs_table, "runs", "show", row["run_id"], "--json")
    assert shown.exit_code == 0, shown.stderr
    printed = json.loads(shown.stdout)
    assert printed["writes"][0]["table"] == str(lakehouse_root / name)  # where it is now
    assert Path(printed["event_log"].removeprefix("file://")).exists()


def test_a_failed_run_is_recorded_with_its_error(
    cli_globals, runs_table: Path, tmp_path: Path
) -> None:
    missing = tmp_path / "no_such_table"
    done = invoke(cli_globals, runs_table, "predict", "m@1", "--input", str(missing))
    assert done.exit_code != 0
    [run] = recorded(cli_globals, runs_table)
    assert run["job"] == "predict" and run["status"] == "failed"
    assert run["exit_code"] == done.exit_code
    assert run["error"] and run["error"] in done.stderr
    assert run["writes"] == []


def test_runs_show_unknown_id_is_one_line(cli_globals, runs_table: Path) -> None:
    done = invoke(cli_globals, runs_table, "runs", "show", "feedbeef")
    assert done.exit_code == 4
    assert done.stderr.strip().count("\n") == 0 and "no run 'feedbeef'" in done.stderr


def test_runs_list_filters_by_job_and_commands_that_only_read_are_not_runs(
    cli_globals, runs_table: Path, tmp_path: Path
) -> None:
    for rows in (10, 20):
        target = str(tmp_path / f"t{rows}")
        done = invoke(
            cli_globals, runs_table, "generate", "agrawal", "--rows", str(rows), "--to", target
        )
        assert done.exit_code == 0, done.stderr
    assert invoke(cli_globals, runs_table, "table", "show", target).exit_code == 0
    assert [r["arguments"]["options"]["rows"] for r in recorded(cli_globals, runs_table)] == [
        20,
        10,
    ]
    only = invoke(cli_globals, runs_table, "runs", "list", "--job", "predict", "--json")
    assert json.loads(only.stdout)["runs"] == []


def test_resources_are_the_runs_own_stages(spark: SparkSession, tmp_path: Path) -> None:
    spark.range(100).count()  # something before the run: not counted
    before = mark(spark.sparkContext)
    out = tmp_path / "out"
    spark.range(0, 5000, numPartitions=3).write.parquet(str(out))
    figures = resources_since(spark.sparkContext, before)
    assert figures["jobs"] == 1 and figures["stages"] == 1 and figures["tasks"] == 3
    written = sum(f.stat().st_size for f in out.glob("*.parquet"))
    assert figures["output_bytes"] == written
    assert figures["shuffle_write_bytes"] == 0 and figures["input_bytes"] == 0

    before = mark(spark.sparkContext)
    counts = spark.read.parquet(str(out)).selectExpr("id % 2 AS k").groupBy("k").count()
    assert sorted(r["count"] for r in counts.collect()) == [2500, 2500]
    figures = resources_since(spark.sparkContext, before)
    assert figures["input_bytes"] > 0
    assert figures["shuffle_write_bytes"] > 0
    assert figures["shuffle_read_bytes"] == figures["shuffle_write_bytes"]


def test_status_of_exit_codes() -> None:
    assert runs.status_of(0, None) == "succeeded"
    assert runs.status_of(4, "no table x") == "failed"
    assert runs.status_of(7, None) == "completed"  # promote's "not promoted": a verdict
    assert runs.status_of(130, "interrupted") == "interrupted"
    assert runs.status_of(143, None) == "interrupted"


def test_the_runs_table_is_delta_readable_by_another_reader(
    cli_globals, runs_table: Path, tmp_path: Path
) -> None:
    done = invoke(
        cli_globals, runs_table, "generate", "friedman", "--rows", "40", "--to", str(tmp_path / "f")
    )
    assert done.exit_code == 0, done.stderr
    table = DeltaTable(str(runs_table)).to_pyarrow_table()
    assert table.num_rows == 1
    assert table.column("job").to_pylist() == ["generate"]
    assert "task_time_ms" in table.schema.names and "executor_cpu_time_ms" in table.schema.names
