"""Stopping a job cleanly: SIGTERM (a scheduler's stop) and Ctrl-C (SIGINT).

Python's default SIGTERM ends the process on the spot, skipping every `finally`, so a
write's staging folder would stay behind. The handler installed here cancels the
running Spark jobs and raises `Terminated` in the main thread instead: the Delta writer's
clean-up runs (staged files removed when nothing was committed; a commit already in the
log is kept whole), and the command exits 143. Ctrl-C does the same through
`Interrupted` once a Spark session runs (KeyboardInterrupt before) and exits 130.
"""

from __future__ import annotations

import signal
import threading
from types import FrameType

EXIT_SIGINT = 130  # 128 + SIGINT
EXIT_SIGTERM = 143  # 128 + SIGTERM


class Terminated(BaseException):
    """The process was asked to stop (SIGTERM); a BaseException so that no
    `except Exception` swallows it."""


class Interrupted(BaseException):
    """Ctrl-C while a Spark session runs. Not a KeyboardInterrupt: Py4J catches that one
    inside a call to the JVM and logs it with a traceback on stderr."""


def _on_sigterm(signum: int, frame: FrameType | None) -> None:
    from batchml.lib.spark.jvm import interrupt_jobs

    interrupt_jobs(frame)  # the running Spark jobs cancelled, a busy Py4J link reset
    raise Terminated()


def _on_sigint(signum: int, frame: FrameType | None) -> None:
    from batchml.lib.spark.jvm import interrupt_jobs

    interrupt_jobs(frame)
    raise Interrupted()


def install_interrupt_handler() -> None:
    """Ctrl-C as SIGTERM, raising `Interrupted`, once a command has started its Spark
    session: PySpark's own handler cancels the jobs on the main thread's Py4J
    connection, which fails while that thread waits on it (see `interrupt_jobs`), and the
    jobs ran on. A no-op off the main thread."""
    from batchml.lib.spark.jvm import start_canceller

    if threading.current_thread() is threading.main_thread():
        start_canceller()
        signal.signal(signal.SIGINT, _on_sigint)


def install_termination_handler() -> None:
    """Make SIGTERM raise `Terminated` in the main thread (a no-op elsewhere)."""
    from batchml.lib.spark.jvm import start_canceller

    if threading.current_thread() is threading.main_thread():
        start_canceller()
        signal.signal(signal.SIGTERM, _on_sigterm)
