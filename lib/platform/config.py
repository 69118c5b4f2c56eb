"""Layered TOML configuration: base < env < user file < --set, validated into `Settings`.

Each leaf value remembers the layer it came from, so every error names the file (or
`--set`) and the dotted key at fault. String values may reference environment
variables as `${env:NAME}` (or `${env:NAME:-default}`); those values, and keys that
look like secrets (`lib/platform/redaction.py` says which), are redacted whenever the config is
printed, logged or stored with a model.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import os
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from batchml.lib.platform.errors import ConfigError
from batchml.lib.platform.redaction import REDACTED, is_secret_name, redact_data, redact_override
from batchml.lib.platform.settings import Settings, fields_at, known_keys

CONF_DIR = Path(__file__).resolve().parents[2] / "conf"
DEFAULT_ENV = "local"
ENV_VAR = "BATCHML_ENV"
_ENV_REF = re.compile(r"\$\{env:([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


@dataclass(frozen=True)
class ResolvedConfig:
    """Validated settings plus where each value came from."""

    settings: Settings
    env: str
    layers: tuple[str, ...]
    sources: dict[str, str] = field(default_factory=dict)
    secret_keys: frozenset[str] = frozenset()

    def redacted(self) -> dict[str, Any]:
        """The settings as plain data, secrets replaced by `***`."""
        return _redact(self.settings.model_dump(mode="json"), self.secret_keys)

    def env_filled_spark_conf(self) -> frozenset[str]:
        """The `spark.conf` settings secret because their value came from an environment
        variable, not by their name: Spark's own redaction is told their exact names."""
        prefix = "spark.conf."
        names = (k.removeprefix(prefix) for k in self.secret_keys if k.startswith(prefix))
        return frozenset(name for name in names if not is_secret_name(name))

    def config_hash(self) -> str:
        """A stable hash of the resolved settings (secrets included, never printed), but
        for where the lakehouse is: a copied or moved lakehouse runs the same config."""
        payload = _computed(self.settings)
        payload["lakehouse"] = {k: v for k, v in payload["lakehouse"].items() if k != "root"}
        return _hash(payload)

    def earlier_config_hashes(self) -> tuple[str, ...]:
        """The hashes earlier versions gave these settings, which the model versions they
        registered carry: over every setting, the lakehouse root included, and with
        each source's `content_hash` as its default was then (false) unless a config
        file or `--set` gave it."""
        payload = _computed(self.settings)
        hashes = [_hash(payload)]
        defaulted = [
            name
            for name in payload.get("sources", {})
            if f"sources.{name}.content_hash" not in self.sources
        ]
        if defaulted:
            for name in defaulted:
                payload["sources"][name]["content_hash"] = False
            hashes.append(_hash(payload))
        return tuple(hashes)


def _computed(settings: Settings) -> dict[str, Any]:
    """The settings that decide what a run computes: all but `[storage]` (how the store
    is reached, credentials included, is not what a model learns from)."""
    payload = settings.model_dump(mode="json")
    payload.pop("storage", None)
    return payload


