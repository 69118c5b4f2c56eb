"""The lakehouse on an object store: an S3-compatible server the tests start on
127.0.0.1 (moto), reached through Hadoop's S3A (Spark), deltalake and pyarrow alike, with
nothing of the lake written to local disk."""

from __future__ import annotations

import json
import os
import re
import tempfile
import time
from pathlib import Path

import people
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
from deltalake import DeltaTable, write_deltalake
from s3server import ACCESS_KEY, SECRET_KEY
from typer.testing import CliRunner

from batchml.jobs.cli import app
from batchml.lib.platform import storage


def invoke(cli_globals: list[str], lake: str, *args: str):
    return CliRunner().invoke(app, [*cli_globals, "--set", f'lakehouse.root="{lake}"', *args])


def local_leaks(*folders: Path) -> list[str]:
    """Anything named like an object-store URI turned local (`s3a:`, `s3:`) under these."""
    found = []
    for folder in folders:
        # os.walk, not rglob: other test workers' Spark scratch folders under /tmp come
        # and go during the walk (a folder gone mid-walk is skipped, not an error)
        for parent, names, files in os.walk(folder, onerror=lambda _: None):
            for name in [*names, *files]:
                if name.rstrip(":") in ("s3a", "s3", "gs", "abfss") and name.endswith(":"):
                    found.append(os.path.join(parent, name))
    return found


def delta_rs(uri: str) -> DeltaTable:
    return DeltaTable(storage.delta_rs_uri(uri), storage_options=storage.delta_options(uri))


@pytest.mark.parametrize("backend", ["embedded", "connector"])
def test_generate_writes_the_table_into_the_bucket(
    cli_globals: list[str],
    s3_bucket: str,
    backend: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.chdir(tmp_path)
    lake = f"s3a://{s3_bucket}/lake"
    before = set(Path(tempfile.gettempdir()).iterdir())
    args = ["--set", f'delta.backend="{backend}"']
    result = invoke(
        cli_globals, lake, *args, "generate", "agrawal", "--rows", "2000", "--to", "people"
    )
    assert result.exit_code == 0, result.stderr
    assert f"into {lake}/people (version 0" in result.stdout
    people = delta_rs(f"s3://{s3_bucket}/lake/people")
    rows = people.to_pyarrow_table()
    assert rows.num_rows == 2000 and "label" in rows.column_names
    assert people.version() == 0
    # appended through the same root: one more version, the rows of both
    result = invoke(
        cli_globals,
        lake,
        *args,
        "generate",
        "agrawal",
        "--rows",
        "500",
        "--seed",
        "7",
        "--mode",
        "append",
        "--to",
        "people",
        "--json",
    )
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout)["version"] == 1
    assert delta_rs(f"{lake}/people").to_pyarrow_table().num_rows == 2500
    # every data file the log names is in the bucket, under the table
    files = {e.uri for e in storage.list_files(f"{lake}/people")}
    for relative in delta_rs(f"{lake}/people").file_uris():
        assert relative.replace("s3://", "s3a://", 1) in files
    # the run was recorded in the bucket, without the credentials
    runs = delta_rs(f"{lake}/_runs").to_pyarrow_table().to_pylist()
    assert [r["job"] for r in runs] == ["generate", "generate"]
    assert {r["exit_code"] for r in runs} == {0}
    recorded = json.dumps(runs, default=str)
    assert ACCESS_KEY not in recorded and SECRET_KEY not in recorded
    # table show and history read it by name
    shown = invoke(cli_globals, lake, "table", "show", "people", "--json")
    assert shown.exit_code == 0, shown.stderr
    assert json.loads(shown.stdout)["row_count"] == 2500
    doctor = invoke(cli_globals, lake, "doctor", "--json")
    assert doctor.exit_code == 0, doctor.stderr
    checks = {c["name"]: c for c in json.loads(doctor.stdout)["checks"]}
    assert checks["lakehouse"]["status"] == "ok"
    assert "a probe object written, read and deleted" in checks["lakehouse"]["detail"]
    # nothing of the lake on local disk: not in the working directory, not a folder
    # named after a scheme anywhere in the temporary folders
    assert list(tmp_path.iterdir()) == []
    new_temp = [p for p in Path(tempfile.gettempdir()).iterdir() if p not in before]
    assert local_leaks(tmp_path, *[p for p in new_temp if p.is_dir()]) == []


