"""The JVM's stderr: library chatter goes to the debug log, everything else through."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from batchml.lib.spark.jvm_output import is_library_noise

WORKER = Path(__file__).with_name("jvm_noise_worker.py")


@pytest.mark.parametrize(
    ("line", "noise"),
    [
        ("netlib-blas: JNI_OnLoad: dlopen(libblas.so.3) failed: libblas.so.3: cannot open", True),
        ("WARNING: Using incubator modules: jdk.incubator.vector", True),
        ("Warning: Java versions > Java 11 can only operate in restricted mode.", True),
        ("[19:05:53] Task 0 got rank 0", True),
        ("26/12/04 19:05:53 ERROR Executor: Exception in task 0.0 in stage 3.0", False),
        ("java.lang.OutOfMemoryError: Java heap space", False),
    ],
)
def test_library_noise_is_told_apart(line: str, noise: bool) -> None:
    assert is_library_noise(line) is noise


@pytest.mark.parametrize("verbose", [False, True])
def test_the_jvm_stderr_holds_only_what_matters(tmp_path: Path, verbose: bool) -> None:
    args = [sys.executable, str(WORKER), str(tmp_path)] + (["--verbose"] if verbose else [])
    done = subprocess.run(args, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "a line of the JVM's own" in done.stderr
    assert ("restricted mode" in done.stderr) is verbose  # chatter: only with --verbose
    if not verbose:
        assert "netlib-blas" not in done.stderr and "incubator" not in done.stderr
