"""Exactly-once ingest of a growing landing folder: what a scheduled run costs.

A breakdown of one ingest history, not an A/B against a baseline. A landing folder of
--files N small CSV files (3 rows each) is ingested once (the setup: landing and that
first ingest are single runs, reported as such). Then --new K files land. Measured in
one process, every step `--warmup` untimed runs then `--rounds` timed rounds, every
round printed, the median of the rounds reported:
  (check)        the parts of a run's check over the N + K listed files (N ingested,
                 K new), read-only, the three alternated each round:
    (listing)    listing the folder: one stat per file
    (ledger)     reading the source's ingest ledger (one row per ingested file)
    (plan)       sorting the listed files into new / already ingested / changed
  The K files are then ingested (untimed), so every run below starts from a folder whose
  files are all in the table. Then three runs alternate, the order rotated each round:
  (incremental)  `ingest events` after K new files landed: the whole job, commits
                 included. Before each (untimed) the last K files are removed and K new
                 ones land, so every run of every side sees the same N + K files.
  (no-op)        `ingest events` with nothing new: the check, nothing written
  (full reload)  every one of the N + K files ingested as one batch into a new table:
                 what a run without the ledger (the old behaviour, or a naive reload)
                 pays every time. Into a lake of its own, removed (untimed) before each
                 run: a forced reload into the scheduled source's lake would add N + K
                 rows to its ledger every round, and the incremental runs after it
                 would read a bigger ledger than a scheduled run does.
Output: the incremental run appends the K new files' rows to the table; the full reload
writes all N + K files' rows (and their ledger rows) to a new table: each leaves a table
holding every row of the folder. The no-op writes nothing. Each run asserts its files
and rows; the end asserts the scheduled table's row count.
Ratios from the medians of the same run: full reload / incremental, and the check
(listing + ledger + plan) per listed file. Ingest hashes each new file (`content_hash`,
on by default; the figures of 2026-12-04 were measured with it off).

    uv run python benchmarks/ingest_growing_folder.py [--files 100000] [--new 100] [--rounds 3]
    uv run python benchmarks/ingest_growing_folder.py --smoke   # seconds: checks the work only
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import harness

from batchml.jobs import ingest
from batchml.lib.delta import delta_tables
from batchml.lib.delta.lakehouse import resolve_path, table_uris
from batchml.lib.ingest.ledger import IngestLedger, plan_files
from batchml.lib.ingest.sources import list_files, source_root
from batchml.lib.platform.config import load_config
from batchml.lib.platform.logs import configure_logging

# the source's contract; ingest_hashing.py appends `content_hash = …` to [sources.events]
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

ROWS_PER_FILE = 3


def land(folder: Path, start: int, count: int) -> None:
    """Files `start` .. `start + count - 1`, 3 rows each (also used by ingest_hashing)."""
    folder.mkdir(parents=True, exist_ok=True)
    for index in range(start, start + count):
        rows = "".join(f"{index * 3 + r},{'abc'[r]},{r * 0.5}\n" for r in range(3))
        (folder / f"event_{index:07d}.csv").write_text("id,kind,value\n" + rows)


def unland(folder: Path, start: int, count: int) -> None:
    for index in range(start, start + count):
        (folder / f"event_{index:07d}.csv").unlink()


def settings_for(work: Path, landing: Path, lake: Path):
    conf = work / "events.toml"
    conf.write_text(CONTRACT.format(landing=landing))
    return load_config(
        conf_file=conf,
        overrides=[
            f'lakehouse.root="{lake}"',
            'spark.driver_memory="4g"',
            'delta.backend="embedded"',
        ],
        environ={},
    ).settings


def single_run(action):
    """A step run once (the setup): its result and seconds."""
    started = time.perf_counter()
    result = action()
    return result, time.perf_counter() - started


class GrowingFolder:
    """The landing folder and its scheduled source: N files ingested, K more landing."""

    def __init__(self, spark, work: Path, files: int, new: int) -> None:
        self.spark, self.files, self.new = spark, files, new
        self.landing = work / "landing"
        self.settings = settings_for(work, self.landing, work / "lake")
        # the full reload's lake: the same source and contract, a ledger of its own
        self.reload_lake = work / "lake_reload"
        self.reload_settings = settings_for(work, self.landing, self.reload_lake)
        self.request = ingest.IngestRequest("events")
        self.extra_start = files  # the first index of the K files beyond the N
        self.incremental_runs = 0  # batches of K the scheduled table holds

    def land_first(self) -> None:
        land(self.landing, 0, self.files)

    def ingest(self, settings=None) -> ingest.IngestReport:
        return ingest.run(self.spark, settings or self.settings, self.request)

    def land_new(self) -> None:
        land(self.landing, self.extra_start, self.new)

    def replace_new(self) -> None:
        """Remove the last K files (ingested) and land K new ones: N + K files again."""
        unland(self.landing, self.extra_start, self.new)
        self.extra_start += self.new
        self.land_new()

    # ------------------------------------------------------------------ the runs
    def incremental(self) -> ingest.IngestReport:
        report = self.ingest()
        assert report.status == "written", report.message
        assert (report.files, report.rows_written) == (self.new, self.new * ROWS_PER_FILE), (
            report.files,
            report.rows_written,
        )
        self.incremental_runs += 1
        return report

    def noop(self) -> ingest.IngestReport:
        report = self.ingest()
        assert report.status == "skipped", report.message
        assert report.files_already_ingested == self.files + self.new, report.message
        return report

    def full_reload(self) -> ingest.IngestReport:
        report = self.ingest(self.reload_settings)
        listed = self.files + self.new
        assert report.status == "written", report.message
        assert (report.files, report.rows_written) == (listed, listed * ROWS_PER_FILE), (
            report.files,
            report.rows_written,
        )
        return report

    def before(self, side: str) -> None:
        """Untimed: K new files before an incremental run; a new lake before a reload."""
        if side == "incremental":
            self.replace_new()
        elif side == "full reload":
            shutil.rmtree(self.reload_lake, ignore_errors=True)


def check_steps(folder: GrowingFolder, args) -> tuple[dict[str, object], float, str]:
    """Listing, ledger read and plan over N ingested + K new files: their rounds, the
    sum of their medians, and their table."""
    settings = folder.settings
    source = settings.sources["events"]
    pattern = resolve_path(source.path, settings)
    # the root and the ledger the job itself uses (jobs/ingest/job.py `run`)
    root = source_root(pattern, settings.lakehouse.root)
    ledger_uri = resolve_path(source.ledger or "_ingest/events", settings)
    ledger = IngestLedger(
        folder.spark, delta_tables(folder.spark, settings), ledger_uri, "events", root
    )
    # the plan's inputs, read once untimed: the plan alone is timed
    listed, state = list_files(pattern, root), ledger.load()

    def plan():
        return plan_files(listed, state, content_hash=source.content_hash)

    sides = harness.side_by_side(
        {
            "listing": lambda: list_files(pattern, root),
            "ledger read": ledger.load,
            "plan": plan,
        },
        rounds=args.rounds,
        warmup=args.warmup,
        label="check",
    )
    assert len(sides.results["listing"]) == folder.files + folder.new
    assert len(sides.results["ledger read"].ingested) == folder.files
    found = sides.results["plan"]
    assert (len(found.new), len(found.unchanged), len(found.changed)) == (
        folder.new,
        folder.files,
        0,
    )
    check = sum(sides.median(step) for step in sides.seconds)
    return sides.figures(), check, sides.table()


def main(argv: list[str] | None = None) -> dict[str, object]:
    parser = harness.arguments(__doc__)
    parser.add_argument("--files", type=int, default=100_000, help="files ingested first (N)")
    parser.add_argument("--new", type=int, default=100, help="new files per run (K)")
    args = harness.parse(parser, argv, files=50, new=5)
    work = harness.workdir(args, "ledger")
    configure_logging("WARNING", "text")
    try:
        settings = settings_for(work, work / "landing", work / "lake")
        with harness.session(settings) as spark:
            folder = GrowingFolder(spark, work, args.files, args.new)
            _, land_seconds = single_run(folder.land_first)
            first, first_seconds = single_run(folder.ingest)
            assert (first.files, first.rows_written) == (args.files, args.files * ROWS_PER_FILE)
            folder.land_new()
            check, check_seconds, check_table = check_steps(folder, args)
            # the K files the check planned go in untimed: every run below starts from a
            # folder whose files are all ingested
            settled = folder.ingest()
            assert settled.files == args.new, settled.message
            folder.incremental_runs += 1

            runs = harness.side_by_side(
                {
                    "incremental": folder.incremental,
                    "no-op": folder.noop,
                    "full reload": folder.full_reload,
                },
                rounds=args.rounds,
                warmup=args.warmup,
                before=folder.before,
                label="runs",
            )
            tables = delta_tables(spark, folder.settings)
            table_uri, _ = table_uris("events", folder.settings.tables["events"], folder.settings)
            rows = tables.read(table_uri).df.count()
            expected = (args.files + folder.incremental_runs * args.new) * ROWS_PER_FILE
            assert rows == expected, (rows, expected)
            ledger_files = len(tables.read(first.ledger_uri).df.inputFiles())

        listed = args.files + args.new
        results = {
            **harness.header(args),
            "files": args.files,
            "new_files": args.new,
            "setup_single_runs": {
                "landing_s": round(land_seconds, 2),
                "first_ingest_s": round(first_seconds, 2),
            },
            "check": check,
            "check_microseconds_per_file": round(check_seconds / listed * 1e6, 2),
            "runs": runs.figures(),
            "full_reload_over_incremental": round(runs.ratio("full reload", "incremental"), 1),
            "table_rows": rows,
            "ledger_files_after_runs": ledger_files,
        }
    finally:
        shutil.rmtree(work, ignore_errors=True)
    harness.note(check_table + "\n\n" + runs.table())
    print(json.dumps(results, indent=2))
    return results


if __name__ == "__main__":
    main()
