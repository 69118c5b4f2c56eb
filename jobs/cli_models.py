"""`batchml models list | show | alias`: the model registry."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from batchml.jobs.app import JsonOption, RunContext, app, emit, reports_errors

models_app = typer.Typer(help="Registered model versions and their aliases.", no_args_is_help=True)
app.add_typer(models_app, name="models")


def registry_of(state: RunContext):  # -> Registry
    from batchml.lib.lakehouse import resolve_path
    from batchml.lib.registry import Registry

    settings = state.config().settings
    return Registry(state.spark(), state.tables(), resolve_path(settings.registry.root, settings))


def _render_list(data: dict[str, Any]) -> str:
    lines = [f"{'model':<20} {'version':>7}  {'algorithm':<22} {'trained on':<40} aliases"]
    for v in data["versions"]:
        table = f"{v['training_table'].rsplit('/', 1)[-1]}@{v['training_version']}"
        lines.append(f"{v['name']:<20} {v['version']:>7}  {v['algorithm']:<22} {table:<40} "
                     f"{', '.join(v['aliases'])}")  # fmt: skip
    return "\n".join(lines)


@models_app.command("list")
@reports_errors
def models_list(
    ctx: typer.Context,
    name: Annotated[str | None, typer.Argument(help="Only this model's versions.")] = None,
    *,
    as_json: JsonOption = False,
) -> None:
    """Every registered version, oldest first."""
    versions = registry_of(ctx.find_object(RunContext)).list(name)
    emit({"versions": [v.to_dict() for v in versions]}, as_json, _render_list)


@models_app.command("show")
@reports_errors
def models_show(
    ctx: typer.Context,
    ref: Annotated[str, typer.Argument(help="NAME, NAME@VERSION or NAME@ALIAS.")],
    *,
    as_json: JsonOption = False,
) -> None:
    """One version: lineage, metrics, aliases and its manifest."""
    version = registry_of(ctx.find_object(RunContext)).get(ref)
    emit(version.to_dict(), as_json, lambda d: "\n".join(
        f"{key:<18} {value}" for key, value in d.items() if key != "manifest"))  # fmt: skip


@models_app.command("alias")
@reports_errors
def models_alias(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="The model.")],
    version: Annotated[int, typer.Argument(help="The version the alias points at.", min=1)],
    alias: Annotated[str, typer.Argument(help="The alias, e.g. champion or challenger.")],
    *,
    as_json: JsonOption = False,
) -> None:
    """Point an alias at a version (atomically)."""
    registry_of(ctx.find_object(RunContext)).set_alias(name, version, alias)
    emit({"name": name, "version": version, "alias": alias}, as_json,
         lambda d: f"{d['name']}@{d['alias']} -> version {d['version']}")  # fmt: skip


@app.command("train")
@reports_errors
def train_command(
    ctx: typer.Context,
    model: Annotated[str, typer.Argument(help="A model from the models section of the config.")],
    *,
    as_json: JsonOption = False,
) -> None:
    """Fit pipeline + estimator on the training split, evaluate, register a new version."""
    from batchml.jobs import train

    state: RunContext = ctx.find_object(RunContext)
    config = state.config()
    report = train.run(state.spark(), config.settings, model, config_hash=config.config_hash())
    emit(report.to_dict(), as_json, lambda d: "\n".join(
        [f"{d['model']} version {d['version']} ({d['algorithm']}) trained on "
         f"{d['training_table']}@{d['training_version']} in {d['seconds']} s",
         *[f"  {part}: " + ", ".join(f"{k} {v:.4f}" for k, v in m.items())
           for part, m in d["metrics"].items()]]))  # fmt: skip
