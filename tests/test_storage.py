"""The storage layer: lake locations as URIs, and batchml's own file operations on a
local disk and on an S3-compatible server the tests start (moto, on 127.0.0.1)."""

from __future__ import annotations

import time
from pathlib import Path

import pyarrow as pa
import pytest
from deltalake import DeltaTable, write_deltalake
from s3server import ACCESS_KEY, SECRET_KEY

from batchml.lib.platform import storage
from batchml.lib.platform.errors import EnvironmentProblem, InputError
from batchml.lib.platform.settings import StorageSettings


def test_locations_join_as_uris_and_paths(tmp_path: Path) -> None:
    assert storage.join("s3a://bucket/lake/", "flights", "_delta_log") == (
        "s3a://bucket/lake/flights/_delta_log"
    )
    assert storage.join("s3a://bucket", "lake") == "s3a://bucket/lake"
    assert storage.join(str(tmp_path), "a", "b") == str(tmp_path / "a" / "b")
    assert storage.join("file:///data/lake", "t") == "/data/lake/t"
    assert storage.parent("s3a://bucket/lake/t") == "s3a://bucket/lake"
    assert storage.basename("gs://b/lake/t/") == "t"
    assert storage.spark_uri("s3://b/x") == "s3a://b/x"
    assert storage.delta_rs_uri("s3a://b/x") == "s3://b/x"
    assert storage.delta_rs_uri("/data/x") == "/data/x"
    assert [
        storage.store_of(u) for u in ("/x", "file:///x", "s3n://b", "gs://b", "abfss://c@a/x")
    ] == [
        "local",
        "local",
        "s3",
        "gcs",
        "azure",
    ]
    with pytest.raises(InputError, match=r"hdfs://nn/lake: unknown scheme hdfs://"):
        storage.store_of("hdfs://nn/lake")


def test_storage_settings_come_before_the_environment() -> None:
    environ = {
        "AWS_ENDPOINT_URL": "http://127.0.0.1:9",
        "AWS_ACCESS_KEY_ID": "from-env",
        "AWS_SECRET_ACCESS_KEY": "env-secret",
        "AWS_REGION": "eu-west-1",
    }
    from_env = storage.resolve(None, environ)
    assert (from_env.endpoint, from_env.access_key, from_env.region) == (
        "http://127.0.0.1:9",
        "from-env",
        "eu-west-1",
    )
    assert from_env.path_style and from_env.allow_http  # an endpoint: path-style by default
    given = storage.resolve(
        StorageSettings(endpoint="https://s3.example.com/", access_key="k", path_style=False),
        environ,
    )
    assert (given.endpoint, given.access_key, given.secret_key) == (
        "https://s3.example.com",
        "k",
        "env-secret",
    )
    assert not given.path_style and not given.allow_http
    aws = storage.resolve(None, {})
    assert aws.endpoint is None and not aws.path_style and aws.access_key is None
    options = storage.delta_options("s3a://b/t", from_env)
    assert options["AWS_ENDPOINT_URL"] == "http://127.0.0.1:9"
    assert options["AWS_ALLOW_HTTP"] == "true"
    assert options["AWS_VIRTUAL_HOSTED_STYLE_REQUEST"] == "false"
    assert storage.delta_options("/local/t", from_env) is None
    hadoop = storage.hadoop_conf(from_env)
    assert hadoop["spark.hadoop.fs.s3a.endpoint"] == "http://127.0.0.1:9"
    assert hadoop["spark.hadoop.fs.s3a.connection.ssl.enabled"] == "false"
    assert hadoop["spark.hadoop.fs.s3a.path.style.access"] == "true"
    assert hadoop["spark.hadoop.fs.s3a.secret.key"] == "env-secret"
    # with no keys anywhere, S3A's own chain (instance credentials) is left to work
    assert not any("key" in name for name in storage.hadoop_conf(aws))
    with pytest.raises(ValueError, match="endpoint URL"):
        StorageSettings(endpoint="127.0.0.1:9000")


