"""The lakehouse on an object store against the same lakehouse on local disk, in one run.

  chain     generate (agrawal, --rows) -> features (a SQL view) -> train (logistic
            regression, --max-iter iterations, test report written) -> predict (full
            rescore), through the jobs' own functions in one Spark session: on local
            disk and in a bucket. Checked every run: the rows generated, the view's rows
            written, a new model version registered with its test report, every row
            scored.
  commit    one 1-row append committed to a table, per backend (embedded: delta-rs's
            conditional PUT; connector: Delta's S3 log store) and place, --commits
            rounds. Checked every commit: one row added, as the table's next version.

Method, for both comparisons: one run, one Spark session (both places, both backends);
each side warmed up --warmup times (untimed), then the rounds (--rounds chains,
--commits commits) with the order of the sides rotated each round; every round printed
(stderr), the median reported, ratios from medians of the same run. No memory cap (every
side in one process). The commit tables are created before the comparison, untimed.

The bucket is moto's S3 server on 127.0.0.1 (the one the tests use): a Python server on
the same 2 cores, so its figures are an upper bound of batchml's own overhead on an object
store, not a forecast of S3's latency (tens of ms a request, and no CPU taken from Spark).

    uv run python benchmarks/object_store.py [--rows 200000] [--rounds 3] [--commits 15]
    uv run python benchmarks/object_store.py --smoke   # seconds: checks the work only
    uv run python benchmarks/object_store.py --smoke --chain   # the chain too: ~1 min

--smoke runs the commit comparison alone: the chain (four jobs, a model trained and
registered, on both places) takes a minute even on 2,000 rows, most of it Spark's fixed
costs per job; `--smoke --chain` runs it at the smoke size, checks included.

The figures go to stdout as JSON; the markdown tables of both comparisons to stderr.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

import harness
from pyspark.sql import SparkSession
from s3server import create_bucket, s3_environment, s3_server

from batchml.jobs import features, generate, predict
from batchml.jobs.train import job as train_job
from batchml.lib.delta.connector import ConnectorDelta
from batchml.lib.delta.embedded import EmbeddedDelta
from batchml.lib.platform import storage
from batchml.lib.platform.config import load_config
from batchml.lib.platform.logs import configure_logging
from batchml.lib.spark.session import DELTA_CATALOG, DELTA_EXTENSION

CONF = """
[views.people_view]
table = "people_features"
sources = {{ people = "latest" }}
sql = "SELECT * FROM people"

[pipelines.people]
view = "people_view"
label = "label"
key = "id"

[pipelines.people.numeric]
salary = {{}}
age = {{}}
loan = {{}}

[pipelines.people.categorical]
elevel = {{}}
car = {{}}

[models.people_lr]
pipeline = "people"
algorithm = "logistic_regression"
params = {{ maxIter = {max_iter} }}