def _hash(payload: dict[str, Any]) -> str:
    text = json.dumps(payload, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def available_envs(conf_dir: Path = CONF_DIR) -> list[str]:
    """The env names that have a `conf/<env>.toml` file."""
    return sorted(p.stem for p in conf_dir.glob("*.toml") if p.stem != "base")


def load_config(
    *,
    env: str | None = None,
    conf_file: Path | None = None,
    overrides: list[str] | tuple[str, ...] = (),
    conf_dir: Path = CONF_DIR,
    environ: dict[str, str] | None = None,
) -> ResolvedConfig:
    """Merge the config layers and validate them.

    Args:
        env: environment name; defaults to `$BATCHML_ENV`, then `local`.
        conf_file: the user's own TOML file, applied after the env file.
        overrides: `dotted.key=value` strings, values parsed as TOML scalars.
        conf_dir: folder holding `base.toml` and `<env>.toml`.
        environ: environment variables for `${env:NAME}` (defaults to `os.environ`).

    Raises:
        ConfigError: naming the file or option, the dotted key and what is wrong.
    """
    environ = dict(os.environ) if environ is None else environ
    env = env or environ.get(ENV_VAR) or DEFAULT_ENV
    merged: dict[str, Any] = {}
    sources: dict[str, str] = {}
    layers: list[str] = []

    base = conf_dir / "base.toml"
    if base.exists():
        _merge(merged, _read_toml(base), sources, _label(base))
        layers.append(_label(base))
    env_file = conf_dir / f"{env}.toml"
    if not env_file.exists():
        known = ", ".join(available_envs(conf_dir)) or "none"
        raise ConfigError(f"unknown env '{env}': there is no {_label(env_file)} (known: {known})")
    _merge(merged, _read_toml(env_file), sources, _label(env_file))
    layers.append(_label(env_file))

    if conf_file is not None:
        _merge(merged, _read_toml(conf_file), sources, _label(conf_file))
        layers.append(_label(conf_file))

    for item in overrides:
        parts, value = parse_override(item)
        _merge(merged, _nest(parts, value), sources, "--set")
    if overrides:
        layers.append("--set")

    secret_keys = set(_interpolate(merged, sources, environ))
    secret_keys.update(_secret_named(merged))
    try:
        settings = Settings.model_validate(merged)
    except ValidationError as exc:
        raise ConfigError(_describe(exc, sources, secret_keys)) from None
    return ResolvedConfig(settings, env, tuple(layers), sources, frozenset(secret_keys))


def parse_override(item: str) -> tuple[tuple[str, ...], Any]:
    """Split `dotted.key=value` into the key's parts and its value.

    The key is a TOML key (`spark.conf."spark.sql.foo"` quotes a part holding dots);
    the value is a TOML scalar or array, else taken as a plain string (`3g`, `local[2]`).
    """
    if "=" not in item:
        raise ConfigError(f"--set '{redact_override(item)}': expected dotted.key=value")
    key, raw = item.split("=", 1)
    key = key.strip()
    try:
        parsed = tomllib.loads(f"{key} = 0") if key else {}
    except tomllib.TOMLDecodeError:
        parsed = {}
    parts: list[str] = []
    while isinstance(parsed, dict) and len(parsed) == 1:
        name, parsed = next(iter(parsed.items()))
        parts.append(name)
    if not parts or parsed != 0:
        raise ConfigError(
            f"--set '{redact_override(item)}': '{key}' is not a dotted key like spark.master"
        )
    try:
        value = tomllib.loads(f"value = {raw.strip()}")["value"]
    except tomllib.TOMLDecodeError:
        value = raw
    return tuple(parts), value


def _label(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"config file {_label(path)} does not exist") from None
    except (IsADirectoryError, PermissionError, UnicodeDecodeError) as exc:
        raise ConfigError(f"config file {_label(path)} cannot be read: {exc}") from None
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {_label(path)} is not valid TOML: {exc}") from None


def _nest(parts: tuple[str, ...], value: Any) -> dict[str, Any]:
    nested: dict[str, Any] = {}
    cursor = nested
    *parents, leaf = parts
    for part in parents:
        cursor = cursor.setdefault(part, {})
    cursor[leaf] = value
    return nested


def _merge(
    target: dict[str, Any],
    layer: dict[str, Any],
    sources: dict[str, str],
    label: str,
    prefix: str = "",
) -> None:
    """Deep-merge `layer` into `target`, recording the source of every leaf it sets."""
    for key, value in layer.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, dict) and isinstance(target.get(key), dict):
            _merge(target[key], value, sources, label, f"{dotted}.")
            continue
        if isinstance(value, dict):
            target[key] = {}
            _merge(target[key], value, sources, label, f"{dotted}.")
            continue
        for stale in [k for k in sources if k.startswith(f"{dotted}.")]:
            del sources[stale]
        target[key] = value
        sources[dotted] = label


