"""What the JVM prints on stderr, sorted: library chatter to the debug log, the rest through.

A scheduler's log of a batchml run should hold batchml's own lines. The JVM (and the
Python workers it starts, whose output it copies to its own stderr) also prints lines
no setting silences: netlib's native BLAS probe (`netlib-blas: JNI_OnLoad: dlopen(...)`,
printed by C code when no system BLAS is installed), datasketches' note on Java 17
(`Warning: Java versions > Java 11 ...`), the JDK's incubator-module warning, and
xgboost's tracker lines (`[19:05:53] Task 0 got rank 0`). When batchml launches the JVM
itself (local mode, not under spark-submit) its stderr comes through a pipe: those lines
are logged at DEBUG (shown with `--verbose`), every other line goes to stderr unchanged.
"""

from __future__ import annotations

import re
import sys
import threading
from typing import IO

from batchml.lib.platform.logs import get_logger

log = get_logger("batchml.jvm")

LIBRARY_NOISE = re.compile(
    r"netlib-blas: JNI_OnLoad"
    r"|^WARNING: Using incubator modules"
    r"|^Warning: Java versions > Java 11"
    r"|^\[\d\d:\d\d:\d\d\] "  # xgboost's native log lines (tracker, ranks)
    r"|^Setting default log level to"
    r"|^To adjust logging level use sc.setLogLevel"
)


def is_library_noise(line: str) -> bool:
    """Whether a JVM stderr line is library chatter rather than something for the user."""
    return bool(LIBRARY_NOISE.search(line))


def relay(stream: IO[bytes], *, verbose: bool) -> threading.Thread:
    """Drain the JVM's stderr in a daemon thread, sorting each line (see module doc)."""

    def pump() -> None:
        for raw in iter(stream.readline, b""):
            line = raw.decode("utf-8", errors="replace").rstrip("\n")
            if not verbose and is_library_noise(line):
                log.debug("jvm: %s", line)
                continue
            try:
                sys.stderr.write(line + "\n")
                sys.stderr.flush()
            except (ValueError, OSError):  # stderr closed (a finished CLI test's capture)
                if sys.__stderr__ is not None:  # None only without a console (pythonw)
                    sys.__stderr__.write(line + "\n")

    thread = threading.Thread(target=pump, name="jvm-stderr", daemon=True)
    thread.start()
    return thread
