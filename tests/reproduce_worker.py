"""`train --reproduce` of registered versions in a session unlike the test session's:
local[1] and files packed into one split, so the table reads into other partitions.

    python tests/reproduce_worker.py CONF LAKEHOUSE REF [REF ...]
Prints one JSON line per version: its match, differences, or the error.
"""

from __future__ import annotations

import json
import sys

from child_session import child_session

from batchml.jobs.train import job as train_job
from batchml.lib.platform.errors import BatchmlError


def main(conf: str, lakehouse: str, *refs: str) -> None:
    # every file in one split: the table reads into one partition here, and into one
    # per file in the test session
    settings, spark = child_session(
        lakehouse,
        conf=conf,
        shuffle_partitions=3,
        driver_memory="1g",
        extra=('spark.conf."spark.sql.files.openCostInBytes"="1"',),
    )
    for ref in refs:
        try:
            report = train_job.reproduce(spark, settings, ref)
            line = {"ref": ref, "match": report.match, "differences": report.differences}
        except BatchmlError as exc:
            line = {"ref": ref, "error": str(exc), "exit_code": exc.exit_code}
        print(json.dumps(line), flush=True)
    spark.stop()


if __name__ == "__main__":
    main(*sys.argv[1:])
