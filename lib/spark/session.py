"""The one SparkSession of a run, built by the entrypoint from config.

Nothing else in lib/ builds a session: jobs receive it as an argument.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from pyspark import SparkConf
from pyspark.sql import SparkSession

from batchml.lib.platform import storage
from batchml.lib.platform.errors import EnvironmentProblem, first_line
from batchml.lib.platform.logs import get_logger
from batchml.lib.platform.redaction import (
    is_secret_setting,
    spark_redaction_regex,
    spark_string_redaction_regex,
)
from batchml.lib.platform.runtime import java_info
from batchml.lib.platform.settings import Settings
from batchml.lib.spark import jvm
from batchml.lib.spark.jvm_output import relay

log = get_logger(__name__)

QUIET_LOG4J = Path(__file__).resolve().parent / "log4j2-quiet.properties"
DELTA_EXTENSION = "io.delta.sql.DeltaSparkSessionExtension"
DELTA_CATALOG = "org.apache.spark.sql.delta.catalog.DeltaCatalog"
DELTA_PROBE_CLASS = "org.apache.spark.sql.delta.DeltaLog"


def local_or_uri(path: str) -> str:
    """An absolute local path, or the URI as Spark takes it when it has a scheme
    (`s3://` as `s3a://`; `abfss://`, `gs://` as given)."""
    if "://" in path or path.startswith("file:"):
        return storage.spark_uri(path)
    return str(Path(path).expanduser().resolve())


def lake_locations(settings: Settings) -> list[str]:
    """Every location a run may touch through Spark's filesystems."""
    places = [settings.lakehouse.root, settings.registry.root, settings.runs.table]
    places += [settings.spark.checkpoint_dir or "", settings.spark.event_log_dir or ""]
    places += [contract.path or "" for contract in settings.tables.values()]
    places += [source.path for source in settings.sources.values()]
    return [place for place in places if place]


def uses_s3(settings: Settings) -> bool:
    """Whether the lake (or a folder of Spark's) is on S3: S3A and its jars are needed."""
    return any(storage.scheme(place) in ("s3", "s3a", "s3n") for place in lake_locations(settings))


def checkpoint_dir(settings: Settings) -> str:
    """Where MLlib checkpoints go: the configured dir, else `<lakehouse>/_checkpoints`."""
    configured = settings.spark.checkpoint_dir
    root = settings.lakehouse.root.rstrip("/")
    return local_or_uri(configured or f"{root}/_checkpoints")


def event_log_dir(settings: Settings) -> str | None:
    """Where Spark writes its event logs (None when off): the configured dir, else
    `<lakehouse>/_spark_events`. The History Server replays a run from there."""
    if not settings.spark.event_log:
        return None
    root = settings.lakehouse.root.rstrip("/")
    return local_or_uri(settings.spark.event_log_dir or f"{root}/_spark_events")


def submitted() -> bool:
    """Whether this process is a driver that spark-submit started (its JVM is running)."""
    return "PYSPARK_GATEWAY_PORT" in os.environ


