"""A run on another machine writing one of the shared tables through the connector
backend (run as a script, never forked): COUNT one-row appends to URI.

    python tests/shared_writer.py LAKEHOUSE URI TAG COUNT
Prints the versions it committed as one JSON line.
"""

from __future__ import annotations

import json
import sys

from child_session import child_session

from batchml.lib.delta import delta_tables


def main(lakehouse: str, uri: str, tag: str, count: int) -> None:
    settings, spark = child_session(lakehouse, extra=('delta.backend="connector"',))
    tables = delta_tables(spark, settings)
    versions = []
    for index in range(count):
        frame = spark.createDataFrame([(f"{tag}-{index}",)], "who string")
        versions.append(tables.write(frame, uri).version)
    print(json.dumps({"backend": tables.name, "versions": versions}), flush=True)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]))
