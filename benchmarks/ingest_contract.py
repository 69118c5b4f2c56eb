"""The price of a data contract: `batchml ingest` vs Spark writing the same CSV unchecked.

One CSV source of --rows rows (Agrawal attributes, written once by Spark). Four sides:
  (plain)    spark.read.schema(<typed schema>).csv(...).write.parquet(...)
  (contract) the ingest job: read as strings, try_cast, 10 row rules in one projection,
             quarantine split, Delta commits (embedded backend), idempotency check
  (contract + unique key) the same plus a unique-key rule (a window: one shuffle)
  (contract, 1% bad) a batch in which ~1% of rows break a rule: the quarantine is written
             from a second parse of the files
The output work differs, as it is what is priced: plain writes one Parquet folder; the
contract sides write a Delta table, their ingest ledger and (1% bad) a quarantine table.

Method: one run, one Spark session; each side warmed up --warmup times (untimed), then
--rounds timed rounds with the order of the sides rotated each round; every round
printed (stderr), the median reported, ratios from medians of the same run. No memory
cap (every side in one process). Before each run, untimed, the side's output is removed
(a contract side's whole lakehouse: table, quarantine and ledger, so each run ingests a
new batch); the timed window is the write (plain) or `ingest.run` (contract) alone.

Checked after every run: plain wrote --rows rows; each contract side's report says
"written", every row read was written or quarantined, the clean sides quarantined none
and the 1% side some, and the Delta tables on disk hold those rows.

    uv run python benchmarks/ingest_contract.py [--rows 5000000] [--rounds 3]
    uv run python benchmarks/ingest_contract.py --smoke   # seconds: checks the work only

`--repeat N` (the best of N before) is now an alias of `--rounds N` (their median).
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from pathlib import Path

import harness
import pyarrow.parquet as pq

from batchml.jobs import ingest
from batchml.lib.data.synthetic import agrawal
from batchml.lib.delta.delta_log import open_snapshot
from batchml.lib.platform.config import load_config
from batchml.lib.platform.logs import configure_logging

CONTRACT = """
[tables.people]
policy = "quarantine"
{unique}

[tables.people.columns]
id = {{ type = "bigint", nullable = false }}
salary = {{ type = "double", min = 20000, max = {salary_max} }}
commission = {{ type = "double", min = 0 }}
age = {{ type = "int", min = 20, max = 80 }}
elevel = {{ type = "int", allowed = [0, 1, 2, 3, 4] }}
car = {{ type = "int", min = 1, max = 20 }}
zipcode = {{ type = "int", allowed = [0, 1, 2, 3, 4, 5, 6, 7, 8] }}
hvalue = {{ type = "double" }}
hyears = {{ type = "int" }}
loan = {{ type = "double" }}
label = {{ type = "int" }}

[sources.people]
table = "people"
path = "{csv}"
format = "csv"
options = {{ header = true }}
mode = "overwrite"
"""
TYPED_SCHEMA = (
    "id bigint, salary double, commission double, age int, elevel int, car int, zipcode int, "
    "hvalue double, hyears int, loan double, label int"
)
# side -> (the contract's unique-key line, salary's max): Agrawal salaries are uniform
# on [20000, 150000], so a max of 148,700 puts about 1% of the rows in quarantine
CONTRACTS = {
    "contract": ("", 150_000),
    "contract + unique key": ('unique_key = ["id"]', 150_000),
    "contract, 1% bad": ("", 148_700),
}


def delta_rows(folder: Path) -> int:
    """Rows of a Delta table by its log's statistics; 0 when no table was written."""
    if not (folder / "_delta_log").exists():
        return 0
    return sum(open_snapshot(str(folder)).add_actions().column("num_records").to_pylist())


def land_csv(spark, csv_dir: Path, rows: int) -> None:
    """The CSV source, written once; kept in --workdir and reused when the size matches."""
    marker = csv_dir.parent / "raw_people.rows"
    if csv_dir.exists() and marker.exists() and marker.read_text() == str(rows):
        return
    shutil.rmtree(csv_dir, ignore_errors=True)
    agrawal(spark, rows, seed=1).write.option("header", "true").csv(str(csv_dir))
    marker.write_text(str(rows))


