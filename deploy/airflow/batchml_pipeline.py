"""Airflow DAG: batchml's scheduled pipeline, once a night, through spark-submit.sh.

Copy this file into the DAGs folder of your Airflow deployment and set, as Airflow
Variables (or environment variables of the workers):

- BATCHML_HOME: the checkout of batchml on the worker (it builds and ships its own
  packed environment on first use: `./spark-submit.sh` runs `uv run batchml submit`);
- BATCHML_MASTER: the Spark master (`yarn`, `k8s://https://...`, `spark://host:7077`);
- BATCHML_CONF: your config file, with the `[schedules.NAME]` section;
- BATCHML_SCHEDULE: the NAME of that section.

`batchml pipeline` is rerun-safe: Airflow's retries continue a failed or killed run
where it stopped (files are ingested once, a model already trained on the same table
version is not trained again, predictions carry an idempotency token). Its exit code is
0 whatever it decided (retrained or not); a non-zero code is a failure to look at (4 bad
input, 5 contract violation, ...; see README "Exit codes"). The second task writes the
monitoring report of the schedule's model.
"""

from __future__ import annotations

import os
import shlex
from datetime import datetime, timedelta

from airflow import DAG

try:  # Airflow 3
    from airflow.providers.standard.operators.bash import BashOperator
except ImportError:  # Airflow 2
    from airflow.operators.bash import BashOperator


def setting(name: str, default: str) -> str:
    """An Airflow Variable when Airflow has one, else the environment, else `default`."""
    try:
        from airflow.models import Variable

        return Variable.get(name, default_var=os.environ.get(name, default))
    except Exception:  # no metadata database (parsing outside a deployment)
        return os.environ.get(name, default)


HOME = setting("BATCHML_HOME", "/opt/batchml")
MASTER = setting("BATCHML_MASTER", "yarn")
CONF = setting("BATCHML_CONF", "/etc/batchml/prod.toml")
SCHEDULE = setting("BATCHML_SCHEDULE", "nightly")
MODEL = setting("BATCHML_MODEL", "flight_delay_xgb")

SUBMIT = (
    f"cd {shlex.quote(HOME)} && ./spark-submit.sh --master {shlex.quote(MASTER)} "
    f"--conf-file {shlex.quote(CONF)}"
)

with DAG(
    dag_id="batchml_pipeline",
    description="batchml: ingest, features, monitor, retrain when needed, promote, predict",
    schedule="0 2 * * *",  # 02:00 every night
    start_date=datetime(2026, 1, 1),
    catchup=False,
    max_active_runs=1,  # never two runs of the pipeline at once
    default_args={
        "owner": "data-engineering",
        "retries": 2,  # a rerun continues where the failed run stopped
        "retry_delay": timedelta(minutes=10),
        "execution_timeout": timedelta(hours=4),
    },
    tags=["batchml", "ml"],
) as dag:
    pipeline = BashOperator(
        task_id="pipeline",
        bash_command=f"{SUBMIT} pipeline {shlex.quote(SCHEDULE)} --json",
    )
    report = BashOperator(
        task_id="monitoring_report",
        bash_command=f"{SUBMIT} report monitoring {shlex.quote(MODEL)}",
    )
    pipeline >> report
