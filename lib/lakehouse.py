"""Where things live: table names and relative paths resolved under the lakehouse root."""

from __future__ import annotations

from pathlib import Path

from batchml.lib.settings import Settings, TableContract


def resolve_path(path: str, settings: Settings) -> str:
    """Relative paths live under `lakehouse.root`; absolute paths and URIs stay as given."""
    if "://" in path:
        return path
    if Path(path).expanduser().is_absolute():
        return str(Path(path).expanduser())
    return str((Path(settings.lakehouse.root).expanduser() / path).resolve())


def table_uris(name: str, contract: TableContract, settings: Settings) -> tuple[str, str]:
    """(table, quarantine table) locations of a contract."""
    table = resolve_path(contract.path or name, settings)
    quarantine = resolve_path(contract.quarantine, settings) if contract.quarantine else None
    return table, quarantine or f"{table.rstrip('/')}_quarantine"


def table_location(ref: str, settings: Settings, *, relative_to: Path | None = None) -> str:
    """Where the table `ref` lives: the one resolver of table names.

    - a name with a `[tables]` contract: the contract's `path` (or its name) under the
      lakehouse root;
    - another bare name: under the lakehouse root;
    - a URI or an absolute path: as given;
    - a relative path: under `relative_to` when given (the command line passes the
      working directory: a path a user types is relative to where they are), else under
      the lakehouse root (paths in the config are).
    """
    if ref in settings.tables:
        return table_uris(ref, settings.tables[ref], settings)[0]
    is_path = "/" in ref or ref.startswith(".")
    if relative_to is not None and is_path and "://" not in ref:
        return str((relative_to / Path(ref).expanduser()).resolve())
    return resolve_path(ref, settings)
