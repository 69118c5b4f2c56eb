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
    uv run python benchmarks/ingest_hashing.py --smoke   # seconds: checks the work only
"""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path

import harness
import ingest_growing_folder as growing

from batchml.jobs import ingest
from batchml.lib.platform.config import load_config
from batchml.lib.platform.logs import configure_logging

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


def ingest_once(spark, work: Path, landing: Path, hashed: bool) -> harness.Timed:
    """A fresh lake each time (removed untimed): the first ingest of every file in
    `landing`, every line written."""
    lake = work / f"lake_{hashed}"
    shutil.rmtree(lake, ignore_errors=True)
    settings = settings_for(work, landing, lake, hashed)
    started = time.perf_counter()
    report = ingest.run(spark, settings, ingest.IngestRequest("events"))
    seconds = time.perf_counter() - started
    assert report.status == "written", report.message
    lines = sum(len(path.read_bytes().splitlines()) - 1 for path in landing.iterdir())
    assert report.rows_written == lines, (report.rows_written, lines)
    return harness.Timed(seconds, report.rows_written)


def compare(spark, work: Path, landing: Path, args) -> dict[str, object]:
    sides = harness.side_by_side(
        {
            "hashed": lambda: ingest_once(spark, work, landing, True),
            "not hashed": lambda: ingest_once(spark, work, landing, False),
        },
        rounds=args.rounds,
        warmup=args.warmup,
        label=landing.name,
    )
    return {**sides.figures(), "ratio_hashed_to_not": round(sides.ratio("hashed", "not hashed"), 3)}


def reupload(spark, work: Path, landing: Path, args) -> dict[str, object]:
    """No-op runs over unchanged files against no-op runs after a re-upload.

    Each side has its own copy of the files and its own lake (a skipped run records
    nothing, so a file touched once would be hashed on every later run of that lake):
    the "unchanged" side's files keep the times the ledger recorded (no file opened),
    the "re-uploaded" side's files get a new time before each of its runs (untimed), so
    each of its runs reads and hashes every file to find the bytes unchanged."""
    requests, settings = {}, {}
    for side in ("unchanged", "re-uploaded"):
        copy = work / f"reupload_{side.replace('-', '')}"
        shutil.rmtree(copy, ignore_errors=True)
        shutil.copytree(landing, copy / "files")
        settings[side] = settings_for(work, copy / "files", copy / "lake", True)
        requests[side] = ingest.IngestRequest("events")
        assert ingest.run(spark, settings[side], requests[side]).status == "written"

    def noop(side: str):
        def run() -> None:
            report = ingest.run(spark, settings[side], requests[side])
            assert report.status == "skipped", report.message

        return run

    def touch_all(side: str) -> None:
        if side != "re-uploaded":
            return
        folder = work / "reupload_reuploaded" / "files"
        for path in folder.iterdir():
            stat = path.stat()
            os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))

    sides = harness.side_by_side(
        {"unchanged": noop("unchanged"), "re-uploaded": noop("re-uploaded")},
        rounds=args.rounds,
        warmup=args.warmup,
        before=touch_all,
        label="re-upload",
    )
    return {
        **sides.figures(),
        "ratio_reupload_to_unchanged": round(sides.ratio("re-uploaded", "unchanged"), 3),
    }


def main(argv: list[str] | None = None) -> dict[str, object]:
    parser = harness.arguments(__doc__)
    parser.add_argument("--mb", type=int, default=512)
    parser.add_argument("--files", type=int, default=5000)
    args = harness.parse(parser, argv, mb=1, files=20)
    work = harness.workdir(args, "hash")
    configure_logging("WARNING", "text")
    settings = settings_for(work, work / "none", work / "lake", True)
    try:
        with harness.session(settings) as spark:
            big, small = work / "big", work / "small"
            land_big(big, args.mb)
            land_small(small, args.files)
            results = {
                **harness.header(args),
                f"big_file_{args.mb}mb": compare(spark, work, big, args),
                f"small_files_{args.files}": compare(spark, work, small, args),
                f"reupload_{args.files}": reupload(spark, work, small, args),
            }
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(json.dumps(results, indent=2))
    return results


if __name__ == "__main__":
    main()
