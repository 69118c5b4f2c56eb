"""The `batchml` Typer app: global options in its callback, the run context, shared helpers.

Commands live beside their jobs (`jobs/<command>.py`, or `jobs/<command>/command.py`)
and are registered in `cli.py`. A command parses its options and hands them to its job's
function (`run`, or the job's own name: `evaluate`, `promote`, `monitor`), which parses
nothing and returns a report the command prints. The metadata commands (`models`,
`table`, `runs`, `config`, `report`) and `submit` do their small work in functions
beside the command in the same module.
"""

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

from batchml.lib.delta.lakehouse import lakehouse_root
from batchml.lib.platform import storage
from batchml.lib.platform.config import ResolvedConfig, load_config
from batchml.lib.platform.errors import (
    EXIT_INTERNAL,
    BatchmlError,
    ConfigError,
    first_line,
)
from batchml.lib.platform.logs import configure_logging, get_logger
from batchml.lib.platform.redaction import redact_data, redact_override, redact_text
from batchml.lib.platform.runtime import package_version
from batchml.lib.platform.signals import (
    EXIT_SIGINT,
    EXIT_SIGTERM,
    Interrupted,
    Terminated,
    install_interrupt_handler,
)
from batchml.lib.spark import jvm
from batchml.lib.tracking import runs

log = get_logger("batchml.cli")
F = TypeVar("F", bound=Callable[..., Any])

