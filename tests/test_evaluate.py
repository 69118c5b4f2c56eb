"""`batchml evaluate` and `batchml promote` on a small lakehouse: figures checked against
scikit-learn on the same rows, the report's files, bad inputs, and the promotion gate
(first champion, kept, promoted, dry run, rollback, exit codes, the decision history)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import people
import pytest
from pyspark.sql import SparkSession
from pyspark.sql import functions as F
from sklearn.metrics import (
    accuracy_score,
    f1_score,
    log_loss,
    mean_absolute_error,
    mean_squared_error,
    roc_auc_score,
)
from typer.testing import CliRunner

from batchml.jobs import evaluate as evaluate_job
from batchml.jobs import promote as promote_job
from batchml.jobs.cli import app
from batchml.jobs.train import job as train_job
from batchml.lib.data.synthetic import agrawal
from batchml.lib.delta.embedded import EmbeddedDelta
from batchml.lib.platform.errors import ConfigError, InputError
from batchml.lib.tracking.registry import Registry

CONF = (
    people.pipeline()
    + """
[pipelines.people_few]
view = "people"
label = "label"
key = "id"
numeric = { car = {} }

[pipelines.loans]
view = "people"
label = "loan"
key = "id"
numeric = { salary = {}, age = {} }

[pipelines.levels]
view = "people"
label = "elevel"
key = "id"
numeric = { salary = {}, age = {}, commission = {} }

[models.people_lr]
pipeline = "people"
algorithm = "logistic_regression"
params = { maxIter = 30 }
evaluation = { slices = ["elevel", "zipcode"], min_slice_rows = 60, thresholds = [0.3] }

[models.people_weak]
pipeline = "people_few"
algorithm = "logistic_regression"
params = { maxIter = 10 }
evaluation = { require_significant = true }

[models.people_xgb]
pipeline = "people"
algorithm = "xgboost_classifier"
params = { n_estimators = 10, max_depth = 3 }

[models.loan_lr]
pipeline = "loans"
algorithm = "linear_regression"

[models.level_rf]
pipeline = "levels"
algorithm = "random_forest_classifier"
params = { numTrees = 5, maxDepth = 3 }
"""
)


def settings_for(lake: Path, extra: list[str] | None = None):
    conf = lake.parent / "evaluate.toml"
    conf.write_text(CONF)
    return people.settings_for(lake, conf, *(extra or []))


@pytest.fixture(scope="module")
def lake(spark: SparkSession, tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("evaluate")
    lake = root / "lake"
    EmbeddedDelta(spark).write(
        agrawal(spark, 4000, function=7, noise=0.15, seed=9), str(lake / "people")
    )
    settings = settings_for(lake)
    for name in ("people_lr", "loan_lr", "level_rf"):
        train_job.run(spark, settings, name)
    return lake


def _test_rows(spark, lake: Path):
    """The test split's rows, as training cut them (key hash, seed 42)."""
    from batchml.lib.training.splits import with_split

    df = spark.read.format("parquet").load(str(lake / "people"))  # one writer, no removes
    return with_split(df, "id", {"train": 0.7, "validation": 0.15, "test": 0.15}, seed=42).filter(
        F.col("split") == "test"
    )


