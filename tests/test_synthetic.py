"""Synthetic generators against an independent Python statement of each function."""

from __future__ import annotations

import json
import math

import pytest
from pyspark.sql import SparkSession
from typer.testing import CliRunner

from batchml.jobs.cli import app
from batchml.lib.data.synthetic import agrawal, friedman1
from batchml.lib.platform.errors import ConfigError


def group_a(function: int, r: dict) -> bool:
    """Agrawal et al. (1993), restated row by row in plain Python."""
    age, salary, elevel, loan = r["age"], r["salary"], r["elevel"], r["loan"]
    income = salary + r["commission"]
    band = 0 if age < 40 else (1 if age < 60 else 2)

    def within(value, low, high):
        return low <= value <= high

    if function == 1:
        return band != 1
    if function == 2:
        return within(salary, *[(50e3, 100e3), (75e3, 125e3), (25e3, 75e3)][band])
    if function == 3:
        return elevel in [(0, 1), (1, 2, 3), (2, 3, 4)][band]
    if function == 4:
        first = elevel in [(0, 1), (1, 2, 3), (2, 3, 4)][band]
        ranges = [
            ((25e3, 75e3), (50e3, 100e3)),
            ((50e3, 100e3), (75e3, 125e3)),
            ((50e3, 100e3), (25e3, 75e3)),
        ][band]
        return within(salary, *ranges[0 if first else 1])
    if function == 5:
        salary_ok = within(salary, *[(50e3, 100e3), (75e3, 125e3), (25e3, 75e3)][band])
        loans = [
            ((100e3, 300e3), (200e3, 400e3)),
            ((200e3, 400e3), (300e3, 500e3)),
            ((300e3, 500e3), (100e3, 300e3)),
        ][band]
        return within(loan, *loans[0 if salary_ok else 1])
    if function == 6:
        return within(income, *[(50e3, 100e3), (75e3, 125e3), (25e3, 75e3)][band])
    if function == 7:
        return 0.67 * income - 0.2 * loan - 20e3 > 0
    if function == 8:
        return 0.67 * income - 5e3 * elevel - 20e3 > 0
    if function == 9:
        return 0.67 * income - 5e3 * elevel - 0.2 * loan - 10e3 > 0
    equity = 0.0 if r["hyears"] < 20 else 0.1 * r["hvalue"] * (r["hyears"] - 20)
    return 0.67 * income - 5e3 * elevel + 0.2 * equity - 10e3 > 0


@pytest.mark.parametrize("function", range(1, 11))
def test_agrawal_labels_follow_the_function(spark: SparkSession, function: int) -> None:
    rows = [r.asDict() for r in agrawal(spark, 1500, function=function, seed=3).collect()]
    assert [r["label"] for r in rows] == [int(group_a(function, r)) for r in rows]
    labels = {r["label"] for r in rows}
    assert labels == {0, 1}  # both classes occur


def test_agrawal_attribute_ranges_and_determinism(spark: SparkSession) -> None:
    df = agrawal(spark, 5000, seed=11, partitions=3)
    rows = [r.asDict() for r in df.collect()]
    assert all(20e3 <= r["salary"] <= 150e3 for r in rows)
    assert all(r["commission"] == 0 for r in rows if r["salary"] >= 75e3)
    assert {r["elevel"] for r in rows} == {0, 1, 2, 3, 4}
    assert {r["zipcode"] for r in rows} == set(range(9))
    assert min(r["age"] for r in rows) == 20 and max(r["age"] for r in rows) == 80
    again = [r.asDict() for r in agrawal(spark, 5000, seed=11, partitions=3).collect()]
    assert again == rows
    other = [r.asDict() for r in agrawal(spark, 5000, seed=12, partitions=3).collect()]
    assert other != rows


def test_agrawal_label_noise_flips_the_asked_fraction(spark: SparkSession) -> None:
    clean = agrawal(spark, 40_000, function=2, seed=5).select("id", "label")
    noisy = agrawal(spark, 40_000, function=2, seed=5, noise=0.1).select("id", "label")
    flipped = clean.join(noisy.withColumnRenamed("label", "noisy"), "id")
    fraction = flipped.filter("label != noisy").count() / 40_000
    assert 0.09 < fraction < 0.11


def test_friedman_target_is_the_formula(spark: SparkSession) -> None:
    rows = [r.asDict() for r in friedman1(spark, 500, noise=0.0, seed=2).collect()]
    for r in rows:
        expected = (
            10 * math.sin(math.pi * r["x1"] * r["x2"])
            + 20 * (r["x3"] - 0.5) ** 2
            + 10 * r["x4"]
            + 5 * r["x5"]
        )
        assert r["label"] == pytest.approx(expected, abs=1e-9)
    noisy = friedman1(spark, 20_000, noise=1.0, seed=2).toPandas()  # 20k rows: a test oracle
    clean = friedman1(spark, 20_000, noise=0.0, seed=2).toPandas()
    residual = (noisy["label"] - clean["label"]).std()
    assert 0.95 < residual < 1.05


def test_bad_generator_arguments(spark: SparkSession) -> None:
    with pytest.raises(ConfigError, match=r"Agrawal function must be 1\.\.10"):
        agrawal(spark, 10, function=11)
    with pytest.raises(ConfigError, match="label noise must be within"):
        agrawal(spark, 10, noise=0.7)
    with pytest.raises(ConfigError, match="--rows must be at least 1"):
        friedman1(spark, 0)


def test_generate_command_writes_a_table(spark, cli_globals, tmp_path) -> None:
    target = tmp_path / "agrawal"
    runner = CliRunner()
    result = runner.invoke(
        app,
        [
            *cli_globals,
            "generate",
            "agrawal",
            "--rows",
            "3000",
            "--to",
            str(target),
            "--function",
            "7",
            "--json",
        ],
    )
    assert result.exit_code == 0, result.stderr
    report = json.loads(result.stdout)
    assert (report["version"], report["rows"], report["function"]) == (0, 3000, 7)
    history = runner.invoke(app, [*cli_globals, "table", "history", str(target), "--json"])
    commit = json.loads(history.stdout)["commits"][0]["batchml"]
    assert (commit["job"], commit["dataset"], commit["seed"]) == ("generate", "agrawal", 42)
    bad = runner.invoke(
        app,
        [
            *cli_globals,
            "generate",
            "agrawal",
            "--rows",
            "10",
            "--to",
            str(target),
            "--function",
            "12",
        ],
    )
    assert bad.exit_code == 2
    unknown = runner.invoke(
        app, [*cli_globals, "generate", "iris", "--rows", "10", "--to", str(target)]
    )
    assert unknown.exit_code == 2 and "unknown dataset 'iris'" in unknown.stderr
