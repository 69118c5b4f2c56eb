"""One logging format for every batchml module: text for people, JSON lines for schedulers.

Both formats pass each line through `redaction.redact_text`: a message or field quoting
a signed URI (a SAS token, a presigned URL) or a URI's password logs it as `***`.
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime
from typing import TextIO

from batchml.lib.platform.redaction import redact_text

_STANDARD_ATTRS = set(vars(logging.makeLogRecord({}))) | {"message", "asctime"}
# py4j's chatter, and PySpark's logger that repeats every analysis error with its JVM stack
NOISY_LOGGERS = ("py4j", "py4j.clientserver", "py4j.java_gateway", "DataFrameQueryContextLogger")


class JsonLineFormatter(logging.Formatter):
    """A log record as one JSON object per line; `extra={...}` fields are kept."""

    def format(self, record: logging.LogRecord) -> str:
        payload = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key not in _STANDARD_ATTRS and not key.startswith("_"):
                payload[key] = value
        if record.exc_info:
            payload["exception"] = self.formatException(record.exc_info)
        return redact_text(json.dumps(payload, default=str))


class TextFormatter(logging.Formatter):
    """`time level logger: message key=value ...` on one line."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)-7s %(name)s: %(message)s", "%H:%M:%S")

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        extras = {
            k: v
            for k, v in vars(record).items()
            if k not in _STANDARD_ATTRS and not k.startswith("_")
        }
        if extras:
            line += " " + " ".join(f"{k}={json.dumps(v, default=str)}" for k, v in extras.items())
        return redact_text(line)


class _StderrHandler(logging.StreamHandler):
    """Writes to whatever `sys.stderr` is at the time of the record, so a thread that
    logs after stderr was swapped (a test runner, a redirect) never hits a closed file."""

    @property
    def stream(self) -> TextIO:
        return sys.stderr

    @stream.setter
    def stream(self, value: TextIO) -> None:  # StreamHandler.__init__ assigns it
        pass


def configure_logging(level: str = "INFO", fmt: str = "text", verbose: bool = False) -> None:
    """Route the `batchml` loggers to stderr in one format; quiet py4j unless verbose."""
    handler = _StderrHandler()
    handler.setFormatter(JsonLineFormatter() if fmt == "json" else TextFormatter())
    root = logging.getLogger("batchml")
    root.handlers[:] = [handler]
    root.setLevel("DEBUG" if verbose else level)
    root.propagate = False
    for name in NOISY_LOGGERS:
        logging.getLogger(name).setLevel(logging.INFO if verbose else logging.CRITICAL)


def get_logger(name: str) -> logging.Logger:
    """A logger under the `batchml` hierarchy, e.g. `get_logger(__name__)`."""
    return logging.getLogger(name if name.startswith("batchml") else f"batchml.{name}")
