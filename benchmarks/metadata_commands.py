"""Metadata commands: reading the Delta log with delta-rs vs starting Spark to read it.

`batchml models list | show` and `batchml table history | show` read a few rows of a
Delta log or of the registry's index. Each command is run as a fresh process (as a user
or a scheduler runs it) by both sides, timed from the process's start to its exit (the
interpreter's start and imports included on both sides), with the same environment:
  (delta-rs)  the command as it ships: the log and small tables read by delta-rs
  (spark)     the same read through a SparkSession and the embedded Delta backend,
              what these commands did before (a JVM started for a few rows)
Per command: one warm-up run per side (untimed), then `--rounds` rounds, the two sides
alternated and the order rotated each round, every round printed; the median of the
rounds and the ratio of the medians reported. Output: the command prints its rendering
for a person; the spark side reads the same rows (the registry's two index tables; the
last 3 commits; the first 10 rows and the count) and prints a one-line JSON summary of
them (rendering a few lines: microseconds either way). `models show` does more than its
spark side: it also lists the version's report pages and promotion decisions. Every
run's exit code is checked, and each side's summary (models and versions, commit
versions, table version and row count) must equal the other's.
Needs a lakehouse with the demo's tables and models (`batchml demo` first); `--smoke`
builds a tiny one (a 3-version `flights`, one registered `flight_delay_xgb`) instead and
runs --commands "models show,table show", one round each: one registry read and one table
read per side, the fewest JVM starts that check both sides' routes (each spark run is a
JVM start, ~10 s).
`--repeat` is the old name of `--rounds`.

    uv run python benchmarks/metadata_commands.py --lake ./lakehouse [--rounds 3]
    uv run python benchmarks/metadata_commands.py --smoke   # seconds: checks the work only
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import harness

COMMANDS = {
    "models list": ["models", "list"],
    "models show": ["models", "show", "flight_delay_xgb@1"],
    "table history": ["table", "history", "flights", "--limit", "3"],
    "table show": ["table", "show", "flights"],
}
SMOKE_COMMANDS = "models show,table show"


def through_spark(lake: str, name: str) -> dict[str, Any]:
    """The Spark route for one command (run in a child process): its summary."""
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
        index = {}  # the registry's two index tables, as the command reads them
        for part in ("versions", "aliases"):
            if tables.exists(f"{lake}/_registry/{part}"):
                index[part] = tables.read(f"{lake}/_registry/{part}").df.collect()
        versions = sorted([row["name"], row["version"]] for row in index.get("versions", []))
        if name == "models show":
            model, version = COMMANDS[name][-1].split("@")
            versions = [found for found in versions if found == [model, int(version)]]
        return {"versions": versions}
    if name == "table history":
        return {"commits": [commit["version"] for commit in tables.history(f"{lake}/flights", 3)]}
    read = tables.read(f"{lake}/flights")
    read.df.limit(10).collect()  # the rows the command shows
    return {"version": read.version, "rows": read.df.count()}


def summary_of(name: str, printed: str) -> dict[str, Any]:
    """What the command's rendering says, in the spark side's terms."""
    lines = printed.strip().splitlines()
    if name == "models list":  # a header, then one line per version: name, version, …
        return {"versions": sorted([line.split()[0], int(line.split()[1])] for line in lines[1:])}
    if name == "models show":  # "NAME version V (ALGORITHM), registered …"
        words = lines[0].split()
        assert words[1] == "version", lines[0]
        return {"versions": [[words[0], int(words[2])]]}
    if name == "table history":  # a header, then one line per commit, its version first
        return {"commits": [int(line.split()[0]) for line in lines[1:]]}
    words = lines[0].split()  # "URI  version V  rows N"
    assert (words[1], words[3]) == ("version", "rows"), lines[0]
    return {"version": int(words[2]), "rows": int(words[4])}


def run(command: list[str], read: Callable[[str], dict[str, Any]]) -> harness.Timed:
    """One fresh process, timed from its start to its exit; what `read` makes of its
    stdout (after the timing). A failure raises, with its stderr."""
    # PYSPARK_GATEWAY_PORT & co. (set when this runs under spark-submit) would make the
    # child's PySpark join this process's JVM instead of starting its own
    environ = {k: v for k, v in os.environ.items() if not k.startswith("PYSPARK_")}
    started = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, env=environ, check=False)
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} exited {done.returncode}:\n{done.stderr[-3000:]}")
    return harness.Timed(seconds, read(done.stdout))


def last_line_json(printed: str) -> dict[str, Any]:
    return json.loads(printed.strip().splitlines()[-1])


def compare(lake: str, name: str, args) -> dict[str, Any]:
    cli = [sys.executable, "-m", "batchml.jobs.cli", "--set", f'lakehouse.root="{lake}"']
    child = [sys.executable, str(Path(__file__).resolve()), "--lake", lake, "--spark-child"]
    sides = harness.side_by_side(
        {
            "delta-rs": lambda: run([*cli, *COMMANDS[name]], lambda out: summary_of(name, out)),
            "spark": lambda: run([*child, name], last_line_json),
        },
        rounds=args.rounds,
        warmup=args.warmup,
        label=name,
    )
    ours, theirs = sides.results["delta-rs"].value, sides.results["spark"].value
    assert ours == theirs, f"{name}: delta-rs read {ours}, spark read {theirs}"
    assert all(ours.values()), f"{name}: nothing read ({ours})"
    return {
        **sides.figures(),
        "read": ours,
        "spark_over_delta_rs": round(sides.ratio("spark", "delta-rs"), 1),
    }


def tiny_lake(lake: Path) -> None:
    """A `flights` table of 3 versions and one registered `flight_delay_xgb` version: the
    names the commands read, a few rows each (the smoke size)."""
    from pyspark.ml import PipelineModel
    from pyspark.ml.feature import SQLTransformer

    from batchml.lib.delta.embedded import EmbeddedDelta
    from batchml.lib.platform.config import load_config
    from batchml.lib.tracking.registry import Registry

    settings = load_config(
        overrides=[f'lakehouse.root="{lake}"', 'delta.backend="embedded"'], environ={}
    ).settings
    with harness.session(settings) as spark:
        tables = EmbeddedDelta(spark)
        for month in range(1, 4):
            rows = [(month, day, "UA", float(day)) for day in range(1, 6)]
            df = spark.createDataFrame(rows, "month int, day int, carrier string, delay double")
            tables.write(df, str(lake / "flights"))
        model = PipelineModel(stages=[SQLTransformer(statement="SELECT * FROM __THIS__")])
        manifest = {
            "algorithm": "sql",
            "training_table": str(lake / "flights"),
            "training_version": 2,
            "metrics": {"test": {"auc": 0.75}},
        }
        Registry(str(lake / "_registry"), tables).register("flight_delay_xgb", model, manifest)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = harness.arguments(__doc__)
    parser.add_argument("--lake", default="./lakehouse")
    parser.add_argument(
        "--commands",
        default=",".join(COMMANDS),
        help=f"comma-separated, of: {', '.join(COMMANDS)}",
    )
    parser.add_argument("--repeat", dest="rounds", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--spark-child", help=argparse.SUPPRESS)
    args = harness.parse(parser, argv, commands=SMOKE_COMMANDS)
    if args.spark_child:  # one run of the spark side: its summary, on one line
        found = through_spark(str(Path(args.lake).resolve()), args.spark_child)
        print(json.dumps(found))
        return found
    names = [name.strip() for name in args.commands.split(",")]
    unknown = set(names) - set(COMMANDS)
    if unknown:
        parser.error(f"unknown --commands {sorted(unknown)} (known: {', '.join(COMMANDS)})")
    work = harness.workdir(args, "metadata") if args.smoke else None
    try:
        if work is not None:
            args.lake = str(work / "lake")
            tiny_lake(Path(args.lake))
        lake = str(Path(args.lake).resolve())
        results: dict[str, Any] = {
            **harness.header(args),
            "lake": lake,
            "bytecode_cache": "off" if os.environ.get("PYTHONDONTWRITEBYTECODE") else "on",
            "commands": {name: compare(lake, name, args) for name in names},
        }
    finally:
        if work is not None:
            shutil.rmtree(work, ignore_errors=True)
    lines = [
        "| command | delta-rs (median) | spark (median) | spark / delta-rs |",
        "|---|---|---|---|",
    ]
    for name, found in results["commands"].items():
        lines.append(
            f"| `{name}` | {found['delta-rs']['median_s']:.2f} s | "
            f"{found['spark']['median_s']:.2f} s | {found['spark_over_delta_rs']}x |"
        )
    harness.note("\n".join(lines))
    print(json.dumps(results, indent=2))
    return results


if __name__ == "__main__":
    main()