def test_binary_figures_match_scikit_learn(spark: SparkSession, lake: Path) -> None:
    settings = settings_for(lake)
    report = evaluate_job.evaluate(spark, settings, "people_lr", thresholds=(0.7,))
    m = report.metrics
    # the same rows scored by the registered model's MLlib stages, in pandas
    registry = Registry(str(lake / "_registry"))
    fitted = registry.load("people_lr@1")
    rows = fitted.transform(_test_rows(spark, lake)).select("label", "probability").collect()
    y = np.asarray([r["label"] for r in rows])
    p = np.asarray([float(r["probability"][1]) for r in rows])
    assert m["rows"] == len(rows) and m["positives"] == int(y.sum())
    assert abs(m["areaUnderROC"] - roc_auc_score(y, p)) <= m["areaUnderROC_error_bound"] + 1e-12
    assert abs(m["areaUnderROC"] - roc_auc_score(y, p)) < 1e-3
    assert m["log_loss"] == pytest.approx(log_loss(y, p), rel=1e-9)
    assert m["brier"] == pytest.approx(float(np.mean((p - y) ** 2)), rel=1e-9)
    assert [t["threshold"] for t in m["thresholds"]] == [0.5, 0.3, 0.7]  # model, conf, asked
    for t in m["thresholds"]:
        predicted = p > t["threshold"]
        assert t["confusion"]["tp"] == int((predicted & (y == 1)).sum())
        assert t["confusion"]["fp"] == int((predicted & (y == 0)).sum())
        assert t["accuracy"] == pytest.approx(float((predicted == (y == 1)).mean()))
    assert sum(c["rows"] for c in m["calibration"]) == len(rows)
    for c in m["calibration"]:
        inside = (p >= c["from"]) & ((p < c["to"]) | (c["to"] == 1.0))
        assert c["rows"] == int(inside.sum())
        assert c["observed_rate"] == pytest.approx(float(y[inside].mean()))
    best = max(f1_score(y, (p >= cut).astype(int)) for cut in np.unique(np.concatenate([p, [1.1]])))
    assert m["best_f1"] <= best + 1e-12 and m["best_f1"] > best - 0.02
    low, high = m["bootstrap"]["intervals"]["areaUnderROC"]
    assert low < m["areaUnderROC"] < high and high - low < 0.2
    assert m["bootstrap"]["replicates"] == 200
    # slices: elevel's five values each hold >= 60 rows; zipcode's small ones are pooled
    levels = {e["value"]: e for e in m["slices"]["elevel"]}
    assert sum(e["rows"] for e in levels.values()) == len(rows)
    assert set(levels) <= {"0", "1", "2", "3", "4", "other"}
    zips = m["slices"]["zipcode"]
    assert sum(e["rows"] for e in zips) == len(rows)
    assert all(e["rows"] >= 60 for e in zips if e["value"] != "other")
    # the report: HTML with its PNGs, beside the model version
    page = Path(report.report)
    assert page.parent.parent.name == "evaluations" and page.exists()
    for name in ("roc", "pr", "calibration", "confusion", "scores", "features"):
        assert (page.parent / f"{name}.png").read_bytes()[:4] == b"\x89PNG"
    text = page.read_text()
    assert text.count("data:image/png;base64,") == 6
    assert "elevel = " in text  # coefficients named by one-hot level
    assert json.loads((page.parent / "metrics.json").read_text())["rows"] == len(rows)


def test_regression_and_multiclass_figures(spark: SparkSession, lake: Path) -> None:
    settings = settings_for(lake)
    registry = Registry(str(lake / "_registry"))
    report = evaluate_job.evaluate(spark, settings, "loan_lr", split="all")
    rows = registry.load("loan_lr").transform(spark.read.parquet(str(lake / "people")))
    pairs = rows.select("loan", "prediction").collect()
    y = np.asarray([r[0] for r in pairs])
    yhat = np.asarray([r[1] for r in pairs])
    m = report.metrics
    assert m["rows"] == 4000
    assert m["rmse"] == pytest.approx(mean_squared_error(y, yhat) ** 0.5, rel=1e-9)
    assert m["mae"] == pytest.approx(mean_absolute_error(y, yhat), rel=1e-9)
    median = m["residual_quantiles"]["0.5"]
    assert abs(np.mean((yhat - y) <= median) - 0.5) < 0.01
    assert (Path(report.report).parent / "residuals.png").exists()

    report = evaluate_job.evaluate(spark, settings, "level_rf", split="all")
    rows = registry.load("level_rf").transform(spark.read.parquet(str(lake / "people")))
    pairs = rows.select("elevel", "prediction").collect()
    y = np.asarray([r[0] for r in pairs])
    yhat = np.asarray([r[1] for r in pairs])
    m = report.metrics
    assert report.task == "multiclass"
    assert m["accuracy"] == pytest.approx(accuracy_score(y, yhat))
    assert m["macro_f1"] == pytest.approx(f1_score(y, yhat, average="macro", zero_division=0))
    assert m["weighted_f1"] == pytest.approx(f1_score(y, yhat, average="weighted", zero_division=0))
    assert np.asarray(m["confusion_matrix"]).sum() == 4000


