"""What submitting costs: one small job run in-process, through spark-submit.sh in local
mode, and through spark-submit.sh on a standalone cluster on 127.0.0.1; and what
recording a run in the runs table costs.

Measured in one run, each as a fresh process (as a scheduler runs it), median of
`--repeat`, the job being `generate friedman --rows N` into a new table each time:
  (in-process)   `batchml generate …` (the session started by batchml, local[2])
  (submit local) `./spark-submit.sh --master local[2] generate …`
  (submit standalone) `./spark-submit.sh --master spark://127.0.0.1:P generate …`
                 (one worker, 2 cores; the environment archive built before timing)
  (recording)    the runs-table row of each in-process run: reading Spark's status store
                 and the delta-rs commit, timed inside the process (`--set
                 runs.record=false` runs for comparison)

    uv run python benchmarks/submit_overhead.py [--rows 200000] [--repeat 3]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))


def timed(command: list[str], cwd: Path) -> float:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("PYSPARK_")}
    started = time.perf_counter()
    done = subprocess.run(command, cwd=cwd, env=environ, capture_output=True, text=True)
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed:\n{done.stderr[-3000:]}")
    return seconds


def recording_seconds(lake: Path) -> float:
    """How long the last in-process run spent recording itself (status store + commit),
    re-measured the same way in this process on a fresh session (the figure the runs
    table cannot hold about itself)."""
    from pyspark.sql import SparkSession

    from batchml.lib.spark.metrics import Mark, resources_since
    from batchml.lib.tracking import runs

    spark = SparkSession.builder.master("local[2]").config("spark.ui.enabled", "false")
    session = spark.getOrCreate()
    session.range(0, 200_000, numPartitions=4).selectExpr("id % 7 AS k").groupBy(
        "k"
    ).count().collect()
    run = runs.begin("bench", {})
    runs.end()
    samples = []
    for _ in range(5):
        started = time.perf_counter()
        figures = resources_since(session.sparkContext, Mark(-1))
        row = runs.row_of(run, exit_code=0, error=None, config_hash=None, master="local[2]",
                          app_id=None, event_log=None, resources=figures)  # fmt: skip
        runs.append(str(lake / "_bench_runs"), row)
        samples.append(time.perf_counter() - started)
    session.stop()
    return statistics.median(samples)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    from standalone import standalone_cluster

    from batchml.lib.submit import packaging

    built = packaging.build()  # not timed: a one-off per change of the lock or the code
    batchml = str(REPO / ".venv" / "bin" / "batchml")
    script = str(REPO / "spark-submit.sh")
    with tempfile.TemporaryDirectory() as scratch:
        work = Path(scratch)
        lake = work / "lake"
        common = ["--set", f'lakehouse.root="{lake}"']
        counter = iter(range(10_000))

        def job() -> list[str]:
            return ["generate", "friedman", "--rows", str(args.rows), "--to",
                    str(lake / f"t{next(counter)}")]  # fmt: skip

        results: dict[str, list[float]] = {}
        with standalone_cluster(work / "cluster") as master:
            for _ in range(args.repeat):
                results.setdefault("in-process", []).append(
                    timed([batchml, *common, "--master", "local[2]", *job()], work)
                )
                results.setdefault("in-process, runs.record=false", []).append(
                    timed(
                        [
                            batchml,
                            *common,
                            "--master",
                            "local[2]",
                            "--set",
                            "runs.record=false",
                            *job(),
                        ],
                        work,
                    )
                )
                results.setdefault("submit local[2]", []).append(
                    timed([script, *common, "--master", "local[2]", *job()], work)
                )
                results.setdefault("submit standalone", []).append(
                    timed([script, *common, "--master", master, *job()], work)
                )
        recording = recording_seconds(lake)
    medians = {name: statistics.median(values) for name, values in results.items()}
    base = medians["in-process"]
    report = {
        "date": datetime.now(UTC).strftime("%Y-%m-%d"),
        "machine": f"{os.cpu_count()} cores, {platform.machine()}, "
        f"Python {platform.python_version()}",
        "rows": args.rows,
        "repeat": args.repeat,
        "archive_mib": round(built.archive.stat().st_size / 2**20),
        "seconds": {name: round(value, 2) for name, value in medians.items()},
        "ratio_to_in_process": {name: round(value / base, 2) for name, value in medians.items()},
        "recording_ms": round(recording * 1000, 1),
    }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
