"""The `people` project many tests share: agrawal's synthetic applicants, the
`[pipelines.people]` section over their columns, settings for a lake, and the scoring
project (`people_lr` trained on 3,000 rows, predictions of `applicants`) that the predict
and monitor tests start from (trained once per test session: see `conftest.py`)."""

from __future__ import annotations

import shutil
from pathlib import Path

from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from batchml.jobs import predict
from batchml.jobs.train import job as train_job
from batchml.lib.data.synthetic import agrawal
from batchml.lib.delta.embedded import EmbeddedDelta
from batchml.lib.platform.config import load_config

NUMERIC = ("salary", "commission", "loan", "age")


def pipeline(
    view: str = "people",
    numeric: tuple[str, ...] = NUMERIC,
    categorical: tuple[str, ...] = ("elevel",),
    *,
    for_format: bool = False,
) -> str:
    """The `[pipelines.people]` section: agrawal's columns, label `label`, key `id`.
    `for_format`: braces doubled, for a text that goes through `str.format`."""
    lines = [
        "[pipelines.people]",
        f'view = "{view}"',
        'label = "label"',
        'key = "id"',
        "",
        "[pipelines.people.numeric]",
        *(f"{c} = {{}}" for c in numeric),
    ]
    if categorical:
        lines += ["", "[pipelines.people.categorical]", *(f"{c} = {{}}" for c in categorical)]
    text = "\n".join(lines) + "\n"
    return text.replace("{", "{{").replace("}", "}}") if for_format else text


def settings_for(lake: Path, conf: Path, *overrides: str, backend: str = "embedded"):
    """The settings of the config file `conf` with the lakehouse at `lake`."""
    return load_config(
        conf_file=conf,
        overrides=[f'lakehouse.root="{lake}"', f'delta.backend="{backend}"', *overrides],
        environ={},
    ).settings


# ------------------------------------------------------------------ the scoring project
SCORING = (
    pipeline(for_format=True)
    + """
[models.people_lr]
pipeline = "people"
algorithm = "logistic_regression"
params = {{ maxIter = 30 }}

[models.people_xgb]
pipeline = "people"
algorithm = "xgboost_classifier"
params = {{ n_estimators = 10, max_depth = 3 }}

[predictions.people_lr]
model = "people_lr"
input = "applicants"
output = "scores"
passthrough = ["age"]
{extra}
"""
)


def scoring_settings(lake: Path, tmp_path: Path, backend: str = "embedded", extra: str = ""):
    """The scoring project's settings (`extra`: more TOML) with the lakehouse at `lake`."""
    conf = tmp_path / "predict.toml"
    conf.write_text(SCORING.format(extra=extra))
    return settings_for(lake, conf, backend=backend)


def build_scoring_lake(spark: SparkSession, root: Path) -> Path:
    """`people` (3,000 rows) and `people_lr` version 1 trained on it, under `root/lake`."""
    lake = root / "lake"
    EmbeddedDelta(spark).write(agrawal(spark, 3000, function=7, seed=9), str(lake / "people"))
    train_job.run(spark, scoring_settings(lake, root), "people_lr")
    return lake


def copy_lake(template: Path, root: Path) -> Path:
    """A module's own copy of a lakehouse built once (a copied lakehouse reads its own
    records: tests/test_relocation.py)."""
    lake = root / "lake"
    shutil.copytree(template, lake)
    return lake


def applicants(spark: SparkSession, start: int, stop: int):
    """Rows to score: ids [start, stop), with a date column, without the label."""
    rows = agrawal(spark, stop, function=7, seed=3).filter(F.col("id") >= start)
    return rows.drop("label").withColumn(
        "day", F.expr("date_add(DATE'2013-01-01', CAST(id % 10 AS INT))")
    )


def predict_run(spark, settings, model="people_lr", **kwargs) -> predict.PredictReport:
    return predict.run(spark, settings, predict.PredictRequest(model, **kwargs))
