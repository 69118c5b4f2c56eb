"""`spark-submit.sh` / `batchml submit`: a job handed to Spark's own spark-submit.

    ./spark-submit.sh [--master M] [--deploy-mode client|cluster] [--env ENV]
                      [--conf-file FILE] [--delta connector|embedded]
                      [other spark-submit options…] JOB [job options…]

The command line is split into batchml's submit options, spark-submit's own options
(passed through) and the job with its options (given to the driver entry, which runs the
same Typer app as `batchml`). The Python environment comes from `lib/submit/packaging.py`.
"""

from __future__ import annotations

import os
import socket
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlparse

from batchml.lib.platform.errors import ConfigError, EnvironmentProblem
from batchml.lib.platform.redaction import spark_redaction_regex

# spark-submit merges a client-mode Python driver's stderr into its stdout: `batchml
# submit` names a file here, the driver's stderr goes there, and submit relays it to its
# own stderr, so a job's output (--json) and its logs and errors stay apart
STDERR_FILE = "BATCHML_DRIVER_STDERR"

# spark-submit options that take no value; every other `--option` takes one
SPARK_FLAGS = frozenset({"--verbose", "-v", "--supervise"})
WAIT_FOR_COMPLETION = (  # cluster deploy mode: spark-submit waits for the final state
    "spark.yarn.submit.waitAppCompletion=true",
    "spark.kubernetes.submission.waitAppCompletion=true",
    "spark.standalone.submit.waitAppCompletion=true",
)
DELTA_CONFS = (
    "spark.sql.extensions=io.delta.sql.DeltaSparkSessionExtension",
    "spark.sql.catalog.spark_catalog=org.apache.spark.sql.delta.catalog.DeltaCatalog",
)
ENV_PYTHON = "./environment/bin/python"
MASTER_TIMEOUT_SECONDS = 3.0


@dataclass
class SubmitRequest:
    """A parsed `spark-submit.sh` command line."""

    job: str
    job_args: list[str]
    master: str | None = None
    deploy_mode: str = "client"
    env: str | None = None
    conf_file: Path | None = None
    delta: str | None = None  # connector | embedded; None: the config's delta.backend
    overrides: list[str] = field(default_factory=list)  # --set, passed to the job
    spark_args: list[str] = field(default_factory=list)  # spark-submit's own options
    rebuild: bool = False
    dry_run: bool = False


def parse(argv: list[str], jobs: list[str]) -> SubmitRequest:
    """Split a submit command line.

    Raises:
        ConfigError: no job, an unknown job, a missing option value, a bad choice.
    """
    own: dict[str, str] = {}
    overrides: list[str] = []
    spark_args: list[str] = []
    flags = {"--rebuild": False, "--dry-run": False}
    takes_value = {"--master", "--deploy-mode", "--env", "--conf-file", "--delta", "--set"}
    rest = list(argv)
    while rest and rest[0].startswith("-"):
        option = rest.pop(0)
        name, inline = (
            option.split("=", 1)
            if option.startswith("--") and "=" in option
            else (
                option,
                None,
            )
        )
        if name in flags:
            flags[name] = True
            continue
        if name in SPARK_FLAGS:
            spark_args.append(option)
            continue
        if inline is None:
            if not rest:
                raise ConfigError(f"{name} needs a value")
            value = rest.pop(0)
        else:
            value = inline
        if name == "--set":
            overrides.append(value)
        elif name in takes_value:
            own[name] = value
        else:
            spark_args.extend([name, value])
    if not rest:
        raise ConfigError(
            f"no job given: spark-submit.sh [options] JOB [job options]; jobs: {', '.join(jobs)}"
        )
    job, job_args = rest[0], rest[1:]
    if job not in jobs:
        raise ConfigError(f"unknown job {job!r}; jobs: {', '.join(jobs)}")
    deploy_mode = own.get("--deploy-mode", "client")
    if deploy_mode not in ("client", "cluster"):
        raise ConfigError(f"--deploy-mode {deploy_mode!r}: expected client or cluster")
    delta = own.get("--delta")
    if delta not in (None, "connector", "embedded"):
        raise ConfigError(f"--delta {delta!r}: expected connector or embedded")
    conf_file = Path(own["--conf-file"]).expanduser() if "--conf-file" in own else None
    if conf_file is not None and not conf_file.is_file():
        raise ConfigError(f"--conf-file {conf_file}: no such file")
    return SubmitRequest(
        job=job,
        job_args=job_args,
        master=own.get("--master"),
        deploy_mode=deploy_mode,
        env=own.get("--env"),
        conf_file=conf_file.resolve() if conf_file else None,
        delta=delta,
        overrides=overrides,
        spark_args=spark_args,
        rebuild=flags["--rebuild"],
        dry_run=flags["--dry-run"],
    )


