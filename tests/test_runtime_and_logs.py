from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from batchml.lib.platform.errors import EnvironmentProblem
from batchml.lib.platform.logs import JsonLineFormatter, TextFormatter
from batchml.lib.platform.runtime import java_info, memory_bytes


def fake_java(tmp_path: Path, banner: str) -> Path:
    home = tmp_path / "jdk"
    (home / "bin").mkdir(parents=True)
    java = home / "bin" / "java"
    java.write_text(f"#!/bin/sh\necho '{banner}' >&2\n")
    java.chmod(0o755)
    return home


@pytest.mark.parametrize(
    ("banner", "major"),
    [
        ('openjdk version "17.0.15" 2025-04-15', 17),
        ('openjdk version "21" 2023-09-19', 21),
        ('java version "22-ea"', 22),
    ],
)
def test_java_info_reads_the_major_version(tmp_path: Path, banner: str, major: int) -> None:
    home = fake_java(tmp_path, banner)
    info = java_info({"JAVA_HOME": str(home)})
    assert info.major == major
    assert info.path == str(home / "bin" / "java")


def test_java_info_rejects_old_and_missing_java(tmp_path: Path) -> None:
    home = fake_java(tmp_path, 'openjdk version "11.0.2" 2019-01-15')
    with pytest.raises(EnvironmentProblem, match=r"Java 11\.0\.2 at .* is too old"):
        java_info({"JAVA_HOME": str(home)})
    with pytest.raises(EnvironmentProblem, match=r"Java not found \(looked in PATH\)"):
        java_info({"PATH": str(tmp_path / "empty")})


def test_memory_bytes() -> None:
    assert memory_bytes("2g") == 2 * 1024**3
    assert memory_bytes("512M") == 512 * 1024**2
    assert memory_bytes("1024") == 1024
    with pytest.raises(ValueError, match="not a memory size"):
        memory_bytes("two gigs")


def record(message: str, **extra) -> logging.LogRecord:
    rec = logging.makeLogRecord({"name": "batchml.test", "levelname": "INFO", "msg": message})
    rec.__dict__.update(extra)
    return rec


def test_json_log_lines_carry_extra_fields() -> None:
    line = JsonLineFormatter().format(record("wrote table", table="flights", version=3))
    payload = json.loads(line)
    assert payload["message"] == "wrote table"
    assert payload["logger"] == "batchml.test"
    assert (payload["table"], payload["version"]) == ("flights", 3)
    assert payload["ts"].endswith("+00:00")


def test_text_log_lines_are_one_line_with_extras() -> None:
    line = TextFormatter().format(record("wrote table", table="flights"))
    assert line.endswith('INFO    batchml.test: wrote table table="flights"')
