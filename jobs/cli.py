"""The `batchml` console command: the app from `app.py` with every command registered.

Each command lives in the `jobs/` module named after it, beside its job; this file only
registers them. A command group's module imports what its command needs at start-up
cheaply; pyspark.ml (pandas, scipy: ~2 s) is imported only by the commands that train.
"""

from __future__ import annotations

import os
import sys

import typer

from batchml.jobs import (
    config,
    demo,
    doctor,
    evaluate,
    features,
    generate,
    models,
    monitor,
    pipeline,
    predict,
    promote,
    report,
    runs,
    submit,
    table,
)
from batchml.jobs.app import app, recorded
from batchml.jobs.ingest import command as ingest
from batchml.jobs.train import command as train
from batchml.lib.platform.signals import (
    EXIT_SIGINT,
    EXIT_SIGTERM,
    Interrupted,
    Terminated,
    install_termination_handler,
)
from batchml.lib.submit.launch import STDERR_FILE, shipped_paths

__all__ = ["app", "main", "submitted_main"]

app.command("ingest")(recorded("ingest")(ingest.command))
app.command("generate")(recorded("generate")(generate.command))
app.command("demo")(recorded("demo")(demo.command))
app.command("features")(recorded("features")(features.command))
app.command("train")(recorded("train")(train.command))
app.command("evaluate")(recorded("evaluate")(evaluate.command))
app.command("promote")(recorded("promote")(promote.command))
app.command("predict")(recorded("predict")(predict.command))
app.command("monitor")(recorded("monitor")(monitor.command))
app.command("pipeline")(recorded("pipeline")(pipeline.command))
app.command(
    "submit",
    help=submit.SUBMIT_HELP,
    context_settings={
        "allow_extra_args": True,
        "ignore_unknown_options": True,
        "allow_interspersed_args": False,
    },
)(submit.command)
app.command("doctor")(doctor.command)
app.add_typer(config.app, name="config")
app.add_typer(table.app, name="table")
app.add_typer(models.app, name="models")
app.add_typer(runs.app, name="runs")
app.add_typer(report.app, name="report")


def main() -> None:
    """Console-script entrypoint: SIGTERM stops a job cleanly (exit 143), like Ctrl-C (130)."""
    install_termination_handler()
    try:
        app()
    except (KeyboardInterrupt, Interrupted):
        typer.echo("batchml: error: interrupted (Ctrl-C)", err=True)
        sys.exit(EXIT_SIGINT)
    except Terminated:
        typer.echo("batchml: error: terminated (SIGTERM)", err=True)
        sys.exit(EXIT_SIGTERM)


if __name__ == "__main__":
    main()


def submitted_main() -> None:
    """The same command on the driver of a `spark-submit.sh` run (the entry file in dist/
    calls it). Two differences: stderr goes to the file the submitter names, and a
    `--conf` file is found where spark-submit shipped it (`shipped_paths`: in cluster
    deploy mode, the driver's working directory)."""
    target = os.environ.get(STDERR_FILE)
    if target:
        fd = os.open(target, os.O_WRONLY | os.O_APPEND)
        os.dup2(fd, 2)  # Python's stderr, the logs and every child process's
        os.close(fd)
    sys.argv = [sys.argv[0], *shipped_paths(sys.argv[1:])]
    main()
