"""No secret is written down: not in a table, manifest, log, event log or printed command.

Unit tests of what counts as a secret (by name, by value), and one run through the CLI —
ingest, features, train, predict — with secrets planted in the config, after which every
byte under the lakehouse, the run's Spark event log and everything printed is searched.
"""

from __future__ import annotations

import json
import random
import uuid
from pathlib import Path

import people
import pytest
from pyspark.sql import SparkSession
from pyspark.sql import functions as F
from typer.testing import CliRunner

from batchml.jobs.cli import app
from batchml.lib.platform.config import REDACTED, load_config
from batchml.lib.platform.redaction import (
    SECRET_TEXT_PATTERN,
    is_secret_name,
    redact_argv,
    redact_override,
    redact_text,
    spark_redaction_regex,
)
from batchml.lib.spark.session import session_conf
from batchml.lib.submit import launch as spark_submit

SECRET_NAMES = [
    "spark.hadoop.fs.s3a.access.key",
    "spark.hadoop.fs.s3a.secret.key",
    "spark.hadoop.fs.s3a.session.token",
    "spark.hadoop.fs.s3a.bucket.my-bucket.secret.key",
    "spark.hadoop.fs.s3a.bucket.my-bucket.access.key",
    "spark.hadoop.fs.s3a.encryption.key",
    "spark.hadoop.fs.gs.auth.service.account.private.key",
    "spark.hadoop.fs.gs.auth.service.account.private.key.id",
    "spark.hadoop.fs.azure.account.key.myaccount.dfs.core.windows.net",
    "fs.azure.account.key.myaccount.blob.core.windows.net",
    "spark.hadoop.fs.azure.account.oauth2.client.secret",
    "fs.azure.sas.mycontainer.myaccount.blob.core.windows.net",
    "fs.azure.sas.fixed.token",
    "fs.azure.sas.fixed.token.myaccount.dfs.core.windows.net",
    "spark.ssl.keyStorePassword",
    "password",
    "AWS_SECRET_ACCESS_KEY",
    "aws_session_token",
    "azure_storage_account_key",
    "azure_storage_sas_key",
    "google_service_account_key",
    "api_key",
    "credentials",
]
NOT_SECRET_NAMES = [
    "spark.hadoop.fs.s3a.endpoint",
    "spark.hadoop.fs.s3a.access.style",
    "spark.hadoop.fs.s3a.path.style.access",
    "spark.hadoop.fs.s3a.aws.credentials.provider",
    "spark.hadoop.fs.gs.auth.service.account.email",
    "spark.hadoop.fs.gs.auth.service.account.json.keyfile",  # a path to the key file
    "spark.hadoop.fs.gs.auth.access.token.provider",
    "spark.hadoop.fs.azure.account.auth.type",
    "spark.hadoop.fs.azure.account.oauth2.client.id",
    "spark.hadoop.fs.azure.account.oauth.provider.type",
    "spark.hadoop.fs.azure.sas.token.provider.type",
    "spark.master",
    "spark.sql.shuffle.partitions",
    "keyspace",
    "sasquatch",
    "models.llm.params.max_tokens",  # a count, not a token
    "tokenizer",
]


@pytest.mark.parametrize("name", SECRET_NAMES)
def test_secret_names_are_recognised(name: str) -> None:
    assert is_secret_name(name)


@pytest.mark.parametrize("name", NOT_SECRET_NAMES)
def test_settings_that_are_no_secret_are_shown(name: str) -> None:
    assert not is_secret_name(name)


def test_spark_compiles_the_same_patterns(spark: SparkSession) -> None:
    """Spark (Java regex, `find` semantics as in its `Utils.redact`) matches the same names
    with the session's `spark.redaction.regex`, and the string pattern compiles there."""
    regex = spark.sparkContext.getConf().get("spark.redaction.regex")
    names = spark.createDataFrame(
        [(n, True) for n in SECRET_NAMES] + [(n, False) for n in NOT_SECRET_NAMES],
        "name string, is_secret boolean",
    )
    matched = names.withColumn("is_matched", F.col("name").rlike(regex)).collect()
    assert [r["name"] for r in matched if r["is_secret"] != r["is_matched"]] == []
    sas = "https://a.blob.core.windows.net/c?sv=2022&sig=abc%3D&se=1 s3a://k:s/+t@b/x"
    [row] = (
        spark.createDataFrame([(sas,)], "text string")
        .select(F.regexp_replace("text", SECRET_TEXT_PATTERN, "*").alias("shown"))
        .collect()
    )
    assert row["shown"] == "https://a.blob.core.windows.net/c?sv=2022&*&se=1 s3a://*@b/x"


