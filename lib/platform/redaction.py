"""What counts as a secret, and how it is kept out of everything batchml writes or prints.

One rule serves the config (`config show`, logs, model manifests), the recorded `--set`
arguments of a run, the printed spark-submit command line and Spark's own redaction
(`spark.redaction.regex`: its UI, event log and environment listing):

- by name: a key naming a password, secret, token, credential, signature or a key
  (`access.key`, `secret.key`, `session.token`, `fs.azure.account.key.<account>`,
  `fs.gs.auth.service.account.private.key`, `fs.azure.sas.<container>.<account>`, …);
  a key ending in `provider` (`fs.s3a.aws.credentials.provider`) names a class, not a
  secret;
- by value: the signature or token of a URI's query string (an Azure SAS `sig=`, a
  presigned S3 or GCS URL, `password=` in a JDBC URL) and a URI's `user:password@`.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Iterable
from typing import Any

REDACTED = "***"

# one pattern for Python and Java (Spark compiles it): no Python-only syntax
SECRET_NAME_PATTERN = (
    r"(?i:^(?!.*provider(?:[._-]?(?:type|class))?$).*("
    r"password|passwd|secret|credential|token(?![a-z])|signature"
    r"|(?:api|access|account|private|master|encryption)[._-]?key"
    r"|(?<![a-z0-9])sas(?![a-z0-9])"
    r"))"
)
# query parameters (and JDBC `;key=value` properties) whose value is a secret: an Azure
# SAS signature, a presigned S3 or GCS URL's, a token, a password
_SECRET_PARAM = (
    r"(?:sig|signature|x-amz-signature|x-amz-security-token|x-amz-credential"
    r"|x-goog-signature|x-goog-credential|[a-z0-9_.-]*(?:password|secret|token|api[_-]?key))"
)
_PARAM_VALUE = r"[^&#;\s\"']+"
# the part of a string (a URI, a SAS token, a JDBC URL) that is a secret: for Spark's
# `spark.redaction.string.regex` (plan strings, explain output), Java syntax as well
SECRET_TEXT_PATTERN = (
    rf"(?i:(?<=[?&;]){_SECRET_PARAM}={_PARAM_VALUE})|(?<=://)[^/@\s:]+:[^@\s]+(?=@)"
)

_SECRET_NAME = re.compile(SECRET_NAME_PATTERN)
_QUERY_SECRET = re.compile(rf"(?i)((?:^|[?&;]){_SECRET_PARAM}=){_PARAM_VALUE}")
# a password may hold `/` (AWS secret keys do): up to the `@`
_URI_PASSWORD = re.compile(r"(?i)(\b[a-z][a-z0-9+.-]*://[^/@\s:]+:)[^@\s]+(?=@)")
_JAVA_PROPERTY = re.compile(r"(-D([^=\s]+)=)(\S+)")


def is_secret_name(name: str) -> bool:
    """Whether a config key, Spark or Hadoop setting, or option names a secret."""
    return bool(_SECRET_NAME.search(name))


def is_secret_setting(name: str, value: str, secret_names: Iterable[str] = ()) -> bool:
    """Whether a setting holds a secret: by its name, as one of `secret_names` (filled
    from an environment variable), or by secret text in its value."""
    return is_secret_name(name) or name in secret_names or redact_text(value) != value


def redact_text(text: str) -> str:
    """`text` with the secrets a value can carry replaced by `***`: a query string's
    signature or token (`?sv=…&sig=***`), a URI's password (`s3a://key:***@bucket`)."""
    if "=" not in text and "@" not in text:
        return text
    text = _QUERY_SECRET.sub(rf"\1{REDACTED}", text)
    return _URI_PASSWORD.sub(rf"\1{REDACTED}", text)


def redact_setting(name: str, value: Any) -> Any:
    """A setting's value as it may be shown: `***` for a scalar or list under a secret
    name, else the value with every secret it holds redacted (tables entry by entry)."""
    if isinstance(value, dict):
        return {key: redact_setting(str(key), item) for key, item in value.items()}
    if is_secret_name(name):
        return REDACTED
    return redact_data(value)


