"""The model registry: versions with lineage, aliases, loading, errors."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
from deltalake import DeltaTable
from oracles import oracle_rows
from pyspark.ml import PipelineModel
from pyspark.ml.feature import SQLTransformer
from pyspark.sql import SparkSession
from typer.testing import CliRunner

from batchml.jobs.cli import app
from batchml.lib.delta.embedded import EmbeddedDelta
from batchml.lib.platform.errors import InputError
from batchml.lib.tracking.registry import Registry


def model(factor: int) -> PipelineModel:
    return PipelineModel(
        stages=[SQLTransformer(statement=f"SELECT *, id * {factor} AS y FROM __THIS__")]
    )


def manifest(version: int = 3, **extra) -> dict:
    return {
        "algorithm": "sql",
        "training_table": "/lake/features",
        "training_version": version,
        "config_hash": "abc",
        "metrics": {"auc": 0.8},
        **extra,
    }


@pytest.fixture
def registry(spark: SparkSession, tmp_path: Path) -> Registry:
    return Registry(str(tmp_path / "_registry"), EmbeddedDelta(spark))


def test_versions_are_numbered_and_carry_their_lineage(spark, registry: Registry) -> None:
    first = registry.register("delays", model(2), manifest(3))
    second = registry.register("delays", model(5), manifest(4, params={"regParam": 0.1}))
    other = registry.register("other", model(1), manifest(1))
    assert (first.version, second.version, other.version) == (1, 2, 1)
    assert [v.version for v in registry.list("delays")] == [1, 2]
    assert registry.get("delays").version == 2
    shown = registry.get("delays@1")
    assert (shown.training_table, shown.training_version, shown.metrics) == (
        "/lake/features",
        3,
        {"auc": 0.8},
    )
    assert registry.get("delays@2").manifest["params"] == {"regParam": 0.1}
    saved = json.loads((Path(second.artifact_uri) / "manifest.json").read_text())
    assert (saved["name"], saved["version"]) == ("delays", 2)
    out = registry.load("delays@2").transform(spark.range(3)).collect()
    assert [r["y"] for r in out] == [0, 5, 10]
    # loaded once per Spark context (an artifact never changes): the same pipeline again,
    # each version its own
    assert registry.load("delays@2") is registry.load(second)
    once = registry.load("delays@1")
    assert once is not registry.load("delays@2")
    assert [r["y"] for r in once.transform(spark.range(3)).collect()] == [0, 2, 4]
    assert registry.pinned_table_versions() == {"/lake/features": {1, 3, 4}}


def test_aliases_move_atomically(registry: Registry) -> None:
    registry.register("delays", model(2), manifest())
    registry.register("delays", model(3), manifest())
    registry.set_alias("delays", 1, "champion")
    registry.set_alias("delays", 2, "challenger")
    assert registry.get("delays@champion").version == 1
    registry.set_alias("delays", 2, "champion")
    assert registry.get("delays@champion").version == 2
    assert registry.get("delays@2").aliases == ("challenger", "champion")
    assert registry.get("delays@1").aliases == ()


@pytest.mark.parametrize(
    ("action", "message"),
    [
        (lambda r: r.get("nope"), "no model 'nope' in the registry"),
        (lambda r: r.get("delays@9"), "model delays has no version 9 (latest is 1)"),
        (lambda r: r.get("delays@gold"), "model delays has no alias 'gold'"),
        (lambda r: r.set_alias("delays", 4, "champion"), "has no version 4"),
        (lambda r: r.set_alias("delays", 1, "bad alias"), "alias 'bad alias' must start"),
        (lambda r: r.register("9lives", model(1), manifest()), "model name '9lives' must start"),
        (lambda r: r.register("delays", model(1), {"algorithm": "x"}), "lacks 'training_table'"),
    ],
)
def test_registry_errors_leave_it_unchanged(registry: Registry, action, message) -> None:
    registry.register("delays", model(2), manifest())
    with pytest.raises(InputError, match=re.escape(message)):
        action(registry)
    assert [v.version for v in registry.list()] == [1]


def test_models_commands(spark, cli_globals, tmp_path: Path) -> None:
    lake = tmp_path / "lake"
    Registry(str(lake / "_registry"), EmbeddedDelta(spark)).register("delays", model(2), manifest())
    args = [*cli_globals, "--set", f'lakehouse.root="{lake}"', "models"]
    runner = CliRunner()
    aliased = runner.invoke(app, [*args, "alias", "delays", "1", "champion"])
    assert aliased.exit_code == 0, aliased.stderr
    listed = json.loads(runner.invoke(app, [*args, "list", "--json"]).stdout)
    assert [(v["name"], v["version"], v["aliases"]) for v in listed["versions"]] == [
        ("delays", 1, ["champion"])
    ]
    shown = runner.invoke(app, [*args, "show", "delays@champion", "--json"])
    assert json.loads(shown.stdout)["training_version"] == 3
    text = runner.invoke(app, [*args, "show", "delays@champion"])
    assert text.exit_code == 0, text.stderr
    assert text.stdout.startswith("delays version 1 (") and "aliases: champion" in text.stdout
    missing = runner.invoke(app, [*args, "show", "delays@7"])
    assert missing.exit_code == 4 and "has no version 7" in missing.stderr


def test_an_alias_points_at_one_version_whatever_the_interleaving(
    spark, registry: Registry, tmp_path: Path
) -> None:
    for factor in (1, 2, 3):
        registry.register("race", model(factor), manifest())
    worker = Path(__file__).with_name("registry_worker.py")
    writers = [
        subprocess.Popen(
            [
                sys.executable,
                str(worker),
                registry.root,
                str(tmp_path / f"lh{v}"),
                "race",
                str(v),
                "champion",
                "3",
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )
        for v in (1, 2, 3)
    ]
    for writer in writers:
        out, err = writer.communicate(timeout=300)
        assert writer.returncode == 0, err[-2000:]
        assert out.split() == ["set"] * 3
    rows = [r for r in oracle_rows(registry.aliases_uri) if r["alias"] == "champion"]
    assert len(rows) == 1  # first-time sets raced on a new table: still one row
    assert registry.get("race@champion").version == rows[0]["version"]
    assert DeltaTable(registry.aliases_uri).version() == 8  # all nine sets, none lost


def test_a_registration_that_fails_leaves_no_artifact(
    spark, registry: Registry, monkeypatch: pytest.MonkeyPatch
) -> None:
    registry.register("m", model(1), manifest())
    write = registry.tables.write

    def index_commit_fails(df, uri, **kwargs):
        if uri == registry.versions_uri:
            raise OSError("lost the race and the disk")
        return write(df, uri, **kwargs)

    monkeypatch.setattr(registry.tables, "write", index_commit_fails)
    with pytest.raises(OSError, match="lost the race"):
        registry.register("m", model(2), manifest())
    artifacts = sorted(p.name for p in (Path(registry.root) / "artifacts" / "m").iterdir())
    assert artifacts == [Path(registry.get("m@1").artifact_uri).name]
