"""spark-submit.sh: parsing, the command it builds, its errors — and jobs submitted for real
to a standalone cluster on 127.0.0.1 and to local[2], checked in the tables they left."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import people
import pytest
from deltalake import DeltaTable
from pyspark.sql import SparkSession
from standalone import drop_finished_apps, free_port, standalone_cluster

from batchml.lib.data.synthetic import agrawal
from batchml.lib.platform.errors import ConfigError, EnvironmentProblem
from batchml.lib.submit import launch as spark_submit
from batchml.lib.submit import packaging

REPO = Path(__file__).resolve().parent.parent
SCRIPT = REPO / "spark-submit.sh"
JOBS = ["ingest", "train", "predict", "doctor"]


# ------------------------------------------------------------------ parsing and command
def test_parse_splits_submit_spark_and_job_options(tmp_path: Path) -> None:
    conf = tmp_path / "my.toml"
    conf.write_text("")
    request = spark_submit.parse(
        ["--master", "yarn", "--deploy-mode=cluster", "--conf-file", str(conf),
         "--executor-memory", "4g", "--verbose", "--conf", "spark.x=1", "--delta", "connector",
         "--set", "spark.shuffle_partitions=4", "train", "m", "--conf-not-ours", "1"],
        JOBS,
    )  # fmt: skip
    assert (request.master, request.deploy_mode, request.delta) == ("yarn", "cluster", "connector")
    assert request.conf_file == conf.resolve()
    assert request.spark_args == ["--executor-memory", "4g", "--verbose", "--conf", "spark.x=1"]
    assert request.overrides == ["spark.shuffle_partitions=4"]
    assert (request.job, request.job_args) == ("train", ["m", "--conf-not-ours", "1"])


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--master", "yarn"], "no job given"),
        (["nosuch"], "unknown job 'nosuch'; jobs: ingest, train, predict, doctor"),
        (["--master"], "--master needs a value"),
        (["--deploy-mode", "remote", "train"], "--deploy-mode 'remote': expected client or"),
        (["--delta", "rust", "train"], "--delta 'rust': expected connector or embedded"),
        (["--conf-file", "/no/such.toml", "train"], "--conf-file /no/such.toml: no such file"),
    ],
)
def test_parse_errors_name_the_culprit(argv: list[str], message: str) -> None:
    with pytest.raises(ConfigError, match="^" + message.replace("(", r"\(").replace("[", r"\[")):
        spark_submit.parse(argv, JOBS)


def build_command(request, master: str, jars=None) -> list[str]:
    return spark_submit.command(
        request,
        spark_submit=Path("/spark/bin/spark-submit"),
        archive=Path("/dist/env.tar.gz"),
        entry=Path("/dist/entry.py"),
        master=master,
        driver_memory="2g",
        connector_jars=jars,
        connector_package="io.delta:delta-spark_2.13:4.4.0",
        quiet_log4j=None,
    )


def test_command_ships_the_environment_and_the_conf_file(tmp_path: Path) -> None:
    conf = tmp_path / "my.toml"
    conf.write_text("")
    request = spark_submit.parse(
        ["--conf-file", str(conf), "--deploy-mode", "cluster", "--env", "cluster",
         "--num-executors", "3", "predict", "m@champion"],
        JOBS,
    )  # fmt: skip
    argv = build_command(request, "yarn")
    joined = " ".join(argv)
    assert "--archives /dist/env.tar.gz#environment" in joined
    assert "spark.pyspark.python=./environment/bin/python" in argv
    assert "spark.pyspark.driver.python=./environment/bin/python" in argv  # cluster: on YARN
    assert "spark.yarn.submit.waitAppCompletion=true" in argv
    assert argv[argv.index("--files") + 1] == str(conf)
    assert "--num-executors 3" in joined and "--driver-memory 2g" in joined
    # the driver gets the file by its name (YARN puts --files in its working directory)
    assert argv[argv.index("/dist/entry.py") :] == [
        "/dist/entry.py", "--conf", "my.toml", "--env", "cluster", "predict", "m@champion",
    ]  # fmt: skip


def test_command_for_the_connector_uses_cached_jars_else_packages() -> None:
    request = spark_submit.parse(["--delta", "connector", "train", "m"], JOBS)
    with_jars = build_command(request, "spark://h:7077", jars=[Path("/c/a.jar"), Path("/c/b.jar")])
    assert with_jars[with_jars.index("--jars") + 1] == "/c/a.jar,/c/b.jar"
    assert "--packages" not in with_jars
    assert "spark.sql.extensions=io.delta.sql.DeltaSparkSessionExtension" in with_jars
    assert with_jars[-4:] == ["--set", 'delta.backend="connector"', "train", "m"]
    packaged = build_command(request, "spark://h:7077")
    assert packaged[packaged.index("--packages") + 1] == "io.delta:delta-spark_2.13:4.4.0"


def test_local_mode_ships_no_archive_and_cluster_mode_needs_a_cluster() -> None:
    argv = build_command(spark_submit.parse(["train", "m"], JOBS), "local[2]")
    assert "--archives" not in argv and f"spark.pyspark.python={sys.executable}" in argv
    cluster = spark_submit.parse(["--deploy-mode", "cluster", "train", "m"], JOBS)
    with pytest.raises(ConfigError, match="standalone clusters in client mode only"):
        build_command(cluster, "spark://h:7077")
    with pytest.raises(ConfigError, match="needs a cluster master, not local"):
        build_command(cluster, "local[2]")


def test_spark_submit_from_spark_home_else_pyspark(tmp_path: Path, monkeypatch) -> None:
    with pytest.raises(EnvironmentProblem, match=f"SPARK_HOME={tmp_path} has no bin/spark-submit"):
        spark_submit.spark_submit_path({"SPARK_HOME": str(tmp_path)})
    (tmp_path / "bin").mkdir()
    (tmp_path / "bin" / "spark-submit").write_text("#!/bin/sh\n")
    assert spark_submit.spark_submit_path({"SPARK_HOME": str(tmp_path)}) == (
        tmp_path / "bin" / "spark-submit"
    )
    found = spark_submit.spark_submit_path({})
    assert found.name == "spark-submit" and found.parent.parent.name == "pyspark"
    monkeypatch.setitem(sys.modules, "pyspark", None)  # an environment without PySpark
    with pytest.raises(EnvironmentProblem, match=r"^no SPARK_HOME and no PySpark"):
        spark_submit.spark_submit_path({})


def test_an_unreachable_master_fails_within_seconds() -> None:
    port = free_port()  # nothing listens there
    started = time.monotonic()
    with pytest.raises(EnvironmentProblem, match=f"spark://127.0.0.1:{port} is not reachable"):
        spark_submit.check_master(f"spark://127.0.0.1:{port}")
    assert time.monotonic() - started < 45  # not minutes of retries (loaded CI: seconds vary)
    with pytest.raises(EnvironmentProblem, match="HADOOP_CONF_DIR or YARN_CONF_DIR"):
        spark_submit.check_master("yarn", {})


def test_the_driver_finds_a_shipped_conf_file_in_its_working_directory(
    tmp_path: Path, monkeypatch
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "my.toml").write_text("")
    args = ["--conf", "/submitter/home/my.toml", "--set", "a=1", "train", "--conf", "x"]
    shipped = spark_submit.shipped_paths
    assert shipped(args) == ["--conf", "my.toml", "--set", "a=1", "train", "--conf", "x"]
    assert shipped(["--conf", "/nowhere/other.toml", "train"])[1] == "/nowhere/other.toml"


def test_a_failing_environment_build_says_why_and_keeps_the_last_build(tmp_path: Path) -> None:
    project = tmp_path / "project"
    for name in ("lib", "jobs", "conf"):
        shutil.copytree(REPO / name, project / name, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(REPO / "uv.lock", project / "uv.lock")
    (project / "pyproject.toml").write_text(
        (REPO / "pyproject.toml").read_text().replace("[project]", "[project]\nname = 'x'", 1)
    )  # a duplicate key: the project cannot be built
    dist = project / "dist"
    dist.mkdir()
    (dist / "keep.txt").write_text("last good build")
    with pytest.raises(EnvironmentProblem, match=r"^building the job environment failed at build"):
        packaging.build(project, dist=dist)
    left = sorted(p.name for p in dist.iterdir())
    assert left == [".build.lock", "keep.txt"]  # no half-built files


def test_two_submits_at_once_build_the_environment_once(tmp_path: Path, monkeypatch) -> None:
    """Parallel tasks of a scheduler submitting from one checkout: one builds dist/, the
    other waits on the lock and takes that build (the build step itself stubbed: a real
    one takes a minute; the lock and the fingerprint checks around it are real)."""
    project = tmp_path / "project"
    project.mkdir()
    for name in ("uv.lock", "pyproject.toml"):
        (project / name).write_text(name)
    dist = project / "dist"
    builds: list[str] = []

    def build_step(root: Path, into: Path, wanted: str, started: float) -> packaging.Build:
        builds.append(wanted)
        time.sleep(1.0)  # the other submit arrives meanwhile
        (into / packaging.ARCHIVE).write_bytes(b"env")
        (into / "batchml-0.1.0-py3-none-any.whl").write_bytes(b"wheel")
        record = {"fingerprint": wanted, "wheel": "batchml-0.1.0-py3-none-any.whl"}
        (into / packaging.FINGERPRINT).write_text(json.dumps(record))
        built = packaging._built(into, record, reused=False, started=started)
        assert built is not None
        return built

    monkeypatch.setattr(packaging, "_build", build_step)
    with ThreadPoolExecutor(2) as pool:
        done = list(pool.map(lambda _: packaging.build(project, dist=dist), range(2)))
    assert builds == [packaging.fingerprint(project)]  # built once
    assert sorted(b.reused for b in done) == [False, True]
    assert {b.archive for b in done} == {dist / packaging.ARCHIVE}


# ------------------------------------------------------------------ for real
CONF = (
    """