def test_secrets_in_values_are_redacted() -> None:
    sas = "https://acct.blob.core.windows.net/c/f.csv?sv=2022-11-02&sp=r&sig=abc%2Bd%3D&se=2030"
    assert redact_text(sas) == (
        "https://acct.blob.core.windows.net/c/f.csv?sv=2022-11-02&sp=r&sig=***&se=2030"
    )
    assert redact_text("sv=2022-11-02&ss=b&sig=abc") == "sv=2022-11-02&ss=b&sig=***"
    assert redact_text("s3a://AKIA:s3cr3t@bucket/lake") == "s3a://AKIA:***@bucket/lake"
    # AWS secret keys hold `/` and `+`
    assert redact_text("s3a://AKIA:wJal/rXU+tn@bucket/x") == "s3a://AKIA:***@bucket/x"
    assert redact_text("jdbc:sqlserver://h;user=u;password=pw;db=x") == (
        "jdbc:sqlserver://h;user=u;password=***;db=x"
    )
    plain = "s3a://bucket/lake/people?version=3 user@example.com"
    assert redact_text(plain) == plain


def test_overrides_and_command_lines_show_secrets_as_stars() -> None:
    assert redact_override('spark.conf."spark.hadoop.fs.s3a.secret.key"="x"') == (
        'spark.conf."spark.hadoop.fs.s3a.secret.key"=***'
    )
    assert redact_override('sources.db.options={ password = "x", header = true }') == (
        "sources.db.options=***"
    )
    assert redact_override("spark.shuffle_partitions=4") == "spark.shuffle_partitions=4"
    assert redact_override("models.token_counts.params.maxIter=3") == (
        "models.token_counts.params.maxIter=3"  # only the leaf's name says what a value is
    )
    argv = [
        "spark-submit", "--conf", "spark.hadoop.fs.azure.account.key.a.dfs.core.windows.net=K",
        "--conf", "spark.executor.cores=2", "--driver-java-options", "-Da=1 -Dfs.s3a.secret.key=S",
        "entry.py", "--set", 'spark.conf."fs.gs.auth.service.account.private.key"="P"', "train",
    ]  # fmt: skip
    assert redact_argv(argv) == [
        "spark-submit", "--conf", "spark.hadoop.fs.azure.account.key.a.dfs.core.windows.net=***",
        "--conf", "spark.executor.cores=2",
        "--driver-java-options", "-Da=1 -Dfs.s3a.secret.key=***",
        "entry.py", "--set", 'spark.conf."fs.gs.auth.service.account.private.key"=***', "train",
    ]  # fmt: skip


def test_config_redacts_by_name_by_value_and_env_references(tmp_path: Path) -> None:
    user = tmp_path / "creds.toml"
    user.write_text(
        "[spark.conf]\n"
        '"spark.hadoop.fs.azure.account.key.acct.dfs.core.windows.net" = "AZKEY"\n'
        '"spark.hadoop.fs.gs.auth.service.account.private.key" = "GSKEY"\n'
        '"spark.hadoop.fs.azure.sas.c.acct.blob.core.windows.net" = "sv=1&sig=SASSIG"\n'
        '"spark.hadoop.fs.s3a.endpoint" = "${env:MY_ENDPOINT}"\n'
        '"spark.hadoop.fs.s3a.aws.credentials.provider" = "a.Provider"\n'
        '"spark.redaction.regex" = "mine"\n'
        "[sources.remote]\n"
        'table = "t"\n'
        'path = "https://acct.blob.core.windows.net/c/*.csv?sv=1&sig=PATHSIG"\n'
        'options = { password = "DBPASS", header = true }\n'
    )
    cfg = load_config(conf_file=user, environ={"MY_ENDPOINT": "http://ENDPOINT"})
    shown = cfg.redacted()
    for secret in ("AZKEY", "GSKEY", "SASSIG", "ENDPOINT", "PATHSIG", "DBPASS"):
        assert secret not in json.dumps(shown)
    conf = shown["spark"]["conf"]
    assert conf["spark.hadoop.fs.s3a.aws.credentials.provider"] == "a.Provider"
    assert conf["spark.hadoop.fs.gs.auth.service.account.private.key"] == REDACTED
    assert shown["sources"]["remote"]["options"] == {"password": REDACTED, "header": True}
    assert shown["sources"]["remote"]["path"].endswith("?sv=1&sig=***")

    # Spark's own redaction: the user's pattern kept, ours and the env-filled name added
    assert cfg.env_filled_spark_conf() == {"spark.hadoop.fs.s3a.endpoint"}
    spark_conf = session_conf(cfg.settings, secret_conf=cfg.env_filled_spark_conf())
    assert spark_conf["spark.redaction.regex"] == spark_redaction_regex(
        "mine", ["spark.hadoop.fs.s3a.endpoint"]
    )
    assert spark_conf["spark.redaction.regex"].startswith("(?:mine)|")
    assert spark_conf["spark.hadoop.fs.gs.auth.service.account.private.key"] == "GSKEY"