app = typer.Typer(
    name="batchml",
    help="Batch machine-learning jobs on Apache Spark and Delta Lake.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

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
    job: str | None = None  # the recorded job this invocation runs
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
            storage.configure(self._config.settings.storage)
        return self._config

    def spark(self):  # -> SparkSession; imported lazily so --help stays fast
        """The run's one SparkSession, stopped when the command ends if this run started it."""
        if self._spark is None:
            from pyspark.sql import SparkSession

            from batchml.lib.spark.session import build_session

            self._owns_spark = SparkSession.getActiveSession() is None
            cfg = self.config()
            self._spark = build_session(
                cfg.settings,
                verbose=self.verbose,
                job=self.job,
                secret_conf=cfg.env_filled_spark_conf(),
            )
            if self._owns_spark and jvm.active_context() is not None:
                install_interrupt_handler()  # in place of PySpark's (see signals.py)
        return self._spark

    def tables(self):  # -> DeltaTables
        """The Delta backend chosen by `delta.backend` for this run's session."""
        from batchml.lib.delta import delta_tables

        return delta_tables(self.spark(), self.config().settings)

    def location(self, name_or_path: str) -> str:
        """Where a table given on the command line lives: a name is looked up (a contract's
        `path`, else under the lakehouse root), a path is taken from the working directory."""
        from batchml.lib.delta.lakehouse import table_location

        return table_location(name_or_path, self.config().settings, relative_to=Path.cwd())

    def registry(self, *, writable: bool = False):  # -> Registry
        """The model registry; read-only (no Spark) unless the command writes to it."""
        from batchml.lib.tracking.registry import registry_of

        return registry_of(self.config().settings, self.tables() if writable else None)

    def close(self) -> None:
        spark, self._spark = self._spark, None
        if spark is not None and self._owns_spark:
            from batchml.lib.spark.session import stop_session

            stop_session(spark)


def run_context(ctx: typer.Context) -> RunContext:
    """The global options of this invocation, which the app's callback stores in the context."""
    state = ctx.find_object(RunContext)
    if state is None:
        raise RuntimeError("no RunContext: the command was not invoked through the batchml app")
    return state


def fail(message: str, code: int) -> typer.Exit:
    """Print a one-line cause to stderr and return the Exit to raise."""
    message = redact_text(message)  # a Spark or Hadoop error may quote a signed URI
    typer.echo(f"batchml: error: {message}", err=True)
    runs.note_error(message)
    return typer.Exit(code)


def recorded(job: str) -> Callable[[F], F]:
    """Record every run of a job command in the runs table (`runs.record`), whatever its
    outcome: what it read and wrote, its exit code and error, what Spark measured."""

    def decorate(command: F) -> F:
        @functools.wraps(command)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            state: RunContext = kwargs["ctx"].ensure_object(RunContext)
            # recorded with secrets as `***`: a secret-named --set, a signed URI option
            arguments = {
                "options": redact_data({k: v for k, v in kwargs.items() if k != "ctx"}),
                "env": state.env,
                "conf": state.conf_file,
                "set": [redact_override(item) for item in state.overrides],
                "master": state.master,
            }
            run = runs.begin(job, arguments)
            state.job = job
            run.spark_mark = _spark_mark()
            code = EXIT_INTERNAL
            try:
                result = command(*args, **kwargs)
                code = 0
                return result
            except typer.Exit as exc:
                code = exc.exit_code
                raise
            except typer.TyperException as exc:  # a usage error: Typer exits with its code
                code = getattr(exc, "exit_code", EXIT_INTERNAL)
                runs.note_error(redact_text(exc.format_message()))
                raise
            finally:
                runs.end()
                _record(state, run, code)

        # functools.wraps keeps the command's signature, which Typer reads: still an F
        return wrapper  # type: ignore[return-value]

    return decorate


def _spark_mark() -> Any:
    """Where a session already running (tests, the demo's jobs) stands, so a run counts
    only its own jobs; a session the run starts itself is all the run's."""
    from batchml.lib.spark.metrics import Mark, mark

    sc = _running_spark_context()
    return Mark(-1) if sc is None else mark(sc)


def _running_spark_context() -> Any:
    if "pyspark" not in sys.modules:  # nothing imported Spark: no session is running
        return None
    from pyspark import SparkContext

    return SparkContext._active_spark_context


def _event_log(conf: Any, app_id: str) -> str | None:
    """Where Spark writes this application's event log (a folder when rolling, as Spark 4
    does by default; a file otherwise)."""
    if conf.get("spark.eventLog.enabled", "false") != "true":
        return None
    folder = conf.get("spark.eventLog.dir", "").rstrip("/")
    if conf.get("spark.eventLog.rolling.enabled", "true") == "true":
        return f"{folder}/eventlog_v2_{app_id}"
    return f"{folder}/{app_id}"


def _record(state: RunContext, run: runs.Run, code: int) -> None:
    """Append the run's row; a failure to record is a warning, never the job's outcome."""
    cfg = state._config
    if cfg is None or not cfg.settings.runs.record:
        return  # the config did not resolve: there is no lakehouse to record into
    master = app_id = event_log = resources = None
    try:
        sc = _running_spark_context()
        if sc is not None:
            from batchml.lib.spark.metrics import resources_since

            master, app_id = sc.master, sc.applicationId
            event_log = _event_log(sc.getConf(), app_id)
            assert run.spark_mark is not None  # `recorded` marks it as the run begins
            resources = resources_since(sc, run.spark_mark)
        row = runs.row_of(
            run,
            exit_code=code,
            error=run.error,
            config_hash=cfg.config_hash(),
            master=master or cfg.settings.spark.master,
            app_id=app_id,
            event_log=event_log,
            resources=resources,
            lakehouse=lakehouse_root(cfg.settings),
        )
        where = runs.runs_uri(cfg.settings)
        if storage.known_failing(where):  # the run's own error already named the store
            log.debug(f"run {run.run_id} not recorded: its store failed")
            return
        runs.append(where, row)
    except Exception as exc:
        log.warning(f"run {run.run_id} not recorded in the runs table: {first_line(exc)}")


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
        except (typer.Exit, typer.Abort, typer.TyperException):
            raise  # Typer's own: usage errors print its usual message and exit 2
        except (KeyboardInterrupt, Interrupted):
            raise fail("interrupted (Ctrl-C); nothing half-written was kept", EXIT_SIGINT) from None
        except Terminated:
            raise fail(
                "terminated (SIGTERM); nothing half-written was kept", EXIT_SIGTERM
            ) from None
        except Exception as exc:
            if state.verbose:
                traceback.print_exc()
            raise fail(
                f"internal error: {type(exc).__name__}: {first_line(exc)} "
                "(rerun with --verbose for the traceback)",
                EXIT_INTERNAL,
            ) from None

    # functools.wraps keeps the command's signature, which Typer reads: still an F
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


ModelRefArg = Annotated[
    str, typer.Argument(metavar="MODEL[@VERSION|@ALIAS]", help="A registered model.")
]
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


def pin_version(version: int | None, timestamp: str | None) -> tuple[int | None, datetime | None]:
    if version is not None and timestamp is not None:
        raise ConfigError("give --version or --timestamp, not both")
    return version, parse_timestamp_option(timestamp)
