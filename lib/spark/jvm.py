"""Spark's private APIs, in one place (importing this module loads neither PySpark nor
NumPy: the runs table imports it at start-up).

PySpark's public API has no way to do a few things batchml needs, so these functions
reach into the JVM through Py4J (`SparkContext._jvm`, `._jsc`, `._gateway`,
`DataFrame._jdf`, `Observation._jo`). Each function names the private API it uses, why,
and what it does where that API is missing: under Spark Connect there is no JVM in the
Python process at all, and every one of them falls back or says so. No other module
touches an underscore attribute of PySpark (the xgboost.spark overrides stay in
`lib/training/xgboost_spark.py`, with their own guard).
"""

from __future__ import annotations

import json
import subprocess
from typing import TYPE_CHECKING, Any, cast

if TYPE_CHECKING:
    from pyspark import SparkConf, SparkContext
    from pyspark.sql import DataFrame, Observation, SparkSession


class NoJvm(RuntimeError):
    """The session has no JVM in this process (Spark Connect)."""


def _context(spark: SparkSession | SparkContext) -> SparkContext:
    return cast("SparkContext", getattr(spark, "sparkContext", spark))


def jvm(spark: SparkSession | SparkContext) -> Any:
    """`SparkContext._jvm`: the Py4J view of the JVM's classes (Hadoop's FileSystem, the
    management beans). Raises NoJvm under Spark Connect."""
    try:
        view = _context(spark)._jvm
    except Exception as exc:  # Spark Connect: sparkContext itself is not supported
        raise NoJvm(f"no JVM in this process: {exc}") from None
    if view is None:
        raise NoJvm("no JVM in this process")
    return view


def _gateway(sc: SparkContext) -> Any:
    """`SparkContext._gateway`, the Py4J gateway (set with `_jvm`). Raises NoJvm."""
    gateway = sc._gateway
    if gateway is None:
        raise NoJvm("no JVM in this process")
    return gateway


def hadoop_conf(spark: SparkSession | SparkContext) -> Any:
    """`SparkContext._jsc.hadoopConfiguration()`: the session's Hadoop configuration.
    Public PySpark can set `spark.hadoop.*` only before the session starts; a joined
    session (spark-submit, a notebook) gets S3A settings here. Raises NoJvm."""
    jvm(spark)
    return _context(spark)._jsc.hadoopConfiguration()


def hadoop_filesystem(spark: SparkSession, uri: str) -> tuple[Any, Any]:
    """(Hadoop FileSystem, Path) for `uri`, configured as Spark reads it: listing a
    Delta log or a folder exactly as the connector will. Raises NoJvm."""
    path = jvm(spark).org.apache.hadoop.fs.Path(uri)
    return path.getFileSystem(hadoop_conf(spark)), path


def read_text(spark: SparkSession, fs: Any, path: Any) -> str:
    """A small file's text through a Hadoop FileSystem (commons-io, on Spark's classpath)."""
    stream = fs.open(path)
    try:
        return str(jvm(spark).org.apache.commons.io.IOUtils.toString(stream, "UTF-8"))
    finally:
        stream.close()


def running_tasks(spark: SparkSession) -> int | None:
    """Tasks running on the executors now: `_jsc.sc().statusTracker()`, whose executor
    infos PySpark's `StatusTracker` does not expose. None without a JVM (then the caller
    cannot wait for cancelled tasks and does not)."""
    try:
        tracker = _context(spark)._jsc.sc().statusTracker()
        return int(sum(e.numRunningTasks() for e in tracker.getExecutorInfos()))
    except Exception:
        return None


def busy_task_threads(spark: SparkSession) -> int | None:
    """Task threads of this JVM still inside a task (`Thread.getAllStackTraces` through
    `_jvm`): in local mode the executor lives in the driver, and a cancelled task can
    go on writing for seconds after the status tracker counted it finished (the listener
    bus lags; CI saw a staging file appear after that). A pooled idle thread keeps its
    name, so the test is a `TaskRunner` frame at the bottom of its stack. 0 off local mode (no
    executor here); None without a JVM."""
    try:
        view = jvm(spark)
        threads = view.java.lang.Thread.getAllStackTraces().keySet().toArray()
        busy = 0
        for thread in threads:
            if not str(thread.getName()).startswith("Executor task launch worker"):
                continue
            frames = thread.getStackTrace()  # a task's frame is near the bottom
            last = range(max(0, len(frames) - 6), len(frames))
            bottom = [str(frames[i].getClassName()) for i in last]
            busy += "org.apache.spark.executor.Executor$TaskRunner" in bottom
        return busy
    except Exception:
        return None


