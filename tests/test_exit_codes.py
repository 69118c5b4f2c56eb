"""Every exit code README.md documents, produced by the command line itself.

0, 4, 5 and 10 are also asserted beside the features they belong to (test_ingest,
test_table_cli); 3 in test_cli (Java missing). Here: the rest, and one of each again.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import people
import pytest
from deltalake import DeltaTable
from typer.testing import CliRunner

from batchml.jobs.cli import app
from batchml.lib.data.synthetic import agrawal
from batchml.lib.delta.embedded import STAGING_DIR, EmbeddedDelta
from batchml.lib.tracking.registry import Registry

MODEL = (
    people.pipeline(numeric=("salary", "age"), categorical=())
    + """
[models.people_lr]
pipeline = "people"
algorithm = "logistic_regression"
params = { maxIter = 5 }
"""
)


def invoke(cli_globals: list[str], *args: str):
    return CliRunner().invoke(app, [*cli_globals, *args])


def test_0_success(cli_globals) -> None:
    assert invoke(cli_globals, "config", "show", "--json").exit_code == 0


def test_1_internal_error_is_one_line(cli_globals, monkeypatch: pytest.MonkeyPatch) -> None:
    from batchml.jobs import table

    def bug(*args, **kwargs):
        return 1 / 0

    monkeypatch.setattr(table, "history", bug)
    result = invoke(cli_globals, "table", "history", "/tmp/anything")
    assert result.exit_code == 1
    assert result.stderr.strip() == (
        "batchml: error: internal error: ZeroDivisionError: division by zero "
        "(rerun with --verbose for the traceback)"
    )


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["demo", "--months", "13"], "months are 1..12"),
        (["ingest", "flights", "--mode", "bogus"], "use append, overwrite or replace"),
        (["table", "vacuum", "x", "--retain-hours", "-1"], "--retain-hours must be 0 or more"),
        (
            ["generate", "agrawal", "--rows", "5", "--to", "x", "--mode", "merge"],
            "--mode must be overwrite or append",
        ),
        (["table", "export", "x", "--to", "y", "--format", "xml"], "unknown export format"),
        (["--set", "spark.nope=1", "config", "show"], "unknown key 'spark.nope'"),
        (["train"], "give a MODEL to train or --reproduce"),
        (["models", "show"], "Missing argument"),
    ],
)
def test_2_usage_errors(cli_globals, args: list[str], message: str) -> None:
    result = invoke(cli_globals, *args)
    assert result.exit_code == 2, result.stderr
    assert message in result.stderr


def test_3_environment_error(cli_globals, tmp_path: Path) -> None:
    # (not delta.backend = "connector": a command joining the test session would leave
    # the Delta catalog set on it for every later test)
    # (a command that starts Spark: `table show` reads the log without a JVM)
    result = CliRunner().invoke(
        app,
        [*cli_globals, "generate", "agrawal", "--rows", "5", "--to", str(tmp_path / "t")],
        env={"JAVA_HOME": str(tmp_path / "no-java")},
    )
    assert result.exit_code == 3
    assert result.stderr.startswith("batchml: error: Java not found (looked in JAVA_HOME)")
    assert len(result.stderr.strip().splitlines()) == 1


def test_4_input_error(cli_globals, tmp_path: Path) -> None:
    result = invoke(cli_globals, "table", "show", str(tmp_path / "missing"))
    assert result.exit_code == 4 and "no Delta table at" in result.stderr


def test_6_reproduction_mismatch(spark, cli_globals, tmp_path: Path) -> None:
    lake = tmp_path / "lake"
    EmbeddedDelta(spark).write(agrawal(spark, 1500, function=7, seed=2), str(lake / "people"))
    conf = tmp_path / "model.toml"
    conf.write_text(MODEL)
    base = [*cli_globals, "--conf", str(conf), "--set", f'lakehouse.root="{lake}"']
    trained = invoke(base, "train", "people_lr", "--json")
    assert trained.exit_code == 0, trained.stderr
    registry = Registry(str(lake / "_registry"), EmbeddedDelta(spark))
    manifest = dict(registry.get("people_lr@1").manifest)
    # a version registered with other metrics than its data and spec give (e.g. by an
    # older release): reproducing it must say so
    manifest["metrics"] = {
        part: {name: value + 0.01 for name, value in values.items()}
        for part, values in manifest["metrics"].items()
    }
    registry.register("people_lr", registry.load("people_lr@1"), manifest)
    assert invoke(base, "train", "--reproduce", "people_lr@1").exit_code == 0
    mismatch = invoke(base, "train", "--reproduce", "people_lr@2", "--json")
    assert mismatch.exit_code == 6
    assert json.loads(mismatch.stdout)["match"] is False


def test_130_interrupted(cli_globals, monkeypatch: pytest.MonkeyPatch) -> None:
    from batchml.jobs import table

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(table, "history", interrupted)
    result = invoke(cli_globals, "table", "history", "/tmp/anything")
    assert result.exit_code == 130
    assert result.stderr.startswith("batchml: error: interrupted (Ctrl-C)")


@pytest.mark.parametrize(
    ("stop", "code", "message"),
    [(signal.SIGTERM, 143, "terminated (SIGTERM)"), (signal.SIGINT, 130, "interrupted (Ctrl-C)")],
)
def test_a_stop_signal_ends_a_write_cleanly(
    tmp_path: Path, stop: signal.Signals, code: int, message: str
) -> None:
    """SIGTERM (a scheduler's stop) and Ctrl-C while Spark writes: the jobs cancelled (from
    a thread of their own: the main thread's Py4J connection is busy with the job), the
    staging folder removed, no table, the command's one error line."""
    target = tmp_path / "lake" / "big"
    command = [
        sys.executable,
        "-m",
        "batchml.jobs.cli",
        "--master",
        "local[1]",
        "--set",
        f'lakehouse.root="{tmp_path / "lake"}"',
        "--set",
        'spark.driver_memory="700m"',
        "--set",
        'delta.backend="embedded"',  # the test watches the embedded writer's staging folder
        "generate",
        "agrawal",
        "--rows",
        "40000000",
        "--partitions",
        "8",
        "--to",
        str(target),
    ]
    process = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True
    )
    deadline = time.monotonic() + 180
    while not any((target / STAGING_DIR).glob("*/*")) and time.monotonic() < deadline:
        assert process.poll() is None, process.stderr.read()[-2000:]
        time.sleep(0.1)
    time.sleep(1.0)
    process.send_signal(stop)
    _, err = process.communicate(timeout=120)
    assert process.returncode == code, err[-2000:]
    assert err.count(f"batchml: error: {message}") == 1, err[-2000:]
    # no failed cancel on the busy connection (Py4J's "reentrant call"), no traceback
    assert "Traceback" not in err and "reentrant" not in err, err[-3000:]
    assert not DeltaTable.is_deltatable(str(target))
    left = sorted(str(p.relative_to(target)) for p in target.rglob("*")) if target.exists() else []
    assert not (target / STAGING_DIR).exists(), left


def test_a_usage_error_is_found_before_spark_starts_and_recorded_as_such(
    tmp_path: Path,
) -> None:
    """In a process of its own (no test session running): `demo --months 13` exits 2, its
    run row says so with the message, and no Spark application was started for it."""
    lake = tmp_path / "lake"
    done = subprocess.run(
        [sys.executable, "-c", "from batchml.jobs.cli import main; main()",
         "--set", f'lakehouse.root="{lake}"', "demo", "--months", "13"],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 2, done.stderr
    assert "months are 1..12" in done.stderr
    rows = DeltaTable(str(lake / "_runs")).to_pyarrow_table().to_pylist()
    assert [(r["job"], r["exit_code"], r["status"], r["app_id"]) for r in rows] == [
        ("demo", 2, "failed", None)
    ]
    assert "months are 1..12" in rows[0]["error"]
