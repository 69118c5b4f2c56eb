"""`train --reproduce` of registered versions in a session unlike the test session's:
local[1] and files packed into one split, so the table reads into other partitions.

    python tests/reproduce_worker.py CONF LAKEHOUSE REF [REF ...]
Prints one JSON line per version: its match, differences, or the error.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from batchml.jobs import train
from batchml.lib.config import load_config
from batchml.lib.errors import BatchmlError
from batchml.lib.spark import build_session


def main(conf: str, lakehouse: str, *refs: str) -> None:
    cfg = load_config(
        conf_file=Path(conf),
        overrides=[
            'spark.master="local[1]"',
            "spark.shuffle_partitions=3",
            "spark.driver_memory=1g",
            f'lakehouse.root="{lakehouse}"',
            # every file in one split: the table reads into one partition here, and
            # into one per file in the test session
            'spark.conf."spark.sql.files.openCostInBytes"="1"',
        ],
        environ={},
    )
    spark = build_session(cfg.settings)
    for ref in refs:
        try:
            report = train.reproduce(spark, cfg.settings, ref)
            line = {"ref": ref, "match": report.match, "differences": report.differences}
        except BatchmlError as exc:
            line = {"ref": ref, "error": str(exc), "exit_code": exc.exit_code}
        print(json.dumps(line), flush=True)
    spark.stop()


if __name__ == "__main__":
    main(*sys.argv[1:])
