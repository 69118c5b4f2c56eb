"""`batchml config show`: the resolved configuration and where each value came from."""

from __future__ import annotations

import json
from typing import Any

import typer

from batchml.jobs.app import JsonOption, emit, reports_errors, run_context
from batchml.lib.platform.config import ResolvedConfig

app = typer.Typer(help="Inspect the resolved configuration.", no_args_is_help=True)


@app.command("show")
@reports_errors
def config_show(ctx: typer.Context, *, as_json: JsonOption = False) -> None:
    """Print the resolved configuration (secrets redacted) and where each value came from."""
    cfg: ResolvedConfig = run_context(ctx).config()
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
