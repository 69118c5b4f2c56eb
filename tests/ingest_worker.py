"""An ingest run in its own process that dies by SIGKILL at a chosen point (crash tests).

    python tests/ingest_worker.py CONF LAKEHOUSE SOURCE after-table-commit
Run as a script (spawned, never forked): it builds its own SparkSession.
"""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path

from batchml.jobs import ingest
from batchml.lib.config import load_config
from batchml.lib.ledger import INGESTED, IngestLedger
from batchml.lib.spark import build_session


def main(conf: str, lakehouse: str, source: str, point: str) -> None:
    cfg = load_config(
        conf_file=Path(conf),
        overrides=[
            'spark.master="local[1]"',
            "spark.shuffle_partitions=1",
            "spark.driver_memory=700m",
            f'lakehouse.root="{lakehouse}"',
        ],
        environ={},
    )
    spark = build_session(cfg.settings)
    record = IngestLedger.record

    def dying_record(self, files, *, state, **kwargs):
        if point == "after-table-commit" and state == INGESTED:
            os.kill(os.getpid(), signal.SIGKILL)  # the table commit is in, the ledger's not
        return record(self, files, state=state, **kwargs)

    IngestLedger.record = dying_record
    ingest.run(spark, cfg.settings, ingest.IngestRequest(source))
    print("not killed", flush=True)


if __name__ == "__main__":
    main(*sys.argv[1:5])