def session_conf(
    settings: Settings,
    *,
    verbose: bool = False,
    connector_jars: list[Path] | None = None,
    job: str | None = None,
    secret_conf: frozenset[str] = frozenset(),
) -> dict[str, str]:
    """Every Spark setting batchml sets, user pass-through settings last.

    `job` names the application after the job it runs (`batchml train`): how the run is
    found in the History Server and the cluster manager's UI.

    `connector_jars` (Delta's Spark connector from the cache) go on `spark.jars`.

    Spark's own redaction (`spark.redaction.regex`, `spark.redaction.string.regex`: its
    UI, event log and environment listing) is extended to batchml's secret names and
    `secret_conf` (settings filled from environment variables); a user's pattern is kept.
    """
    spark = settings.spark
    java_options = ["-Duser.timezone=UTC"]
    if not verbose:
        java_options.append(f"-Dlog4j2.configurationFile=file:{QUIET_LOG4J}")
    conf = {
        "spark.app.name": f"{spark.app_name} {job}" if job else spark.app_name,
        "spark.driver.memory": spark.driver_memory,
        "spark.sql.shuffle.partitions": str(spark.shuffle_partitions),
        # Delta's connector rebuilds a table's state in 50 partitions by default: dozens
        # of empty tasks per read or write on a small machine; as many as a shuffle
        "spark.databricks.delta.snapshotPartitions": str(spark.shuffle_partitions),
        "spark.sql.adaptive.enabled": "true",
        "spark.sql.session.timeZone": "UTC",
        "spark.sql.execution.arrow.pyspark.enabled": "true",
        "spark.sql.parquet.outputTimestampType": "TIMESTAMP_MICROS",
        # a CSV line is malformed or not whatever columns a query needs: with pruning on,
        # a short line counts as malformed only where its missing fields are read, and
        # ingest's count of bad rows (an aggregation over two columns) missed it
        "spark.sql.csv.parser.columnPruning.enabled": "false",
        "spark.hadoop.mapreduce.fileoutputcommitter.marksuccessfuljobs": "false",
        "spark.ui.enabled": str(spark.ui).lower(),
        "spark.ui.showConsoleProgress": "false",
        "spark.driver.extraJavaOptions": " ".join(java_options),
        "spark.executor.extraJavaOptions": "-Duser.timezone=UTC",
        # the runs table's resource figures come from Spark's status store: executors
        # sample their memory each second (peaks per stage and executor), and the store
        # keeps enough stages and jobs for a long run
        "spark.executor.metrics.pollingInterval": "1s",
        "spark.ui.retainedJobs": "20000",
        "spark.ui.retainedStages": "20000",
    }
    events = event_log_dir(settings)
    if events:
        conf["spark.eventLog.enabled"] = "true"
        conf["spark.eventLog.dir"] = events if "://" in events else f"file://{events}"
    if uses_s3(settings):
        # credentials included: Spark opens its event log in the bucket before any job
        # runs; Spark's redaction hides their values (UI, event log), the JVM's command
        # line never holds them (`_launch_jvm`), and a session already running drops
        # them (`_joinable`) and gets them on its Hadoop configuration instead
        conf.update(storage.hadoop_conf())
    if submitted():
        # spark-submit chose the master and started the driver's JVM with its memory:
        # the job's config (the local env says local[*]) must not override them
        del conf["spark.driver.memory"]
    elif spark.master:
        conf["spark.master"] = spark.master
    for key, value in spark.conf.items():
        value = str(value).lower() if isinstance(value, bool) else str(value)
        if key.endswith("extraJavaOptions") and key in conf:
            value = f"{conf[key]} {value}"
        conf[key] = value
    conf["spark.redaction.regex"] = spark_redaction_regex(
        conf.get("spark.redaction.regex"), secret_conf
    )
    conf["spark.redaction.string.regex"] = spark_string_redaction_regex(
        conf.get("spark.redaction.string.regex")
    )
    if connector_jars:
        listed = [conf["spark.jars"]] if conf.get("spark.jars") else []
        conf["spark.jars"] = ",".join([*listed, *(str(jar) for jar in connector_jars)])
    if settings.delta.backend == "connector" or (
        settings.delta.backend == "auto" and _connector_hinted(conf)
    ):
        conf.setdefault("spark.sql.extensions", DELTA_EXTENSION)
        conf.setdefault("spark.sql.catalog.spark_catalog", DELTA_CATALOG)
    return conf


def build_session(
    settings: Settings,
    *,
    verbose: bool = False,
    job: str | None = None,
    secret_conf: frozenset[str] = frozenset(),
) -> SparkSession:
    """Build (or join) the run's SparkSession; `secret_conf` as `session_conf` takes it.

    Raises:
        EnvironmentProblem: Java is missing or too old, or the JVM does not start.
    """
    java_info()  # a clear one-line error instead of "Java gateway process exited"
    # Executors run Python too (xgboost.spark, pandas functions): the project's interpreter.
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    if settings.spark.master.startswith("local") and not submitted():
        # Local mode talks to itself only; this also stops Spark's hostname warning.
        os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    jars = [*(connector_jars(settings) or []), *(s3a_jars(settings) or [])]
    conf = session_conf(
        settings,
        verbose=verbose,
        connector_jars=jars or None,
        job=job,
        secret_conf=secret_conf,
    )
    events = event_log_dir(settings)
    if events and storage.is_remote(events):
        # Spark wants the folder to exist: on an object store, an object under the prefix
        marker = storage.join(events, ".batchml")
        if not storage.exists(marker):
            storage.write_bytes(marker, b"")
    elif events:
        try:
            Path(events).mkdir(parents=True, exist_ok=True)  # Spark does not create it
        except OSError as exc:
            raise EnvironmentProblem(
                f"spark.event_log_dir {events} cannot be created: {exc.strerror}"
            ) from None
    running = SparkSession.getActiveSession()
    if running is not None:
        conf = _joinable(conf, running.sparkContext.getConf(), secret_conf)
    builder = SparkSession.builder
    for key, value in conf.items():
        builder = builder.config(key, value)
    try:
        _launch_jvm(conf, verbose=verbose, secret_conf=secret_conf)
        spark = builder.getOrCreate()
    except Exception as exc:  # the JVM failing to start surfaces as many exception types
        raise EnvironmentProblem(f"Spark did not start: {first_line(exc)}") from exc
    spark.sparkContext.setLogLevel("WARN" if verbose else settings.spark.log_level)
    if uses_s3(settings):
        apply_s3a(spark)
    try:
        spark.sparkContext.setCheckpointDir(checkpoint_dir(settings))
    except Exception as exc:  # a py4j error carrying Hadoop's IOException
        raise EnvironmentProblem(
            f"checkpoint dir {checkpoint_dir(settings)} cannot be created: {first_line(exc)}"
        ) from exc
    log.debug("spark session ready", extra={"master": spark.sparkContext.master})
    return spark


