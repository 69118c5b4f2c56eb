"""What a run cost, from Spark's own listener data: the driver's status store.

Spark keeps every job, stage and executor it has seen in its status store (the data
behind the web UI and the History Server), whether or not the UI is on. A run notes the
last job id before it starts; at its end the stages of the jobs after it are summed.
The store is read through the same Jackson mapper as Spark's REST API: one call per job
and per stage of the run, each returning every figure of it.

Peak JVM heap comes from the executors' memory samples (`spark.executor.metrics.
pollingInterval`): per executor since it started, so in a session shared by several runs
(tests, a notebook) it is the session's peak, not the run's.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from batchml.lib.spark.jvm import StatusStore, peak_heap

if TYPE_CHECKING:  # the runs module imports this one at start-up: no pyspark import here
    from pyspark import SparkContext

# runs-table column -> (stage field, scale): sums over the run's stages
STAGE_SUMS = {
    "task_time_ms": ("executorRunTime", 1),
    "executor_cpu_time_ms": ("executorCpuTime", 1e-6),  # Spark counts CPU time in ns
    "jvm_gc_time_ms": ("jvmGcTime", 1),
    "input_bytes": ("inputBytes", 1),
    "output_bytes": ("outputBytes", 1),
    "shuffle_read_bytes": ("shuffleReadBytes", 1),
    "shuffle_write_bytes": ("shuffleWriteBytes", 1),
    "memory_spilled_bytes": ("memoryBytesSpilled", 1),
    "disk_spilled_bytes": ("diskBytesSpilled", 1),
}
RESOURCE_COLUMNS = (
    "jobs",
    "stages",
    "tasks",
    "failed_tasks",
    *STAGE_SUMS,
    "peak_execution_memory_bytes",
    "driver_peak_heap_bytes",
    "executor_peak_heap_bytes",
)


@dataclass(frozen=True)
class Mark:
    """The last job id a session had run when a run started."""

    job: int


def mark(sc: SparkContext) -> Mark:
    """Where the session's job numbering stands now."""
    return Mark(job=max(sc.statusTracker().getJobIdsForGroup(None), default=-1))


def resources_since(sc: SparkContext, since: Mark) -> dict[str, int | None]:
    """The resources Spark measured for the jobs after `since` and their stages: one
    status-store read per job and per stage of the run, whatever the session ran before."""
    store = StatusStore(sc)
    job_ids = sorted(j for j in sc.statusTracker().getJobIdsForGroup(None) if j > since.job)
    stage_ids: set[int] = set()
    for job_id in job_ids:
        stage_ids.update(store.job(job_id)["stageIds"])
    stages: list[
        dict[str, Any]
    ] = []  # every attempt of every stage that ran (a skipped stage did not)
    for stage_id in sorted(stage_ids):
        try:
            attempts = store.stage_attempts(stage_id)
        except Exception:  # evicted from the store (spark.ui.retainedStages)
            continue
        stages.extend(a for a in attempts if a["status"] != "SKIPPED")
    figures: dict[str, int | None] = {
        "jobs": len(job_ids),
        "stages": len({s["stageId"] for s in stages}),
        "tasks": sum(s["numCompleteTasks"] + s["numFailedTasks"] for s in stages),
        "failed_tasks": sum(s["numFailedTasks"] for s in stages),
        "peak_execution_memory_bytes": max((s["peakExecutionMemory"] for s in stages), default=0),
    }
    for column, (field, scale) in STAGE_SUMS.items():
        figures[column] = round(sum(s.get(field) or 0 for s in stages) * scale)
    driver_heap, executor_heap = 0, None  # local mode: the driver is the only executor
    for executor in store.executors():
        peak = (executor.get("peakMemoryMetrics") or {}).get("JVMHeapMemory") or 0
        if executor["id"] == "driver":
            driver_heap = peak
        else:
            executor_heap = max(executor_heap or 0, peak)
    figures["driver_peak_heap_bytes"] = driver_heap or peak_heap(sc)
    figures["executor_peak_heap_bytes"] = executor_heap
    return figures
