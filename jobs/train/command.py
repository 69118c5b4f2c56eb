"""The `batchml train` command and its output."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from batchml.jobs.app import JsonOption, emit, reports_errors, run_context
from batchml.lib.platform.errors import EXIT_MISMATCH, ConfigError


@reports_errors
def command(
    ctx: typer.Context,
    model: Annotated[
        str | None, typer.Argument(help="A model from the models section of the config.")
    ] = None,
    *,
    table_version: Annotated[
        int | None,
        typer.Option(
            "--table-version",
            min=0,
            help="Train on this version of the feature table (default: latest).",
        ),
    ] = None,
    reproduce: Annotated[
        str | None,
        typer.Option(
            "--reproduce",
            metavar="NAME@VERSION",
            help="Retrain a registered version from its manifest and compare "
            "metrics (exit 6 when they differ); registers nothing.",
        ),
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Fit pipeline + estimator on the training split, evaluate, register a new version."""
    from batchml.jobs.train import job  # pyspark.ml: loaded only when training

    state = run_context(ctx)
    config = state.config()
    if (model is None) == (reproduce is None):
        raise ConfigError("give a MODEL to train or --reproduce NAME@VERSION (not both)")
    if reproduce is not None:
        if table_version is not None:
            raise ConfigError(
                "--table-version does not go with --reproduce (the manifest pins the version)"
            )
        result = job.reproduce(state.spark(), config.settings, reproduce)
        emit(result.to_dict(), as_json, _render_reproduce)
        if not result.match:
            raise typer.Exit(EXIT_MISMATCH)
        return
    assert model is not None  # exactly one of MODEL and --reproduce (checked above)
    report = job.run(
        state.spark(),
        config.settings,
        model,
        config_hash=config.config_hash(),
        resolved_config=config.redacted(),
        table_version=table_version,
    )
    emit(report.to_dict(), as_json, _render_train)


def _render_train(d: dict[str, Any]) -> str:
    lines = [
        f"{d['model']} version {d['version']} ({d['algorithm']}) trained on "
        f"{d['training_table']}@{d['training_version']} in {d['seconds']} s"
    ]
    if d.get("tuning"):
        t = d["tuning"]
        lines.append(
            f"  tuning: best {t['metric']} {t['best_score']:.4f} of "
            f"{len(t['candidates'])} candidates with {t['best_params']}"
        )
    if d.get("early_stopping"):
        lines.append(f"  early stopping: {d['early_stopping']}")
    lines += [
        f"  {part}: " + ", ".join(f"{k} {v:.4f}" for k, v in m.items())
        for part, m in d["metrics"].items()
    ]
    if d.get("report"):
        lines.append(f"  report: {d['report']}")
    return "\n".join(lines)


def _render_reproduce(d: dict[str, Any]) -> str:
    verdict = "metrics match" if d["match"] else "metrics DIFFER"
    lines = [
        f"{d['model']} version {d['version']} retrained on "
        f"{d['training_table']}@{d['training_version']} in {d['seconds']} s: {verdict}"
    ]
    for part, metrics in d["reproduced"].items():
        for name, value in metrics.items():
            old = d["registered"].get(part, {}).get(name)
            mark = "  <- differs" if f"{part}.{name}" in d["differences"] else ""
            lines.append(f"  {part}.{name}: registered {old}, now {value}{mark}")
    return "\n".join(lines)
