"""What submitting costs: one small job run in-process, through spark-submit in local
mode, and through spark-submit on a standalone cluster on 127.0.0.1; and what
recording a run in the runs table costs.

The job: `generate friedman --rows N` into a new table each run. Every side runs it as a
fresh process (as a scheduler runs it), timed from the process's start to its exit, all
started the same way (the project's `.venv/bin/batchml`, the same environment):
  (in-process)   `batchml generate …` (the session started by batchml, local[2])
  (in-process, runs.record=false)  the same, not recorded in the runs table
  (submit local) `batchml submit --master local[2] generate …`
  (submit standalone) `batchml submit --master spark://127.0.0.1:P generate …`
                 (one worker, 2 cores; the environment archive built before timing)
`./spark-submit.sh …` is `uv run --locked batchml submit …`: the submit sides run what it
execs, without `uv run`'s lock check and sync, which the in-process side (a plain
`batchml`) would not pay either. Every side writes through the embedded Delta backend
(`--set delta.backend="embedded"`): under the default `auto` the in-process session loads
the cached connector jars and a submitted driver does not, which made the in-process side
of the 2026-12-05 figures slower than `submit local[2]`. One warm-up run per side
(untimed), then `--rounds` rounds, the sides' order rotated each round, every round
printed; the median of the rounds reported, ratios to the in-process median of the same
run. Each run's exit code is checked, its table must hold N rows, and the runs table
must have gained one row (none with runs.record=false).
  (recording)    the runs-table row of a run: reading Spark's status store for a 4-task
                 job and the delta-rs commit, timed inside this process (the figure the
                 runs table cannot hold about itself); warm-up and rounds as above, each
                 round's row checked in the table.
`--repeat` is the old name of `--rounds`. `--smoke` runs in-process against submit
local[2] once each (2 job processes, each a JVM) and the recording: the standalone
cluster (its archive built and unpacked: a minute) and the unrecorded side are left out.

    uv run python benchmarks/submit_overhead.py [--rows 200000] [--rounds 3]
    uv run python benchmarks/submit_overhead.py --smoke   # seconds: checks the work only
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import harness

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))  # standalone.py: the test suite's cluster helper


def row_count(uri: str) -> int:
    """A Delta table's rows, read by delta-rs (no JVM); 0 when there is no table."""
    from batchml.lib.delta.delta_log import open_snapshot, preview, table_exists

    if not table_exists(uri):
        return 0
    count, _ = preview(open_snapshot(uri), 0)
    return count


class Job:
    """The timed job and the checks after each run."""

    def __init__(self, work: Path, rows: int) -> None:
        self.work, self.rows = work, rows
        self.lake = work / "lake"
        self.runs_table = str(self.lake / "_runs")
        self.batchml = str(REPO / ".venv" / "bin" / "batchml")
        # one Delta backend for every side: under `auto` the in-process session puts the
        # cached connector jars (86 MB) and its extension on its classpath and a submitted
        # driver does not (its JVM already runs), so the sides wrote through different code
        self.common = [
            "--set",
            f'lakehouse.root="{self.lake}"',
            "--set",
            'delta.backend="embedded"',
        ]
        self.made = 0  # tables written so far: each run writes a new one
        # PYSPARK_GATEWAY_PORT & co. (set when this runs under spark-submit) would make
        # a child's PySpark join this process's JVM instead of starting its own
        self.environ = {k: v for k, v in os.environ.items() if not k.startswith("PYSPARK_")}

    def side(self, launcher: list[str], *, recorded: bool = True):
        """A side: run `batchml <launcher> generate friedman …` once, timed, then check
        (untimed) its table and the runs table."""

        def once() -> harness.Timed:
            table = self.lake / f"t{self.made}"
            self.made += 1
            recorded_before = row_count(self.runs_table)
            command = [*launcher, "generate", "friedman", "--rows", str(self.rows),
                       "--to", str(table)]  # fmt: skip
            started = time.perf_counter()
            done = subprocess.run(
                command, cwd=self.work, env=self.environ, capture_output=True, text=True
            )
            seconds = time.perf_counter() - started
            if done.returncode != 0:
                raise RuntimeError(f"{' '.join(command)} exited {done.returncode}:\n"
                                   f"{done.stderr[-3000:]}")  # fmt: skip
            written = row_count(str(table))
            assert written == self.rows, (command, written)
            added = row_count(self.runs_table) - recorded_before
            assert added == (1 if recorded else 0), (command, added)
            return harness.Timed(seconds, written)

        return once


