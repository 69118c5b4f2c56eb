"""The driver side of `spark-submit.sh`: the entry file spark-submit runs calls `main`.

It is the `batchml` command itself (same Typer app, same options); the only difference
is where a `--conf` file is found: in cluster deploy mode the file was shipped with
`--files` and lies in the driver's working directory under its own name.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from batchml.lib.submit.launch import STDERR_FILE


def shipped_paths(args: list[str]) -> list[str]:
    """The global options with a `--conf` file that is not where the submitter had it
    taken from the working directory, where YARN and Kubernetes put `--files`."""
    out = list(args)
    i = 0
    while i + 1 < len(out) and out[i].startswith("--"):
        if out[i] == "--conf":
            given = Path(out[i + 1])
            if not given.exists() and Path(given.name).is_file():
                out[i + 1] = given.name
        i += 2  # every global option spark-submit.sh passes takes a value
    return out


def main() -> None:
    target = os.environ.get(STDERR_FILE)
    if target:
        fd = os.open(target, os.O_WRONLY | os.O_APPEND)
        os.dup2(fd, 2)  # Python's stderr, the logs and every child process's
        os.close(fd)
    from batchml.jobs.cli import main as batchml_main

    sys.argv = [sys.argv[0], *shipped_paths(sys.argv[1:])]
    batchml_main()
