"""The Airflow DAG in deploy/airflow parses and its commands are valid spark-submit.sh
command lines. Airflow itself is not installed (hundreds of dependencies, pinned apart
from ours): the DAG file is run against stand-ins of the three names it imports, which
record what it declares."""

from __future__ import annotations

import runpy
import shlex
import sys
import types
from pathlib import Path

import pytest

import batchml.jobs.cli  # noqa: F401  (registers the commands job_names lists)
from batchml.jobs.submit import job_names
from batchml.lib.submit.launch import parse

DAG_FILE = Path(__file__).parents[1] / "deploy" / "airflow" / "batchml_pipeline.py"


class FakeDAG:
    current: FakeDAG | None = None

    def __init__(self, dag_id: str, **kwargs) -> None:
        self.dag_id, self.kwargs, self.tasks = dag_id, kwargs, []

    def __enter__(self) -> FakeDAG:
        FakeDAG.current = self
        return self

    def __exit__(self, *exc) -> None:
        FakeDAG.current = None


class FakeBash:
    def __init__(self, task_id: str, bash_command: str, **kwargs) -> None:
        self.task_id, self.bash_command, self.downstream = task_id, bash_command, []
        assert FakeDAG.current is not None, "a task declared outside the DAG"
        FakeDAG.current.tasks.append(self)

    def __rshift__(self, other: FakeBash) -> FakeBash:
        self.downstream.append(other.task_id)
        return other


@pytest.fixture
def dag(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> FakeDAG:
    airflow = types.ModuleType("airflow")
    airflow.DAG = FakeDAG
    operators = types.ModuleType("airflow.operators")
    bash = types.ModuleType("airflow.operators.bash")
    bash.BashOperator = FakeBash
    for name, module in {
        "airflow": airflow,
        "airflow.operators": operators,
        "airflow.operators.bash": bash,
    }.items():
        monkeypatch.setitem(sys.modules, name, module)
    monkeypatch.setenv("BATCHML_HOME", "/srv/batch ml")
    monkeypatch.setenv("BATCHML_SCHEDULE", "flights")
    (tmp_path / "prod.toml").write_text("")
    monkeypatch.setenv("BATCHML_CONF", str(tmp_path / "prod.toml"))
    namespace = runpy.run_path(str(DAG_FILE))
    return namespace["dag"]


def test_the_dag_runs_the_pipeline_nightly_then_the_report(dag: FakeDAG) -> None:
    assert dag.dag_id == "batchml_pipeline"
    assert dag.kwargs["schedule"] == "0 2 * * *" and dag.kwargs["catchup"] is False
    assert dag.kwargs["max_active_runs"] == 1 and dag.kwargs["default_args"]["retries"] == 2
    pipeline, report = dag.tasks
    assert (pipeline.task_id, pipeline.downstream) == ("pipeline", ["monitoring_report"])
    assert (report.task_id, report.downstream) == ("monitoring_report", [])
    assert pipeline.bash_command.startswith("cd '/srv/batch ml' && ./spark-submit.sh ")


def test_its_commands_are_valid_spark_submit_command_lines(dag: FakeDAG, tmp_path: Path) -> None:
    jobs = job_names()
    for task, job, arguments in [
        (dag.tasks[0], "pipeline", ["flights", "--json"]),
        (dag.tasks[1], "report", ["monitoring", "flight_delay_xgb"]),
    ]:
        script = task.bash_command.split(" && ", 1)[1]
        words = shlex.split(script)
        assert words[0] == "./spark-submit.sh"
        request = parse(words[1:], jobs)
        assert (request.job, request.job_args, request.master) == (job, arguments, "yarn")
        assert request.conf_file == tmp_path / "prod.toml"
