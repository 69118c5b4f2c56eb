"""A separate writer process for concurrency and crash tests (run as a script, never forked).

    python tests/delta_worker.py append|replace|slow URI TAG COUNT LAKEHOUSE
Prints one JSON line per write.
"""

from __future__ import annotations

import json
import sys

from batchml.lib.config import load_config
from batchml.lib.delta.embedded import EmbeddedDelta
from batchml.lib.spark import build_session


def main(action: str, uri: str, tag: str, count: int, lakehouse: str) -> None:
    cfg = load_config(
        overrides=[
            'spark.master="local[1]"',
            "spark.shuffle_partitions=1",
            "spark.driver_memory=700m",
            f'lakehouse.root="{lakehouse}"',
        ]
    )
    spark = build_session(cfg.settings)
    tables = EmbeddedDelta(spark)
    for round_ in range(count):
        if action == "slow":
            df = spark.range(0, 30_000_000, numPartitions=6).selectExpr(
                f"'{tag}' AS tag", "id AS n", "sha2(CAST(id AS STRING), 512) AS h"
            )
        else:
            df = spark.range(0, 5).selectExpr(f"'{tag}' AS tag", f"id + {round_ * 100} AS n",
                                              "'' AS h")  # fmt: skip
        if action == "replace":
            result = tables.write(df, uri, mode="replace", replace_where=f"tag = '{tag}'")
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
    main(sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), sys.argv[5])