def spark_submit_path(environ: Mapping[str, str] | None = None) -> Path:
    """`$SPARK_HOME/bin/spark-submit` when SPARK_HOME is set, else the locked PySpark's.

    Raises:
        EnvironmentProblem: SPARK_HOME has no spark-submit, or there is no PySpark either.
    """
    environ = os.environ if environ is None else environ
    home = environ.get("SPARK_HOME")
    if home:
        script = Path(home) / "bin" / "spark-submit"
        if not script.is_file():
            raise EnvironmentProblem(f"SPARK_HOME={home} has no bin/spark-submit")
        return script
    try:
        import pyspark
    except ImportError:
        raise EnvironmentProblem(
            "no SPARK_HOME and no PySpark: set SPARK_HOME to a Spark 4.2 install "
            "(or uv sync, which installs PySpark)"
        ) from None
    return Path(pyspark.__file__).resolve().parent / "bin" / "spark-submit"


def check_master(master: str, environ: Mapping[str, str] | None = None) -> None:
    """Fail within seconds on a master that cannot be reached, instead of a hang.

    Raises:
        EnvironmentProblem: a standalone or Kubernetes master whose port does not answer,
            YARN without HADOOP_CONF_DIR / YARN_CONF_DIR.
    """
    environ = os.environ if environ is None else environ
    if master.startswith("spark://"):
        endpoints = [_host_port(f"spark://{hp}", 7077) for hp in master[8:].split(",")]
    elif master.startswith("k8s://"):
        endpoints = [_host_port(master[6:], 443)]
    elif master == "yarn":
        if not (environ.get("HADOOP_CONF_DIR") or environ.get("YARN_CONF_DIR")):
            raise EnvironmentProblem(
                "--master yarn needs HADOOP_CONF_DIR or YARN_CONF_DIR (the cluster's config)"
            )
        return
    else:
        return
    reasons = []
    for host, port in endpoints:
        try:
            with socket.create_connection((host, port), timeout=MASTER_TIMEOUT_SECONDS):
                return
        except OSError as exc:
            reasons.append(f"{host}:{port} {exc.strerror or exc}")
    raise EnvironmentProblem(f"Spark master {master} is not reachable: {'; '.join(reasons)}")


def loopback(master: str) -> bool:
    """Whether a standalone master runs on this machine's loopback address."""
    if not master.startswith("spark://"):
        return False
    hosts = {_host_port(f"spark://{hp}", 7077)[0] for hp in master[8:].split(",")}
    return hosts <= {"127.0.0.1", "localhost", "::1"}


def _without_conf(spark_args: list[str], key: str) -> tuple[list[str], str | None]:
    """spark-submit options without `--conf key=...`, and the value it had (the last)."""
    kept: list[str] = []
    value = None
    pairs = iter(spark_args)
    for arg in pairs:
        if arg in ("--conf", "-c"):
            setting = next(pairs, "")
            if setting.startswith(f"{key}="):
                value = setting.split("=", 1)[1]
                continue
            kept += [arg, setting]
            continue
        kept.append(arg)
    return kept, value


def _host_port(url: str, default_port: int) -> tuple[str, int]:
    parsed = urlparse(url if "://" in url else f"https://{url}")
    if not parsed.hostname:
        raise ConfigError(f"master {url!r}: no host")
    return parsed.hostname, parsed.port or default_port