def _interpolate(
    tree: dict[str, Any], sources: dict[str, str], environ: dict[str, str], prefix: str = ""
) -> list[str]:
    """Replace `${env:NAME}` in string leaves; return the dotted keys that used one."""
    used: list[str] = []
    for key, value in tree.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, dict):
            used.extend(_interpolate(value, sources, environ, f"{dotted}."))
        elif isinstance(value, str) and _ENV_REF.search(value):

            def substitute(match: re.Match[str], dotted: str = dotted) -> str:
                name, default = match.group(1), match.group(2)
                if name in environ:
                    return environ[name]
                if default is not None:
                    return default
                raise ConfigError(
                    f"{sources.get(dotted, 'config')}: {dotted} references environment "
                    f"variable {name}, which is not set"
                )

            tree[key] = _ENV_REF.sub(substitute, value)
            used.append(dotted)
    return used


def _describe(exc: ValidationError, sources: dict[str, str], secret_keys: set[str]) -> str:
    """One line naming every bad key, its source, what was expected and what was found."""
    keys = known_keys()
    keys += sorted({key.rsplit(".", 1)[0] for key in keys if "." in key})  # sections too
    problems = []
    for error in exc.errors():
        dotted = ".".join(str(part) for part in error["loc"])
        source = _source_of(dotted, sources)
        if error["type"] == "extra_forbidden":
            hint = difflib.get_close_matches(dotted, keys, n=1, cutoff=0.6)
            parent, leaf = tuple(dotted.split(".")[:-1]), dotted.rsplit(".", 1)[-1]
            if not hint and parent:  # inside a named entry such as tables.<name>
                siblings = difflib.get_close_matches(leaf, fields_at(parent), n=1, cutoff=0.6)
                hint = [".".join([*parent, siblings[0]])] if siblings else []
            if not hint:
                leaf = dotted.rsplit(".", 1)[-1]
                hint = [k for k in keys if k.rsplit(".", 1)[-1] == leaf][:1]
            suggestion = f" (did you mean '{hint[0]}'?)" if hint else ""
            problems.append(f"{source}: unknown key '{dotted}'{suggestion}")
            continue
        expected = error["msg"].removeprefix("Value error, ").removeprefix("Input should be ")
        # a union's error has the member type as its last part (`…secret.key.str`)
        loc = [str(part) for part in error["loc"]]
        secret = any(is_secret_name(part) for part in loc) or any(
            ".".join(loc[:end]) in secret_keys for end in range(1, len(loc) + 1)
        )
        found = REDACTED if secret else repr(redact_data(error.get("input")))
        found_type = type(error.get("input")).__name__
        problems.append(f"{source}: {dotted}: expected {expected}, found {found} ({found_type})")
    return "; ".join(problems)


def _source_of(dotted: str, sources: dict[str, str]) -> str:
    while dotted:
        if dotted in sources:
            return sources[dotted]
        nested = [label for key, label in sources.items() if key.startswith(f"{dotted}.")]
        if nested:
            return nested[-1]
        dotted = dotted.rpartition(".")[0]
    return "config"


def _redact(tree: dict[str, Any], secret_keys: frozenset[str], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in tree.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, dict):
            out[key] = _redact(value, secret_keys, f"{dotted}.")
        elif dotted in secret_keys or is_secret_name(str(key)):
            out[key] = REDACTED
        else:
            out[key] = redact_data(value)  # a SAS token or password inside a URI
    return out


def _secret_named(tree: dict[str, Any], prefix: str = "") -> list[str]:
    """The dotted keys of the leaves whose own name (a TOML key: `spark.conf`'s keys are
    whole Spark settings such as `spark.hadoop.fs.s3a.secret.key`) names a secret."""
    named: list[str] = []
    for key, value in tree.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, dict):
            named.extend(_secret_named(value, f"{dotted}."))
        elif is_secret_name(str(key)):
            named.append(dotted)
    return named
