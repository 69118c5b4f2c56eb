"""Feature views: Spark SQL over pinned Delta tables, materialised as a feature table."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from deltalake import DeltaTable
from oracles import oracle_rows
from pyspark.sql import SparkSession
from typer.testing import CliRunner

from batchml.jobs import features
from batchml.jobs.cli import app
from batchml.lib.delta.delta_log import history as delta_history
from batchml.lib.delta.embedded import EmbeddedDelta
from batchml.lib.platform.config import load_config
from batchml.lib.platform.errors import ConfigError, InputError

VIEW = """
[views.trips]
table = "trip_features"
sources = {{ trips = {trips}, cities = "latest" }}
sql = \"\"\"
SELECT t.id, t.city, c.population, t.minutes, CAST(t.minutes >= 30 AS INT) AS is_long
FROM trips t LEFT JOIN cities c ON c.city = t.city
\"\"\"
"""


@pytest.fixture
def lake(spark: SparkSession, tmp_path: Path) -> Path:
    tables = EmbeddedDelta(spark)
    lake = tmp_path / "lake"
    trips = spark.createDataFrame(
        [(1, "nyc", 10), (2, "sf", 45), (3, None, None)], "id int, city string, minutes int"
    )
    tables.write(trips, str(lake / "trips"))
    tables.write(
        spark.createDataFrame([(4, "nyc", 31)], "id int, city string, minutes int"),
        str(lake / "trips"),
    )
    tables.write(
        spark.createDataFrame([("nyc", 8), ("sf", 1)], "city string, population int"),
        str(lake / "cities"),
    )
    return lake


def settings(tmp_path: Path, lake: Path, trips='"latest"', sql: str | None = None):
    conf = tmp_path / "view.toml"
    text = VIEW.format(trips=trips)
    if sql is not None:
        text = text.split('sql = """')[0] + f'sql = """\n{sql}\n"""\n'
    conf.write_text(text)
    return load_config(conf_file=conf, overrides=[f'lakehouse.root="{lake}"'], environ={}).settings


def test_view_is_materialised_with_its_pinned_sources(spark, lake: Path, tmp_path: Path) -> None:
    report = features.run(spark, settings(tmp_path, lake), "trips")
    assert (report.status, report.version, report.rows) == ("written", 0, 4)
    assert report.sources == {
        "trips": {"uri": str(lake / "trips"), "version": 1},
        "cities": {"uri": str(lake / "cities"), "version": 0},
    }
    rows = sorted(oracle_rows(str(lake / "trip_features")), key=lambda r: r["id"])
    assert rows == [
        {"id": 1, "city": "nyc", "population": 8, "minutes": 10, "is_long": 0},
        {"id": 2, "city": "sf", "population": 1, "minutes": 45, "is_long": 1},
        {"id": 3, "city": None, "population": None, "minutes": None, "is_long": None},
        {"id": 4, "city": "nyc", "population": 8, "minutes": 31, "is_long": 1},
    ]
    commit = delta_history(str(lake / "trip_features"), 1)[0]["batchml"]
    assert (commit["job"], commit["view"]) == ("features", "trips")
    assert commit["sources"]["trips"]["version"] == 1


def test_rerun_over_the_same_versions_writes_nothing(spark, lake: Path, tmp_path: Path) -> None:
    config = settings(tmp_path, lake)
    features.run(spark, config, "trips")
    again = features.run(spark, config, "trips")
    assert (again.status, again.version) == ("skipped", 0)
    EmbeddedDelta(spark).write(
        spark.createDataFrame([("la", 4)], "city string, population int"), str(lake / "cities")
    )
    moved = features.run(spark, config, "trips")
    assert (moved.status, moved.version, moved.sources["cities"]["version"]) == ("written", 1, 1)


def test_a_pinned_version_is_read_as_pinned(spark, lake: Path, tmp_path: Path) -> None:
    report = features.run(spark, settings(tmp_path, lake, trips="0"), "trips")
    assert report.sources["trips"]["version"] == 0
    assert report.rows == 3