def test_a_wrong_secret_value_is_not_quoted_in_the_error() -> None:
    key = 'spark.conf."spark.hadoop.fs.azure.account.key.a"'
    result = CliRunner().invoke(app, ["--set", f'{key}=["PLANTED-X"]', "config", "show"])
    assert result.exit_code == 2
    assert "PLANTED-X" not in result.stderr
    assert f"found {REDACTED} (list)" in result.stderr


def test_the_submit_command_redacts_with_sparks_pattern_and_the_users(tmp_path: Path) -> None:
    request = spark_submit.parse(
        ["--conf", "spark.redaction.regex=mine", "--conf", "spark.hadoop.fs.s3a.secret.key=S",
         "train", "m"],
        ["train"],
    )  # fmt: skip
    argv = spark_submit.command(
        request,
        spark_submit=Path("/spark/bin/spark-submit"),
        archive=None,
        entry=Path("/dist/entry.py"),
        master="local[2]",
        driver_memory="1g",
        connector_jars=None,
        connector_package="io.delta:delta-spark_2.13:4.4.0",
        quiet_log4j=None,
    )
    regexes = [a for a in argv if a.startswith("spark.redaction.regex=")]
    assert regexes == [f"spark.redaction.regex={spark_redaction_regex('mine')}"]
    assert "spark.hadoop.fs.s3a.secret.key=S" in argv  # the real command gets the secret


# ------------------------------------------------------------------ through the CLI
CONF = (
    """
[tables.people]
unique_key = ["id"]

[tables.people.columns]
id = { type = "int", nullable = false }
income = { type = "double" }
age = { type = "int" }
region = { type = "string" }
label = { type = "int" }

[sources.people]
table = "people"
path = "raw/people/*.csv"
format = "csv"
options = { header = true }

[views.people_features]
table = "people_features"
sources = { people = "latest" }
sql = "SELECT id, income, age, region, label FROM people"

"""
    + people.pipeline(view="people_features", numeric=("income", "age"), categorical=("region",))
    + """
[models.people_lr]
pipeline = "people"
algorithm = "logistic_regression"
params = { maxIter = 10 }

[models.people_lr.evaluation]
bootstrap = 10
report = false

[predictions.people_lr]
model = "people_lr"
input = "people_features"
output = "scores"
"""
)


def land_people(folder: Path, rows: int = 200) -> None:
    draw = random.Random(7)
    lines = ["id,income,age,region,label"]
    for i in range(rows):
        income, age = round(draw.uniform(10, 100), 2), draw.randint(18, 80)
        label = int(income + draw.gauss(0, 15) > 55)
        lines.append(f"{i},{income},{age},{draw.choice('nsew')},{label}")
    folder.mkdir(parents=True)
    (folder / "batch1.csv").write_text("\n".join(lines) + "\n")


