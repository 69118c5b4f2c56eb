from __future__ import annotations

import json
from pathlib import Path

import pytest
from pyspark.sql import SparkSession
from typer.testing import CliRunner

from batchml.jobs.cli import app
from batchml.lib.platform.runtime import package_version


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner()


def commands_in(help_text: str) -> list[str]:
    """The command names of a --help page's Commands panel (continuation lines skipped)."""
    panel = help_text.split("Commands")[1].splitlines()
    return [
        line.strip("│ ").split()[0] for line in panel if line.startswith("│ ") and line[2] != " "
    ]


def test_help_lists_the_commands(runner: CliRunner) -> None:
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0
    assert commands_in(result.stdout) == [
        "ingest",
        "generate",
        "demo",
        "features",
        "train",
        "evaluate",
        "promote",
        "predict",
        "monitor",
        "pipeline",
        "submit",
        "doctor",
        "config",
        "table",
        "models",
        "runs",
        "report",
    ]
    for group, commands in {
        "config": ["show"],
        "table": ["show", "history", "export", "vacuum"],
        "models": ["list", "show", "alias"],
        "runs": ["list", "show"],
        "report": ["monitoring"],
    }.items():
        shown = runner.invoke(app, [group, "--help"])
        assert shown.exit_code == 0
        assert commands_in(shown.stdout) == commands, group
    for option in (
        "--env",
        "--conf",
        "--set",
        "--master",
        "--verbose",
        "--log-format",
        "--version",
    ):
        assert option in result.stdout


def test_version(runner: CliRunner) -> None:
    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0
    assert result.stdout.strip() == f"batchml {package_version('batchml')}"


def test_config_show_json_has_the_override_and_its_source(runner: CliRunner) -> None:
    result = runner.invoke(app, ["--set", "spark.driver_memory=3g", "config", "show", "--json"])
    assert result.exit_code == 0, result.stderr
    shown = json.loads(result.stdout)
    assert shown["config"]["spark"]["driver_memory"] == "3g"
    assert shown["sources"]["spark.driver_memory"] == "--set"
    assert shown["env"] == "local"


def test_config_show_text_and_master_option(runner: CliRunner) -> None:
    result = runner.invoke(app, ["--master", "local[1]", "config", "show"])
    assert result.exit_code == 0, result.stderr
    assert 'spark.master = "local[1]"    # --set' in result.stdout
    assert 'delta.backend = "auto"    # conf/base.toml' in result.stdout


def test_config_show_redacts_env_references(runner: CliRunner, tmp_path: Path) -> None:
    user = tmp_path / "creds.toml"
    user.write_text('[spark.conf]\n"spark.hadoop.fs.s3a.session.token" = "${env:MY_TOKEN}"\n')
    result = runner.invoke(
        app, ["--conf", str(user), "config", "show", "--json"], env={"MY_TOKEN": "hunter2"}
    )
    assert result.exit_code == 0, result.stderr
    assert "hunter2" not in result.stdout
    assert json.loads(result.stdout)["config"]["spark"]["conf"] == {
        "spark.hadoop.fs.s3a.session.token": "***"
    }


@pytest.mark.parametrize(
    ("args", "env", "message"),
    [
        (["--conf", "missing.toml"], {}, "config file missing.toml does not exist"),
        (["--env", "nope"], {}, "unknown env 'nope'"),
        ([], {"BATCHML_ENV": "nope"}, "unknown env 'nope'"),
        (["--set", "spark.master"], {}, "--set 'spark.master': expected dotted.key=value"),
        (["--set", "spark.mastr=x"], {}, "did you mean 'spark.master'?"),
        (["--set", "spark.ui=3"], {}, "spark.ui: expected a valid boolean, found 3 (int)"),
        (
            ["--set", 'lakehouse.root="${env:NOPE_NOT_SET}"'],
            {},
            "lakehouse.root references environment variable NOPE_NOT_SET, which is not set",
        ),
    ],
)
def test_config_errors_exit_2_with_one_line(runner, args, env, message) -> None:
    result = runner.invoke(app, [*args, "config", "show"], env=env)
    assert result.exit_code == 2
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("batchml: error: ")
    assert message in lines[0]


