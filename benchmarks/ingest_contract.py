"""The price of a data contract: `batchml ingest` vs Spark writing the same CSV unchecked.

One CSV source of N rows (Agrawal attributes, written once by Spark). Measured, best of R:
  (plain)    spark.read.schema(<typed schema>).csv(...).write.parquet(...)
  (contract) the ingest job: read as strings, try_cast, 10 row rules in one projection,
             quarantine split, Delta commits (embedded backend), idempotency check
  (contract + unique key) the same plus a unique-key rule (a window: one shuffle)
  (contract, 1% bad) a batch in which ~1% of rows break a rule: the quarantine is written
             from a second parse of the files

    uv run python benchmarks/ingest_contract.py [--rows 5000000] [--repeat 2]
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from batchml.jobs import ingest
from batchml.lib.data.synthetic import agrawal
from batchml.lib.platform.config import load_config
from batchml.lib.platform.logs import configure_logging
from batchml.lib.spark.session import build_session

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


def best_of(repeat: int, action: Callable[[], object]) -> float:
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        action()
        times.append(time.perf_counter() - started)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=5_000_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--workdir", type=Path, default=None)
    args = parser.parse_args()

    work = (args.workdir or Path(tempfile.mkdtemp(prefix="batchml-ingest-bench-"))).resolve()
    csv_dir = work / "raw_people"
    base = [
        'spark.master="local[2]"',
        'delta.backend="embedded"',
        "spark.driver_memory=6g",
        f'lakehouse.root="{work}"',
    ]
    configure_logging("WARNING")
    settings = {}
    variants = (
        ("contract", "", 150_000),
        ("contract_unique", 'unique_key = ["id"]', 150_000),
        ("contract_1pct_bad", "", 148_700),  # about 1% of salaries break max: a quarantine
    )
    for name, unique, salary_max in variants:
        conf = work / f"{name}.toml"
        work.mkdir(parents=True, exist_ok=True)
        conf.write_text(
            CONTRACT.format(unique=unique, csv=f"{csv_dir}/*.csv", salary_max=salary_max)
        )
        settings[name] = load_config(conf_file=conf, overrides=base).settings
    spark = build_session(settings["contract"])
    if not csv_dir.exists():
        agrawal(spark, args.rows, seed=1).write.option("header", "true").csv(str(csv_dir))
    csv_bytes = sum(p.stat().st_size for p in csv_dir.glob("*.csv"))

    def plain() -> None:
        out = work / "plain_parquet"
        shutil.rmtree(out, ignore_errors=True)
        spark.read.schema(TYPED_SCHEMA).option("header", "true").csv(
            f"{csv_dir}/*.csv"
        ).write.parquet(str(out))

    def contract(name: str) -> Callable[[], object]:
        def run() -> object:
            shutil.rmtree(work / "people", ignore_errors=True)  # a fresh batch every time
            shutil.rmtree(work / "people_quarantine", ignore_errors=True)
            # and a fresh ledger: with it the files would be recognised as ingested
            shutil.rmtree(work / "_ingest", ignore_errors=True)
            return ingest.run(spark, settings[name], ingest.IngestRequest("people"))

        return run

    plain()  # warm-up (JIT, file cache)
    results = {
        "plain_parquet_seconds": best_of(args.repeat, plain),
        "contract_seconds": best_of(args.repeat, contract("contract")),
        "contract_unique_key_seconds": best_of(args.repeat, contract("contract_unique")),
        "contract_1pct_bad_seconds": best_of(args.repeat, contract("contract_1pct_bad")),
    }
    bad = contract("contract_1pct_bad")()
    results["bad_variant_rows_quarantined"] = bad.rows_quarantined
    report = contract("contract")()
    assert report.rows_written + report.rows_quarantined == args.rows, report
    results["rows_written"] = report.rows_written
    results["rows_quarantined"] = report.rows_quarantined
    ratios = {
        "contract / plain": results["contract_seconds"] / results["plain_parquet_seconds"],
        "contract + unique key / plain": results["contract_unique_key_seconds"]
        / results["plain_parquet_seconds"],
        "contract, 1% rows quarantined / plain": results["contract_1pct_bad_seconds"]
        / results["plain_parquet_seconds"],
    }
    print(
        json.dumps(
            {
                "date": datetime.now(UTC).isoformat(timespec="seconds"),
                "machine": f"{platform.machine()}, {spark.sparkContext.defaultParallelism} cores "
                f"(local[2]), Python {platform.python_version()}, Spark {spark.version}",
                "rows": args.rows,
                "csv_mb": round(csv_bytes / 1e6, 1),
                "rules": 10,
                "seconds": {
                    k: round(v, 3) if isinstance(v, float) else v for k, v in results.items()
                },
                "ratios": {k: round(v, 3) for k, v in ratios.items()},
            },
            indent=2,
        )
    )
    spark.stop()


if __name__ == "__main__":
    main()