def test_no_secret_is_written_down_by_a_run_from_ingest_to_predict(
    spark: SparkSession, cli_globals: list[str], tmp_path: Path
) -> None:
    plant = f"PLANTED-{uuid.uuid4().hex}"
    secrets = {
        "spark.hadoop.fs.s3a.secret.key": f"{plant}-s3a",
        "spark.hadoop.fs.azure.account.key.acct.dfs.core.windows.net": f"{plant}-azure",
        "spark.hadoop.fs.gs.auth.service.account.private.key": f"{plant}-gs",
        # a Hadoop setting of the session (not spark.*): applied to the running session
        "fs.azure.account.key.other.dfs.core.windows.net": f"{plant}-session",
    }
    env_filled = "spark.hadoop.batchml.test.endpoint"  # no secret's name: from the env
    signed = "spark.hadoop.batchml.test.location"  # a SAS token in a URI value
    planted = [
        *(f'spark.conf."{key}"="{value}"' for key, value in secrets.items()),
        f'spark.conf."{env_filled}"="${{env:BATCHML_TEST_PLANT}}"',
        f'spark.conf."{signed}"="https://acct.blob.core.windows.net/c?sv=2022&sig={plant}-sas"',
    ]
    lake = tmp_path / "lake"
    conf = tmp_path / "secrets.toml"
    conf.write_text(CONF)
    land_people(lake / "raw" / "people")
    base = [*cli_globals, "--conf", str(conf), "--set", f'lakehouse.root="{lake}"']
    base += [arg for item in planted for arg in ("--set", item)]
    base += ["--log-format", "json", "--verbose"]
    printed: list[str] = []

    def invoke(*args: str, code: int = 0):
        result = CliRunner().invoke(app, [*base, *args], env={"BATCHML_TEST_PLANT": plant})
        printed.extend([result.stdout, result.stderr])
        assert result.exit_code == code, result.stderr[-3000:]
        return result

    try:
        invoke("ingest", "people")
        invoke("features", "--view", "people_features")
        invoke("train", "people_lr", "--json")
        predicted = json.loads(invoke("predict", "people_lr", "--json").stdout)
        assert predicted["rows_scored"] == 200
        shown = invoke("config", "show")
        runs = json.loads(invoke("runs", "list", "--json").stdout)["runs"]
        run_shown = [invoke("runs", "show", run["run_id"], "--json") for run in runs]
        text_shown = invoke("runs", "show", runs[0]["run_id"])
        dry = invoke(
            "submit", "--dry-run", "--master", "local[2]",
            "--conf", f"spark.hadoop.fs.s3a.access.key={plant}-submit", "predict", "people_lr",
        )  # fmt: skip
    finally:
        for key in [*secrets, env_filled, signed]:
            spark.conf.unset(key)  # the test session is shared

    # what was printed says where the secrets were, as ***
    assert [r["job"] for r in runs] == ["predict", "train", "features", "ingest"]
    assert all('"message": "resolved config"' in s for s in printed[1::2][:4])  # JSON, debug
    for key in secrets:
        assert f'spark.conf.{key} = "{REDACTED}"' in shown.stdout
    assert f'spark.conf.{env_filled} = "{REDACTED}"' in shown.stdout
    assert "&sig=***" in shown.stdout
    recorded = json.loads(run_shown[0].stdout)["arguments"]["set"]
    assert f'spark.conf."spark.hadoop.fs.s3a.secret.key"={REDACTED}' in recorded
    assert "options" in text_shown.stdout
    assert f"spark.hadoop.fs.s3a.access.key={REDACTED}" in dry.stdout
    assert f'spark.conf."spark.hadoop.fs.s3a.secret.key"={REDACTED}' in dry.stdout

    # nowhere: printed, logged, in any file of the lakehouse (tables, Delta logs, parquet,
    # registry, manifests, runs table), in the session's Spark event log
    leaks = [i for i, text in enumerate(printed) if plant in text]
    assert leaks == [], [printed[i][max(0, printed[i].find(plant) - 300) :][:600] for i in leaks]
    files = [p for p in lake.rglob("*") if p.is_file()]
    assert any(p.suffix == ".parquet" for p in files)
    assert any(p.name == "manifest.json" for p in files)  # the model's, in the registry
    sc = spark.sparkContext
    events = Path(sc.getConf().get("spark.eventLog.dir").removeprefix("file:"))
    event_files = [p for p in events.rglob("*") if p.is_file() and sc.applicationId in str(p)]
    assert event_files, f"no event log of {sc.applicationId} under {events}"
    written = [p for p in files if plant.encode() in p.read_bytes()]
    written += [p for p in event_files if plant.encode() in event_log_bytes(p)]
    assert written == []
    # the secret applied to the running session is in the event log (each SQL execution
    # lists the session's settings) by name, redacted by Spark with batchml's pattern
    event_text = b"".join(event_log_bytes(p) for p in event_files)
    assert b'"fs.azure.account.key.other.dfs.core.windows.net":"*********(redacted)"' in (
        event_text
    )
    # spark.* secrets the running session did not start with are not applied (Spark would
    # copy them unredacted into every job's properties): a warning names them
    for key in [k for k in secrets if k.startswith("spark")] + [env_filled, signed]:
        assert f"spark.conf.{key} is a secret and not applied" in printed[1]


def event_log_bytes(path: Path) -> bytes:
    """An event log file's text; Spark 4 writes zstd frames (the last one still open while
    the application runs: what was flushed is read)."""
    raw = path.read_bytes()
    if path.suffix != ".zstd":
        return raw
    import pyarrow as pa

    text = bytearray()
    stream = pa.CompressedInputStream(pa.BufferReader(raw), "zstd")
    try:
        while chunk := stream.read(1 << 16):
            text += chunk
    except OSError:  # the frame being written ends mid-way
        pass
    return bytes(text)
