"""Feature views: Spark SQL over Delta tables, each pinned to one version.

The sources are resolved to concrete versions when the job starts ("latest" becomes a
number), registered as temp views under their names, and the SQL runs over them; the
pinned versions travel with the result into the feature table's commit.
"""

from __future__ import annotations

from dataclasses import dataclass

from pyspark.errors import AnalysisException, ParseException
from pyspark.sql import DataFrame, SparkSession

from batchml.lib.delta import DeltaTables
from batchml.lib.delta.lakehouse import table_location
from batchml.lib.platform.errors import ConfigError, InputError, first_line
from batchml.lib.platform.settings import FeatureView, Settings


@dataclass(frozen=True)
class PinnedSource:
    """One source table of a view, at the version the view reads."""

    name: str
    uri: str
    version: int


@dataclass(frozen=True)
class ResolvedView:
    """A view ready to run: its SQL, pinned sources and the DataFrame it defines."""

    name: str
    sql: str
    sources: tuple[PinnedSource, ...]
    df: DataFrame
    output_uri: str


def configured_view(settings: Settings, name: str | None) -> tuple[str, FeatureView]:
    """The named view, or the only one when no name is given."""
    if name is None:
        if len(settings.views) != 1:
            known = ", ".join(sorted(settings.views)) or "none configured"
            raise ConfigError(f"name a view with --view (views: {known})")
        name = next(iter(settings.views))
    if name not in settings.views:
        known = ", ".join(sorted(settings.views)) or "none configured"
        raise ConfigError(f"unknown view {name!r} (views: {known})")
    return name, settings.views[name]


def driving_source(name: str, view: FeatureView) -> str:
    """The source whose new files an incremental view materialises (default: the first).

    Raises:
        ConfigError: `driving` names no source of the view.
    """
    driving = view.driving or next(iter(view.sources))
    if driving not in view.sources:
        raise ConfigError(
            f"feature view {name}: driving source {driving!r} is not one of its sources "
            f"({', '.join(view.sources)})"
        )
    return driving


def resolve_view(
    spark: SparkSession,
    tables: DeltaTables,
    settings: Settings,
    name: str,
    view: FeatureView,
    *,
    rows_added_since: dict[str, int] | None = None,
) -> ResolvedView | None:
    """Pin every source, register it as a temp view, and analyse the SQL (no job runs).

    `rows_added_since` ({source: version}) registers that source as only the rows of the
    files added to it since that version (an incremental run); None is returned when
    files were also removed in between (the caller rebuilds).

    Raises:
        InputError: a missing source table or version, or SQL that does not parse or
            resolve (Spark's first line, with the view's name).
    """
    pinned = []
    for source, wanted in view.sources.items():
        uri = table_location(source, settings)
        read = tables.read(uri, version=None if wanted == "latest" else wanted)
        since = (rows_added_since or {}).get(source)
        if since is not None:
            added = tables.read_added(uri, since, read.version)
            if added is None:
                return None
            read = added
        read.df.createOrReplaceTempView(source)
        pinned.append(PinnedSource(source, read.uri, read.version))
    try:
        df = spark.sql(view.sql)
        df.schema  # noqa: B018 - forces analysis, so errors surface here
    except (AnalysisException, ParseException) as exc:
        raise InputError(f"feature view {name}: {first_line(exc)}") from None
    output = table_location(view.table or name, settings)
    return ResolvedView(name, view.sql.strip(), tuple(pinned), df, output)
