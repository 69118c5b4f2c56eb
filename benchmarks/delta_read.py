"""Delta read and commit costs of both backends, side by side with the alternatives.

Reads, on one table of N rows in F files (warm, best of R runs):
  (a) Spark reading the same Parquet files directly (no Delta log),
  (b) the embedded Delta read (delta-rs file list + Spark Parquet scan),
  (c) deltalake -> pyarrow -> spark.createDataFrame (what a user might do otherwise),
  (d) Delta's Spark connector (`spark.read.format("delta")`, its jar from the cache).
Each answers two queries: a full scan (every column materialised, noop sink) and a
scan plus aggregation.

Commit: one write of 1,000 files through each backend vs Spark writing the same
DataFrame as plain Parquet: the difference is the price of the Delta commit.

JVM start: a fresh process to its first Spark job, without Delta's jar (the embedded
backend) and with it (the connector: 33 more jars on the classpath).

    uv run python benchmarks/delta_read.py [--rows 10000000] [--files 40] [--repeat 3]
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from deltalake import DeltaTable
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from batchml.lib.delta.connector import ConnectorDelta
from batchml.lib.delta.delta_log import open_snapshot
from batchml.lib.delta.embedded import EmbeddedDelta
from batchml.lib.platform.config import load_config
from batchml.lib.platform.logs import configure_logging
from batchml.lib.spark.session import build_session


def full_scan(df: DataFrame) -> None:
    df.write.format("noop").mode("overwrite").save()


def aggregate(df: DataFrame) -> None:
    df.groupBy("carrier").agg(F.avg("delay"), F.sum("distance"), F.max("at")).collect()


def best_of(repeat: int, action: Callable[[], None]) -> float:
    action()  # warm-up
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        action()
        times.append(time.perf_counter() - started)
    return min(times)


def rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


JVM_START = """
import time
started = time.perf_counter()
from batchml.lib.platform.config import load_config
from batchml.lib.spark.session import build_session
cfg = load_config(overrides=['spark.master="local[2]"', 'delta.backend="{backend}"'], environ={{}})
spark = build_session(cfg.settings)
spark.range(10).count()
print(time.perf_counter() - started)
"""


def jvm_start_seconds(backend: str, repeat: int) -> float:
    """A fresh Python process to its first Spark job (best of `repeat`)."""
    times = []
    for _ in range(repeat):
        done = subprocess.run(
            [sys.executable, "-c", JVM_START.format(backend=backend)],
            capture_output=True,
            text=True,
            check=True,
        )
        times.append(float(done.stdout.strip().splitlines()[-1]))
    return min(times)


def make_table(spark: SparkSession, tables: EmbeddedDelta, uri: str, rows: int, files: int) -> None:
    df = spark.range(rows, numPartitions=files).select(
        F.col("id"),
        F.element_at(
            F.array(*[F.lit(c) for c in ("UA", "AA", "DL", "B6", "EV", "WN")]),
            (F.col("id") % 6 + 1).cast("int"),
        ).alias("carrier"),
        (F.rand(7) * 120 - 20).alias("delay"),
        (F.col("id") % 2500 + 100).cast("double").alias("distance"),
        (F.lit(1356998400) + F.col("id") % 31536000).cast("timestamp").alias("at"),
    )
    tables.write(df, uri)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument("--files", type=int, default=40)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--commit-files", type=int, default=1000)
    parser.add_argument("--workdir", type=Path, default=None)
    args = parser.parse_args()

    work = args.workdir or Path(tempfile.mkdtemp(prefix="batchml-bench-"))
    cfg = load_config(
        overrides=[
            'spark.master="local[2]"',
            'delta.backend="connector"',  # the jar (fetched once); reads use both backends
            "spark.driver_memory=6g",
            f'lakehouse.root="{work}"',
        ]
    )
    configure_logging("WARNING")
    spark = build_session(cfg.settings)
    tables = EmbeddedDelta(spark)
    connector = ConnectorDelta(spark)
    uri = str(work / "bench_table")
    if not Path(uri).exists():
        make_table(spark, tables, uri, args.rows, args.files)
    paths = DeltaTable(uri).file_uris()
    results: dict[str, float] = {}

    results["log_file_list_seconds"] = best_of(
        args.repeat, lambda: open_snapshot(uri).add_actions()
    )
    # Each timed run builds its DataFrame: listing files (a) or reading the log (b) counts.
    for name, query in (("scan", full_scan), ("agg", aggregate)):
        results[f"a_direct_{name}"] = best_of(
            args.repeat, lambda q=query: q(spark.read.parquet(*paths))
        )
        results[f"b_embedded_{name}"] = best_of(args.repeat, lambda q=query: q(tables.read(uri).df))
        results[f"d_connector_{name}"] = best_of(
            args.repeat, lambda q=query: q(connector.read(uri).df)
        )

    rss_before = rss_mb()

    def via_arrow(query: Callable[[DataFrame], None]) -> None:
        arrow = DeltaTable(uri).to_pyarrow_table()
        df = spark.createDataFrame(arrow)
        results["c_arrow_partitions"] = df.rdd.getNumPartitions()
        query(df)

    for name, query in (("scan", full_scan), ("agg", aggregate)):
        results[f"c_arrow_{name}"] = best_of(1, lambda q=query: via_arrow(q))
    results["c_arrow_peak_rss_mb_added"] = rss_mb() - rss_before

    # commit overhead: 1,000 files, stats included, beyond the Parquet write itself
    many = spark.range(args.commit_files * 1000, numPartitions=args.commit_files).selectExpr(
        "id", "id * 0.5 AS x", "CAST(id % 97 AS STRING) AS s"
    )
    plain_dir = work / "plain_1000"
    delta_dir = work / "delta_1000"

    def plain_write() -> None:
        shutil.rmtree(plain_dir, ignore_errors=True)
        many.write.parquet(str(plain_dir))

    def delta_write() -> None:
        shutil.rmtree(delta_dir, ignore_errors=True)
        tables.write(many, str(delta_dir))

    connector_dir = work / "connector_1000"

    def connector_write() -> None:
        shutil.rmtree(connector_dir, ignore_errors=True)
        connector.write(many, str(connector_dir))

    results["commit_plain_parquet_seconds"] = best_of(args.repeat, plain_write)
    results["commit_connector_delta_seconds"] = best_of(args.repeat, connector_write)
    results["commit_embedded_delta_seconds"] = best_of(args.repeat, delta_write)
    parts = tables.last_write_seconds
    results["commit_parts_parquet_write"] = parts.get("parquet_write", float("nan"))
    results["commit_parts_stats"] = parts.get("stats", float("nan"))
    results["commit_parts_move_and_commit"] = parts.get("commit", float("nan"))
    results["commit_files"] = len(DeltaTable(str(delta_dir)).file_uris())
    results["commit_files_connector"] = len(DeltaTable(str(connector_dir)).file_uris())
    machine = (
        f"{platform.machine()}, {spark.sparkContext.defaultParallelism} cores "
        f"(local[2]), Python {platform.python_version()}, Spark {spark.version}"
    )
    spark.stop()
    results["jvm_start_without_jar"] = jvm_start_seconds("embedded", args.repeat)
    results["jvm_start_with_connector_jar"] = jvm_start_seconds("connector", args.repeat)

    ratios = {
        "b/a scan": results["b_embedded_scan"] / results["a_direct_scan"],
        "b/a agg": results["b_embedded_agg"] / results["a_direct_agg"],
        "c/b scan": results["c_arrow_scan"] / results["b_embedded_scan"],
        "c/b agg": results["c_arrow_agg"] / results["b_embedded_agg"],
        "d/a scan": results["d_connector_scan"] / results["a_direct_scan"],
        "d/a agg": results["d_connector_agg"] / results["a_direct_agg"],
        "d/b scan": results["d_connector_scan"] / results["b_embedded_scan"],
        "d/b agg": results["d_connector_agg"] / results["b_embedded_agg"],
        "commit overhead seconds (stats + move + commit)": results["commit_parts_stats"]
        + results["commit_parts_move_and_commit"],
        "embedded write / plain write": results["commit_embedded_delta_seconds"]
        / results["commit_plain_parquet_seconds"],
        "connector write / plain write": results["commit_connector_delta_seconds"]
        / results["commit_plain_parquet_seconds"],
        "connector write / embedded write": results["commit_connector_delta_seconds"]
        / results["commit_embedded_delta_seconds"],
        "JVM start with jar / without": results["jvm_start_with_connector_jar"]
        / results["jvm_start_without_jar"],
    }
    report = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": machine,
        "rows": args.rows,
        "files": len(paths),
        "seconds": {k: round(v, 3) for k, v in results.items()},
        "ratios": {k: round(v, 3) for k, v in ratios.items()},
    }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
