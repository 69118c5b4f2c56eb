"""What a run cost, from Spark's own listener data: the driver's status store.

Spark keeps every job, stage and executor it has seen in its status store (the data
behind the web UI and the History Server), whether or not the UI is on. A run notes the
last job and stage id before it starts; at its end the stages after those are summed.
The store is read through the same Jackson mapper as Spark's REST API, one call per
list, so a run with thousands of stages costs one round trip, not one per figure.

Peak JVM heap comes from the executors' memory samples (`spark.executor.metrics.
pollingInterval`): per executor since it started, so in a session shared by several runs
(tests, a notebook) it is the session's peak, not the run's.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

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
    """The last job and stage ids a session had run when a run started."""

    job: int
    stage: int


def _store_json(sc: SparkContext, what: str) -> list[dict[str, Any]]:
    jvm = sc._jvm
    store = sc._jsc.sc().statusStore()
    mapper = jvm.com.fasterxml.jackson.databind.ObjectMapper()
    scala_module = getattr(jvm.com.fasterxml.jackson.module.scala, "DefaultScalaModule$")
    mapper.registerModule(scala_module.__getattr__("MODULE$"))
    if what == "stages":
        # stageList(statuses, details, withSummaries, unsortedQuantiles, taskStatus)
        listed = store.stageList(
            None, False, False, sc._gateway.new_array(jvm.double, 0), jvm.java.util.ArrayList()
        )
    elif what == "jobs":
        listed = store.jobsList(None)
    else:
        listed = store.executorList(False)
    return json.loads(mapper.writeValueAsString(listed))


def mark(sc: SparkContext) -> Mark:
    """Where the session's job and stage numbering stands now."""
    jobs = _store_json(sc, "jobs")
    stages = _store_json(sc, "stages")
    return Mark(
        job=max((j["jobId"] for j in jobs), default=-1),
        stage=max((s["stageId"] for s in stages), default=-1),
    )


def resources_since(sc: SparkContext, since: Mark) -> dict[str, int | None]:
    """The resources Spark measured for the jobs and stages after `since`."""
    jobs = [j for j in _store_json(sc, "jobs") if j["jobId"] > since.job]
    stages = [s for s in _store_json(sc, "stages") if s["stageId"] > since.stage]
    figures: dict[str, int | None] = {
        "jobs": len(jobs),
        "stages": len({s["stageId"] for s in stages}),
        "tasks": sum(s["numCompleteTasks"] + s["numFailedTasks"] for s in stages),
        "failed_tasks": sum(s["numFailedTasks"] for s in stages),
        "peak_execution_memory_bytes": max((s["peakExecutionMemory"] for s in stages), default=0),
    }
    for column, (field, scale) in STAGE_SUMS.items():
        figures[column] = round(sum(s.get(field) or 0 for s in stages) * scale)
    driver_heap, executor_heap = 0, None  # local mode: the driver is the only executor
    for executor in _store_json(sc, "executors"):
        peak = (executor.get("peakMemoryMetrics") or {}).get("JVMHeapMemory") or 0
        if executor["id"] == "driver":
            driver_heap = peak
        else:
            executor_heap = max(executor_heap or 0, peak)
    figures["driver_peak_heap_bytes"] = driver_heap or _jvm_peak_heap(sc)
    figures["executor_peak_heap_bytes"] = executor_heap
    return figures


def _jvm_peak_heap(sc: SparkContext) -> int:
    """The driver JVM's own peak heap use (its memory pools), for a run shorter than the
    first memory sample reaching the status store."""
    management = sc._jvm.java.lang.management.ManagementFactory
    peak = 0
    for pool in management.getMemoryPoolMXBeans():
        if str(pool.getType().toString()) == "Heap memory":
            peak += pool.getPeakUsage().getUsed()
    return int(peak)