[lakehouse]
root = "{lake}"

[delta]
backend = "embedded"

[spark]
driver_memory = "1g"
shuffle_partitions = 2

[tables.people]
unique_key = ["id"]
policy = "quarantine"

[tables.people.columns]
id = {{ type = "long", nullable = false }}
salary = {{ type = "double" }}
commission = {{ type = "double" }}
age = {{ type = "int", min = 18, max = 100 }}
elevel = {{ type = "int" }}
loan = {{ type = "double" }}
label = {{ type = "int", nullable = false }}

[sources.people]
table = "people"
path = "raw/people/*.csv"
options = {{ header = true }}

[views.applicants]
table = "applicant_features"
sources = {{ people = "latest" }}
sql = '''
SELECT id, salary, commission, age, CAST(elevel AS STRING) AS elevel, loan, label
FROM people
'''

"""
    + people.pipeline(view="applicants", for_format=True)
    + """
[models.people_lr]
pipeline = "people"
algorithm = "logistic_regression"
params = {{ maxIter = 20 }}

[models.people_xgb]
pipeline = "people"
algorithm = "xgboost_classifier"
params = {{ n_estimators = 10, max_depth = 3 }}

[views.applicant_batch]
table = "applicant_batch"
sources = {{ people = "latest" }}
sql = "SELECT id, salary, commission, age, CAST(elevel AS STRING) AS elevel, loan FROM people"

