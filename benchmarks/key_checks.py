"""What checking keys costs (issue 31), each check against the job it is part of, in
one run: the same warm-up, rounds and statistic (median) for both sides.

  predict   `batchml predict --full` (the LR model, SQL scorer, into Delta) on --rows
            rows, which counts the key (`lib/keys.count_keys`), against that count
            alone on the same input version: the count's share of a run.
  monitor   `by_period` (the per-period figure monitor records: exact AUC,
            bootstrap interval on bins) over the scored rows in 12 periods, against its
            exact-AUC query alone (`_exact_auc`): the share the exactness costs.

Data and model: `predict_batch.py`'s (the LR benchmark's synthetic table, a model
trained on a 200,000-row sample); a workdir of that benchmark is reused.

    uv run python benchmarks/key_checks.py --workdir /tmp/bench_predict [--rows 4000000]
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from predict_batch import settings_for
from pyspark.sql import functions as F
from train_lr import make_table

from batchml.jobs import predict
from batchml.jobs.train import job as train_job
from batchml.lib.delta.embedded import EmbeddedDelta
from batchml.lib.evaluation.over_time import _exact_auc, by_period
from batchml.lib.features.keys import count_keys
from batchml.lib.platform.logs import configure_logging
from batchml.lib.spark.session import build_session
from batchml.lib.tracking.registry import registry_of


def timed(action) -> float:
    started = time.perf_counter()
    action()
    return time.perf_counter() - started


def side_by_side(pairs: dict[str, object], rounds: int) -> dict[str, list[float]]:
    """Each action once to warm up, then `rounds` rounds, the actions interleaved."""
    for action in pairs.values():
        action()
    spent: dict[str, list[float]] = {name: [] for name in pairs}
    for _ in range(rounds):
        for name, action in pairs.items():
            spent[name].append(timed(action))
    return spent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=4_000_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--workdir", type=Path, default=None)
    args = parser.parse_args()
    work = args.workdir or Path(tempfile.mkdtemp(prefix="batchml-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    settings = settings_for(work)
    configure_logging("WARNING")
    spark = build_session(settings)
    tables = EmbeddedDelta(spark)
    sample, source = str(work / "train_sample"), str(work / "score_input")
    if not Path(sample).exists():
        make_table(spark, sample, 200_000)
    if not Path(source).exists() or tables.read(source).rows != args.rows:
        make_table(spark, source, args.rows)
    if not registry_of(settings).list("bench_lr"):
        train_job.run(spark, settings, "bench_lr")
    read = tables.read(source)

    def predict_run() -> None:
        request = predict.PredictRequest("bench_lr", full=True)
        report = predict.run(spark, settings, request)
        assert report.rows_scored == args.rows and report.keys["distinct"] == args.rows

    def key_count() -> None:
        assert count_keys(read.df, ["id"]).distinct == args.rows

    runs = side_by_side({"predict": predict_run, "key_count": key_count}, args.rounds)

    # the predictions just written, labelled, in 12 periods (the id's month of a year)
    labels = read.df.select("id", "label")
    scored = (
        tables.read(str(work / "scores"))
        .df.join(labels, "id")
        .select("probability", "label", (F.col("id") % 12).cast("string").alias("period"))
    )
    y, p = F.col("label").cast("double"), F.col("probability")

    def per_period() -> None:
        found = by_period(scored, "label", "probability", "period", task="binary")
        assert len(found) == 12

    def exact_only() -> None:
        period = F.col("period").alias("period")
        assert len(_exact_auc(scored, period, y, p)) == 12

    runs.update(side_by_side({"by_period": per_period, "exact_auc": exact_only}, args.rounds))
    median = {name: statistics.median(values) for name, values in runs.items()}
    result = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": f"{platform.machine()}, {spark.sparkContext.defaultParallelism} task slots",
        "rows": args.rows,
        "rounds": args.rounds,
        "seconds": {name: [round(v, 3) for v in values] for name, values in runs.items()},
        "median_seconds": {name: round(v, 3) for name, v in median.items()},
        "key_count_share_of_predict": round(median["key_count"] / median["predict"], 3),
        "exact_auc_share_of_by_period": round(median["exact_auc"] / median["by_period"], 3),
    }
    print(json.dumps(result, indent=2))
    spark.stop()


if __name__ == "__main__":
    main()
