"""Hadoop's S3A filesystem for Spark: hadoop-aws matching PySpark's Hadoop, and the parts
of the AWS SDK v2 it uses, fetched from Maven Central on first use and cached.

hadoop-aws depends on the SDK's `bundle` jar (every AWS client, 686 MB); S3A needs only
the S3 client and its transfer manager (their HTTP clients come with them), so the bundle
is excluded and those two modules are resolved instead: 35 jars, 12 MB. Libraries Spark
already ships (netty, Apache's HTTP client, commons-codec and -logging, slf4j) are
excluded too: Spark's own copies load first anyway. A cluster whose Spark already has
hadoop-aws (EMR, Dataproc images) needs none of this.
"""

from __future__ import annotations

import os
from pathlib import Path

from batchml.lib.spark import jars

# PySpark 4.2 ships Hadoop 3.5.0's client (tests/test_object_store.py checks its jars);
# hadoop-aws must be the same version, and the SDK the one hadoop-aws 3.5.0 was built with.
HADOOP_VERSION = "3.5.0"
AWS_SDK_VERSION = "2.35.4"
SDK_MODULES = ("s3", "s3-transfer-manager")
PACKAGES = ",".join(
    [
        f"org.apache.hadoop:hadoop-aws:{HADOOP_VERSION}",
        *(f"software.amazon.awssdk:{module}:{AWS_SDK_VERSION}" for module in SDK_MODULES),
    ]
)
EXCLUDES = ",".join(
    [
        "software.amazon.awssdk:bundle",
        "io.netty:*",
        "org.apache.httpcomponents:*",
        "commons-codec:commons-codec",
        "commons-logging:commons-logging",
        "org.slf4j:*",
        "org.wildfly.openssl:*",
    ]
)
REQUIRED_JARS = (
    f"org.apache.hadoop_hadoop-aws-{HADOOP_VERSION}.jar",
    f"software.amazon.awssdk_s3-{AWS_SDK_VERSION}.jar",
    f"software.amazon.awssdk_s3-transfer-manager-{AWS_SDK_VERSION}.jar",
    f"software.amazon.awssdk_netty-nio-client-{AWS_SDK_VERSION}.jar",
    # S3A's input streams need it, whichever stream type is chosen
    "software.amazon.s3.analyticsaccelerator_analyticsaccelerator-s3-1.3.1.jar",
)


def cache_folder(root: str) -> Path:
    """Where this hadoop-aws version's jars are cached (`storage.jar_cache`/<version>)."""
    return Path(root).expanduser().resolve() / f"hadoop-aws-{HADOOP_VERSION}"


def cached_jars(root: str) -> list[Path] | None:
    return jars.cached(cache_folder(root))


def fetch(root: str) -> list[Path]:
    """Resolve hadoop-aws and the SDK modules into the cache (once); return the jars.

    Raises:
        EnvironmentProblem: Maven Central unreachable or the resolution failing.
    """
    return jars.fetch(
        cache_folder(root),
        PACKAGES,
        REQUIRED_JARS,
        what=f"Hadoop's S3A filesystem (hadoop-aws {HADOOP_VERSION})",
        excludes=EXCLUDES,
        offline_hint="put hadoop-aws and the AWS SDK on Spark's classpath yourself",
    )


def on_classpath(conf: dict[str, str]) -> bool:
    """Whether hadoop-aws is being put on the classpath already (`--packages`, `--jars`,
    or a Spark home that ships it), judged before the JVM starts."""
    for key in ("spark.jars.packages", "spark.jars"):
        if "hadoop-aws" in conf.get(key, ""):
            return True
    home = os.environ.get("SPARK_HOME")
    if not home:
        return False
    return any((Path(home) / "jars").glob("hadoop-aws-*.jar"))