def test_a_lake_location_with_an_unknown_scheme_is_one_line(cli_globals: list[str]) -> None:
    result = invoke(cli_globals, "hdfs://namenode/lake", "generate", "agrawal", "--rows", "10",
                    "--to", "t")  # fmt: skip
    assert result.exit_code == 2
    assert "unknown scheme hdfs://" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_a_missing_bucket_is_named_within_seconds(cli_globals: list[str], s3_bucket: str) -> None:
    started = time.monotonic()
    lake = "s3a://no-such-bucket-anywhere/lake"
    result = invoke(cli_globals, lake, "generate", "agrawal", "--rows", "10", "--to", "t")
    assert time.monotonic() - started < 45  # not minutes of retries (loaded CI: seconds vary)
    assert result.exit_code == 3, result.stderr
    line = result.stderr.strip()
    assert len(line.splitlines()) == 1
    assert "s3a://no-such-bucket-anywhere/lake" in line and "bucket does not exist" in line


def test_the_demo_lands_and_ingests_into_the_bucket(
    cli_globals: list[str], s3_bucket: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    lake = f"s3a://{s3_bucket}/lake"
    args = ["--env", "local", "demo", "--months", "1", "--no-train", "--json"]
    first = invoke(cli_globals, lake, *args)
    assert first.exit_code == 0, first.stderr
    report = json.loads(first.stdout)
    assert report["where"]["raw files"] == f"{lake}/raw"
    raw = {storage.basename(e.uri) for e in storage.list_files(f"{lake}/raw")}
    assert raw == {"weather_2013.csv", "flights_2013_01.csv"}
    flights = delta_rs(f"{lake}/flights").to_pyarrow_table()
    assert flights.num_rows > 20_000
    # a rerun lands and ingests nothing new
    again = invoke(cli_globals, lake, *args)
    assert again.exit_code == 0, again.stderr
    assert json.loads(again.stdout)["landed_new"] == 0
    assert delta_rs(f"{lake}/flights").version() == 0
    assert list(tmp_path.iterdir()) == []


ORDERS = """
[tables.orders]
partition_by = ["month"]
unique_key = ["id"]
policy = "quarantine"
max_bad_fraction = 0.5

[tables.orders.columns]
id = { type = "int", nullable = false, min = 1 }
month = { type = "int", nullable = false, min = 1, max = 12 }
carrier = { type = "string", nullable = false, regex = "^[A-Z]{2}$" }
delay = { type = "double" }

[sources.orders]
table = "orders"
path = "raw/orders/*.csv"
options = { header = true, nullValue = "NA" }
"""


def upload(uri: str, rows: list[str]) -> None:
    storage.write_text(uri, "id,month,carrier,delay\n" + "".join(f"{r}\n" for r in rows))


@pytest.mark.parametrize("backend", ["embedded", "connector"])
def test_ingest_reads_a_growing_prefix_in_the_bucket_exactly_once(
    cli_globals: list[str],
    s3_bucket: str,
    backend: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.chdir(tmp_path)
    conf = tmp_path / "orders.toml"
    conf.write_text(ORDERS)
    lake = f"s3a://{s3_bucket}/lake"
    args = ["--conf", str(conf), "--set", f'delta.backend="{backend}"']
    upload(f"{lake}/raw/orders/jan.csv", ["1,1,UA,10", "2,1,AA,NA", "3,1,xx,5"])
    first = invoke(cli_globals, lake, *args, "ingest", "orders", "--json")
    assert first.exit_code == 10, first.stderr  # one row quarantined
    report = json.loads(first.stdout)
    assert (report["files"], report["rows_written"], report["rows_quarantined"]) == (1, 2, 1)
    assert report["table_uri"] == f"{lake}/orders"
    # the folder grows: only the new file is read; a hidden upload is not a source file
    upload(f"{lake}/raw/orders/feb.csv", ["4,2,DL,1"])
    storage.write_text(f"{lake}/raw/orders/.uploading.csv", "id\n")
    second = invoke(cli_globals, lake, *args, "ingest", "orders", "--json")
    assert second.exit_code == 0, second.stderr
    assert (json.loads(second.stdout)["files"], json.loads(second.stdout)["rows_written"]) == (1, 1)
    again = invoke(cli_globals, lake, *args, "ingest", "orders", "--json")
    assert again.exit_code == 0, again.stderr
    assert json.loads(again.stdout)["status"] == "skipped"
    # the same bytes uploaded again (a new modification time): still ingested, by content
    upload(f"{lake}/raw/orders/feb.csv", ["4,2,DL,1"])
    reuploaded = invoke(cli_globals, lake, *args, "ingest", "orders", "--json")
    assert json.loads(reuploaded.stdout)["status"] == "skipped", reuploaded.stderr
    rows = delta_rs(f"{lake}/orders").to_pyarrow_table().to_pylist()
    assert sorted(r["id"] for r in rows) == [1, 2, 4]
    quarantined = delta_rs(f"{lake}/orders_quarantine").to_pyarrow_table().to_pylist()
    assert [r["source_file"] for r in quarantined] == ["jan.csv"]
    ledger = delta_rs(f"{lake}/_ingest/orders").to_pyarrow_table().to_pylist()
    assert {r["path"] for r in ledger} == {"jan.csv", "feb.csv"}
    assert {r["root"] for r in ledger} == {"raw/orders"}
    assert list(tmp_path.iterdir()) == [conf]
    assert local_leaks(tmp_path) == []


def test_a_lakehouse_copied_into_a_bucket_ingests_nothing_again(
    cli_globals: list[str], s3_bucket: str, tmp_path: Path
) -> None:
    conf = tmp_path / "orders.toml"
    conf.write_text(ORDERS)
    local = tmp_path / "lake"
    (local / "raw" / "orders").mkdir(parents=True)
    (local / "raw" / "orders" / "jan.csv").write_text("id,month,carrier,delay\n1,1,UA,10\n")
    args = ["--conf", str(conf)]
    first = invoke(cli_globals, str(local), *args, "ingest", "orders", "--json")
    assert first.exit_code == 0, first.stderr
    # the whole lakehouse uploaded, as `aws s3 sync` would (every object a new time)
    bucket_lake = f"s3a://{s3_bucket}/copied"
    for path in local.rglob("*"):
        if path.is_file():
            storage.write_bytes(f"{bucket_lake}/{path.relative_to(local)}", path.read_bytes())
    rerun = invoke(cli_globals, bucket_lake, *args, "ingest", "orders", "--json")
    assert rerun.exit_code == 0, rerun.stderr
    report = json.loads(rerun.stdout)
    assert (report["status"], report["files_already_ingested"]) == ("skipped", 1)
    assert delta_rs(f"{bucket_lake}/orders").version() == 0


PEOPLE = (
    """
[views.people_view]
table = "people_features"
sources = { people = "latest" }
sql = "SELECT * FROM people"

"""
    + people.pipeline(view="people_view", numeric=("salary", "age"))
    + """
[models.people_lr]
pipeline = "people"
algorithm = "logistic_regression"
params = { maxIter = 20 }

[models.people_lr.monitoring]
min_period_rows = 10
period = "input_version"

[models.people_xgb]
pipeline = "people"
algorithm = "xgboost_classifier"
params = { n_estimators = 20, max_depth = 3 }

[predictions.people_lr]
model = "people_lr@champion"
input = "applicants"
output = "scores"

[schedules.people]
views = ["people_view"]
model = "people_lr"
"""
)


@pytest.mark.parametrize("backend", ["embedded", "connector"])
def test_the_lifecycle_on_a_bucket(
    cli_globals: list[str],
    s3_bucket: str,
    backend: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """features, train (LR, and xgboost on the embedded backend), evaluate, promote,
    predict (incremental), monitor, report, pipeline and runs with the whole lakehouse in
    the bucket, nothing of it on local disk."""
    monkeypatch.chdir(tmp_path)
    conf = tmp_path / "people.toml"
    conf.write_text(PEOPLE)
    lake = f"s3a://{s3_bucket}/lake"
    before = set(Path(tempfile.gettempdir()).iterdir())
    chosen = ["--set", f'delta.backend="{backend}"']

    def run(*args: str, codes: tuple[int, ...] = (0,)) -> dict:
        result = invoke(cli_globals, lake, "--conf", str(conf), *chosen, *args, "--json")
        assert result.exit_code in codes, f"{args}: {result.stderr}"
        return json.loads(result.stdout) if result.stdout.strip().startswith("{") else {}

    run("generate", "agrawal", "--rows", "3000", "--function", "7", "--to", "people")
    run("generate", "agrawal", "--rows", "400", "--seed", "3", "--to", "applicants")
    built = run("features", "--view", "people_view")
    assert built["status"] == "written"
    lr = run("train", "people_lr")
    assert lr["version"] == 1 and lr["report"], lr
    # the backends differ in Delta reads and writes alone: the connector run leaves out
    # a second algorithm and a second page (the same reads, the same storage layer)
    every_step = backend == "embedded"
    if every_step:
        xgb = run("train", "people_xgb")
        assert xgb["version"] == 1 and xgb["report"], xgb
    evaluated = run("evaluate", "people_lr@1")
    artifacts = {storage.basename(e.uri) for e in storage.list_files(f"{lake}/_registry")}
    assert {"manifest.json", "scorer.json", "report.html", "metrics.json"} <= artifacts
    assert evaluated["report"].startswith(f"{lake}/_registry/")
    assert storage.read_text(evaluated["report"]).startswith("<!DOCTYPE html>")
    # the evaluation of the test split gives the metric training recorded for it
    assert evaluated["metrics"]["areaUnderROC"] == pytest.approx(
        lr["metrics"]["test"]["areaUnderROC"], abs=1e-3
    )
    promoted = run("promote", "people_lr")
    assert promoted["promoted"] is True
    scored = run("predict", "people_lr")
    assert (scored["mode"], scored["rows_scored"]) == ("full", 400)
    # another writer (deltalake) appends 100 new applicants to the table in the bucket
    applicants = delta_rs(f"{lake}/applicants").to_pyarrow_table().slice(0, 100)
    new_ids = pc.add(applicants.column("id"), 100_000).cast(applicants.schema.field("id").type)
    write_deltalake(
        storage.delta_rs_uri(f"{lake}/applicants"),
        applicants.set_column(applicants.schema.get_field_index("id"), "id", new_ids),
        mode="append",
        storage_options=storage.delta_options(lake),
    )
    more = run("predict", "people_lr")
    assert (more["mode"], more["rows_scored"]) == ("incremental", 100)
    assert delta_rs(f"{lake}/scores").to_pyarrow_table().num_rows == 500
    # a verdict either way: 0, or 8 when something drifted
    watched = run("monitor", "people_lr", "--input", "applicants", codes=(0, 8))
    assert watched["model"] == "people_lr"
    monitoring = delta_rs(f"{lake}/_monitoring").to_pyarrow_table()
    assert monitoring.num_rows > 0
    page = run("report", "monitoring", "people_lr")
    assert page["report"] == f"{lake}/_reports/monitoring/people_lr/report.html"
    assert storage.exists(page["report"])
    if every_step:
        elsewhere = run("report", "monitoring", "people_lr", "--out", f"{lake}/shared/page")
        assert elsewhere["report"] == f"{lake}/shared/page/report.html"
        assert storage.read_text(elsewhere["report"]).startswith("<!DOCTYPE html>")
        listed = invoke(cli_globals, lake, "--conf", str(conf), "models", "list", "--json")
        assert listed.exit_code == 0, listed.stderr
    # one scheduled run: nothing new to materialise or score, the champion monitored
    scheduled = run("pipeline", "people")
    assert scheduled["model"] == "people_lr", scheduled
    assert delta_rs(f"{lake}/scores").to_pyarrow_table().num_rows == 500
    runs = delta_rs(f"{lake}/_runs").to_pyarrow_table().to_pylist()
    assert {r["job"] for r in runs} >= {"features", "train", "evaluate", "promote", "predict"}
    assert {r["exit_code"] for r in runs} <= {0, 8}
    # nothing of the lake on local disk
    assert list(tmp_path.iterdir()) == [conf]
    new_temp = [p for p in Path(tempfile.gettempdir()).iterdir() if p not in before]
    assert local_leaks(tmp_path, *[p for p in new_temp if p.is_dir()]) == []


def test_concurrent_writers_on_the_bucket_all_commit(spark, s3_bucket: str) -> None:
    """deltalake commits with conditional PUTs (`If-None-Match`): writers racing for a
    version retry on the next one, and none overwrites another's commit."""
    from concurrent.futures import ThreadPoolExecutor

    from batchml.lib.delta.embedded import EmbeddedDelta
    from batchml.lib.spark.session import apply_s3a
    from batchml.lib.tracking import runs

    apply_s3a(spark)  # the session reaches the server as a run's would
    table = f"s3a://{s3_bucket}/lake/events"
    tables = EmbeddedDelta(spark)
    tables.write(spark.createDataFrame([(0, "seed")], "id int, who string"), table)

    def append(index: int) -> int:
        frame = spark.createDataFrame([(index, f"writer-{index}")], "id int, who string")
        return tables.write(frame, table).version

    with ThreadPoolExecutor(4) as pool:
        versions = sorted(pool.map(append, range(1, 5)))
    assert versions == [1, 2, 3, 4]
    rows = delta_rs(table).to_pyarrow_table().to_pylist()
    assert sorted(r["id"] for r in rows) == [0, 1, 2, 3, 4]

    record = f"s3a://{s3_bucket}/lake/_runs"
    started = runs.begin("test", {})
    runs.end()
    row = runs.row_of(started, exit_code=0, error=None, config_hash="", master="local",
                      app_id=None, event_log=None, resources=None, lakehouse="")  # fmt: skip

    def record_run(index: int) -> None:
        runs.append(record, {**row, "run_id": f"run-{index}"})

    with ThreadPoolExecutor(4) as pool:
        list(pool.map(record_run, range(8)))
    ids = sorted(r["run_id"] for r in delta_rs(record).to_pyarrow_table().to_pylist())
    assert ids == [f"run-{index}" for index in range(8)]
    assert delta_rs(record).version() == 7


def test_wrong_credentials_are_named_within_seconds(
    cli_globals: list[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from s3server import s3_server

    with s3_server(tmp_path / "auth", authenticate=True) as endpoint:
        monkeypatch.setenv("AWS_ENDPOINT_URL", endpoint)
        monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIAWRONGWRONGWRONG0")
        monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "not-the-secret")
        monkeypatch.setenv("AWS_REGION", "us-east-1")
        storage.reset()
        lake = "s3a://guarded/lake"
        started = time.monotonic()
        result = invoke(cli_globals, lake, "generate", "agrawal", "--rows", "10", "--to", "t")
        assert time.monotonic() - started < 45  # not minutes of retries (loaded CI: seconds vary)
        assert result.exit_code == 3, result.stderr
        line = result.stderr.strip()
        assert len(line.splitlines()) == 1, line
        assert lake in line and "access denied (check the credentials)" in line
        assert "not-the-secret" not in line
        doctor = invoke(cli_globals, lake, "doctor", "--json")
        assert doctor.exit_code == 3
        checks = {c["name"]: c for c in json.loads(doctor.stdout)["checks"]}
        assert checks["lakehouse"]["status"] == "fail"
        assert "access denied" in checks["lakehouse"]["detail"]
    storage.reset()


def test_a_killed_ingest_is_completed_by_the_rerun(
    cli_globals: list[str], s3_bucket: str, tmp_path: Path
) -> None:
    """SIGKILL after the table commit, before the ledger knows: the rerun finds the
    batch's token in the table and writes nothing twice."""
    import signal
    import subprocess
    import sys

    conf = tmp_path / "orders.toml"
    conf.write_text(ORDERS)
    lake = f"s3a://{s3_bucket}/lake"
    upload(f"{lake}/raw/orders/jan.csv", ["1,1,UA,10", "2,1,AA,NA"])
    worker = Path(__file__).with_name("ingest_worker.py")
    killed = subprocess.run(
        [sys.executable, str(worker), str(conf), lake, "orders", "after-table-commit",
         "embedded"],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    assert sorted(r["id"] for r in delta_rs(f"{lake}/orders").to_pyarrow_table().to_pylist()) == [
        1,
        2,
    ]
    upload(f"{lake}/raw/orders/feb.csv", ["3,2,DL,1"])  # lands before the rerun
    rerun = invoke(cli_globals, lake, "--conf", str(conf), "ingest", "orders", "--json")
    assert rerun.exit_code == 0, rerun.stderr
    report = json.loads(rerun.stdout)
    assert len(report["recovered_batches"]) == 1
    assert (report["files"], report["files_already_ingested"], report["rows_written"]) == (
        1,
        1,
        1,
    )
    ids = sorted(r["id"] for r in delta_rs(f"{lake}/orders").to_pyarrow_table().to_pylist())
    assert ids == [1, 2, 3]


def test_a_batch_pending_on_another_host_is_waited_for_while_its_lease_lives(
    cli_globals: list[str], s3_bucket: str, tmp_path: Path
) -> None:
    """A cluster driver on another host is writing a batch: its process id says nothing
    here, its lease in the bucket does. Once the lease is older than LEASE_SECONDS, the
    batch is abandoned and its files ingested by this run."""
    import pyarrow as pa

    from batchml.lib.ingest.ledger import _ARROW_SCHEMA, LEASE_SECONDS

    conf = tmp_path / "orders.toml"
    conf.write_text(ORDERS)
    lake = f"s3a://{s3_bucket}/lake"
    upload(f"{lake}/raw/orders/jan.csv", ["1,1,UA,10", "2,1,AA,NA"])
    listed = storage.stat(f"{lake}/raw/orders/jan.csv")
    ledger = f"{lake}/_ingest/orders"
    pending = {
        "path": ["jan.csv"], "size": [listed.size], "mtime_ns": [listed.mtime_ns],
        "sha256": [None], "state": ["pending"], "batch_id": ["files-node7"],
        "run_id": ["r-node7"], "host": ["node-7.cluster"], "pid": [4242],
        "recorded_at": [pa.scalar(time.time_ns() // 1000, pa.timestamp("us", tz="UTC"))],
        "root": ["raw/orders"],
    }  # fmt: skip
    write_deltalake(
        storage.delta_rs_uri(ledger),
        pa.table(pending, schema=_ARROW_SCHEMA),
        storage_options=storage.delta_options(ledger),
    )

    def lease(age: float) -> None:
        body = {"host": "node-7.cluster", "pid": 4242, "renewed": time.time() - age}
        storage.write_text(f"{ledger}/_batchml_leases/files-node7.json", json.dumps(body))

    lease(age=20)
    waiting = invoke(cli_globals, lake, "--conf", str(conf), "ingest", "orders")
    assert waiting.exit_code == 4, waiting.stderr
    assert re.search(
        r"error: source orders: another ingest \(pid 4242 on node-7\.cluster, lease renewed "
        r"\d+ s ago; taken as gone 300 s after its last renewal\) is writing batch files-node7",
        waiting.stderr,
    )
    assert not storage.exists(f"{lake}/orders/_delta_log")
    lease(age=LEASE_SECONDS + 1)  # the writer stopped renewing: it is gone
    gone = invoke(cli_globals, lake, "--conf", str(conf), "ingest", "orders", "--json")
    assert gone.exit_code == 0, gone.stderr
    assert json.loads(gone.stdout)["rows_written"] == 2
    rows = delta_rs(ledger).to_pyarrow_table().to_pylist()
    node7 = sorted(r["state"] for r in rows if r["batch_id"] == "files-node7")
    assert node7 == ["abandoned", "pending"]
    mine = sorted(r["state"] for r in rows if r["batch_id"] != "files-node7")
    assert mine == ["ingested", "pending"]
    # this run's own lease is gone once its batch is in
    assert [storage.basename(e.uri) for e in storage.list_files(f"{ledger}/_batchml_leases")] == [
        "files-node7.json"
    ]


def test_the_s3a_jars_match_pysparks_hadoop_without_the_sdk_bundle(s3a_jars: list[Path]) -> None:
    import pyspark

    from batchml.lib.spark import s3a_jars as s3a

    shipped = Path(pyspark.__file__).parent / "jars"
    assert (shipped / f"hadoop-client-api-{s3a.HADOOP_VERSION}.jar").is_file()
    names = {jar.name for jar in s3a_jars}
    assert set(s3a.REQUIRED_JARS) <= names
    assert not any("bundle" in name or name.startswith("io.netty") for name in names)
    assert sum(jar.stat().st_size for jar in s3a_jars) < 20 * 1024 * 1024


def test_vacuum_in_the_bucket_and_storage_secrets_kept_out_of_records(
    cli_globals: list[str], s3_bucket: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Credentials given in `[storage]` (here with --set) reach the store and are written
    nowhere; vacuum removes the objects no version references."""
    lake = f"s3a://{s3_bucket}/lake"
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    secret = "set-secret/xyz+abc"
    keys = ["--set", 'storage.access_key="set-key-id"', "--set", f'storage.secret_key="{secret}"']
    for mode in ("overwrite", "overwrite"):
        done = invoke(cli_globals, lake, *keys, "generate", "agrawal", "--rows", "300",
                      "--mode", mode, "--to", "people")  # fmt: skip
        assert done.exit_code == 0, done.stderr
    before = {e.uri for e in storage.list_files(f"{lake}/people") if e.uri.endswith(".parquet")}
    live = {u.replace("s3://", "s3a://", 1) for u in delta_rs(f"{lake}/people").file_uris()}
    assert live < before  # the first version's files are still there
    vacuumed = invoke(cli_globals, lake, *keys, "table", "vacuum", "people",
                      "--retain-hours", "0", "--force", "--json")  # fmt: skip
    assert vacuumed.exit_code == 0, vacuumed.stderr
    after = {e.uri for e in storage.list_files(f"{lake}/people") if e.uri.endswith(".parquet")}
    assert after == live
    assert delta_rs(f"{lake}/people").to_pyarrow_table().num_rows == 300
    exported = invoke(cli_globals, lake, *keys, "table", "export", "people", "--to",
                      f"{lake}/export", "--json")  # fmt: skip
    assert exported.exit_code == 0, exported.stderr
    assert json.loads(exported.stdout)["files"] >= 1
    store, folder = storage.filesystem(f"{lake}/export")
    assert pq.read_table(folder, filesystem=store).num_rows == 300
    # nothing in the bucket holds the secret: runs table, logs, commits, manifests
    for entry in storage.list_files(lake):
        assert secret.encode() not in storage.read_bytes(entry.uri), entry.uri


def test_an_unreachable_endpoint_is_named_within_seconds(
    cli_globals: list[str], s3_bucket: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")  # nothing listens there
    storage.reset()
    started = time.monotonic()
    result = invoke(cli_globals, f"s3a://{s3_bucket}/lake", "generate", "agrawal", "--rows",
                    "10", "--to", "t")  # fmt: skip
    assert time.monotonic() - started < 45  # not minutes of retries (loaded CI: seconds vary)
    assert result.exit_code == 3, result.stderr
    line = result.stderr.strip()
    assert len(line.splitlines()) == 1, line
    assert f"s3a://{s3_bucket}/lake" in line and "the endpoint is unreachable" in line


def test_shared_tables_take_concurrent_connector_runs(s3_bucket: str) -> None:
    """Three runs on the connector backend (three drivers, as on three machines) append to
    the monitoring table in the bucket at once: its writes go through delta-rs's
    conditional PUT, so every commit lands; Delta's S3 log store alone is safe for one
    writing driver only."""
    import subprocess
    import sys

    lake = f"s3a://{s3_bucket}/lake"
    table = f"{lake}/_monitoring"
    worker = Path(__file__).with_name("shared_writer.py")
    writers = [
        subprocess.Popen(
            [sys.executable, str(worker), lake, table, f"w{index}", "3"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for index in range(3)
    ]
    done = [writer.communicate(timeout=600) for writer in writers]
    for writer, (_, err) in zip(writers, done, strict=True):
        assert writer.returncode == 0, err[-2000:]
    reports = [json.loads(out.strip().splitlines()[-1]) for out, _ in done]
    assert {r["backend"] for r in reports} == {"connector"}
    versions = sorted(v for r in reports for v in r["versions"])
    assert versions == sorted(set(versions)) and len(versions) == 9
    rows = delta_rs(table).to_pyarrow_table().column("who").to_pylist()
    assert sorted(rows) == sorted(f"w{w}-{i}" for w in range(3) for i in range(3))
    assert delta_rs(table).version() == max(versions)
    engines = {c.get("engineInfo", "") for c in delta_rs(table).history()}
    assert not any("Delta-Lake" in engine for engine in engines)  # none by the connector