def main(argv: list[str] | None = None) -> dict[str, object]:
    parser = harness.arguments(__doc__)
    parser.add_argument(
        "--repeat",
        dest="rounds",
        type=int,
        default=argparse.SUPPRESS,
        help="the former name of --rounds",
    )
    parser.add_argument("--rows", type=int, default=5_000_000)
    args = harness.parse(parser, argv, rows=2000)
    work = harness.workdir(args, "ingest-contract").resolve()
    csv_dir = work / "raw_people"
    configure_logging("WARNING")
    lakes = {side: work / f"lake_{index}" for index, side in enumerate(CONTRACTS)}
    plain_dir = work / "plain_parquet"
    base = [
        'spark.master="local[2]"',
        'delta.backend="embedded"',
        "spark.driver_memory=6g",
    ]
    # the session's own folders (event log, checkpoints) under `work`, not in a side's
    # lakehouse: those are removed before every run
    session_settings = load_config(
        overrides=[*base, f'lakehouse.root="{work}"'], environ={}
    ).settings
    settings = {}
    for side, (unique, salary_max) in CONTRACTS.items():
        conf = work / f"contract_{list(CONTRACTS).index(side)}.toml"
        conf.write_text(
            CONTRACT.format(unique=unique, csv=f"{csv_dir}/*.csv", salary_max=salary_max)
        )
        settings[side] = load_config(
            conf_file=conf,
            overrides=[*base, f'lakehouse.root="{lakes[side]}"'],
            environ={},
        ).settings

    with harness.session(session_settings) as spark:
        land_csv(spark, csv_dir, args.rows)
        csv_bytes = sum(p.stat().st_size for p in csv_dir.glob("*.csv"))

        def plain() -> harness.Timed:
            started = time.perf_counter()
            spark.read.schema(TYPED_SCHEMA).option("header", "true").csv(
                f"{csv_dir}/*.csv"
            ).write.parquet(str(plain_dir))
            seconds = time.perf_counter() - started
            parts = plain_dir.glob("*.parquet")
            written = sum(pq.ParquetFile(part).metadata.num_rows for part in parts)
            assert written == args.rows, ("plain", written, args.rows)
            return harness.Timed(seconds, {"rows_written": written})

        def contract(side: str):
            def run() -> harness.Timed:
                started = time.perf_counter()
                report = ingest.run(spark, settings[side], ingest.IngestRequest("people"))
                seconds = time.perf_counter() - started
                # a run that found its files already ingested writes nothing: a no-op
                assert report.status in ("written", "written_with_quarantine"), report
                assert report.rows_read == args.rows, (side, report.rows_read)
                assert report.rows_written + report.rows_quarantined == args.rows, report
                if side == "contract, 1% bad":
                    assert report.rows_quarantined > 0, (side, report)
                else:
                    assert report.rows_quarantined == 0, (side, report)
                on_disk = delta_rows(Path(report.table_uri))
                quarantined = delta_rows(Path(report.quarantine_uri))
                assert on_disk == report.rows_written, (side, on_disk, report.rows_written)
                assert quarantined == report.rows_quarantined, (side, quarantined)
                return harness.Timed(
                    seconds,
                    {"rows_written": on_disk, "rows_quarantined": quarantined},
                )

            return run

        def clear(side: str) -> None:
            # a fresh batch every run: the table, its quarantine and the ledger (with the
            # ledger, the files would be recognised as ingested and nothing written)
            shutil.rmtree(lakes.get(side, plain_dir), ignore_errors=True)

        sides = harness.side_by_side(
            {"plain": plain, **{side: contract(side) for side in CONTRACTS}},
            rounds=args.rounds,
            warmup=args.warmup,
            before=clear,
            label="ingest",
        )
        results = {
            **harness.header(args),
            "spark": spark.version,
            "memory_cap": "none (every side in one process)",
            "rows": args.rows,
            "csv_mb": round(csv_bytes / 1e6, 1),
            "rules": 10,
            **sides.figures(),
            "last_round_rows": {side: result.value for side, result in sides.results.items()},
            "ratios": {
                f"{side} / plain": round(sides.ratio(side, "plain"), 3) for side in CONTRACTS
            },
        }
    if args.workdir is None:  # a folder of our own: its CSV is not kept for reuse
        shutil.rmtree(work, ignore_errors=True)
    print(json.dumps(results, indent=2))
    return results


if __name__ == "__main__":
    main()
