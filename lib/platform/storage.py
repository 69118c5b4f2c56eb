"""Where the lake's files are: URIs, and one storage layer for every file operation that
is not Spark's.

A lake location is a local path or an object-store URI (`s3a://bucket/lake`,
`gs://…`, `abfss://…`). Spark reaches object stores through Hadoop's filesystems
(`s3a://`), deltalake through its own (`s3://`), and batchml's own file operations —
ingest's listing and hashes, manifests, `scorer.json`, reports, staging claims — through
pyarrow's filesystems, already a dependency (fsspec would add s3fs and its async stack for
the same operations). Local paths keep Python's own file calls: they behave exactly as
before object stores came.

The `[storage]` settings are read once per run (`configure`), so every layer (Hadoop's
S3A settings, deltalake's storage options, pyarrow's filesystem) reaches the store the
same way; unset values fall back to the standard `AWS_*` variables, then to the store's
credential chain.
"""

from __future__ import annotations

import contextlib
import os
import posixpath
import re
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import IO, Any
from urllib.parse import urlparse

from batchml.lib.platform.errors import EnvironmentProblem, InputError
from batchml.lib.platform.settings import StorageSettings

# scheme -> the store it names
STORES = {
    "s3": "s3",
    "s3a": "s3",
    "s3n": "s3",
    "gs": "gcs",
    "gcs": "gcs",
    "abfs": "azure",
    "abfss": "azure",
    "az": "azure",
}
_SCHEME = re.compile(r"^([a-z][a-z0-9+.-]*)://", re.IGNORECASE)


# ------------------------------------------------------------------------ locations
def scheme(uri: str) -> str:
    """The URI's scheme in lower case; "" for a local path (a `file:` URI included)."""
    match = _SCHEME.match(uri)
    if match is None or match.group(1).lower() == "file":
        return ""
    return match.group(1).lower()


def store_of(uri: str) -> str:
    """`local`, `s3`, `gcs` or `azure`.

    Raises:
        InputError: a scheme no store of batchml's handles (`hdfs://`, `http://`).
    """
    name = scheme(uri)
    if not name:
        return "local"
    if name not in STORES:
        raise InputError(
            f"{uri}: unknown scheme {name}:// (a local path, or s3a://, s3://, gs://, abfss://)"
        )
    return STORES[name]


def is_remote(uri: str) -> bool:
    """Whether a location is on an object store (not a local or mounted path)."""
    return bool(scheme(uri))


def local(uri: str) -> str:
    """A local location as a plain path (`file:` URIs become theirs)."""
    if uri.lower().startswith("file:"):
        return re.sub(r"^file:(//(localhost)?)?", "", uri, flags=re.IGNORECASE) or "/"
    return uri


def join(base: str, *parts: str) -> str:
    """`base` joined with relative `parts`: `/` between URI segments, `os.path` for paths."""
    if not is_remote(base):
        return os.path.join(local(base), *parts)
    joined = base.rstrip("/")
    for part in parts:
        if part.strip("/"):
            joined = f"{joined}/{part.strip('/')}"
    return joined


def parent(uri: str) -> str:
    if not is_remote(uri):
        return os.path.dirname(local(uri).rstrip("/"))
    head, _, _ = uri.rstrip("/").rpartition("/")
    return head if "://" in head and not head.endswith(":/") else uri


def basename(uri: str) -> str:
    return uri.rstrip("/").rpartition("/")[2]


def bucket_and_key(uri: str) -> tuple[str, str]:
    """`s3a://bucket/a/b` -> ("bucket", "a/b")."""
    parsed = urlparse(uri)
    return parsed.netloc, parsed.path.lstrip("/")


def spark_uri(uri: str) -> str:
    """The location as Spark's Hadoop filesystems take it: S3 through S3A."""
    name = scheme(uri)
    if name in ("s3", "s3n"):
        return "s3a" + uri[len(name) :]
    if name == "gcs":
        return "gs" + uri[len(name) :]
    return uri


