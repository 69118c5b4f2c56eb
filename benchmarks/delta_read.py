"""Delta read and commit costs of both backends, side by side with the alternatives.

Method, for every comparison below: one run, one Spark session; each side warmed up
--warmup times (untimed), then --rounds timed rounds with the order of the sides rotated
each round; every round printed (stderr), the median of the rounds reported, ratios taken
from medians of the same run. No memory cap: the read and commit sides share the one
session's JVM (its heap: spark.driver_memory=6g).

Log: the table's file list read from the Delta log (delta-rs), alone.

Reads, on one table of --rows rows in --files files. Each side builds its DataFrame
inside its timed run (listing the files (a), reading the log (b, d), loading the table
into Arrow (c) is part of its time):
  (a) Spark reading the same Parquet files directly (no Delta log),
  (b) the embedded Delta read (delta-rs file list + Spark Parquet scan),
  (c) deltalake -> pyarrow -> spark.createDataFrame (what a user might do otherwise):
      the whole table passes through the Python process, whose peak RSS growth over the
      read comparisons is reported (the other sides hold no rows in Python),
  (d) Delta's Spark connector (`spark.read.format("delta")`, its jar from the cache).
Each answers two queries: a full scan (every column materialised, noop sink) and a
scan plus aggregation. Every side's query also counts the rows it read (an observed
metric, the same on every side), asserted to be --rows; the aggregation's results are
asserted equal across the sides.

Commit: one write of --commit-files files (1,000 rows each) through each backend vs
Spark writing the same DataFrame as plain Parquet: the difference is the price of the
Delta commit. Each side's output is removed (untimed) before its next write, and each
write is asserted to hold every row (Delta: in --commit-files files, one new version).

JVM start: a fresh Python process to its first Spark job, without Delta's jar (the
embedded backend) and with it (the connector: 33 more jars on the classpath). Both
children are timed from inside, from before batchml's import to the first job's result
(the interpreter's own start is left out of both), and asserted to have counted the rows
and to hold (or not) Delta's jar. Run after the session above has stopped. Not run
with --no-jvm-start, nor with --smoke unless --jvm-start is given (two fresh JVMs a
round: ~13 s each here, most of a smoke run's time).

    uv run python benchmarks/delta_read.py [--rows 10000000] [--files 40] [--rounds 5]
    uv run python benchmarks/delta_read.py --smoke   # seconds: checks the work only

`--repeat N` (the best of N runs before) is now an alias of `--rounds N` (their median).
"""

from __future__ import annotations

import argparse
import json
import math
import resource
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import harness
import pyarrow.parquet as pq
from deltalake import DeltaTable
from pyspark.sql import DataFrame, Observation, SparkSession
from pyspark.sql import functions as F

from batchml.lib.delta.connector import ConnectorDelta
from batchml.lib.delta.delta_log import open_snapshot
from batchml.lib.delta.embedded import EmbeddedDelta
from batchml.lib.platform.config import load_config
from batchml.lib.platform.logs import configure_logging

CARRIERS = ("UA", "AA", "DL", "B6", "EV", "WN")
ROWS_PER_COMMIT_FILE = 1000


def observed_rows(df: DataFrame) -> tuple[DataFrame, Observation]:
    """The DataFrame with a row count observed on the query that runs it: every side's
    rows are counted the same way, without a second pass."""
    observation = Observation()
    return df.observe(observation, F.count(F.lit(1)).alias("rows")), observation


def full_scan(df: DataFrame) -> dict[str, object]:
    df, observation = observed_rows(df)
    df.write.format("noop").mode("overwrite").save()
    return {"rows": observation.get["rows"]}


def aggregate(df: DataFrame) -> dict[str, object]:
    df, observation = observed_rows(df)
    found = (
        df.groupBy("carrier")
        .agg(F.avg("delay").alias("delay"), F.sum("distance").alias("distance"), F.max("at"))
        .collect()
    )
    by_carrier = {row["carrier"]: (row["delay"], row["distance"], row[3]) for row in found}
    return {"rows": observation.get["rows"], "by_carrier": by_carrier}