def recording(spark, lake: Path, args) -> dict[str, object]:
    """Recording a run (status store + delta-rs commit), timed in this process after a
    4-task job: the figure a run's own row cannot hold."""
    from batchml.lib.spark.metrics import mark, resources_since
    from batchml.lib.tracking import runs

    since = mark(spark.sparkContext)  # this job's figures, whatever the session ran before
    spark.range(0, 200_000, numPartitions=4).selectExpr("id % 7 AS k").groupBy(
        "k"
    ).count().collect()
    run = runs.begin("bench", {})
    runs.end()
    table = str(lake / "_bench_runs")

    def record() -> dict:
        figures = resources_since(spark.sparkContext, since)
        row = runs.row_of(run, exit_code=0, error=None, config_hash=None, master="local[2]",
                          app_id=None, event_log=None, resources=figures)  # fmt: skip
        runs.append(table, row)
        return figures

    sides = harness.side_by_side(
        {"recording": record}, rounds=args.rounds, warmup=args.warmup, label="recording"
    )
    assert row_count(table) == args.rounds + args.warmup
    assert sides.results["recording"].get("tasks"), sides.results["recording"]
    return {**sides.figures()["recording"], "median_ms": round(sides.median("recording") * 1000, 1)}


def main(argv: list[str] | None = None) -> dict[str, object]:
    parser = harness.arguments(__doc__)
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--repeat", dest="rounds", type=int, help=argparse.SUPPRESS)
    args = harness.parse(parser, argv, rows=1000)
    from standalone import standalone_cluster

    from batchml.lib.platform.config import load_config
    from batchml.lib.platform.logs import configure_logging
    from batchml.lib.submit import packaging

    configure_logging("WARNING", "text")
    # not timed: a one-off per change of the lock or the code (only a cluster needs it)
    built = None if args.smoke else packaging.build()
    work = harness.workdir(args, "submit")
    try:
        job = Job(work, args.rows)
        with contextlib.ExitStack() as stack:
            in_process = [job.batchml, *job.common, "--master", "local[2]"]
            submit = [job.batchml, "submit", *job.common, "--master"]
            runs = {
                "in-process": job.side(in_process),
                "in-process, runs.record=false": job.side(
                    [*in_process, "--set", "runs.record=false"], recorded=False
                ),
                "submit local[2]": job.side([*submit, "local[2]"]),
            }
            if args.smoke:
                del runs["in-process, runs.record=false"]
            else:
                master = stack.enter_context(standalone_cluster(work / "cluster"))
                runs["submit standalone"] = job.side([*submit, master])
            sides = harness.side_by_side(runs, rounds=args.rounds, warmup=args.warmup, label="job")
        settings = load_config(
            overrides=[f'lakehouse.root="{job.lake}"', 'spark.master="local[2]"'], environ={}
        ).settings
        with harness.session(settings) as spark:
            recorded = recording(spark, job.lake, args)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    report = {
        **harness.header(args),
        "rows": args.rows,
        "archive_mib": round(built.archive.stat().st_size / 2**20) if built else None,
        "jobs": sides.figures(),
        "ratio_to_in_process": {
            name: round(sides.ratio(name, "in-process"), 2) for name in sides.seconds
        },
        "recording": recorded,
    }
    harness.note(sides.table())
    print(json.dumps(report, indent=2))
    return report


if __name__ == "__main__":
    main()