def storage_memory(spark: SparkSession) -> int | None:
    """Bytes of storage memory over all executors: `_jsc.sc().getExecutorMemoryStatus()`
    (no public equivalent). None without a JVM (the caller then does not cache)."""
    try:
        status = _context(spark)._jsc.sc().getExecutorMemoryStatus()
    except Exception:
        return None
    total, entries = 0, status.values().iterator()
    while entries.hasNext():
        total += entries.next()._1()
    return int(total)


def observation_done(observation: Observation | None) -> bool:
    """Whether an `Observation` has its values: its JVM future (`Observation._jo`).
    `Observation.get` would block until an action runs, which may never happen (the fit
    failed, or read the data another way). False when unknowable (then the caller
    computes the values with a query of its own)."""
    if observation is None:
        return False
    try:
        handle = observation._jo
        return handle is not None and bool(handle.future().isCompleted())
    except Exception:
        return False


def bucketize(frame: DataFrame, column: str, splits: list[float], output: str) -> DataFrame | None:
    """`frame` with MLlib's Bucketizer applied, its splits sent to the JVM as one byte
    array through `_gateway.new_array` and `DataFrame._jdf`: PySpark's wrapper sends a
    list element by element through Py4J (1.5 s for 10,000 splits, more than the
    aggregation that follows). None without a JVM (the caller uses the wrapper)."""
    import numpy as np
    from pyspark.sql import DataFrame as PyDataFrame

    try:
        session = frame.sparkSession
        view = jvm(session)
        data = bytearray(np.asarray(splits, dtype=">f8").tobytes())
        values = _gateway(session.sparkContext).new_array(view.double, len(splits))
        view.java.nio.ByteBuffer.wrap(data).asDoubleBuffer().get(values)
        stage = view.org.apache.spark.ml.feature.Bucketizer()
        stage.setInputCol(column).setOutputCol(output).setHandleInvalid("keep")
        stage.setSplits(values)
        return PyDataFrame(stage.transform(frame._jdf), session)
    except (NoJvm, AttributeError):
        return None


class StatusStore:
    """Spark's status store (`_jsc.sc().statusStore()`), read as its REST API writes it
    (Jackson with Scala support): what the jobs and stages of a run measured. PySpark
    exposes only job and stage ids; the UI's REST API needs the UI running. Raises NoJvm."""

    def __init__(self, sc: SparkContext) -> None:
        view = jvm(sc)
        self.store = sc._jsc.sc().statusStore()
        self.mapper = view.com.fasterxml.jackson.databind.ObjectMapper()
        scala_module = getattr(view.com.fasterxml.jackson.module.scala, "DefaultScalaModule$")
        self.mapper.registerModule(scala_module.__getattr__("MODULE$"))
        self._no_tasks = view.java.util.ArrayList()
        self._no_quantiles = _gateway(sc).new_array(view.double, 0)

    def _json(self, value: Any) -> Any:
        return json.loads(self.mapper.writeValueAsString(value))

    def job(self, job_id: int) -> dict[str, Any]:
        return self._json(self.store.job(job_id))

    def stage_attempts(self, stage_id: int) -> list[dict[str, Any]]:
        """Every attempt of a stage, without its tasks or quantiles (raises when the store
        evicted it: spark.ui.retainedStages)."""
        return self._json(
            self.store.stageData(stage_id, False, self._no_tasks, False, self._no_quantiles)
        )

    def executors(self) -> list[dict[str, Any]]:
        return self._json(self.store.executorList(False))