def test_explain_writes_nothing(spark, lake: Path, tmp_path: Path) -> None:
    report = features.run(spark, settings(tmp_path, lake), "trips", explain=True)
    assert report.status == "explained"
    assert [f["name"] for f in report.schema] == ["id", "city", "population", "minutes", "is_long"]
    assert "LEFT JOIN cities" in report.sql
    assert not (lake / "trip_features").exists()


@pytest.mark.parametrize(
    ("trips", "sql", "error", "message"),
    [
        ('"latest"', "SELEC id FROM trips", InputError, "feature view trips: [PARSE_SYNTAX_ERROR]"),
        ('"latest"', "SELECT id FROM planes", InputError, "trips: [TABLE_OR_VIEW_NOT_FOUND]"),
        ('"latest"', "SELECT nope FROM trips", InputError, "trips: [UNRESOLVED_COLUMN"),
        ("7", None, InputError, "has no version 7 (latest is 1)"),
    ],
)
def test_bad_views(spark, lake: Path, tmp_path: Path, trips, sql, error, message) -> None:
    with pytest.raises(error) as caught:
        features.run(spark, settings(tmp_path, lake, trips=trips, sql=sql), "trips")
    assert message in str(caught.value)
    assert "\n" not in str(caught.value)
    assert not (lake / "trip_features").exists()


def test_unknown_view_and_conflicting_table(spark, lake: Path, tmp_path: Path) -> None:
    config = settings(tmp_path, lake)
    with pytest.raises(ConfigError, match=r"unknown view 'nope' \(views: "):
        features.run(spark, config, "nope")
    EmbeddedDelta(spark).write(
        spark.createDataFrame([(1,)], "other int"), str(lake / "trip_features")
    )
    with pytest.raises(InputError, match=r"missing columns other.*rerun with --overwrite-schema"):
        features.run(spark, config, "trips")
    assert DeltaTable(str(lake / "trip_features")).version() == 0
    replaced = features.run(spark, config, "trips", overwrite_schema=True)
    assert (replaced.status, replaced.version) == ("written", 1)
    assert [
        f["name"]
        for f in json.loads(DeltaTable(str(lake / "trip_features")).schema().to_json())["fields"]
    ] == ["id", "city", "population", "minutes", "is_long"]
    assert len(oracle_rows(str(lake / "trip_features"))) == 4


def test_features_command(spark, cli_globals, lake: Path, tmp_path: Path) -> None:
    settings(tmp_path, lake)
    args = [
        *cli_globals,
        "--conf",
        str(tmp_path / "view.toml"),
        "--set",
        f'lakehouse.root="{lake}"',
        "features",
        "--view",
        "trips",
    ]
    explained = CliRunner().invoke(app, [*args, "--explain"])
    assert explained.exit_code == 0, explained.stderr
    assert "source trips: version 1" in explained.stdout and "is_long" in explained.stdout
    written = CliRunner().invoke(app, [*args, "--json"])
    assert written.exit_code == 0, written.stderr
    assert json.loads(written.stdout)["version"] == 0


