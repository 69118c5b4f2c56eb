"""The `batchml` command: one Typer app, global options in its callback, one module per job."""

from __future__ import annotations

import functools
import json
import sys
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar

import typer

from batchml.lib.config import ResolvedConfig, load_config
from batchml.lib.errors import (
    EXIT_ENVIRONMENT,
    EXIT_INTERNAL,
    BatchmlError,
    ConfigError,
    first_line,
)
from batchml.lib.logs import configure_logging, get_logger
from batchml.lib.runtime import package_version

log = get_logger("batchml.cli")
F = TypeVar("F", bound=Callable[..., Any])

app = typer.Typer(
    name="batchml",
    help="Batch machine-learning jobs on Apache Spark and Delta Lake.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
config_app = typer.Typer(help="Inspect the resolved configuration.", no_args_is_help=True)
app.add_typer(config_app, name="config")
table_app = typer.Typer(
    help="Look into Delta tables, export a snapshot, vacuum.", no_args_is_help=True
)
app.add_typer(table_app, name="table")

JsonOption = Annotated[bool, typer.Option("--json", help="Print machine-readable JSON.")]


@dataclass
class RunContext:
    """The global options of one invocation; config and Spark are built on first use."""

    env: str | None = None
    conf_file: Path | None = None
    overrides: list[str] = field(default_factory=list)
    master: str | None = None
    verbose: bool = False
    log_format: str | None = None
    _config: ResolvedConfig | None = None
    _spark: Any = None
    _owns_spark: bool = False

    def config(self) -> ResolvedConfig:
        """The resolved config (layers merged, validated); logging set up from it."""
        if self._config is None:
            overrides = list(self.overrides)
            if self.master is not None:
                overrides.append(f"spark.master={json.dumps(self.master)}")
            self._config = load_config(env=self.env, conf_file=self.conf_file, overrides=overrides)
            logging_settings = self._config.settings.logging
            configure_logging(
                logging_settings.level,
                self.log_format or logging_settings.format,
                verbose=self.verbose,
            )
            log.debug("resolved config", extra={"config": self._config.redacted()})
        return self._config

    def spark(self):  # -> SparkSession; imported lazily so --help stays fast
        """The run's one SparkSession, stopped when the command ends if this run started it."""
        if self._spark is None:
            from pyspark.sql import SparkSession

            from batchml.lib.spark import build_session

            self._owns_spark = SparkSession.getActiveSession() is None
            self._spark = build_session(self.config().settings, verbose=self.verbose)
        return self._spark

    def tables(self):  # -> DeltaTables
        """The Delta backend chosen by `delta.backend` for this run's session."""
        from batchml.lib.delta import delta_tables

        return delta_tables(self.spark(), self.config().settings)

    def table_uri(self, name_or_path: str) -> str:
        """A bare table name lives under the lakehouse root; paths and URIs stay as given."""
        if "/" in name_or_path or "://" in name_or_path or name_or_path.startswith("."):
            return name_or_path
        root = self.config().settings.lakehouse.root.rstrip("/")
        return f"{root}/{name_or_path}"

    def close(self) -> None:
        if self._spark is not None and self._owns_spark:
            self._spark.stop()
        self._spark = None


def fail(message: str, code: int) -> typer.Exit:
    """Print a one-line cause to stderr and return the Exit to raise."""
    typer.echo(f"batchml: error: {message}", err=True)
    return typer.Exit(code)


def reports_errors(command: F) -> F:
    """Turn a BatchmlError into its one-line message and exit code; anything else is a bug.

    The command must take `ctx: typer.Context`, where the global options live.
    """

    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        state: RunContext = kwargs["ctx"].ensure_object(RunContext)
        try:
            return command(*args, **kwargs)
        except BatchmlError as exc:
            raise fail(str(exc), exc.exit_code) from None
        except typer.Exit:
            raise
        except Exception as exc:
            if state.verbose:
                traceback.print_exc()
            raise fail(
                f"internal error: {type(exc).__name__}: {first_line(exc)} "
                "(rerun with --verbose for the traceback)",
                EXIT_INTERNAL,
            ) from None

    return wrapper  # type: ignore[return-value]


def emit(data: dict[str, Any], as_json: bool, text: Callable[[dict[str, Any]], str]) -> None:
    """Print a command's result: JSON on request, else the human rendering."""
    if as_json:
        typer.echo(json.dumps(data, indent=2, sort_keys=True, default=str))
    else:
        typer.echo(text(data))


def _version(value: bool) -> None:
    if value:
        typer.echo(f"batchml {package_version('batchml')}")
        raise typer.Exit()


@app.callback()
def main_callback(
    ctx: typer.Context,
    *,
    env: Annotated[
        str | None,
        typer.Option(
            "--env", envvar="BATCHML_ENV", help="Config env: reads conf/<env>.toml (default local)."
        ),
    ] = None,
    conf: Annotated[
        Path | None, typer.Option("--conf", help="Your TOML config file, layered over the env.")
    ] = None,
    set_: Annotated[
        list[str] | None,
        typer.Option("--set", help="Override one key: dotted.key=value (TOML value). Repeatable."),
    ] = None,
    master: Annotated[
        str | None, typer.Option("--master", help="Spark master, e.g. local[2] (spark.master).")
    ] = None,
    verbose: Annotated[
        bool, typer.Option("--verbose", "-v", help="Debug logs, Spark's warnings, tracebacks.")
    ] = False,
    log_format: Annotated[
        Literal["text", "json"] | None,
        typer.Option("--log-format", help="Log lines as text or JSON (logging.format)."),
    ] = None,
    version: Annotated[
        bool,
        typer.Option("--version", callback=_version, is_eager=True, help="Print the version."),
    ] = False,
) -> None:
    """Batch machine-learning jobs on Apache Spark and Delta Lake."""
    state = RunContext(
        env=env,
        conf_file=conf,
        overrides=list(set_ or []),
        master=master,
        verbose=verbose,
        log_format=log_format,
    )
    ctx.obj = state
    ctx.call_on_close(state.close)


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
    """Console-script entrypoint."""
    try:
        app()
    except KeyboardInterrupt:
        typer.echo("batchml: interrupted", err=True)
        sys.exit(130)


# ---------------------------------------------------------------------- table
TableArg = Annotated[
    str, typer.Argument(help="Table path or URI, or a table name under lakehouse.root.")
]
VersionOption = Annotated[
    int | None, typer.Option("--version", help="Read this table version.", min=0)
]
TimestampOption = Annotated[
    str | None,
    typer.Option("--timestamp", help="Read the table as of this time (ISO-8601, UTC if no zone)."),
]


def parse_timestamp_option(value: str | None) -> datetime | None:
    """`--timestamp` as an aware datetime (UTC when no zone is given)."""
    if value is None:
        return None
    try:
        parsed = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except ValueError:
        raise ConfigError(
            f"--timestamp {value!r}: expected ISO-8601 such as 2024-01-31T12:00:00Z"
        ) from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _pin(version: int | None, timestamp: str | None) -> tuple[int | None, datetime | None]:
    if version is not None and timestamp is not None:
        raise ConfigError("give --version or --timestamp, not both")
    return version, parse_timestamp_option(timestamp)


@table_app.command("show")
@reports_errors
def table_show(
    ctx: typer.Context,
    uri: TableArg,
    *,
    version: VersionOption = None,
    timestamp: TimestampOption = None,
    limit: Annotated[int, typer.Option("--limit", help="Rows to show.", min=0)] = 10,
    as_json: JsonOption = False,
) -> None:
    """Schema, version, row count and first rows of a table snapshot."""
    from batchml.jobs import table

    state: RunContext = ctx.find_object(RunContext)
    pinned_version, pinned_time = _pin(version, timestamp)
    summary = table.show(
        state.tables(), state.table_uri(uri), version=pinned_version, timestamp=pinned_time,
        limit=limit,
    )  # fmt: skip
    emit(summary.to_dict(), as_json, _render_table)


def _render_table(data: dict[str, Any]) -> str:
    lines = [f"{data['uri']}  version {data['version']}  rows {data['row_count']}", ""]
    lines += [
        f"  {f['name']:<24} {f['type']}{'' if f['nullable'] else ' not null'}"
        for f in data["schema"]
    ]
    if data["rows"]:
        names = [f["name"] for f in data["schema"]]
        cells = [[_cell(row.get(n)) for n in names] for row in data["rows"]]
        widths = [max(len(n), *(len(c[i]) for c in cells)) for i, n in enumerate(names)]
        lines += ["", " | ".join(n.ljust(w) for n, w in zip(names, widths, strict=True))]
        lines.append("-+-".join("-" * w for w in widths))
        lines += [" | ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in cells]
    return "\n".join(lines)


def _cell(value: Any) -> str:
    text = "NULL" if value is None else str(value)
    return text if len(text) <= 40 else text[:37] + "..."


@table_app.command("history")
@reports_errors
def table_history(
    ctx: typer.Context,
    uri: TableArg,
    *,
    limit: Annotated[int | None, typer.Option("--limit", help="Newest N commits.", min=1)] = None,
    as_json: JsonOption = False,
) -> None:
    """The table's commits, newest first: version, time, operation, batchml metadata."""
    from batchml.jobs import table

    state: RunContext = ctx.find_object(RunContext)
    commits = table.history(state.tables(), state.table_uri(uri), limit=limit)
    emit({"uri": state.table_uri(uri), "commits": commits}, as_json, _render_history)


def _render_history(data: dict[str, Any]) -> str:
    lines = [f"{'version':>7}  {'time (UTC)':<23}  {'operation':<12}  details"]
    for commit in data["commits"]:
        when = commit.get("timestamp")
        if isinstance(when, int):
            when = datetime.fromtimestamp(when / 1000, UTC).isoformat(timespec="milliseconds")
        details = commit.get("batchml") or commit.get("operationParameters") or {}
        lines.append(
            f"{commit.get('version'):>7}  {str(when)[:23]:<23}  "
            f"{commit.get('operation', ''):<12}  {json.dumps(details, default=str)}"
        )
    return "\n".join(lines)


@table_app.command("export")
@reports_errors
def table_export(
    ctx: typer.Context,
    uri: TableArg,
    *,
    to: Annotated[Path, typer.Option("--to", help="New folder for the exported files.")],
    file_format: Annotated[
        str, typer.Option("--format", help="parquet or csv (with a header).")
    ] = "parquet",
    version: VersionOption = None,
    timestamp: TimestampOption = None,
    as_json: JsonOption = False,
) -> None:
    """Write one snapshot's rows as a plain Parquet or CSV folder."""
    from batchml.jobs import table

    state: RunContext = ctx.find_object(RunContext)
    pinned_version, pinned_time = _pin(version, timestamp)
    result = table.export(
        state.spark(), state.tables(), state.table_uri(uri), to=to, file_format=file_format,
        version=pinned_version, timestamp=pinned_time,
    )  # fmt: skip
    emit(result, as_json, lambda d: f"exported {d['uri']}@{d['version']} to {d['to']} "
         f"({d['files']} {d['format']} files)")  # fmt: skip


@table_app.command("vacuum")
@reports_errors
def table_vacuum(
    ctx: typer.Context,
    uri: TableArg,
    *,
    retain_hours: Annotated[
        float, typer.Option("--retain-hours", help="Keep unreferenced files younger than this.")
    ] = 168,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="List, do not delete.")] = False,
    as_json: JsonOption = False,
) -> None:
    """Remove files no version within the retention needs, and stale staging folders."""
    from batchml.jobs import table

    state: RunContext = ctx.find_object(RunContext)
    result = table.vacuum(
        state.tables(), state.table_uri(uri), retain_hours=retain_hours, dry_run=dry_run
    )
    data = {"uri": result.uri, "dry_run": result.dry_run, "files": result.files,
            "staging_dirs": result.staging_dirs}  # fmt: skip
    verb = "would remove" if result.dry_run else "removed"
    emit(data, as_json, lambda d: f"{verb} {len(d['files'])} files and "
         f"{len(d['staging_dirs'])} staging folders from {d['uri']}")  # fmt: skip