def test_training_records_its_test_evaluation_and_a_default_evaluate_reads_it(
    spark: SparkSession, lake: Path
) -> None:
    """Training scored its test split for its report: `evaluate` with no table, split or
    threshold of its own returns that evaluation (not a second scoring), equal to the one
    it would compute; anything else is computed."""
    from batchml.lib.evaluation.model import RECORDED, TRAIN_REPORT

    settings = settings_for(lake)
    registry = Registry(str(lake / "_registry"))
    version = registry.get("people_lr@1")
    folder = Path(version.artifact_uri) / TRAIN_REPORT
    recorded = json.loads((folder / RECORDED).read_text())
    assert (recorded["model"], recorded["model_version"], recorded["split"]) == (
        "people_lr",
        1,
        "test",
    )

    found = evaluate_job.evaluate(spark, settings, "people_lr@1")
    assert found.report == str(folder / "report.html")
    fresh = evaluate_job.evaluate(
        spark, settings, "people_lr@1", report_dir=str(folder.parent / "again")
    )  # a folder of its own: computed
    assert fresh.report == str(folder.parent / "again" / "report.html")
    assert (found.table, found.table_version, found.scorer) == (
        fresh.table, fresh.table_version, fresh.scorer,
    )  # fmt: skip
    for name in ("rows", "areaUnderROC", "areaUnderPR", "log_loss", "brier", "accuracy"):
        assert found.metrics[name] == pytest.approx(fresh.metrics[name], rel=1e-12), name
    intervals = found.metrics["bootstrap"]["intervals"]
    assert set(intervals) == set(fresh.metrics["bootstrap"]["intervals"])
    for name, bounds in intervals.items():
        assert bounds == pytest.approx(fresh.metrics["bootstrap"]["intervals"][name], rel=1e-12)
    assert found.metrics["slices"] == fresh.metrics["slices"]
    # another split is computed, not the record
    assert (
        evaluate_job.evaluate(spark, settings, "people_lr@1", split="all").metrics["rows"] == 4000
    )

    # without a record (a version trained before records, or it was removed), a first
    # version is scored by promote itself, with the same figures
    norec = settings_for(lake, [
        'models.people_norec.pipeline="people_few"',
        'models.people_norec.algorithm="logistic_regression"',
        "models.people_norec.params={maxIter=5}",
    ])  # fmt: skip
    train_job.run(spark, norec, "people_norec")
    copy = registry.get("people_norec@1")
    record = Path(copy.artifact_uri) / TRAIN_REPORT / RECORDED
    expected = json.loads(record.read_text())["metrics"]["areaUnderROC"]
    record.unlink()
    promoted = promote_job.promote(spark, norec, "people_norec")
    assert (promoted.action, promoted.champion_after) == ("promoted", 1)
    assert promoted.challenger_value == pytest.approx(expected, rel=1e-12)
    assert not record.exists()  # promote records nothing of its own


@pytest.mark.parametrize(
    ("ref", "options", "message"),
    [
        ("nobody", {}, "no model 'nobody'"),
        ("people_lr@9", {}, "has no version 9"),
        ("people_lr@gold", {}, "has no alias 'gold'"),
        ("people_lr", {"thresholds": (1.5,)}, "threshold 1.5 is outside [0, 1]"),
        ("loan_lr", {"thresholds": (0.5,)}, "is a regression model"),
        ("people_lr", {"table": "people@7"}, "version 7"),
        ("people_lr", {"split": "holdout"}, "--split 'holdout'"),
    ],
)
def test_bad_requests_are_one_line_errors(
    spark: SparkSession, lake: Path, ref: str, options: dict, message: str
) -> None:
    with pytest.raises((InputError, ConfigError)) as error:
        evaluate_job.evaluate(spark, settings_for(lake), ref, write_report=False, **options)
    assert message in str(error.value) and "\n" not in str(error.value)


def test_missing_columns_are_listed(spark: SparkSession, lake: Path) -> None:
    EmbeddedDelta(spark).write(
        spark.read.parquet(str(lake / "people")).drop("label", "age"), str(lake / "unlabelled")
    )
    with pytest.raises(InputError, match=r"missing columns age \(feature\), label \(label\)"):
        evaluate_job.evaluate(
            spark, settings_for(lake), "people_lr", table="unlabelled", split="all"
        )
    extra = ['models.people_lr.evaluation.slices=["carrier"]']
    train_job.run(spark, settings_for(lake, extra), "people_lr")
    with pytest.raises(InputError, match=r"carrier \(slice\)"):
        evaluate_job.evaluate(spark, settings_for(lake), "people_lr@2")


