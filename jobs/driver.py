"""The driver side of `spark-submit.sh`: the entry file spark-submit runs calls `main`.

It is the `batchml` command itself (same Typer app, same options), an entrypoint like
`cli.py`: it runs the app and holds no logic of its own. The only difference is where a
`--conf` file is found (`lib/submit/launch.shipped_paths`): in cluster deploy mode the
file was shipped with `--files` and lies in the driver's working directory.
"""

from __future__ import annotations

import os
import sys

from batchml.lib.submit.launch import STDERR_FILE, shipped_paths


def main() -> None:
    target = os.environ.get(STDERR_FILE)
    if target:
        fd = os.open(target, os.O_WRONLY | os.O_APPEND)
        os.dup2(fd, 2)  # Python's stderr, the logs and every child process's
        os.close(fd)
    from batchml.jobs.cli import main as batchml_main

    sys.argv = [sys.argv[0], *shipped_paths(sys.argv[1:])]
    batchml_main()