def delta_rs_uri(uri: str) -> str:
    """The location as deltalake (object_store) takes it: `s3://`, `gs://`, `abfss://`."""
    name = scheme(uri)
    if name in ("s3a", "s3n"):
        return "s3" + uri[len(name) :]
    if name == "gcs":
        return "gs" + uri[len(name) :]
    return uri


# --------------------------------------------------------------------- configuration
@dataclass(frozen=True)
class StoreConfig:
    """The effective way to reach the object stores of this run: `[storage]`, then the
    standard environment variables."""

    endpoint: str | None = None
    region: str | None = None
    path_style: bool = False
    access_key: str | None = field(default=None, repr=False)
    secret_key: str | None = field(default=None, repr=False)
    session_token: str | None = field(default=None, repr=False)
    connect_timeout: float = 5.0
    request_timeout: float = 60.0
    options: dict[str, str] = field(default_factory=dict, hash=False)

    @property
    def allow_http(self) -> bool:
        return bool(self.endpoint and self.endpoint.startswith("http://"))


def resolve(settings: StorageSettings | None, environ: dict[str, str] | None = None) -> StoreConfig:
    """`[storage]` with the standard variables filling what it leaves unset."""
    env = os.environ if environ is None else environ
    settings = settings or StorageSettings()

    def pick(value: str | None, *names: str) -> str | None:
        if value:
            return value
        return next((env[name] for name in names if env.get(name)), None)

    endpoint = pick(settings.endpoint, "AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL")
    path_style = settings.path_style if settings.path_style is not None else endpoint is not None
    return StoreConfig(
        endpoint=endpoint.rstrip("/") if endpoint else None,
        region=pick(settings.region, "AWS_REGION", "AWS_DEFAULT_REGION"),
        path_style=path_style,
        access_key=pick(settings.access_key, "AWS_ACCESS_KEY_ID"),
        secret_key=pick(settings.secret_key, "AWS_SECRET_ACCESS_KEY"),
        session_token=pick(settings.session_token, "AWS_SESSION_TOKEN"),
        connect_timeout=settings.connect_timeout,
        request_timeout=settings.request_timeout,
        options=dict(settings.options),
    )


_current: StoreConfig | None = None


def configure(settings: StorageSettings | None) -> StoreConfig:
    """Set this run's way to the stores (the entrypoint calls this once per config)."""
    global _current
    _current = resolve(settings)
    _filesystem.cache_clear()
    return _current


def reset() -> None:
    """Forget the configured settings: the environment alone counts again."""
    global _current
    _current = None
    _filesystem.cache_clear()


def current() -> StoreConfig:
    """This run's store config (from the environment alone until `configure`)."""
    return _current if _current is not None else resolve(None)


def delta_options(uri: str, config: StoreConfig | None = None) -> dict[str, str] | None:
    """deltalake's `storage_options` for a location (None for a local one)."""
    if not is_remote(uri):
        return None
    config = config or current()
    options: dict[str, str] = {}
    if store_of(uri) == "s3":
        given = {
            "AWS_ENDPOINT_URL": config.endpoint,
            "AWS_REGION": config.region,
            "AWS_ACCESS_KEY_ID": config.access_key,
            "AWS_SECRET_ACCESS_KEY": config.secret_key,
            "AWS_SESSION_TOKEN": config.session_token,
        }
        options.update({k: v for k, v in given.items() if v})
        if config.allow_http:
            options["AWS_ALLOW_HTTP"] = "true"
        options["AWS_VIRTUAL_HOSTED_STYLE_REQUEST"] = "false" if config.path_style else "true"
        if config.endpoint and not config.region:
            options["AWS_REGION"] = "us-east-1"  # S3-compatible servers take any region
    options["connect_timeout"] = f"{config.connect_timeout:g}s"
    options["timeout"] = f"{config.request_timeout:g}s"
    options.update(config.options)
    return options


