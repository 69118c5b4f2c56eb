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


def table_location(name: str, settings: Settings) -> str:
    """A table by name: a `[tables]` contract's path, else the name under the lakehouse."""
    if name in settings.tables:
        return table_uris(name, settings.tables[name], settings)[0]
    return resolve_path(name, settings)