[predictions.people_lr]
model = "people_lr"
input = "people"
output = "scores"
"""
PLACES = ("local disk", "bucket")


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


@contextlib.contextmanager
def reaching(endpoint: str) -> Iterator[None]:
    """The standard AWS variables pointing at the server, as a user would export them,
    and the variables and storage config as they were afterwards: in the test session
    the server is gone once this benchmark ends."""
    saved = {name: os.environ.get(name) for name in s3_environment(endpoint)}
    os.environ.update(s3_environment(endpoint))
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        storage.reset()


@contextlib.contextmanager
def checkpoints_kept() -> Iterator[None]:
    """A running session joined (the test suite's) keeps its checkpoint folder: the
    session built here points it into the bucket, which goes with the server. (A local
    helper: harness.session leaves a joined session as this benchmark set it.)"""
    running = SparkSession.getActiveSession()
    before = running.sparkContext.getCheckpointDir() if running is not None else None
    try:
        yield
    finally:
        if running is not None and before:
            running.sparkContext.setCheckpointDir(before)


def chain_runner(spark, places: dict, rows: int):
    """The chain per place, each run checked: rows generated, written, scored, and a
    model version newer than the place's last."""
    last_version = dict.fromkeys(places, 0)

    def chain(place: str) -> dict[str, object]:
        settings = places[place]
        generated = generate.run(
            spark, settings, generate.GenerateRequest("agrawal", rows, "people", 7)
        )
        view = features.run(spark, settings, "people_view")
        trained = train_job.run(spark, settings, "people_lr")
        scored = predict.run(spark, settings, predict.PredictRequest("people_lr", full=True))
        assert generated["rows"] == rows, (place, generated)
        assert view.status == "written" and view.rows == rows, (place, view.status, view.rows)
        assert trained.version > last_version[place], (place, trained.version)
        assert trained.report is not None, (place, "no test report written")
        assert sum(trained.rows.values()) == rows, (place, trained.rows)
        assert scored.model_version == trained.version, (place, scored.model_version)
        assert scored.mode == "full" and scored.rows_scored == rows, (place, scored.mode)
        last_version[place] = trained.version
        return {"model_version": trained.version, "rows_scored": scored.rows_scored}

    return chain


def commit_sides(spark, roots: dict[str, str]):
    """A one-row append per backend and place, each checked to add one row as the
    table's next version; the tables created here, untimed."""
    frame = spark.createDataFrame([(1, "x")], "id int, v string")
    sides = {}
    for backend in (EmbeddedDelta(spark), ConnectorDelta(spark)):
        for place, root in roots.items():
            table = f"{root}/commits_{backend.name}"
            created = backend.write(frame, table)
            latest = {"version": created.version}

            def commit(backend=backend, table=table, latest=latest) -> dict[str, int]:
                result = backend.write(frame, table)
                assert result.committed and result.rows_added == 1, result
                assert result.version == latest["version"] + 1, (result, latest)
                latest["version"] = result.version
                return {"version": result.version}

            sides[f"{backend.name}, {place}"] = commit
    return sides


def main(argv: list[str] | None = None) -> dict[str, object]:
    parser = harness.arguments(__doc__)
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--commits", type=int, default=15)
    parser.add_argument("--max-iter", type=int, default=20, help="logistic regression's")
    parser.add_argument(
        "--chain",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="run the chain comparison (default: yes, but not with --smoke)",
    )
    args = harness.parse(parser, argv, rows=2000, commits=1, max_iter=2)
    if args.chain is None:
        args.chain = not args.smoke
    configure_logging("WARNING")
    work = harness.workdir(args, "store").resolve()
    conf = work / "people.toml"
    conf.write_text(CONF.format(max_iter=args.max_iter))
    results: dict[str, object] = {
        **harness.header(args),
        "memory_cap": "none (every side in one process)",
        "rows": args.rows,
        "commits": args.commits,
        "max_iter": args.max_iter,
    }
    with s3_server(work / "s3") as endpoint, reaching(endpoint), checkpoints_kept():
        bucket = create_bucket(endpoint)
        from batchml.lib.delta import connector_jar
        from batchml.lib.spark import s3a_jars

        jar_list = [
            *connector_jar.fetch(load_config(environ={}).settings.delta.jar_cache),
            *s3a_jars.fetch(load_config(environ={}).settings.storage.jar_cache),
        ]
        jars = ",".join(str(jar) for jar in jar_list)
        roots = {"local disk": str(work / "lake"), "bucket": f"s3a://{bucket}/lake"}
        places = {place: settings_for(conf, roots[place], jars) for place in PLACES}
        # while the server still runs, the session stops: Spark closes its event log there
        with harness.session(places["bucket"]) as spark:
            storage.configure(places["bucket"].storage)
            results["spark"] = spark.version
            chains = None
            if args.chain:
                chain = chain_runner(spark, places, args.rows)
                chains = harness.side_by_side(
                    {place: (lambda p=place: chain(p)) for place in PLACES},
                    rounds=args.rounds,
                    warmup=args.warmup,
                    label="chain",
                )
            commits = harness.side_by_side(
                commit_sides(spark, roots),
                rounds=args.commits,
                warmup=args.warmup,
                label="commit",
            )
    results["chain"] = (
        {
            **chains.figures(),
            "ratio_bucket_to_local_disk": round(chains.ratio("bucket", "local disk"), 3),
        }
        if chains is not None
        else "not run (--smoke without --chain, or --no-chain)"
    )
    results["one_row_append_commit"] = {
        **commits.figures(),
        "ratios_bucket_to_local_disk": {
            backend: round(commits.ratio(f"{backend}, bucket", f"{backend}, local disk"), 3)
            for backend in ("embedded", "connector")
        },
    }
    harness.note("\n" + "\n\n".join(sides.table() for sides in (chains, commits) if sides))
    if args.workdir is None:  # a folder of our own
        shutil.rmtree(work, ignore_errors=True)
    print(json.dumps(results, indent=2))
    return results


if __name__ == "__main__":
    main()