def command(
    request: SubmitRequest,
    *,
    spark_submit: Path,
    archive: Path | None,
    entry: Path,
    master: str,
    driver_memory: str | None,
    connector_jars: list[Path] | None,
    connector_package: str,
    quiet_log4j: Path | None,
    s3a_jars: list[Path] | None = None,
    s3a_packages: tuple[str, str] | None = None,
) -> list[str]:
    """The spark-submit command line for a request (secrets in it as given: print it
    through `redaction.redact_argv`)."""
    cluster = request.deploy_mode == "cluster"
    if cluster and master.startswith("spark://"):
        raise ConfigError(
            "--deploy-mode cluster: Spark runs Python drivers on standalone clusters in "
            "client mode only (use client, or YARN / Kubernetes for cluster mode)"
        )
    if cluster and master.startswith("local"):
        raise ConfigError("--deploy-mode cluster needs a cluster master, not local")
    local = master.startswith("local")
    args = [str(spark_submit), "--master", master, "--deploy-mode", request.deploy_mode]
    args += ["--name", f"batchml {request.job}"]
    if not local:  # local mode's executors are this process: they run this interpreter
        assert archive is not None
        args += ["--archives", f"{archive}#environment"]
    spark_args, user_redaction = _without_conf(request.spark_args, "spark.redaction.regex")
    given = set(spark_args)
    if driver_memory and "--driver-memory" not in given:
        args += ["--driver-memory", driver_memory]
    confs = [
        f"spark.pyspark.python={sys.executable if local else ENV_PYTHON}",
        f"spark.pyspark.driver.python={ENV_PYTHON if cluster else sys.executable}",
        "spark.executor.extraJavaOptions=-Duser.timezone=UTC",
        *WAIT_FOR_COMPLETION,
        # spark-submit's own listing of the settings (--verbose) and the application's
        # environment hide the values of secret settings (the user's pattern kept)
        f"spark.redaction.regex={spark_redaction_regex(user_redaction)}",
    ]
    driver_java = ["-Duser.timezone=UTC"]
    if quiet_log4j is not None and not cluster:
        driver_java.append(f"-Dlog4j2.configurationFile=file:{quiet_log4j}")
    if "--driver-java-options" not in given:
        args += ["--driver-java-options", " ".join(driver_java)]
    driver_args: list[str] = []
    # jars shipped from this machine's caches, or packages the cluster resolves itself:
    # Delta's connector, and S3A (hadoop-aws with the SDK modules, `s3a_packages` being
    # its packages and the ones to exclude) when the lake is on S3
    jars = [*(s3a_jars or [])]
    packages, excludes = [], []
    if s3a_packages is not None and not s3a_jars:
        packages.append(s3a_packages[0])
        excludes.append(s3a_packages[1])
    if request.delta == "connector":
        confs += DELTA_CONFS
        if connector_jars:
            jars = [*connector_jars, *jars]
        else:
            packages.insert(0, connector_package)
        driver_args += ["--set", 'delta.backend="connector"']
    elif request.delta == "embedded":
        driver_args += ["--set", 'delta.backend="embedded"']
    if jars:
        args += ["--jars", ",".join(str(jar) for jar in jars)]
    if packages:
        args += ["--packages", ",".join(packages)]
    if excludes:
        args += ["--exclude-packages", ",".join(excludes)]
    if request.conf_file is not None:
        args += ["--files", str(request.conf_file)]
        shipped = request.conf_file.name if cluster else str(request.conf_file)
        driver_args += ["--conf", shipped]
    for conf in confs:
        args += ["--conf", conf]
    args += spark_args
    if request.env:
        driver_args += ["--env", request.env]
    for override in request.overrides:
        driver_args += ["--set", override]
    return [*args, str(entry), *driver_args, request.job, *request.job_args]


def shipped_paths(args: list[str]) -> list[str]:
    """The global options with a `--conf` file that is not where the submitter had it
    taken from the working directory, where YARN and Kubernetes put `--files`."""
    out = list(args)
    i = 0
    while i + 1 < len(out) and out[i].startswith("--"):
        if out[i] == "--conf":
            given = Path(out[i + 1])
            if not given.exists() and Path(given.name).is_file():
                out[i + 1] = given.name
        i += 2  # every global option spark-submit.sh passes takes a value
    return out