[predictions.people_xgb]
model = "people_xgb"
input = "applicant_batch"
output = "applicant_scores"

[schedules.people]
sources = ["people"]
views = ["applicants", "applicant_batch"]
model = "people_xgb"
"""
)
ROWS = 2000


@pytest.fixture(scope="module")
def project(spark: SparkSession, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A working directory with a conf file and raw CSV files: 2,000 people, one of them
    150 years old (the contract quarantines it)."""
    root = tmp_path_factory.mktemp("submit")
    lake = root / "lake"
    people = agrawal(spark, ROWS, function=7, seed=9).selectExpr(
        "id", "salary", "commission", "IF(id = 7, 150, age) AS age", "elevel", "loan", "label"
    )
    people.coalesce(2).write.csv(str(lake / "raw" / "people"), header=True)
    for other in (lake / "raw" / "people").iterdir():
        if other.suffix != ".csv":
            other.unlink()
    (root / "people.toml").write_text(CONF.format(lake=lake))
    return root


CLUSTERS: list[Path] = []  # work dirs of the running standalone clusters


def submit(project: Path, *args: str) -> subprocess.CompletedProcess:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("PYSPARK_")}
    # a cluster's executors start as the suite's other JVMs do (conftest.py)
    fast_start = "spark.executor.defaultJavaOptions=-XX:TieredStopAtLevel=1 -XX:+UseSerialGC"
    done = subprocess.run(
        [str(SCRIPT), "--conf-file", str(project / "people.toml"), "--conf", fast_start, *args],
        cwd=project, env=environ, capture_output=True, text=True, timeout=900, check=False,
    )  # fmt: skip
    for workdir in CLUSTERS:  # the application ended: its unpacked environment can go
        drop_finished_apps(workdir)
    return done


def ok(done: subprocess.CompletedProcess) -> subprocess.CompletedProcess:
    assert done.returncode == 0, (done.stdout[-2000:], done.stderr[-3000:])
    return done


def rows(uri: Path) -> list[dict]:
    return DeltaTable(str(uri)).to_pyarrow_table().to_pylist()


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory):
    workdir = tmp_path_factory.mktemp("standalone")
    with standalone_cluster(workdir) as master:
        CLUSTERS.append(workdir)
        yield master
    CLUSTERS.remove(workdir)


