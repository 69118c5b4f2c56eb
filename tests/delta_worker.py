"""A separate writer process for concurrency and crash tests (run as a script, never forked).

    python tests/delta_worker.py append|replace|slow URI TAG COUNT LAKEHOUSE [BACKEND]
    python tests/delta_worker.py pause-staging|pause-moved|pause-committed URI TAG 1 LAKEHOUSE
BACKEND is `embedded` (the default) or `connector`. A `slow` write carries the token
(`worker-TAG`, 1), so a rerun after a kill can be tested.
Prints one JSON line per write. A `pause-*` writer prints `AT <point>` and sleeps there:
while Spark writes the staged files, after moving them into the table (before the
commit), or right after delta-rs accepted the commit. It stops on SIGTERM the way the
`batchml` command does (exit 143).
"""

from __future__ import annotations

import json
import sys
import time

from child_session import child_session

from batchml.lib.delta import WriteToken, embedded
from batchml.lib.delta.connector import ConnectorDelta
from batchml.lib.delta.embedded import EmbeddedDelta
from batchml.lib.platform.signals import EXIT_SIGTERM, Terminated, install_termination_handler


def pause_at(point: str) -> None:
    """Patch the writer so that it announces `point` and waits there."""

    def announce() -> None:
        print(f"AT {point}", flush=True)
        time.sleep(120)

    if point == "moved":
        move = embedded.move_into_place

        def moved_then_wait(staging, root, staged, moved):
            move(staging, root, staged, moved)
            announce()

        embedded.move_into_place = moved_then_wait
    elif point == "committed":
        find = embedded.find_commit

        def committed_then_wait(root, commit_id):
            if not calls:  # only the first look-up, right after the commit
                calls.append(commit_id)
                announce()
            return find(root, commit_id)

        calls: list[str] = []

        embedded.find_commit = committed_then_wait


SESSIONS: list = []  # the worker's session, for the stop below


def main(action: str, uri: str, tag: str, count: int, lakehouse: str, backend: str) -> None:
    install_termination_handler()
    _, spark = child_session(lakehouse, extra=(f'delta.backend="{backend}"',))
    SESSIONS.append(spark)
    tables = ConnectorDelta(spark) if backend == "connector" else EmbeddedDelta(spark)
    if action.startswith("pause-"):
        pause_at(action.removeprefix("pause-"))
    for round_ in range(count):
        if action in ("slow", "pause-staging"):
            if action == "pause-staging":
                print("AT staging", flush=True)
            df = spark.range(0, 30_000_000, numPartitions=6).selectExpr(
                f"'{tag}' AS tag", "id AS n", "sha2(CAST(id AS STRING), 512) AS h"
            )
        else:
            df = spark.range(0, 5).selectExpr(
                f"'{tag}' AS tag", f"id + {round_ * 100} AS n", "'' AS h"
            )
        if action == "replace":
            result = tables.write(df, uri, mode="replace", replace_where=f"tag = '{tag}'")
        elif action == "slow":
            result = tables.write(df, uri, token=WriteToken(f"worker-{tag}", 1))
        else:
            result = tables.write(df, uri)
        print(
            json.dumps(
                {
                    "version": result.version,
                    "committed": result.committed,
                    "attempts": result.attempts,
                }
            ),
            flush=True,
        )
    spark.stop()


if __name__ == "__main__":
    try:
        backend = sys.argv[6] if len(sys.argv) > 6 else "embedded"
        main(sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), sys.argv[5], backend)
    except Terminated:
        from batchml.lib.spark.session import stop_session

        for active in SESSIONS:  # as the batchml command stops: Spark, then the sweep
            stop_session(active)
        sys.exit(EXIT_SIGTERM)
