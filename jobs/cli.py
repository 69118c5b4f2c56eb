"""The `batchml` console command: the app from `app.py` with every command registered."""

from __future__ import annotations

import json
import sys
from typing import Any

import typer

from batchml.jobs import cli_data, cli_models, cli_table  # noqa: F401 - they register commands
from batchml.jobs.app import (
    JsonOption,
    RunContext,
    app,
    config_app,
    emit,
    fail,
    reports_errors,
)
from batchml.lib.config import ResolvedConfig
from batchml.lib.errors import EXIT_ENVIRONMENT
from batchml.lib.signals import EXIT_SIGINT, EXIT_SIGTERM, Terminated, install_termination_handler

__all__ = ["app", "main"]


@config_app.command("show")
@reports_errors
def config_show(ctx: typer.Context, *, as_json: JsonOption = False) -> None:
    """Print the resolved configuration (secrets redacted) and where each value came from."""
    cfg: ResolvedConfig = ctx.find_object(RunContext).config()
    data = {
        "env": cfg.env,
        "layers": list(cfg.layers),
        "config": cfg.redacted(),
        "sources": dict(sorted(cfg.sources.items())),
    }
    emit(data, as_json, _render_config)


def _render_config(data: dict[str, Any]) -> str:
    lines = [f"# env: {data['env']}   layers: {' < '.join(data['layers'])}"]

    def walk(tree: dict[str, Any], prefix: str = "") -> None:
        for key, value in tree.items():
            dotted = f"{prefix}{key}"
            if isinstance(value, dict) and value:
                walk(value, f"{dotted}.")
            else:
                source = data["sources"].get(dotted, "default")
                lines.append(f"{dotted} = {json.dumps(value)}    # {source}")

    walk(data["config"])
    return "\n".join(lines)


@app.command("doctor")
@reports_errors
def doctor_command(ctx: typer.Context, *, as_json: JsonOption = False) -> None:
    """Check Java, libraries, memory, the lakehouse root, Spark and the Delta backend."""
    from batchml.jobs import doctor

    state: RunContext = ctx.find_object(RunContext)
    report = doctor.run(state.config(), state.spark)
    emit(report.to_dict(), as_json, _render_doctor)
    failure = report.failure()
    if failure is not None:
        raise fail(f"{failure.name}: {failure.detail}", EXIT_ENVIRONMENT)


def _render_doctor(data: dict[str, Any]) -> str:
    marks = {"ok": "ok  ", "warn": "WARN", "fail": "FAIL"}
    lines = [f"[{marks[c['status']]}] {c['name']:<14} {c['detail']}" for c in data["checks"]]
    lines.append("")
    lines.extend(f"{key:<26} {value}" for key, value in data["facts"].items())
    return "\n".join(lines)


def main() -> None:
    """Console-script entrypoint: SIGTERM stops a job cleanly (exit 143), like Ctrl-C (130)."""
    install_termination_handler()
    try:
        app()
    except KeyboardInterrupt:
        typer.echo("batchml: error: interrupted (Ctrl-C)", err=True)
        sys.exit(EXIT_SIGINT)
    except Terminated:
        typer.echo("batchml: error: terminated (SIGTERM)", err=True)
        sys.exit(EXIT_SIGTERM)


if __name__ == "__main__":
    main()