def test_the_connector_backend_on_the_cluster(project: Path, cluster: str) -> None:
    target = project / "lake" / "by_connector"
    ok(submit(project, "--master", cluster, "--delta", "connector", "generate", "agrawal",
              "--rows", "300", "--to", str(target)))  # fmt: skip
    assert len(rows(target)) == 300
    [commit] = DeltaTable(str(target)).history()
    assert "Delta-Lake/4.4.0" in commit.get("engineInfo", "")  # written by the connector


def test_local_mode_a_failing_job_and_an_unreachable_master(project: Path) -> None:
    target = project / "lake" / "local_friedman"
    done = ok(submit(project, "--master", "local[2]", "generate", "friedman", "--rows", "123",
                     "--to", str(target), "--json"))  # fmt: skip
    assert json.loads(done.stdout)["rows"] == 123  # stdout is the job's output alone
    assert len(rows(target)) == 123

    # a job that fails: the script exits with the job's own code, its error on stderr
    failed = submit(project, "--master", "local[2]", "table", "show", "no_such")
    assert failed.returncode == 4, failed.stderr[-2000:]
    errors = [line for line in failed.stderr.splitlines() if "batchml: error:" in line]
    assert len(errors) == 1 and errors[0].endswith("lake/no_such"), failed.stderr[-2000:]
    assert failed.stdout == ""
    port = free_port()
    started = time.monotonic()
    done = submit(
        project, "--master", f"spark://127.0.0.1:{port}", "features", "--view", "applicants"
    )
    assert done.returncode == 3 and time.monotonic() - started < 60
    assert f"batchml: error: Spark master spark://127.0.0.1:{port} is not reachable" in done.stderr
    unknown = submit(project, "--master", "local[2]", "fly")
    assert unknown.returncode == 2 and "unknown job 'fly'" in unknown.stderr