def hadoop_conf(config: StoreConfig | None = None) -> dict[str, str]:
    """Spark settings (`spark.hadoop.fs.s3a.*`) that make S3A reach the store as the
    other layers do. Credentials go in only when given (else S3A's own chain: the
    environment variables, then the instance's role)."""
    config = config or current()
    prefix = "spark.hadoop.fs.s3a."
    conf = {
        f"{prefix}path.style.access": str(config.path_style).lower(),
        # S3A's defaults retry an unreachable endpoint for minutes (and it takes no
        # connect timeout under 15 s)
        f"{prefix}connection.establish.timeout": str(
            max(15_000, int(config.connect_timeout * 1e3))
        ),
        f"{prefix}connection.timeout": f"{int(config.request_timeout * 1000)}",
        f"{prefix}attempts.maximum": "3",
        f"{prefix}retry.limit": "3",
    }
    if config.endpoint:
        conf[f"{prefix}endpoint"] = config.endpoint
        conf[f"{prefix}connection.ssl.enabled"] = str(not config.allow_http).lower()
    if config.region:
        conf[f"{prefix}endpoint.region"] = config.region
    elif config.endpoint:
        conf[f"{prefix}endpoint.region"] = "us-east-1"
    if config.access_key and config.secret_key:
        conf[f"{prefix}access.key"] = config.access_key
        conf[f"{prefix}secret.key"] = config.secret_key
        if config.session_token:
            conf[f"{prefix}session.token"] = config.session_token
            conf[f"{prefix}aws.credentials.provider"] = (
                "org.apache.hadoop.fs.s3a.TemporaryAWSCredentialsProvider"
            )
    return conf


# -------------------------------------------------------------------- filesystems
@lru_cache(maxsize=8)
def _filesystem(store: str, config: StoreConfig) -> Any:  # -> pyarrow.fs.FileSystem
    from pyarrow import fs

    if store == "s3":
        kwargs: dict[str, Any] = {
            "connect_timeout": config.connect_timeout,
            "request_timeout": config.request_timeout,
            "retry_strategy": fs.AwsStandardS3RetryStrategy(max_attempts=3),
        }
        if config.endpoint:
            parsed = urlparse(config.endpoint)
            kwargs["endpoint_override"] = parsed.netloc
            kwargs["scheme"] = parsed.scheme
        kwargs["force_virtual_addressing"] = not config.path_style and bool(config.endpoint)
        if config.region:
            kwargs["region"] = config.region
        elif config.endpoint:
            kwargs["region"] = "us-east-1"
        if config.access_key and config.secret_key:
            kwargs["access_key"] = config.access_key
            kwargs["secret_key"] = config.secret_key
            if config.session_token:
                kwargs["session_token"] = config.session_token
        return fs.S3FileSystem(**kwargs)
    if store == "gcs":
        return fs.GcsFileSystem()
    if store == "azure":
        account = config.options.get("azure_storage_account_name") or os.environ.get(
            "AZURE_STORAGE_ACCOUNT_NAME"
        )
        if not account:
            raise EnvironmentProblem(
                "abfss:// needs the storage account: set storage.options."
                "azure_storage_account_name or AZURE_STORAGE_ACCOUNT_NAME"
            )
        key = config.options.get("azure_storage_account_key") or os.environ.get(
            "AZURE_STORAGE_ACCOUNT_KEY"
        )
        return fs.AzureFileSystem(account_name=account, account_key=key)
    raise InputError(f"no filesystem for store {store}")


def filesystem(uri: str) -> tuple[Any, str]:
    """(pyarrow filesystem, path within it) for a remote location."""
    store = store_of(uri)
    fs = _filesystem(store, current())
    if store == "azure":  # abfss://container@account.dfs.core.windows.net/path
        parsed = urlparse(uri)
        return fs, f"{parsed.netloc.split('@')[0]}{parsed.path}".rstrip("/")
    bucket, key = bucket_and_key(uri)
    return fs, f"{bucket}/{key}".rstrip("/")


_failed: set[tuple[str, str]] = set()  # (store, bucket) whose calls failed in this run


@contextlib.contextmanager
def store_errors(uri: str, doing: str) -> Iterator[None]:
    """One line naming the location and the cause for a failing store call."""
    try:
        yield
    except FileNotFoundError:
        raise
    except OSError as exc:
        _failed.add((store_of(uri), bucket_and_key(uri)[0]))
        raise EnvironmentProblem(f"{doing} {uri} failed: {describe(exc)}") from None