QUERIES: dict[str, Callable[[DataFrame], dict[str, object]]] = {
    "scan": full_scan,
    "agg": aggregate,
}


def same_aggregates(found: dict[str, dict], expected_rows: int) -> None:
    """Every side read every row, and the aggregation's answers agree (floating sums in
    another order: equal within a relative 1e-9)."""
    for side, result in found.items():
        assert result["rows"] == expected_rows, (side, result["rows"], expected_rows)
    first_side, first = next(iter(found.items()))
    for side, result in found.items():
        if "by_carrier" not in result:
            continue
        assert result["by_carrier"].keys() == first["by_carrier"].keys(), (side, first_side)
        for carrier, (delay, distance, latest) in result["by_carrier"].items():
            their_delay, their_distance, their_latest = first["by_carrier"][carrier]
            assert math.isclose(delay, their_delay, rel_tol=1e-9), (side, carrier)
            assert math.isclose(distance, their_distance, rel_tol=1e-9), (side, carrier)
            assert latest == their_latest, (side, carrier)


def peak_rss_mb() -> float:
    """This Python process's peak resident memory so far (Linux: ru_maxrss in KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


# Timed from before batchml's import: both children pay the same interpreter start,
# which neither figure includes.
JVM_START = """
import json, time
started = time.perf_counter()
from batchml.lib.platform.config import load_config
from batchml.lib.spark.session import build_session
cfg = load_config(
    overrides=['spark.master="local[2]"', 'delta.backend="{backend}"', 'lakehouse.root="{lake}"'],
    environ={{}},
)
spark = build_session(cfg.settings)
rows = spark.range(10).count()
seconds = time.perf_counter() - started
jars = spark.sparkContext.getConf().get("spark.jars", "")
print(json.dumps({{"seconds": seconds, "rows": rows, "jars": jars}}))
spark.stop()
"""


def jvm_start(backend: str, lake: Path) -> harness.Timed:
    """A fresh Python process to its first Spark job, as its own clock says; its Spark
    folders (event log, checkpoints) in `lake`."""
    done = subprocess.run(
        [sys.executable, "-c", JVM_START.format(backend=backend, lake=lake)],
        capture_output=True,
        text=True,
        check=True,
    )
    found = json.loads(done.stdout.strip().splitlines()[-1])
    assert found["rows"] == 10, found
    has_delta = "delta-spark" in found["jars"] or "delta-core" in found["jars"]
    assert has_delta == (backend == "connector"), (backend, found["jars"])
    return harness.Timed(found["seconds"], found["jars"].count(",") + bool(found["jars"]))


def table_rows(uri: str) -> int | None:
    """Rows of the Delta table at `uri` by its log's statistics; None when there is none."""
    if not (Path(uri) / "_delta_log").exists():
        return None
    return sum(open_snapshot(uri).add_actions().column("num_records").to_pylist())


def make_table(spark: SparkSession, tables: EmbeddedDelta, uri: str, rows: int, files: int) -> None:
    df = spark.range(rows, numPartitions=files).select(
        F.col("id"),
        F.element_at(
            F.array(*[F.lit(c) for c in CARRIERS]),
            (F.col("id") % len(CARRIERS) + 1).cast("int"),
        ).alias("carrier"),
        (F.rand(7) * 120 - 20).alias("delay"),
        (F.col("id") % 2500 + 100).cast("double").alias("distance"),
        (F.lit(1356998400) + F.col("id") % 31536000).cast("timestamp").alias("at"),
    )
    tables.write(df, uri, mode="overwrite")


def log_listing(uri: str, files: int, args) -> dict[str, object]:
    def listing() -> int:
        listed = open_snapshot(uri).add_actions().num_rows
        assert listed == files, (listed, files)
        return listed

    sides = harness.side_by_side(
        {"delta log file list": listing},
        rounds=args.rounds,
        warmup=args.warmup,
        label="log",
    )
    return sides.figures()


