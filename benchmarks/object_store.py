"""The lakehouse on an object store against the same lakehouse on local disk, in one run:
the same jobs, the same warm-up, alternated rounds, the median.

  chain     generate (agrawal, --rows) -> features (a SQL view) -> train (logistic
            regression, test report written) -> predict (full rescore), through the
            jobs' own functions in one Spark session: on local disk and in a bucket.
  commit    one 1-row append committed to a table, per backend (embedded: delta-rs's
            conditional PUT; connector: Delta's S3 log store) and place.

The bucket is moto's S3 server on 127.0.0.1 (the one the tests use): a Python server on
the same 2 cores, so its figures are an upper bound of batchml's own overhead on an object
store, not a forecast of S3's latency (tens of ms a request, and no CPU taken from Spark).

    uv run python benchmarks/object_store.py [--rows 200000] [--rounds 3] [--commits 15]
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from s3server import create_bucket, s3_environment, s3_server

from batchml.jobs import features, generate, predict
from batchml.jobs.train import job as train_job
from batchml.lib.delta.connector import ConnectorDelta
from batchml.lib.delta.embedded import EmbeddedDelta
from batchml.lib.platform import storage
from batchml.lib.platform.config import load_config
from batchml.lib.platform.logs import configure_logging
from batchml.lib.spark.session import DELTA_CATALOG, DELTA_EXTENSION, build_session

CONF = """
[views.people_view]
table = "people_features"
sources = { people = "latest" }
sql = "SELECT * FROM people"

[pipelines.people]
view = "people_view"
label = "label"
key = "id"

[pipelines.people.numeric]
salary = {}
age = {}
loan = {}

[pipelines.people.categorical]
elevel = {}
car = {}

[models.people_lr]
pipeline = "people"
algorithm = "logistic_regression"
params = { maxIter = 20 }

[predictions.people_lr]
model = "people_lr"
input = "people"
output = "scores"
"""


def settings_for(conf: Path, lake: str, jars: str):
    return load_config(
        conf_file=conf,
        overrides=[
            'spark.master="local[2]"',
            "spark.shuffle_partitions=4",
            'spark.driver_memory="4g"',
            'delta.backend="embedded"',
            f'lakehouse.root="{lake}"',
            f'spark.conf."spark.jars"="{jars}"',
            # the connector's extension too: the commit latency is measured on both
            f'spark.conf."spark.sql.extensions"="{DELTA_EXTENSION}"',
            f'spark.conf."spark.sql.catalog.spark_catalog"="{DELTA_CATALOG}"',
        ],
    ).settings


def chain(spark, settings, rows: int) -> None:
    generate.run(spark, settings, generate.GenerateRequest("agrawal", rows, "people", 7))
    features.run(spark, settings, "people_view")
    train_job.run(spark, settings, "people_lr")
    predict.run(spark, settings, predict.PredictRequest("people_lr", full=True))


def timed(action) -> float:
    started = time.perf_counter()
    action()
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--commits", type=int, default=15)
    args = parser.parse_args()
    configure_logging("WARNING")
    work = Path(tempfile.mkdtemp(prefix="batchml-bench-store-"))
    conf = work / "people.toml"
    conf.write_text(CONF)
    with s3_server(work / "s3") as endpoint:
        os.environ.update(s3_environment(endpoint))
        bucket = create_bucket(endpoint)
        from batchml.lib.delta import connector_jar
        from batchml.lib.spark import s3a_jars

        jar_list = [
            *connector_jar.fetch(load_config(environ={}).settings.delta.jar_cache),
            *s3a_jars.fetch(load_config(environ={}).settings.storage.jar_cache),
        ]
        jars = ",".join(str(jar) for jar in jar_list)
        places = {
            "local disk": settings_for(conf, str(work / "lake"), jars),
            "bucket": settings_for(conf, f"s3a://{bucket}/lake", jars),
        }
        spark = build_session(places["bucket"])
        storage.configure(places["bucket"].storage)

        spent: dict[str, list[float]] = {name: [] for name in places}
        for settings in places.values():  # warm-up: each side once
            chain(spark, settings, args.rows)
        for round_index in range(args.rounds):
            order = list(places) if round_index % 2 == 0 else list(reversed(places))
            for name in order:
                seconds = timed(lambda s=places[name]: chain(spark, s, args.rows))
                spent[name].append(seconds)
                print(f"round {round_index + 1} {name}: {seconds:.2f} s", flush=True)

        latency: dict[str, list[float]] = {}
        frame = spark.createDataFrame([(1, "x")], "id int, v string")
        for backend in (EmbeddedDelta(spark), ConnectorDelta(spark)):
            for name, root in (
                ("local disk", str(work / "lake")),
                ("bucket", f"s3a://{bucket}/lake"),
            ):
                table = f"{root}/commits_{backend.name}"
                backend.write(frame, table)  # created (and warmed up)
                key = f"{backend.name}, {name}"
                latency[key] = [
                    timed(lambda t=table, b=backend: b.write(frame, t)) for _ in range(args.commits)
                ]
        spark.stop()  # while the server still runs: Spark closes its event log there

    print()
    print(f"# object_store.py, {datetime.now(UTC):%Y-%m-%d}, {platform.node()}, "
          f"{os.cpu_count()} cores; rows={args.rows} rounds={args.rounds} (median; one "
          "warm-up each; rounds alternate which side goes first)")  # fmt: skip
    local, bucket_s = (statistics.median(spent[n]) for n in ("local disk", "bucket"))
    print("| chain | median | rounds |")
    print("|---|---|---|")
    for name in places:
        rounds = ", ".join(f"{s:.2f}" for s in spent[name])
        print(f"| {name} | {statistics.median(spent[name]):.2f} s | {rounds} |")
    print(f"\nbucket / local disk: **{bucket_s / local:.2f}x**\n")
    print("| one-row append commit | median | min | max |")
    print("|---|---|---|---|")
    for key, values in latency.items():
        print(
            f"| {key} | {statistics.median(values) * 1000:.0f} ms | "
            f"{min(values) * 1000:.0f} ms | {max(values) * 1000:.0f} ms |"
        )


if __name__ == "__main__":
    main()
