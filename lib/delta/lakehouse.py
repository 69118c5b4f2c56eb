"""Where things live: table names and relative paths resolved under the lakehouse root."""

from __future__ import annotations

import os
import posixpath
from pathlib import Path
from urllib.parse import unquote, urlparse

from batchml.lib.platform import storage
from batchml.lib.platform.errors import ConfigError
from batchml.lib.platform.settings import Settings, TableContract


def resolve_path(path: str, settings: Settings) -> str:
    """Relative paths live under `lakehouse.root`; absolute paths and URIs stay as given."""
    if "://" in path:
        return path
    if Path(path).expanduser().is_absolute():
        return str(Path(path).expanduser())
    root = settings.lakehouse.root
    if storage.is_remote(root):  # joined as a URI: a path there is never a local folder
        return storage.join(root, posixpath.normpath(path.replace(os.sep, "/")))
    return str((Path(root).expanduser() / path).resolve())


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


def relative_to(uri: str, root: str) -> str:
    """`uri` relative to `root` when it lies under it (`flights` for `<root>/flights`),
    else `uri` as given. Locations the lake records go through here, so a copied, moved
    or re-mounted lakehouse reads its own records as its own places."""
    if uri.startswith("file:") and "://" not in root:
        uri = unquote(urlparse(uri).path)
    if "://" in root or "://" in uri:
        base = root.rstrip("/") + "/"
        return uri[len(base) :].strip("/") if uri.startswith(base) else uri
    if not os.path.isabs(uri):
        return uri
    root = os.path.expanduser(root)
    # as written first (a table behind a symlink inside the lakehouse is still inside
    # it), then with links resolved
    for inner, outer in (
        (os.path.normpath(uri), os.path.abspath(root)),
        (os.path.realpath(uri), os.path.realpath(root)),
    ):
        inside = os.path.relpath(inner, outer)
        if inside != "." and inside != ".." and not inside.startswith("../"):
            return inside.replace(os.sep, "/")
    return uri


def under(recorded: str, root: str) -> str:
    """Where a recorded location is: a relative one under `root`, others as recorded."""
    if not recorded or "://" in recorded or os.path.isabs(recorded):
        return recorded
    if "://" in root:
        return f"{root.rstrip('/')}/{recorded}"
    return os.path.join(os.path.abspath(os.path.expanduser(root)), recorded)


def lake_name(uri: str, settings: Settings) -> str:
    """How the lake records a location: relative to `lakehouse.root` when under it."""
    return relative_to(uri, lakehouse_root(settings))


def lake_place(recorded: str, settings: Settings) -> str:
    """Where a location the lake recorded is (see `lake_name`); older absolute records
    stay as they are."""
    return under(recorded, lakehouse_root(settings))


def lakehouse_root(settings: Settings) -> str:
    """The lakehouse root as an absolute path (or its URI)."""
    root = settings.lakehouse.root
    if "://" in root:
        return root.rstrip("/")
    return str(Path(root).expanduser().resolve())


def recorded_forms(uri: str, settings: Settings) -> list[str]:
    """The ways the lake may have recorded `uri`: its lake name (how batchml records it
    now) and the absolute location (how earlier versions recorded it)."""
    return list(dict.fromkeys([lake_name(uri, settings), uri]))


def split_version(ref: str) -> tuple[str, int | None]:
    """`TABLE@VERSION` -> (TABLE, VERSION); a table without `@` reads its latest version."""
    table, at, version = ref.rpartition("@")
    if not at:
        return ref, None
    if not version.isdigit():
        raise ConfigError(f"--input {ref!r}: the part after @ must be a table version number")
    return table, int(version)