def known_failing(uri: str) -> bool:
    """Whether a call to this location's bucket already failed in this run (and was
    reported): what else would be written there is not worth a second error."""
    return is_remote(uri) and (store_of(uri), bucket_and_key(uri)[0]) in _failed


def describe(exc: BaseException) -> str:
    """A store error in a few words (the AWS SDK's messages span lines)."""
    text = " ".join(str(exc).split())
    lowered = text.lower()
    squashed = lowered.replace("_", "")  # the SDK spells codes INVALID_ACCESS_KEY_ID too
    if "nosuchbucket" in squashed or "bucket does not exist" in lowered:
        return "the bucket does not exist"
    if "status code: 403" in lowered or any(
        sign in squashed
        for sign in (
            "invalidaccesskeyid",
            "signaturedoesnotmatch",
            "accessdenied",
            "forbidden",
        )
    ):
        return f"access denied (check the credentials): {text[:160]}"
    if any(
        sign in lowered
        for sign in ("couldn't connect", "connection refused", "could not connect", "timed out")
    ):
        return f"the endpoint is unreachable: {text[:160]}"
    return text[:240] or type(exc).__name__


# ------------------------------------------------------------------- file operations
@dataclass(frozen=True)
class Entry:
    """One file of a listing: its location, size, modification time (ns since the
    epoch) and, on object stores, nothing more than pyarrow gives (size and time)."""

    uri: str
    size: int
    mtime_ns: int


def stat(uri: str) -> Entry | None:
    """The file's size and modification time; None when it is not there."""
    if not is_remote(uri):
        try:
            info = os.stat(local(uri))
        except OSError:
            return None
        return Entry(local(uri), info.st_size, info.st_mtime_ns)
    from pyarrow import fs as pafs

    store, path = filesystem(uri)
    with store_errors(uri, "checking"):
        info = store.get_file_info(path)
    if info.type != pafs.FileType.File:
        return None
    return Entry(uri, info.size or 0, info.mtime_ns or 0)


def exists(uri: str) -> bool:
    if not is_remote(uri):
        return os.path.exists(local(uri))
    from pyarrow import fs as pafs

    store, path = filesystem(uri)
    with store_errors(uri, "checking"):
        return store.get_file_info(path).type != pafs.FileType.NotFound


def is_file(uri: str) -> bool:
    if not is_remote(uri):
        return os.path.isfile(local(uri))
    from pyarrow import fs as pafs

    store, path = filesystem(uri)
    with store_errors(uri, "checking"):
        return store.get_file_info(path).type == pafs.FileType.File


def is_dir(uri: str) -> bool:
    """A folder (on an object store: a prefix with at least one object under it)."""
    if not is_remote(uri):
        return os.path.isdir(local(uri))
    from pyarrow import fs as pafs

    store, path = filesystem(uri)
    with store_errors(uri, "checking"):
        return store.get_file_info(path).type == pafs.FileType.Directory


def read_bytes(uri: str) -> bytes:
    """The file's bytes. Raises FileNotFoundError when it is not there."""
    if not is_remote(uri):
        return Path(local(uri)).read_bytes()
    store, path = filesystem(uri)
    with store_errors(uri, "reading"), store.open_input_stream(path) as stream:
        return stream.read()


def read_text(uri: str) -> str:
    return read_bytes(uri).decode("utf-8")


def write_bytes(uri: str, data: bytes) -> None:
    """Write a whole file at once: readers see the old content or the new, never part
    (a local file through a temporary file and a rename; an object in one PUT)."""
    if not is_remote(uri):
        target = Path(local(uri))
        target.parent.mkdir(parents=True, exist_ok=True)
        handle, partial = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.")
        try:
            with os.fdopen(handle, "wb") as out:
                out.write(data)
            os.replace(partial, target)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(partial)
            raise
        return
    store, path = filesystem(uri)
    with store_errors(uri, "writing"), store.open_output_stream(path) as out:
        out.write(data)