def test_file_operations_on_the_local_disk(tmp_path: Path) -> None:
    target = str(tmp_path / "deep" / "er" / "manifest.json")
    storage.write_text(target, '{"a": 1}')
    assert storage.read_text(target) == '{"a": 1}' and storage.is_file(target)
    assert [p.name for p in (tmp_path / "deep" / "er").iterdir()] == ["manifest.json"]
    storage.write_bytes(str(tmp_path / "deep" / "b.bin"), b"xy")
    listed = storage.list_files(str(tmp_path / "deep"))
    assert [(Path(e.uri).name, e.size) for e in listed] == [("b.bin", 2), ("manifest.json", 8)]
    assert storage.list_files(str(tmp_path / "none")) == []
    storage.delete(target)
    storage.delete(target)  # already gone: nothing
    assert not storage.exists(target)
    storage.delete_tree(str(tmp_path / "deep"))
    assert not (tmp_path / "deep").exists()
    assert storage.probe(str(tmp_path)) >= 0 and list(tmp_path.iterdir()) == []


def test_file_operations_on_an_s3_server(s3_bucket: str) -> None:
    root = f"s3a://{s3_bucket}/lake"
    storage.write_text(f"{root}/_registry/m/1/manifest.json", '{"v": 1}')
    storage.write_bytes(f"{root}/raw/day=1/a.csv", b"id\n1\n")
    storage.write_bytes(f"{root}/raw/day=2/b.csv", b"id\n2\n3\n")
    assert storage.read_text(f"s3://{s3_bucket}/lake/_registry/m/1/manifest.json") == '{"v": 1}'
    assert storage.is_file(f"{root}/raw/day=1/a.csv")
    assert storage.is_dir(f"{root}/raw") and not storage.is_dir(f"{root}/nothing")
    assert not storage.exists(f"{root}/raw/day=3/c.csv")
    listed = storage.list_files(f"{root}/raw")
    assert [(e.uri, e.size) for e in listed] == [
        (f"{root}/raw/day=1/a.csv", 5),
        (f"{root}/raw/day=2/b.csv", 7),
    ]
    assert all(e.mtime_ns > 0 for e in listed)
    with storage.open_input(f"{root}/raw/day=2/b.csv") as stream:
        assert stream.read(3) == b"id\n"
    with pytest.raises(FileNotFoundError):
        storage.read_bytes(f"{root}/raw/missing.csv")
    storage.delete(f"{root}/raw/day=1/a.csv")
    storage.delete(f"{root}/raw/day=1/a.csv")
    assert [e.uri for e in storage.list_files(f"{root}/raw")] == [f"{root}/raw/day=2/b.csv"]
    storage.delete_tree(f"{root}/raw")
    assert storage.list_files(f"{root}/raw") == []
    assert storage.probe(root) > 0
    assert [e.uri for e in storage.list_files(root)] == [f"{root}/_registry/m/1/manifest.json"]


def test_deltalake_reaches_the_server_with_the_same_settings(s3_bucket: str) -> None:
    uri = f"s3a://{s3_bucket}/lake/people"
    table = pa.table({"id": [1, 2, 3]})
    write_deltalake(storage.delta_rs_uri(uri), table, storage_options=storage.delta_options(uri))
    read = DeltaTable(storage.delta_rs_uri(uri), storage_options=storage.delta_options(uri))
    assert read.to_pyarrow_table().column("id").to_pylist() == [1, 2, 3]
    assert [e.uri.rsplit("/", 1)[1] for e in storage.list_files(f"{uri}/_delta_log")] == [
        "00000000000000000000.json"
    ]


def test_store_failures_are_one_line_naming_the_place(
    s3_endpoint: str, s3_bucket: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    with pytest.raises(EnvironmentProblem) as missing:
        storage.write_text("s3a://no-such-bucket-here/lake/x.json", "{}")
    text = str(missing.value)
    assert "s3a://no-such-bucket-here/lake/x.json" in text and "bucket does not exist" in text
    assert "\n" not in text
    # nothing listens on this port: refused at once, within the connect timeout anyway
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")
    storage.reset()
    started = time.monotonic()
    with pytest.raises(EnvironmentProblem) as unreachable:
        storage.probe(f"s3a://{s3_bucket}/lake")
    assert time.monotonic() - started < 45  # not minutes of retries (loaded CI: seconds vary)
    assert "the endpoint is unreachable" in str(unreachable.value)
    assert f"s3a://{s3_bucket}/lake/_batchml_probe" in str(unreachable.value)
    assert ACCESS_KEY not in str(unreachable.value) and SECRET_KEY not in str(unreachable.value)
