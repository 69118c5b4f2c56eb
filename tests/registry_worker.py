"""A process that points an alias at a model version, several times (concurrency tests).

python tests/registry_worker.py REGISTRY_ROOT LAKEHOUSE MODEL VERSION ALIAS TIMES
"""

from __future__ import annotations

import sys

from child_session import child_session

from batchml.lib.delta.embedded import EmbeddedDelta
from batchml.lib.tracking.registry import Registry


def main(root: str, lakehouse: str, model: str, version: str, alias: str, times: str) -> None:
    _, spark = child_session(lakehouse)
    registry = Registry(root, EmbeddedDelta(spark))
    for _ in range(int(times)):
        registry.set_alias(model, int(version), alias)
        print("set", flush=True)
    spark.stop()


if __name__ == "__main__":
    main(*sys.argv[1:7])