def test_a_stopped_submit_stops_its_driver_cleanly(project: Path) -> None:
    """A scheduler's SIGTERM to spark-submit.sh reaches the Python driver: Spark jobs
    cancelled, nothing committed, exit 143, the run recorded as interrupted."""
    target = project / "lake" / "stopped"
    runs_table = project / "stopped_runs"
    environ = {k: v for k, v in os.environ.items() if not k.startswith("PYSPARK_")}
    process = subprocess.Popen(
        [str(REPO / ".venv" / "bin" / "batchml"), "submit", "--conf-file",
         str(project / "people.toml"), "--master", "local[2]", "--set",
         f'runs.table="{runs_table}"', "generate", "agrawal", "--rows", "50000000",
         "--to", str(target)],
        cwd=project, env=environ, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    events = project / "lake" / "_spark_events"

    def logs() -> set[Path]:
        return set(events.iterdir()) if events.exists() else set()

    started = logs()
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and logs() <= started:
            time.sleep(0.5)  # until the driver's SparkContext has started
        time.sleep(5)  # and its job is under way (50M rows take far longer)
        process.terminate()
        _, err = process.communicate(timeout=120)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 143, err[-2000:]
    assert err.count("batchml: error: terminated (SIGTERM)") == 1
    assert "Traceback" not in err and "reentrant" not in err, err[-3000:]  # cancelled
    assert not (target / "_delta_log").exists()  # nothing committed
    [run] = rows(runs_table)
    assert (run["job"], run["status"], run["exit_code"]) == ("generate", "interrupted", 143)


def test_the_lifecycle_on_a_standalone_cluster_with_the_lakehouse_in_a_bucket(
    project: Path, cluster: str, s3_bucket: str
) -> None:
    """A scheduled run through spark-submit on the standalone cluster (ingest, features,
    train, promote and predict in one driver: `pipeline`), with the lakehouse in a bucket
    (where a cluster keeps it: nodes share no disk): spark-submit.sh ships the S3A jars
    (client mode: from the cache, with --jars), the executors read and write the data
    there with the packed environment's Python, the driver commits it there. One
    application, not one per job: each pays for unpacking the environment twice (driver
    and executor). (The connector test keeps a lakehouse on the shared local disk.)"""
    from batchml.lib.platform import storage

    lake = f"s3a://{s3_bucket}/lake"
    for raw in sorted((project / "lake" / "raw" / "people").glob("*.csv")):
        storage.write_bytes(f"{lake}/raw/people/{raw.name}", raw.read_bytes())
    on = ["--master", cluster, "--set", f'lakehouse.root="{lake}"']
    options = storage.delta_options(lake)

    def bucket_rows(name: str) -> list[dict]:
        table = DeltaTable(f"s3://{s3_bucket}/lake/{name}", storage_options=options)
        return table.to_pyarrow_table().to_pylist()

    # one scheduled run: ingest, both views, train, promote and predict in one driver
    done = ok(submit(project, *on, "pipeline", "people", "--json"))
    steps = json.loads(done.stdout)["steps"]
    did = {s["step"]: s for s in steps}
    built = [(s["target"], s["action"]) for s in steps if s["step"] == "features"]
    assert built == [("applicants", "ran"), ("applicant_batch", "ran")]
    assert did["ingest"]["details"]["rows_quarantined"] == 1  # 150 years old
    assert len(bucket_rows("people")) == ROWS - 1
    [bad] = bucket_rows("people_quarantine")
    assert (json.loads(bad["raw_record"])["id"], bad["failed_rules"]) == (7, ["max:age"])
    assert (did["train"]["action"], did["promote"]["action"]) == ("ran", "promoted")
    registered = {(r["name"], r["version"]) for r in bucket_rows("_registry/versions")}
    assert registered == {("people_xgb", 1)}  # xgboost.spark's barrier stage on the cluster
    scores = bucket_rows("applicant_scores")  # scored on the executors (Arrow batches)
    assert sorted(r["id"] for r in scores) == sorted(r["id"] for r in bucket_rows("people"))
    assert {r["model_version"] for r in scores} == {1}
    assert all(0.0 <= r["probability"] <= 1.0 for r in scores)

    # the executors ran the packed environment's interpreter, not the project's .venv
    doctor = ok(submit(project, *on, "doctor", "--executors", "--json"))
    pythons = json.loads(doctor.stdout)["facts"]["executor_pythons"]
    assert pythons and all(p["python"].endswith("/environment/bin/python") for p in pythons)
    assert not any(str(REPO) in p["python"] for p in pythons)
    assert {p["batchml"] for p in pythons} == {"0.1.0"}

    # every run is in the runs table in the bucket, with the cluster's master and what
    # Spark measured
    [recorded] = bucket_rows("_runs")  # doctor records no run
    assert (recorded["job"], recorded["master"]) == ("pipeline", cluster)
    assert (recorded["status"], recorded["exit_code"]) == ("succeeded", 0)
    assert recorded["tasks"] > 0 and recorded["executor_cpu_time_ms"] > 0
    assert recorded["executor_peak_heap_bytes"] > 0  # an executor apart from the driver
    assert json.loads(recorded["models"]) == [
        {"name": "people_xgb", "version": 1, "action": "registered"},
        {"name": "people_xgb", "version": 1, "action": "alias champion"},
    ]
    assert not (project / "s3a:").exists()


def test_the_s3a_jars_are_shipped_in_client_mode_and_resolved_in_cluster_mode() -> None:
    from batchml.lib.spark import s3a_jars

    request = spark_submit.parse(["train", "m"], JOBS)
    shipped = spark_submit.command(
        request, spark_submit=Path("/spark/bin/spark-submit"), archive=Path("/dist/env.tar.gz"),
        entry=Path("/dist/entry.py"), master="spark://h:7077", driver_memory=None,
        connector_jars=None, connector_package="io.delta:delta-spark_2.13:4.4.0",
        quiet_log4j=None, s3a_jars=[Path("/s3a/hadoop-aws.jar")],
    )  # fmt: skip
    assert shipped[shipped.index("--jars") + 1] == "/s3a/hadoop-aws.jar"
    assert "--packages" not in shipped
    cluster_mode = spark_submit.parse(["--deploy-mode", "cluster", "--delta", "connector",
                                       "train", "m"], JOBS)  # fmt: skip
    resolved = spark_submit.command(
        cluster_mode, spark_submit=Path("/spark/bin/spark-submit"),
        archive=Path("/dist/env.tar.gz"), entry=Path("/dist/entry.py"), master="yarn",
        driver_memory=None, connector_jars=None,
        connector_package="io.delta:delta-spark_2.13:4.4.0", quiet_log4j=None,
        s3a_packages=(s3a_jars.PACKAGES, s3a_jars.EXCLUDES),
    )  # fmt: skip
    packages = resolved[resolved.index("--packages") + 1].split(",")
    assert packages[0] == "io.delta:delta-spark_2.13:4.4.0"
    assert "org.apache.hadoop:hadoop-aws:3.5.0" in packages
    excluded = resolved[resolved.index("--exclude-packages") + 1]
    assert "software.amazon.awssdk:bundle" in excluded
