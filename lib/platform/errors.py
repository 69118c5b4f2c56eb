"""Errors a user can act on, each with the process exit code it maps to.

Exit codes (documented in README.md):
    0  success
    1  internal error (a bug: please report it with the log)
    2  usage or configuration error (bad option, bad config file, key or value)
    3  environment error (Java missing or too old, Delta connector asked for but absent)
    4  input error (missing table, column or version, malformed or incompatible data)
    5  contract violation: the batch broke its data contract beyond the table's policy;
       nothing was written
    6  reproduction mismatch: `batchml train --reproduce` got other metrics than the
       registered version
   10  success with quarantined rows: the good rows were written, the rest quarantined
"""

from __future__ import annotations

EXIT_INTERNAL = 1
EXIT_USAGE = 2
EXIT_ENVIRONMENT = 3
EXIT_INPUT = 4
EXIT_CONTRACT = 5
EXIT_MISMATCH = 6
EXIT_QUARANTINED = 10


class BatchmlError(Exception):
    """Base of every error batchml reports as one line and an exit code."""

    exit_code = EXIT_INTERNAL


class ConfigError(BatchmlError):
    """A config file, key, value or command-line option is wrong."""

    exit_code = EXIT_USAGE


class EnvironmentProblem(BatchmlError):
    """The machine cannot run the job (Java missing or too old, a jar absent)."""

    exit_code = EXIT_ENVIRONMENT


class InputError(BatchmlError):
    """A table, column, version or file the job was pointed at is missing or wrong."""

    exit_code = EXIT_INPUT


def first_line(exc: BaseException) -> str:
    """The first non-empty line of an exception's message (Spark's can run to pages)."""
    for line in str(exc).splitlines():
        line = line.strip()
        if line:
            return line
    return type(exc).__name__
