"""Stopping a job cleanly: SIGTERM (a scheduler's stop) and Ctrl-C (SIGINT).

Python's default SIGTERM ends the process on the spot, skipping every `finally`, so a
write's staging folder would stay behind. The handler installed here cancels the
running Spark jobs and raises `Terminated` in the main thread instead: the Delta writer's
clean-up runs (staged files removed when nothing was committed; a commit already in the
log is kept whole), and the command exits 143. Ctrl-C does the same through
KeyboardInterrupt (PySpark's own SIGINT handler cancels the jobs) and exits 130.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from types import FrameType

EXIT_SIGINT = 130  # 128 + SIGINT
EXIT_SIGTERM = 143  # 128 + SIGTERM


class Terminated(BaseException):
    """The process was asked to stop (SIGTERM); a BaseException so that no
    `except Exception` swallows it."""


def _on_sigterm(signum: int, frame: FrameType | None) -> None:
    from pyspark import SparkContext

    context = SparkContext._active_spark_context
    if context is not None:
        with contextlib.suppress(Exception):  # stopping anyway
            context.cancelAllJobs()
    raise Terminated()


def install_termination_handler() -> None:
    """Make SIGTERM raise `Terminated` in the main thread (a no-op elsewhere)."""
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _on_sigterm)
