"""An ingest run in its own process that dies by SIGKILL at a chosen point (crash tests).

    python tests/ingest_worker.py CONF LAKEHOUSE SOURCE after-table-commit BACKEND
Run as a script (spawned, never forked): it builds its own SparkSession.
"""

from __future__ import annotations

import os
import signal
import sys

from child_session import child_session

from batchml.jobs import ingest
from batchml.lib.ingest.ledger import INGESTED, IngestLedger


def main(conf: str, lakehouse: str, source: str, point: str, backend: str) -> None:
    settings, spark = child_session(lakehouse, conf=conf, extra=(f'delta.backend="{backend}"',))
    record = IngestLedger.record

    def dying_record(self, files, *, state, **kwargs):
        if point == "after-table-commit" and state == INGESTED:
            os.kill(os.getpid(), signal.SIGKILL)  # the table commit is in, the ledger's not
        return record(self, files, state=state, **kwargs)

    IngestLedger.record = dying_record
    ingest.run(spark, settings, ingest.IngestRequest(source))
    print("not killed", flush=True)


if __name__ == "__main__":
    main(*sys.argv[1:6])