def test_promotion_gate(spark: SparkSession, lake: Path, cli_globals: list[str]) -> None:
    settings = settings_for(lake)
    registry = Registry(str(lake / "_registry"))
    train_job.run(spark, settings, "people_weak")  # version 1: weak
    first = promote_job.promote(spark, settings, "people_weak")
    assert (first.action, first.champion_after) == ("promoted", 1)
    # a first version is judged from training's recorded test evaluation, not rescored:
    # the value a fresh scoring of the split gives
    fresh = evaluate_job.evaluate(
        spark, settings, "people_weak@1", report_dir=str(lake.parent / "weak_fresh")
    )
    assert first.challenger_value == pytest.approx(fresh.metrics["areaUnderROC"], rel=1e-12)
    assert (first.table, first.table_version, first.split) == (
        str(lake / "people"), 0, "test",
    )  # fmt: skip
    again = promote_job.promote(spark, settings, "people_weak")
    assert again.action == "noop" and "already the champion" in again.reason

    # a better challenger (every feature, not one) is promoted
    strong = ['models.people_weak.pipeline="people"']
    train_job.run(spark, settings_for(lake, strong), "people_weak")  # version 2
    dry = promote_job.promote(spark, settings, "people_weak", mode="dry-run")
    assert dry.action == "would-promote" and registry.get("people_weak@champion").version == 1
    won = promote_job.promote(spark, settings, "people_weak")
    assert (won.action, won.champion_before, won.champion_after) == ("promoted", 1, 2)
    assert won.challenger_value > won.champion_value and won.interval[0] > 0
    assert registry.get("people_weak@champion").version == 2
    assert registry.get("people_weak@previous_champion").version == 1

    # the weak one again, as version 3: kept; the exit code says so to a scheduler
    train_job.run(spark, settings, "people_weak")
    runner = CliRunner()
    conf = str(lake.parent / "evaluate.toml")
    args = [*cli_globals, "--conf", conf, "--set", f'lakehouse.root="{lake}"']
    result = runner.invoke(app, [*args, "promote", "people_weak"])
    assert result.exit_code == promote_job.EXIT_NOT_PROMOTED, result.output
    assert "kept people_weak@2 as champion" in result.output and "not better" in result.output
    assert registry.get("people_weak@champion").version == 2

    rolled = promote_job.promote(spark, settings, "people_weak", rollback=True)
    assert (rolled.champion_before, rolled.champion_after) == (2, 1)
    assert registry.get("people_weak@champion").version == 1
    assert registry.get("people_weak@previous_champion").version == 2
    history = registry.decisions("people_weak")
    assert [d["action"] for d in history] == ["promoted", "promoted", "kept", "rollback"]
    assert history[1]["details"]["metrics"]["challenger"]["areaUnderROC"] > 0.5
    shown = runner.invoke(app, [*args, "models", "show", "people_weak@1"])
    assert shown.exit_code == 0, shown.output
    assert "rollback" in shown.output and "report" in shown.output

    # bad input leaves the registry as it was
    before = len(registry.decisions("people_weak"))
    for bad in (["promote", "people_weak", "--challenger", "9"], ["promote", "nobody"]):
        result = runner.invoke(app, [*args, *bad])
        assert result.exit_code == 4 and result.output.count("\n") == 1, result.output
    assert len(registry.decisions("people_weak")) == before


def test_report_renders_in_headless_chromium(spark: SparkSession, lake: Path, tmp_path) -> None:
    """The report's images decode in a real browser (Chromium from Debian's packages;
    .ci/run installs it and sets BATCHML_REQUIRE_CHROMIUM)."""
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if browser is None:
        if os.environ.get("BATCHML_REQUIRE_CHROMIUM"):
            pytest.fail("chromium is not installed (apt-get install chromium)")
        pytest.skip("chromium is not installed here (CI installs it)")
    report = evaluate_job.evaluate(spark, settings_for(lake), "people_lr@1")
    page = Path(report.report).read_text()
    probe = (
        "<script>window.addEventListener('load', () => {"
        "const ok = [...document.images].filter(i => i.complete && i.naturalWidth > 100);"
        "document.title = 'images ' + ok.length + ' of ' + document.images.length;});</script>"
    )
    copy = tmp_path / "report.html"
    copy.write_text(page.replace("</body>", probe + "</body>"))
    dom = subprocess.run(
        [
            browser,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-first-run",
            f"--user-data-dir={tmp_path / 'profile'}",
            "--virtual-time-budget=5000",
            "--dump-dom",
            copy.as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    ).stdout
    assert "<title>images 6 of 6</title>" in dom, dom[:500]


def test_regression_and_multiclass_promotion_use_paired_intervals(
    spark: SparkSession, lake: Path
) -> None:
    """A regression challenger that is only noise away from the champion is kept when the
    improvement must be significant; a multiclass decision carries its paired interval."""
    strict = ["models.loan_lr.evaluation.require_significant=true"]
    first = promote_job.promote(spark, settings_for(lake, strict), "loan_lr")
    assert first.action == "promoted" and first.metric == "rmse"
    train_job.run(
        spark, settings_for(lake, ["models.loan_lr.params={ regParam = 0.5 }"]), "loan_lr"
    )
    second = promote_job.promote(spark, settings_for(lake, strict), "loan_lr")
    low, high = second.interval
    assert second.action == "kept", second.reason
    assert second.improvement <= 0 or low <= 0 < high
    assert abs(second.improvement) < 0.05 * second.champion_value  # rmse of pure noise

    promote_job.promote(spark, settings_for(lake), "level_rf")
    more = ["models.level_rf.params={ numTrees = 8, maxDepth = 4 }"]
    train_job.run(spark, settings_for(lake, more), "level_rf")
    decided = promote_job.promote(spark, settings_for(lake), "level_rf")
    # the bigger forest is better on the test split (macro F1 0.205 vs 0.199), not
    # significantly: without require_significant a better point estimate promotes
    assert (decided.metric, decided.action) == ("macro_f1", "promoted"), decided.reason
    low, high = decided.interval
    assert decided.improvement > 0 and low < 0 < high
    assert low <= decided.improvement <= high
    recorded = Registry(str(lake / "_registry")).decisions("level_rf")[-1]
    assert recorded["details"]["interval"] == [low, high]