def test_invalid_toml_file_names_the_line(runner: CliRunner, tmp_path: Path) -> None:
    broken = tmp_path / "broken.toml"
    broken.write_text("[spark]\nmaster = local\n")
    result = runner.invoke(app, ["--conf", str(broken), "config", "show"])
    assert result.exit_code == 2
    assert "is not valid TOML" in result.stderr
    assert "line 2" in result.stderr


def test_unknown_log_format_is_a_usage_error(runner: CliRunner) -> None:
    result = runner.invoke(app, ["--log-format", "xml", "config", "show"])
    assert result.exit_code == 2
    assert "xml" in result.stderr


def test_doctor_reports_java_spark_and_embedded_backend(
    runner: CliRunner, spark: SparkSession, cli_globals: list[str]
) -> None:
    result = runner.invoke(app, [*cli_globals, "doctor", "--json"])
    assert result.exit_code == 0, result.stderr
    report = json.loads(result.stdout)
    checks = {check["name"]: check for check in report["checks"]}
    assert report["ok"] is True
    assert set(checks) == {"java", "memory", "lakehouse", "spark", "delta_backend"}
    assert all(check["status"] == "ok" for check in checks.values())
    facts = report["facts"]
    assert facts["java_version"].split(".")[0] in ("17", "21")
    assert facts["pyspark_version"] == package_version("pyspark")
    assert facts["deltalake_version"] == package_version("deltalake")
    assert facts["delta_backend"] == "embedded"  # the test session's delta.backend
    assert facts["delta_connector_loadable"] is True
    assert "delta.backend = 'embedded' in config" in checks["delta_backend"]["detail"]
    assert facts["spark_version"] == spark.version
    # the doctor joined the test session and did not stop it
    assert spark.range(3).count() == 3


def test_doctor_fails_with_one_line_when_java_is_missing(runner: CliRunner, tmp_path: Path) -> None:
    result = runner.invoke(
        app,
        ["--set", f'lakehouse.root="{tmp_path}"', "doctor"],
        env={"JAVA_HOME": str(tmp_path / "no-java")},
    )
    assert result.exit_code == 3
    assert result.stderr.strip() == (
        "batchml: error: java: Java not found (looked in JAVA_HOME): install Java 17 or 21 "
        "and put it on PATH or set JAVA_HOME"
    )
    assert "[FAIL] java" in result.stdout
    assert "[FAIL] spark" in result.stdout


def test_doctor_fails_when_java_is_too_old(runner: CliRunner, tmp_path: Path) -> None:
    java_home = tmp_path / "jdk8"
    (java_home / "bin").mkdir(parents=True)
    fake = java_home / "bin" / "java"
    fake.write_text("#!/bin/sh\necho 'openjdk version \"1.8.0_392\"' >&2\n")
    fake.chmod(0o755)
    result = runner.invoke(
        app,
        ["--set", f'lakehouse.root="{tmp_path}"', "doctor", "--json"],
        env={"JAVA_HOME": str(java_home)},
    )
    assert result.exit_code == 3
    assert "Java 1.8.0_392 at" in result.stderr
    assert "is too old: Spark 4 needs Java 17 or 21" in result.stderr
    assert json.loads(result.stdout)["ok"] is False


def test_doctor_flags_a_lakehouse_root_that_is_a_file(
    runner: CliRunner, tmp_path: Path, cli_globals: list[str]
) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    result = runner.invoke(
        app,
        [
            *cli_globals,
            "--set",
            f'lakehouse.root="{blocker}/lake"',
            "--set",
            "spark.driver_memory=999t",
            "doctor",
            "--json",
        ],
    )
    assert result.exit_code == 3
    checks = {c["name"]: c for c in json.loads(result.stdout)["checks"]}
    assert checks["memory"]["status"] == "fail"
    assert checks["lakehouse"]["status"] == "fail"
    assert "is not a directory" in checks["lakehouse"]["detail"]
