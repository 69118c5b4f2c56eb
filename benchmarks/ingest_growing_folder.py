"""Exactly-once ingest of a growing landing folder: what a scheduled run costs.

A landing folder of N small CSV files (3 rows each) is ingested once. Then K new files
land, and the scheduled command runs again. Measured in one run:
  (listing)      listing the folder: one stat per file
  (ledger)       reading the source's ingest ledger (one row per ingested file)
  (plan)         sorting the listed files into new / already ingested / changed
  (incremental)  `batchml ingest` with K new files: the whole job, commits included
  (no-op)        `batchml ingest` again with nothing new
  (full reload)  ingesting all N + K files as one batch: what a run without the ledger
                 (the old behaviour, or a naive reload) pays every time
Ratios: full reload / incremental, and the check (listing + ledger + plan) per file.

    uv run python benchmarks/ingest_growing_folder.py [--files 100000] [--new 100]
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from batchml.jobs import ingest
from batchml.lib.delta.embedded import EmbeddedDelta
from batchml.lib.ingest.ledger import IngestLedger, plan_files
from batchml.lib.ingest.sources import list_files, source_root
from batchml.lib.platform.config import load_config
from batchml.lib.platform.logs import configure_logging
from batchml.lib.spark.session import build_session

CONTRACT = """
[tables.events]
policy = "quarantine"

[tables.events.columns]
id = {{ type = "bigint", nullable = false, min = 0 }}
kind = {{ type = "string", allowed = ["a", "b", "c"] }}
value = {{ type = "double" }}

[sources.events]
table = "events"
path = "{landing}/*.csv"
format = "csv"
options = {{ header = true }}
"""


def land(folder: Path, start: int, count: int) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for index in range(start, start + count):
        rows = "".join(f"{index * 3 + r},{'abc'[r]},{r * 0.5}\n" for r in range(3))
        (folder / f"event_{index:07d}.csv").write_text("id,kind,value\n" + rows)


def timed(action):
    started = time.perf_counter()
    result = action()
    return result, time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=100_000)
    parser.add_argument("--new", type=int, default=100)
    parser.add_argument("--workdir", type=Path, default=None)
    args = parser.parse_args()
    work = args.workdir or Path(tempfile.mkdtemp(prefix="bench_ledger_"))
    shutil.rmtree(work, ignore_errors=True)
    landing, lake = work / "landing", work / "lake"
    conf = work / "events.toml"
    work.mkdir(parents=True)
    conf.write_text(CONTRACT.format(landing=landing))
    settings = load_config(
        conf_file=conf,
        overrides=[
            f'lakehouse.root="{lake}"',
            'spark.driver_memory="4g"',
            'delta.backend="embedded"',
        ],
    ).settings
    configure_logging("WARNING", "text")
    spark = build_session(settings)
    request = ingest.IngestRequest("events")

    _, land_seconds = timed(lambda: land(landing, 0, args.files))
    first, first_seconds = timed(lambda: ingest.run(spark, settings, request))
    assert first.files == args.files, first.files
    land(landing, args.files, args.new)

    root = source_root(str(landing / "*.csv"))
    ledger = IngestLedger(spark, EmbeddedDelta(spark), first.ledger_uri, "events", root)
    listed, list_seconds = timed(lambda: list_files(str(landing / "*.csv"), root))
    state, ledger_seconds = timed(ledger.load)
    plan, plan_seconds = timed(lambda: plan_files(listed, state, content_hash=False))
    assert (len(plan.new), len(plan.unchanged)) == (args.new, args.files)
    incremental, incremental_seconds = timed(lambda: ingest.run(spark, settings, request))
    assert (incremental.files, incremental.rows_written) == (args.new, args.new * 3)
    noop, noop_seconds = timed(lambda: ingest.run(spark, settings, request))
    assert noop.status == "skipped"
    everything = ingest.IngestRequest(
        "events", batch_id="full-reload", mode="overwrite", path=str(landing), force=True
    )
    full, full_seconds = timed(lambda: ingest.run(spark, settings, everything))
    assert full.files == args.files + args.new

    check = list_seconds + ledger_seconds + plan_seconds
    figures = {
        "command": "uv run python benchmarks/ingest_growing_folder.py "
        f"--files {args.files} --new {args.new}",
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": f"{platform.machine()}, {platform.processor() or 'cpu'}, "
        f"{spark.sparkContext.defaultParallelism} task slots",
        "files": args.files,
        "new_files": args.new,
        "landing_seconds": round(land_seconds, 2),
        "first_ingest_seconds": round(first_seconds, 2),
        "listing_seconds": round(list_seconds, 3),
        "ledger_read_seconds": round(ledger_seconds, 3),
        "plan_seconds": round(plan_seconds, 3),
        "check_microseconds_per_file": round(check / (args.files + args.new) * 1e6, 2),
        "incremental_seconds": round(incremental_seconds, 2),
        "noop_seconds": round(noop_seconds, 2),
        "full_reload_seconds": round(full_seconds, 2),
        "full_reload_over_incremental": round(full_seconds / incremental_seconds, 1),
        "ledger_files_after_runs": len(EmbeddedDelta(spark).read(first.ledger_uri).df.inputFiles()),
    }
    print(json.dumps(figures, indent=2))
    spark.stop()


if __name__ == "__main__":
    main()