def reads(spark, tables, connector, uri: str, paths: list[str], args) -> dict[str, object]:
    partitions: list[int] = []

    def via_arrow() -> DataFrame:
        df = spark.createDataFrame(DeltaTable(uri).to_pyarrow_table())
        partitions.append(df.rdd.getNumPartitions())
        return df

    # each side's DataFrame is built inside its timed run
    sources: dict[str, Callable[[], DataFrame]] = {
        "a direct parquet": lambda: spark.read.parquet(*paths),
        "b embedded": lambda: tables.read(uri).df,
        "c arrow": via_arrow,
        "d connector": lambda: connector.read(uri).df,
    }
    rss_before = peak_rss_mb()
    figures: dict[str, object] = {}
    medians: dict[str, dict[str, float]] = {}
    for name, query in QUERIES.items():
        sides = harness.side_by_side(
            {side: (lambda s=source, q=query: q(s())) for side, source in sources.items()},
            rounds=args.rounds,
            warmup=args.warmup,
            label=f"read {name}",
        )
        same_aggregates(sides.results, args.rows)
        figures[name] = sides.figures()
        medians[name] = {side: sides.median(side) for side in sources}
    figures["c_arrow_partitions"] = partitions[-1]
    figures["python_peak_rss_growth_mb"] = round(peak_rss_mb() - rss_before, 1)
    figures["python_peak_rss_growth_covers"] = (
        "this process over all read rounds: only side c holds the table in Python"
    )
    ratios = {}
    for name, by_side in medians.items():
        a, b, c, d = (by_side[side] for side in sources)
        ratios |= {
            f"b/a {name}": b / a,
            f"c/b {name}": c / b,
            f"d/a {name}": d / a,
            f"d/b {name}": d / b,
        }
    figures["ratios"] = {key: round(value, 3) for key, value in ratios.items()}
    return figures


def commits(spark, tables, connector, work: Path, args) -> dict[str, object]:
    rows = args.commit_files * ROWS_PER_COMMIT_FILE
    many = spark.range(rows, numPartitions=args.commit_files).selectExpr(
        "id", "id * 0.5 AS x", "CAST(id % 97 AS STRING) AS s"
    )
    folders = {
        "plain parquet": work / "plain_commit",
        "embedded delta": work / "embedded_commit",
        "connector delta": work / "connector_commit",
    }

    def plain() -> harness.Timed:
        started = time.perf_counter()
        many.write.parquet(str(folders["plain parquet"]))
        seconds = time.perf_counter() - started
        parts = list(folders["plain parquet"].glob("*.parquet"))
        written = sum(pq.ParquetFile(part).metadata.num_rows for part in parts)
        assert written == rows, (written, rows)
        return harness.Timed(seconds, len(parts))

    def delta(backend, side: str) -> Callable[[], harness.Timed]:
        def write() -> harness.Timed:
            started = time.perf_counter()
            result = backend.write(many, str(folders[side]))
            seconds = time.perf_counter() - started
            assert result.committed and result.version == 0, result
            assert result.rows_added == rows, (side, result)
            assert result.files_added == args.commit_files, (side, result)
            return harness.Timed(seconds, result.files_added)

        return write

    sides = harness.side_by_side(
        {
            "plain parquet": plain,
            "embedded delta": delta(tables, "embedded delta"),
            "connector delta": delta(connector, "connector delta"),
        },
        rounds=args.rounds,
        warmup=args.warmup,
        before=lambda side: shutil.rmtree(folders[side], ignore_errors=True),
        label="commit",
    )
    assert sides.results["plain parquet"].value == args.commit_files, sides.results
    parts = tables.last_write_seconds  # of the embedded side's last round
    overhead = parts.get("stats", math.nan) + parts.get("commit", math.nan)
    return {
        **sides.figures(),
        "files": args.commit_files,
        "rows": rows,
        "embedded_last_round_parts_s": {
            "parquet_write": round(parts.get("parquet_write", math.nan), 3),
            "stats": round(parts.get("stats", math.nan), 3),
            "move_and_commit": round(parts.get("commit", math.nan), 3),
            "stats_move_and_commit": round(overhead, 3),
        },
        "ratios": {
            "embedded write / plain write": round(
                sides.ratio("embedded delta", "plain parquet"), 3
            ),
            "connector write / plain write": round(
                sides.ratio("connector delta", "plain parquet"), 3
            ),
            "connector write / embedded write": round(
                sides.ratio("connector delta", "embedded delta"), 3
            ),
        },
    }