def peak_heap(sc: SparkContext) -> int:
    """The driver JVM's own peak heap use over its memory pools (the management beans,
    through `_jvm`), for a run shorter than the first memory sample in the status store.

    The pools (eden, survivor, old) peak at different moments, so their sum bounds the
    heap's peak from above and can pass the heap's size: it is capped there."""
    management = jvm(sc).java.lang.management.ManagementFactory
    peak = 0
    for pool in management.getMemoryPoolMXBeans():
        if str(pool.getType().toString()) == "Heap memory":
            peak += pool.getPeakUsage().getUsed()
    limit = int(management.getMemoryMXBean().getHeapMemoryUsage().getMax())
    return min(int(peak), limit) if limit > 0 else int(peak)


def class_loadable(spark: SparkSession, name: str) -> bool:
    """Whether the JVM can load class `name` (Spark's `Utils.classIsLoadable`, via
    `_jvm`): is Delta's connector on the classpath. False without a JVM."""
    try:
        return bool(jvm(spark).org.apache.spark.util.Utils.classIsLoadable(name))
    except Exception:
        return False


def active_context() -> SparkContext | None:
    """`SparkContext._active_spark_context`: the running SparkContext of this process, if
    any (None under Spark Connect)."""
    from pyspark import SparkContext

    return SparkContext._active_spark_context


def interrupt_jobs(frame: Any = None, wait_seconds: float = 10.0) -> None:
    """Cancel every running Spark job, from a signal handler in the main thread (`frame`:
    the one the signal interrupted).

    The signal lands most often while the main thread waits on its Py4J connection
    (`_gateway._gateway_client`: Py4J's ClientServer keeps one connection per Python
    thread) for a job's answer. A call on that connection from the handler fails
    ("reentrant call"), so the cancel goes through the canceller thread, on a connection
    of its own (started with the handler, `start_canceller`: no thread is started inside
    a handler), waited for `wait_seconds` at most. When the main thread was inside a
    Py4J call, its connection still has an answer on its way, which its next call would
    read as its own: that connection is closed, and the next call (the clean-up's) opens
    a fresh one. No JVM: nothing to do."""
    import contextlib

    context = active_context()
    if context is None:
        return
    start_canceller()  # started with the handler: a no-op here
    _CANCEL["context"] = context
    done = _CANCEL["done"]
    done.clear()
    _CANCEL["asked"].set()
    done.wait(timeout=wait_seconds)
    if _inside_py4j_call(frame):
        with contextlib.suppress(Exception):
            _gateway(context)._gateway_client.get_thread_connection().close(reset=True)


_CANCEL: dict[str, Any] = {}


def start_canceller() -> None:
    """The thread `interrupt_jobs` cancels through (started once per process)."""
    import contextlib
    import threading

    if "thread" in _CANCEL:
        return
    _CANCEL.update(asked=threading.Event(), done=threading.Event(), context=None)

    def cancel_when_asked() -> None:
        while True:
            _CANCEL["asked"].wait()
            _CANCEL["asked"].clear()
            with contextlib.suppress(Exception):  # stopping anyway
                _CANCEL["context"].cancelAllJobs()
            _CANCEL["done"].set()

    thread = threading.Thread(target=cancel_when_asked, name="cancel-spark-jobs", daemon=True)
    _CANCEL["thread"] = thread
    thread.start()


def _inside_py4j_call(frame: Any) -> bool:
    """Whether the interrupted frame is inside Py4J's exchange with the JVM."""
    while frame is not None:
        code = frame.f_code
        if code.co_name == "send_command" and "py4j" in code.co_filename:
            return True
        frame = frame.f_back
    return False


def gateway_running() -> bool:
    """Whether this process already has a Py4J gateway (`SparkContext._gateway`)."""
    from pyspark import SparkContext

    return SparkContext._gateway is not None


def launch_gateway(conf: SparkConf) -> subprocess.Popen:
    """Start the JVM as PySpark would (`pyspark.java_gateway.launch_gateway`, installed
    as `SparkContext._gateway` / `._jvm` so the session builder joins it), but with its
    stderr as a pipe for batchml to sort. Returns the JVM's process."""
    from pyspark import SparkContext
    from pyspark.java_gateway import launch_gateway as start

    gateway = start(conf, popen_kwargs={"stderr": subprocess.PIPE})
    SparkContext._gateway = gateway
    SparkContext._jvm = gateway.jvm
    return gateway.proc
