"""Progress of long Spark work: a bar on a terminal, periodic log lines elsewhere.

A daemon thread polls Spark's status tracker for the jobs of one job group, so it shows
only this piece of work: the running stage with its completed / total tasks, the jobs
finished so far and the time spent. On a terminal it redraws one line on stderr; when
stderr is not a terminal (a scheduler's log) it logs a line every `interval` seconds.
"""

from __future__ import annotations

import sys
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TextIO

from pyspark.sql import SparkSession

from batchml.lib.platform.logs import get_logger

log = get_logger(__name__)
BAR_WIDTH = 24


@dataclass(frozen=True)
class Snapshot:
    """What the job group is doing at one moment."""

    jobs_done: int
    jobs_running: int
    stage: str | None
    tasks_done: int
    tasks_total: int
    seconds: float

    def line(self, label: str) -> str:
        elapsed = _clock(self.seconds)
        if self.stage is None or not self.tasks_total:
            return f"{label}: {self.jobs_done} Spark jobs done, {elapsed}"
        return (
            f"{label}: {self.stage}, tasks {self.tasks_done}/{self.tasks_total}, "
            f"{self.jobs_done} Spark jobs done, {elapsed}"
        )

    def bar(self, label: str) -> str:
        share = self.tasks_done / self.tasks_total if self.tasks_total else 0.0
        filled = int(share * BAR_WIDTH)
        bar = "#" * filled + "-" * (BAR_WIDTH - filled)
        stage = self.stage or "waiting"
        return (
            f"{label} [{bar}] {self.tasks_done}/{self.tasks_total} {stage[:40]} · "
            f"jobs {self.jobs_done} · {_clock(self.seconds)}"
        )


def snapshot(spark: SparkSession, group: str, started: float) -> Snapshot:
    """The state of the jobs of `group`, read from Spark's status tracker."""
    tracker = spark.sparkContext.statusTracker()
    done = running = 0
    stage_name, tasks_done, tasks_total = None, 0, 0
    for job_id in tracker.getJobIdsForGroup(group):
        job = tracker.getJobInfo(job_id)
        if job is None:
            continue
        if job.status == "RUNNING":
            running += 1
            for stage_id in job.stageIds:
                stage = tracker.getStageInfo(stage_id)
                if stage is None:
                    continue
                started_stage = stage.numActiveTasks + stage.numCompletedTasks
                if started_stage and stage.numCompletedTasks < stage.numTasks:
                    stage_name = f"stage {stage_id} ({stage.name.split(' at ')[0]})"
                    tasks_done, tasks_total = stage.numCompletedTasks, stage.numTasks
        elif job.status == "SUCCEEDED":
            done += 1
    return Snapshot(done, running, stage_name, tasks_done, tasks_total, time.monotonic() - started)


@contextmanager
def progress(
    spark: SparkSession,
    label: str,
    *,
    interval: float = 30.0,
    stream: TextIO | None = None,
    terminal: bool | None = None,
) -> Iterator[str]:
    """Report the Spark jobs started inside the block; yields the job group's id.

    `terminal` defaults to whether `stream` (stderr) is a TTY: a bar redrawn twice a
    second there, a log line every `interval` seconds otherwise.
    """
    stream = stream or sys.stderr
    if terminal is None:
        terminal = hasattr(stream, "isatty") and stream.isatty()
    context = spark.sparkContext
    group = f"batchml-{uuid.uuid4().hex[:8]}"
    context.setJobGroup(group, label)
    started = time.monotonic()
    stop = threading.Event()

    def watch() -> None:
        period = 0.5 if terminal else interval
        while not stop.wait(period):
            try:
                state = snapshot(spark, group, started)
            except Exception:  # a failed poll must never fail the job
                continue
            if terminal:
                stream.write("\r\033[K" + state.bar(label))
                stream.flush()
            else:
                tasks = (
                    {"tasks_done": state.tasks_done, "tasks_total": state.tasks_total}
                    if state.tasks_total
                    else {}
                )  # no stage running: no task counts
                log.info(state.line(label), extra={"jobs_done": state.jobs_done, **tasks})

    thread = threading.Thread(target=watch, name=f"progress-{group}", daemon=True)
    thread.start()
    try:
        yield group
    finally:
        stop.set()
        thread.join(timeout=5)
        # PySpark types both as str: None (null in the JVM) clears the job group
        context.setJobGroup(None, None)  # type: ignore[arg-type]
        if terminal:
            stream.write("\r\033[K")
            stream.flush()
        final = snapshot(spark, group, started)
        log.info(f"{label}: finished, {final.jobs_done} Spark jobs, {_clock(final.seconds)}")


def _clock(seconds: float) -> str:
    minutes, rest = divmod(int(seconds), 60)
    return f"{minutes}:{rest:02d}"