def write_text(uri: str, text: str) -> None:
    write_bytes(uri, text.encode("utf-8"))


@contextlib.contextmanager
def open_input(uri: str) -> Iterator[IO[bytes]]:
    """A binary stream over the file (for hashes and format checks: read in blocks)."""
    if not is_remote(uri):
        with open(local(uri), "rb") as handle:
            yield handle
        return
    store, path = filesystem(uri)
    with store_errors(uri, "reading"), store.open_input_stream(path) as stream:
        yield stream


def delete(uri: str) -> None:
    """Remove a file; nothing when it is not there."""
    if not is_remote(uri):
        Path(local(uri)).unlink(missing_ok=True)
        return
    store, path = filesystem(uri)
    with contextlib.suppress(FileNotFoundError), store_errors(uri, "deleting"):
        store.delete_file(path)


def delete_tree(uri: str) -> None:
    """Remove a folder and everything under it; nothing when it is not there."""
    if not is_remote(uri):
        import shutil

        shutil.rmtree(local(uri), ignore_errors=True)
        return
    store, path = filesystem(uri)
    with contextlib.suppress(FileNotFoundError), store_errors(uri, "deleting"):
        store.delete_dir(path)


def makedirs(uri: str) -> None:
    """Create a local folder (object stores have none to create)."""
    if not is_remote(uri):
        Path(local(uri)).mkdir(parents=True, exist_ok=True)


def list_files(uri: str, *, recursive: bool = True) -> list[Entry]:
    """The files under a folder (prefix), sorted by location; [] when there is none."""
    if not is_remote(uri):
        root = local(uri)
        found: list[Entry] = []
        if not os.path.isdir(root):
            return []
        walker = os.walk(root) if recursive else [(root, [], os.listdir(root))]
        for folder, _, names in walker:
            for name in names:
                full = os.path.join(folder, name)
                try:
                    info = os.stat(full)
                except OSError:
                    continue
                if os.path.isfile(full):
                    found.append(Entry(full, info.st_size, info.st_mtime_ns))
        return sorted(found, key=lambda e: e.uri)
    from pyarrow import fs as pafs

    store, path = filesystem(uri)
    prefix = uri.rstrip("/")
    with store_errors(uri, "listing"):
        try:
            infos = store.get_file_info(
                pafs.FileSelector(path, recursive=recursive, allow_not_found=True)
            )
        except FileNotFoundError:
            return []
    entries = []
    for info in infos:
        if info.type != pafs.FileType.File:
            continue
        relative = posixpath.relpath(info.path, path)
        mtime = info.mtime_ns if info.mtime_ns is not None else 0
        entries.append(Entry(f"{prefix}/{relative}", info.size or 0, mtime))
    return sorted(entries, key=lambda e: e.uri)


def list_dirs(uri: str) -> list[str]:
    """The folders (prefixes) directly under `uri`, sorted; [] when there is none."""
    if not is_remote(uri):
        root = local(uri)
        if not os.path.isdir(root):
            return []
        return sorted(e.path for e in os.scandir(root) if e.is_dir())
    from pyarrow import fs as pafs

    store, path = filesystem(uri)
    prefix = uri.rstrip("/")
    with store_errors(uri, "listing"):
        try:
            infos = store.get_file_info(pafs.FileSelector(path, allow_not_found=True))
        except FileNotFoundError:
            return []
    return sorted(
        f"{prefix}/{posixpath.basename(info.path)}"
        for info in infos
        if info.type == pafs.FileType.Directory
    )


def probe(uri: str) -> float:
    """Write, read back and delete a small object under `uri`; the seconds it took.

    Raises:
        EnvironmentProblem: one line naming the location and what failed.
    """
    started = time.perf_counter()
    marker = join(uri, f"_batchml_probe_{os.getpid()}_{time.time_ns()}")
    body = b"batchml probe\n"
    write_bytes(marker, body)
    try:
        if read_bytes(marker) != body:
            raise EnvironmentProblem(f"{uri}: a probe object read back different bytes")
    finally:
        delete(marker)
    return time.perf_counter() - started