def jvm_starts(work: Path, args) -> dict[str, object]:
    lake = work / "jvm_start"
    sides = harness.side_by_side(
        {
            "without jar (embedded)": lambda: jvm_start("embedded", lake),
            "with connector jar": lambda: jvm_start("connector", lake),
        },
        rounds=args.rounds,
        warmup=args.warmup,
        label="JVM start",
    )
    return {
        **sides.figures(),
        "jars_on_classpath": {side: timed.value for side, timed in sides.results.items()},
        "ratio_with_jar_to_without": round(
            sides.ratio("with connector jar", "without jar (embedded)"), 3
        ),
    }


def main(argv: list[str] | None = None) -> dict[str, object]:
    parser = harness.arguments(__doc__, rounds=5)
    parser.add_argument(
        "--repeat",
        dest="rounds",
        type=int,
        default=argparse.SUPPRESS,
        help="the former name of --rounds",
    )
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument("--files", type=int, default=40)
    parser.add_argument("--commit-files", type=int, default=1000)
    parser.add_argument(
        "--jvm-start",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="time fresh JVM starts too (default: yes, but not with --smoke: two fresh "
        "JVMs a round)",
    )
    args = harness.parse(parser, argv, rows=4000, files=2, commit_files=2)
    if args.jvm_start is None:
        args.jvm_start = not args.smoke
    work = harness.workdir(args, "delta-read").resolve()
    settings = load_config(
        overrides=[
            'spark.master="local[2]"',
            'delta.backend="connector"',  # the jar (fetched once); reads use both backends
            "spark.driver_memory=6g",
            f'lakehouse.root="{work}"',
        ],
        environ={},
    ).settings
    configure_logging("WARNING")
    results: dict[str, object] = {
        **harness.header(args),
        "rows": args.rows,
        "files": args.files,
        "memory_cap": "none (every side in one process)",
    }
    with harness.session(settings) as spark:
        results["spark"] = spark.version
        tables = EmbeddedDelta(spark)
        connector = ConnectorDelta(spark)
        uri = str(work / "bench_table")
        # a table kept in --workdir from an earlier run is reused when it is the size asked
        if table_rows(uri) != args.rows or len(DeltaTable(uri).file_uris()) != args.files:
            shutil.rmtree(uri, ignore_errors=True)
            make_table(spark, tables, uri, args.rows, args.files)
        paths = DeltaTable(uri).file_uris()
        assert len(paths) == args.files and table_rows(uri) == args.rows, (uri, len(paths))
        results["log_file_list"] = log_listing(uri, args.files, args)
        results["reads"] = reads(spark, tables, connector, uri, paths, args)
        results["commit"] = commits(spark, tables, connector, work, args)
    # a fresh JVM each: after the session stopped (standalone), not competing with it
    results["jvm_start"] = (
        jvm_starts(work, args)
        if args.jvm_start
        else "not run (--smoke without --jvm-start, or --no-jvm-start)"
    )
    if args.workdir is None:  # a folder of our own: its table is not kept for reuse
        shutil.rmtree(work, ignore_errors=True)
    print(json.dumps(results, indent=2))
    return results


if __name__ == "__main__":
    main()