def test_an_incremental_view_appends_only_the_driving_sources_new_rows(
    spark, lake: Path, tmp_path: Path
) -> None:
    tables = EmbeddedDelta(spark)
    conf = tmp_path / "view.toml"
    text = VIEW.format(trips='"latest"').replace(
        'table = "trip_features"', 'table = "trip_features"\nincremental = true'
    )
    conf.write_text(text)
    cfg = load_config(conf_file=conf, overrides=[f'lakehouse.root="{lake}"'], environ={})
    out = str(lake / "trip_features")

    def population() -> dict[int, int | None]:
        return {r["id"]: r["population"] for r in oracle_rows(out)}

    first = features.run(spark, cfg.settings, "trips")
    assert (first.extra["mode"], first.rows, first.version) == ("full", 4, 0)
    assert "no earlier materialisation" in first.message
    assert features.run(spark, cfg.settings, "trips").status == "skipped"

    tables.write(
        spark.createDataFrame([(5, "sf", 50)], "id int, city string, minutes int"),
        str(lake / "trips"),
    )
    grown = features.run(spark, cfg.settings, "trips")
    assert (grown.extra["mode"], grown.rows, grown.version) == ("incremental", 1, 1)
    assert population() == {1: 8, 2: 1, 3: None, 4: 8, 5: 1}
    again = features.run(spark, cfg.settings, "trips")
    assert (again.status, again.version) == ("skipped", 1)

    # a lookup changes: new rows join its new version, rows already there keep theirs
    tables.write(
        spark.createDataFrame([("nyc", 9), ("sf", 2)], "city string, population int"),
        str(lake / "cities"),
        mode="overwrite",
    )
    unchanged_driver = features.run(spark, cfg.settings, "trips")
    assert unchanged_driver.status == "skipped"
    assert "no new files in driving source trips" in unchanged_driver.message
    tables.write(
        spark.createDataFrame([(6, "nyc", 5)], "id int, city string, minutes int"),
        str(lake / "trips"),
    )
    assert features.run(spark, cfg.settings, "trips").rows == 1
    assert population() == {1: 8, 2: 1, 3: None, 4: 8, 5: 1, 6: 9}

    tables.write(
        spark.createDataFrame([(7, "sf", 1)], "id int, city string, minutes int"),
        str(lake / "trips"),
        mode="overwrite",
    )
    rebuilt = features.run(spark, cfg.settings, "trips")
    assert (rebuilt.extra["mode"], rebuilt.rows) == ("full", 1)
    assert "removed or rewritten" in rebuilt.message
    assert population() == {7: 2}

    forced = features.run(spark, cfg.settings, "trips", full=True)
    assert forced.status == "skipped"  # same SQL, same source versions: nothing to rebuild
    conf.write_text(text.replace("t.minutes >= 30", "t.minutes >= 40"))
    changed = load_config(conf_file=conf, overrides=[f'lakehouse.root="{lake}"'], environ={})
    resql = features.run(spark, changed.settings, "trips")
    assert resql.extra["mode"] == "full" and "SQL changed" in resql.message
    assert [r["is_long"] for r in oracle_rows(out)] == [0]


def test_a_view_with_a_key_reports_its_repeats_and_names_a_bad_key(
    spark, lake: Path, tmp_path: Path
) -> None:
    """A driving source that delivers a trip twice (incremental, in a later batch): the
    view's report counts the repeated key over the table written; a key column the view
    lacks, or a floating-point one, is named before anything is written."""
    tables = EmbeddedDelta(spark)
    conf = tmp_path / "view.toml"
    text = VIEW.format(trips='"latest"').replace(
        'table = "trip_features"', 'table = "trip_features"\nincremental = true\nkey = ["id"]'
    )
    conf.write_text(text)
    cfg = load_config(conf_file=conf, overrides=[f'lakehouse.root="{lake}"'], environ={})
    first = features.run(spark, cfg.settings, "trips")
    assert (first.keys["rows"], first.keys["distinct"], first.keys["duplicated"]) == (4, 4, 0)
    assert "key id" not in first.message
    again = spark.createDataFrame(
        [(2, "sf", 45), (4, "nyc", 31), (None, "sf", 3)], "id int, city string, minutes int"
    )
    tables.write(again, str(lake / "trips"))
    grown = features.run(spark, cfg.settings, "trips")
    assert (grown.extra["mode"], grown.rows) == ("incremental", 3)
    keys = grown.keys
    assert (keys["rows"], keys["distinct"], keys["duplicated"], keys["null_rows"]) == (7, 4, 2, 1)
    assert "key id: 2 keys on more than one row (2 extra rows, e.g. id=" in grown.message
    assert "1 rows with a null key" in grown.message

    out = lake / "trip_features"
    version = tables.version(str(out))
    for key, message in (
        ('["id", "route"]', "key column(s) route missing (key: id, route)"),
        ('["share"]', "key column share is floating-point"),
    ):
        bad = text.replace('key = ["id"]', f"key = {key}").replace(
            "AS is_long", "AS is_long, t.minutes / 60.0D AS share"
        )
        conf.write_text(bad)
        cfg = load_config(conf_file=conf, overrides=[f'lakehouse.root="{lake}"'], environ={})
        with pytest.raises(InputError, match=re.escape(message)):
            features.run(spark, cfg.settings, "trips", full=True)
        assert tables.version(str(out)) == version
