"""A session that makes the JVM print: netlib's BLAS probe and a line of its own.

python tests/jvm_noise_worker.py LAKEHOUSE [--verbose]
"""

from __future__ import annotations

import sys
import time

from batchml.lib.platform.config import load_config
from batchml.lib.platform.logs import configure_logging
from batchml.lib.spark.session import build_session


def main(lakehouse: str, verbose: bool) -> None:
    cfg = load_config(overrides=['spark.master="local[1]"', f'lakehouse.root="{lakehouse}"'])
    configure_logging("INFO", "text", verbose=verbose)
    spark = build_session(cfg.settings, verbose=verbose)
    jvm = spark.sparkContext._jvm
    jvm.dev.ludovic.netlib.blas.BLAS.getInstance()  # probes the system BLAS
    jvm.java.lang.System.err.println(
        "Warning: Java versions > Java 11 can only operate in restricted mode"
    )
    jvm.java.lang.System.err.println("a line of the JVM's own")
    time.sleep(1.0)  # let the relay drain the pipe
    spark.stop()


if __name__ == "__main__":
    main(sys.argv[1], "--verbose" in sys.argv)
