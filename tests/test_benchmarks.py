"""Every benchmark's smoke size, in the test session: each script asserts that each of
its sides did the work it is timed for (rows written, models registered, metrics equal
to the baseline's), so a timed no-op fails here, not in a published figure."""

from __future__ import annotations

import importlib
import json
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parent.parent / "benchmarks"
SHARED = {"harness", "baselines"}  # modules the scripts import, not benchmarks
SCRIPTS = sorted(p.stem for p in BENCHMARKS.glob("*.py") if p.stem not in SHARED)


def test_every_script_is_here() -> None:
    assert len(SCRIPTS) >= 17, SCRIPTS  # a script dropped by a bad rename fails here


@pytest.mark.parametrize("name", SCRIPTS)
def test_smoke_size_does_the_work(name: str, spark, tmp_path: Path, capsys) -> None:
    module = importlib.import_module(name)
    results = module.main(["--smoke", "--workdir", str(tmp_path / "work")])
    printed = capsys.readouterr().out
    assert isinstance(results, dict) and results, f"{name}.main returned {results!r}"
    assert results.get("smoke") is True, "the figures of a smoke run must say so"
    # the figures printed are the ones returned, as JSON or a table a user can read
    assert printed.strip(), f"{name} printed nothing"
    if printed.lstrip().startswith("{"):
        assert json.loads(printed) == json.loads(json.dumps(results))