def redact_data(value: Any) -> Any:
    """Plain data (JSON-like) with every secret-named entry and secret text redacted."""
    if isinstance(value, str):
        return redact_text(value)
    if isinstance(value, dict):
        return {key: redact_setting(str(key), item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [redact_data(item) for item in value]
    return value


def redact_override(item: str) -> str:
    """A `--set dotted.key=value` as it may be recorded or printed: `key=***` when the key
    names a secret (`spark.conf."fs.s3a.secret.key"`) or its value is a table holding one."""
    key, sep, raw = item.partition("=")
    if not sep:
        return redact_text(item)
    try:
        value = tomllib.loads(f"value = {raw.strip()}")["value"]
    except tomllib.TOMLDecodeError:
        value = raw
    if is_secret_name(_leaf(key)) or (
        isinstance(value, dict | list) and redact_data(value) != value
    ):
        return f"{key}={REDACTED}"
    return f"{key}={redact_text(raw)}"


def _leaf(dotted: str) -> str:
    """The last part of a TOML dotted key (`spark.conf."a.b"` -> `a.b`)."""
    try:
        parsed: Any = tomllib.loads(f"{dotted.strip()} = 0")
    except tomllib.TOMLDecodeError:
        return dotted.rsplit(".", 1)[-1].strip().strip("\"'")
    leaf = dotted
    while isinstance(parsed, dict) and len(parsed) == 1:
        leaf, parsed = next(iter(parsed.items()))
    return leaf


def redact_spark_conf(item: str) -> str:
    """A spark-submit `--conf key=value` as it may be printed."""
    key, sep, value = item.partition("=")
    if sep and is_secret_name(key):
        return f"{key}={REDACTED}"
    if sep and key.endswith("extraJavaOptions"):
        return f"{key}={_redact_java_options(value)}"
    return redact_text(item)


def redact_argv(argv: Iterable[str]) -> list[str]:
    """A command line (spark-submit's, batchml's) as it may be printed or recorded:
    secret `--conf` and `--set` values and secret text in any argument are `***`."""
    shown: list[str] = []
    previous = ""
    for arg in argv:
        if previous in ("--conf", "-c") and "=" in arg:
            shown.append(redact_spark_conf(arg))
        elif previous == "--set":
            shown.append(redact_override(arg))
        elif previous == "--driver-java-options":
            shown.append(_redact_java_options(arg))
        elif arg.startswith(("--conf=", "--set=")):
            option, value = arg.split("=", 1)
            redact = redact_override if option == "--set" else redact_spark_conf
            shown.append(f"{option}={redact(value)}")
        else:
            shown.append(redact_text(arg))
        previous = arg
    return shown


def spark_redaction_regex(user: str | None, names: Iterable[str] = ()) -> str:
    """`spark.redaction.regex`: the user's own pattern (kept), batchml's secret names and
    the exact `names` of settings filled from environment variables."""
    ours = [SECRET_NAME_PATTERN, *(f"^{re.escape(name)}$" for name in sorted(names))]
    return _joined(user, "|".join(ours))


def spark_string_redaction_regex(user: str | None) -> str:
    """`spark.redaction.string.regex`: the user's pattern and batchml's secret text."""
    return _joined(user, SECRET_TEXT_PATTERN)


def _joined(user: str | None, ours: str) -> str:
    if not user:
        return ours
    if ours in user:  # already joined (a conf handed down)
        return user
    return f"(?:{user})|{ours}"


def _redact_java_options(options: str) -> str:
    def property_value(match: re.Match[str]) -> str:
        if is_secret_name(match.group(2)):
            return f"{match.group(1)}{REDACTED}"
        return f"{match.group(1)}{redact_text(match.group(3))}"

    return _JAVA_PROPERTY.sub(property_value, options)
