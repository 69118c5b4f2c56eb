"""What recording each raw file's SHA-256 costs ingest (`content_hash`, on by default).

Side by side in one run, both sides with the same warm-up (one ingest each, discarded),
the same rounds (alternating which side goes first) and the median of the rounds:
  (big file)     one CSV of --mb megabytes ingested into a new table, hashed vs not
  (small files)  --files small CSVs ingested into a new table as one batch, hashed vs not
  (re-upload)    the no-op run after every small file was uploaded again with a new
                 modification time: the ledger compares the bytes (hashed) against the
                 no-op run over files whose times did not change (what a run costs when
                 nothing moved)
Ratios: hashed / not hashed, re-upload / unchanged.

    uv run python benchmarks/ingest_hashing.py [--mb 512] [--files 5000] [--rounds 3]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import ingest_growing_folder as growing

from batchml.jobs import ingest
from batchml.lib.platform.config import load_config
from batchml.lib.platform.logs import configure_logging
from batchml.lib.spark.session import build_session

# the growing-folder benchmark's source, with and without hashes
CONTRACT = growing.CONTRACT + "content_hash = {hashed}\n"


def land_big(folder: Path, megabytes: int) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    line_block = "".join(f"{i},{'abc'[i % 3]},{i * 0.5}\n" for i in range(100_000))
    block = line_block.encode()
    with open(folder / "big.csv", "wb") as handle:
        handle.write(b"id,kind,value\n")
        written = 0
        while written < megabytes * 1024 * 1024:
            handle.write(block)
            written += len(block)


def land_small(folder: Path, count: int) -> None:
    growing.land(folder, 0, count)


def settings_for(work: Path, landing: Path, lake: Path, hashed: bool):
    conf = work / f"events_{hashed}.toml"
    conf.write_text(CONTRACT.format(landing=landing, hashed=str(hashed).lower()))
    return load_config(
        conf_file=conf,
        overrides=[
            f'lakehouse.root="{lake}"',
            'spark.master="local[2]"',
            "spark.shuffle_partitions=2",
            'delta.backend="embedded"',
            "runs.record=false",
        ],
        environ={},
    ).settings


def ingest_once(spark, work: Path, landing: Path, hashed: bool) -> float:
    """A fresh lake each time: the first ingest of every file in `landing`."""
    lake = work / f"lake_{hashed}"
    shutil.rmtree(lake, ignore_errors=True)
    settings = settings_for(work, landing, lake, hashed)
    started = time.perf_counter()
    report = ingest.run(spark, settings, ingest.IngestRequest("events"))
    seconds = time.perf_counter() - started
    assert report.status == "written", report.message
    return seconds


def side_by_side(spark, work: Path, landing: Path, rounds: int) -> dict[str, object]:
    for hashed in (True, False):  # warm-up, the same for both sides
        ingest_once(spark, work, landing, hashed)
    times: dict[bool, list[float]] = {True: [], False: []}
    for index in range(rounds):
        order = (True, False) if index % 2 == 0 else (False, True)
        for hashed in order:
            times[hashed].append(ingest_once(spark, work, landing, hashed))
    hashed, plain = statistics.median(times[True]), statistics.median(times[False])
    return {
        "hashed_s": [round(t, 3) for t in times[True]],
        "not_hashed_s": [round(t, 3) for t in times[False]],
        "hashed_median_s": round(hashed, 3),
        "not_hashed_median_s": round(plain, 3),
        "ratio_hashed_to_not": round(hashed / plain, 3),
    }


def reupload(spark, work: Path, landing: Path, rounds: int) -> dict[str, object]:
    """No-op runs over unchanged files against no-op runs after a re-upload."""
    lake = work / "lake_reupload"
    shutil.rmtree(lake, ignore_errors=True)
    settings = settings_for(work, landing, lake, True)
    request = ingest.IngestRequest("events")
    assert ingest.run(spark, settings, request).status == "written"
    ingest.run(spark, settings, request)  # warm-up of the no-op path

    def noop() -> float:
        started = time.perf_counter()
        report = ingest.run(spark, settings, request)
        assert report.status == "skipped", report.message
        return time.perf_counter() - started

    def touch_all() -> None:
        for path in landing.iterdir():
            stat = path.stat()
            os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))

    unchanged, uploaded = [], []
    for _ in range(rounds):
        unchanged.append(noop())
        touch_all()  # every file "uploaded again": same bytes, new time
        uploaded.append(noop())
    return {
        "unchanged_s": [round(t, 3) for t in unchanged],
        "reuploaded_s": [round(t, 3) for t in uploaded],
        "ratio_reupload_to_unchanged": round(
            statistics.median(uploaded) / statistics.median(unchanged), 3
        ),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mb", type=int, default=512)
    parser.add_argument("--files", type=int, default=5000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--workdir", type=Path, default=None)
    args = parser.parse_args()
    work = args.workdir or Path(tempfile.mkdtemp(prefix="bench_hash_"))
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    configure_logging("WARNING", "text")
    settings = settings_for(work, work / "none", work / "lake", True)
    spark = build_session(settings)
    try:
        big, small = work / "big", work / "small"
        land_big(big, args.mb)
        land_small(small, args.files)
        results = {
            "date": datetime.now(UTC).strftime("%Y-%m-%d"),
            "machine": f"{platform.machine()}, {os.cpu_count()} cores",
            "rounds": args.rounds,
            f"big_file_{args.mb}mb": side_by_side(spark, work, big, args.rounds),
            f"small_files_{args.files}": side_by_side(spark, work, small, args.rounds),
            f"reupload_{args.files}": reupload(spark, work, small, args.rounds),
        }
    finally:
        spark.stop()
        shutil.rmtree(work, ignore_errors=True)
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
