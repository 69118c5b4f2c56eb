"""Metadata commands: reading the Delta log with delta-rs vs starting Spark to read it.

`batchml models list | show` and `batchml table history | show` read a few rows of a
Delta log or of the registry's index. Measured in one run, each as a fresh process (as
a user or a scheduler runs it), median of `--repeat`:
  (delta-rs)  the command as it ships: the log and small tables read by delta-rs
  (spark)     the same read through a SparkSession and the embedded Delta backend,
              what these commands did before (a JVM started for a few rows)
Needs a lakehouse with the demo's tables and models (`batchml demo` first).

    uv run python benchmarks/metadata_commands.py --lake ./lakehouse [--repeat 3]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

COMMANDS = {
    "models list": ["models", "list"],
    "models show": ["models", "show", "flight_delay_xgb@1"],
    "table history": ["table", "history", "flights", "--limit", "3"],
    "table show": ["table", "show", "flights"],
}


def through_spark(lake: str, name: str) -> None:
    """The Spark route for one command (run in a child process)."""
    from batchml.lib.delta.embedded import EmbeddedDelta
    from batchml.lib.platform.config import load_config
    from batchml.lib.platform.logs import configure_logging
    from batchml.lib.spark.session import build_session

    configure_logging("WARNING")
    settings = load_config(
        overrides=[f'lakehouse.root="{lake}"', 'delta.backend="embedded"']
    ).settings
    tables = EmbeddedDelta(build_session(settings))
    if name.startswith("models"):
        rows = []
        for index in ("versions", "aliases"):
            if tables.exists(f"{lake}/_registry/{index}"):
                rows += tables.read(f"{lake}/_registry/{index}").df.collect()
    elif name == "table history":
        rows = tables.history(f"{lake}/flights", 3)
    else:
        read = tables.read(f"{lake}/flights")
        rows = [*read.df.limit(10).collect(), read.df.count()]
    print(len(rows))


def seconds(command: list[str], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        subprocess.run(command, check=True, capture_output=True)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lake", default="./lakehouse")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--spark-child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    lake = str(Path(args.lake).resolve())
    if args.spark_child:
        through_spark(lake, args.spark_child)
        return
    cli = [sys.executable, "-m", "batchml.jobs.cli", "--set", f'lakehouse.root="{lake}"']
    results = {}
    for name, argv in COMMANDS.items():
        ours = seconds([*cli, *argv], args.repeat)
        spark = seconds(
            [sys.executable, __file__, "--lake", lake, "--spark-child", name], args.repeat
        )
        results[name] = {
            "delta_rs_s": round(ours, 2),
            "spark_s": round(spark, 2),
            "spark_over_delta_rs": round(spark / ours, 1),
        }
        print(
            f"{name:<14} delta-rs {ours:5.2f} s   spark {spark:6.2f} s   {spark / ours:5.1f}x",
            flush=True,
        )
    print(
        json.dumps(
            {
                "date": datetime.now(UTC).isoformat(timespec="seconds"),
                "machine": f"{platform.machine()}, {os.cpu_count()} cores, Python "
                f"{platform.python_version()}",
                "bytecode_cache": "off" if os.environ.get("PYTHONDONTWRITEBYTECODE") else "on",
                "results": results,
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