def _joinable(
    conf: dict[str, str], running: SparkConf, secret_conf: frozenset[str]
) -> dict[str, str]:
    """The settings to apply to a running session, without the secrets it did not start
    with: Spark copies a session's `spark.*` settings into every job's properties and
    redacts there only the settings its SparkConf holds, so such a secret would be written
    in clear to the event log (a `spark.hadoop.*` setting does not reach Hadoop from a
    running session anyway)."""
    kept = {}
    for key, value in conf.items():
        propagated = key.startswith("spark") and not running.contains(key)
        if propagated and is_secret_setting(key, value, secret_conf):
            log.warning(
                f"spark.conf.{key} is a secret and not applied to the running Spark "
                "session (Spark would write it to the event log): set it when the "
                "session starts (spark-submit --conf, the cluster's Spark config)"
            )
            continue
        kept[key] = value
    return kept


def connector_jars(settings: Settings) -> list[Path] | None:
    """Delta's connector jars to put on the classpath: the cached ones under `auto`, fetched
    first (once per machine) under `connector`; none when the classpath already has them
    (a cluster, `--packages`) or the JVM is already running (spark-submit).

    Raises:
        EnvironmentProblem: `connector` asked for and the jar cannot be fetched.
    """
    from batchml.lib.delta import connector_jar as delta_jar  # (lib.delta imports this module)

    backend = settings.delta.backend
    if backend == "embedded" or submitted():
        return None
    if _connector_hinted(session_conf(settings)):
        return None
    jars = delta_jar.cached_jars(settings.delta.jar_cache)
    if jars is None and backend == "connector":
        jars = delta_jar.fetch(settings.delta.jar_cache)
    return jars


def apply_s3a(spark: SparkSession) -> None:
    """Set this run's S3A settings (credentials included) on the session's Hadoop
    configuration: reads and writes from here on reach the store as the other layers do
    (Spark hands the configuration to the executors with each job)."""
    hadoop = jvm.hadoop_conf(spark)
    for key, value in storage.hadoop_conf().items():
        hadoop.set(key.removeprefix("spark.hadoop."), value)


def s3a_jars(settings: Settings) -> list[Path] | None:
    """hadoop-aws and the AWS SDK modules S3A needs, fetched on first use (once per
    machine) when a lake location is on S3; none when not, when the classpath has them
    already, or when the JVM is running (spark-submit.sh ships them itself)."""
    from batchml.lib.spark import s3a_jars as s3a

    if not uses_s3(settings) or submitted() or s3a.on_classpath(session_conf(settings)):
        return None
    return s3a.fetch(settings.storage.jar_cache)


def _launch_jvm(conf: dict[str, str], *, verbose: bool, secret_conf: frozenset[str]) -> None:
    """Start the JVM the way PySpark would, but with its stderr through `jvm_output.relay`
    (library chatter to the debug log). Under spark-submit the JVM is already running
    (PYSPARK_GATEWAY_PORT), and a session joining a running JVM changes nothing.

    The JVM's command line (seen by `ps`, and in the event log as `sun.java.command`)
    leaves secrets out: the session's builder hands them to the SparkContext."""
    if jvm.gateway_running() or submitted():
        return
    spark_conf = SparkConf()
    for key, value in conf.items():
        if not is_secret_setting(key, value, secret_conf):
            spark_conf.set(key, value)
    process = jvm.launch_gateway(spark_conf)
    assert process.stderr is not None  # launched with stderr=PIPE
    relay(process.stderr, verbose=verbose)


def stop_session(spark: SparkSession) -> None:
    """Stop the run's session, then sweep what interrupted writes left in their staging
    folders: their cancelled tasks are waited for first (bounded), and once the context
    has stopped no task can start again."""
    embedded = sys.modules.get("batchml.lib.delta.embedded")  # loaded: a write was tried
    try:
        try:
            if embedded is not None:
                embedded.settle_interrupted(spark)
        finally:  # a second signal while waiting still stops Spark
            spark.stop()
    finally:
        if embedded is not None:
            embedded.sweep_interrupted()


def connector_loadable(spark: SparkSession) -> bool:
    """Whether Delta Lake's Spark connector classes can be loaded in this session."""
    return jvm.class_loadable(spark, DELTA_PROBE_CLASS)


def _connector_hinted(conf: dict[str, str]) -> bool:
    """Whether the connector jar is being put on the classpath, judged before the JVM starts."""
    for key in ("spark.jars.packages", "spark.jars"):
        if "delta-spark" in conf.get(key, "") or "io.delta" in conf.get(key, ""):
            return True
    spark_home = os.environ.get("SPARK_HOME")
    homes = [Path(spark_home)] if spark_home else []
    try:
        import pyspark

        homes.append(Path(pyspark.__file__).parent)
    except ImportError:  # pragma: no cover - pyspark is a dependency
        pass
    return any(any((home / "jars").glob("delta-spark*.jar")) for home in homes)
