"""What checking keys costs (issue 31), each check against the job it is part of, in
one run.

  predict   `batchml predict --full` (the LR model, SQL scorer, into Delta) on --rows
            rows, which counts the key (`lib/features/keys.count_keys`), against that
            count alone on the same input (the input's log read in both windows): the
            count's share of a run. The sides do different work by design: the count
            is part of the predict run; only the predict side writes (into an empty
            table: the last run's output is removed before each run, untimed).
  monitor   `by_period` (the per-period figure monitor records: exact AUC, bootstrap
            interval on bins) over the scored rows in 12 periods, against its exact-AUC
            query alone (`_exact_auc`): the share the exactness costs. Neither writes.

Method: both comparisons through harness.side_by_side: the same warm-up per side
(--warmup, default 1), the same --rounds (default 3) with the order of the sides rotated
each round, every round printed, the median reported; shares are medians of the same
run. One process, one session, no memory cap. Checks, every round and every size:
predict scored --rows rows with --rows distinct keys, and the count alone found as many;
by_period and the exact query gave an AUC for each of the 12 periods, the same ones.

Data and model: `predict_batch.py`'s (the LR benchmark's synthetic table, a model
trained on a --sample-rows sample); a workdir of that benchmark is reused.

    cd benchmarks && uv run python key_checks.py --workdir /tmp/bench_predict [--rows 4000000]
    cd benchmarks && uv run python key_checks.py --smoke   # seconds: checks the work only
"""

from __future__ import annotations

import json
import shutil
from typing import Any

import harness
from predict_batch import prepare, settings_for
from pyspark.sql import functions as F

from batchml.jobs import predict
from batchml.lib.delta import delta_tables
from batchml.lib.evaluation.over_time import _exact_auc, by_period
from batchml.lib.features.keys import count_keys
from batchml.lib.platform.logs import configure_logging

PERIODS = 12


def compare_keys(spark, settings, work, args) -> dict[str, Any]:
    tables = delta_tables(spark, settings)
    source = str(work / "score_input")

    def predict_run() -> None:
        request = predict.PredictRequest("bench_lr", full=True)
        report = predict.run(spark, settings, request)
        assert report.rows_scored == args.rows, report.message
        assert report.keys["distinct"] == args.rows, report.keys

    def key_count() -> None:
        counts = count_keys(tables.read(source).df, ["id"])
        assert (counts.rows, counts.distinct) == (args.rows, args.rows), counts

    def empty_output(side: str) -> None:
        if side == "predict":
            shutil.rmtree(work / "scores", ignore_errors=True)

    sides = harness.side_by_side(
        {"predict": predict_run, "key_count": key_count},
        rounds=args.rounds,
        warmup=args.warmup,
        before=empty_output,
        label="keys",
    )
    harness.note(sides.table())
    return {
        **sides.figures(),
        "key_count_share_of_predict": round(sides.ratio("key_count", "predict"), 3),
    }


def compare_auc(spark, settings, work, args) -> dict[str, Any]:
    tables = delta_tables(spark, settings)
    # the predictions just written, labelled, in 12 periods (the id's month of a year)
    labels = tables.read(str(work / "score_input")).df.select("id", "label")
    scored = (
        tables.read(str(work / "scores"))
        .df.join(labels, "id")
        .select("probability", "label", (F.col("id") % PERIODS).cast("string").alias("period"))
    )
    y, p = F.col("label").cast("double"), F.col("probability")

    def per_period() -> dict[str, float]:
        found = by_period(scored, "label", "probability", "period", task="binary")
        assert len(found) == PERIODS and all(e["value"] is not None for e in found), found
        return {entry["period"]: entry["value"] for entry in found}

    def exact_only() -> dict[str, float]:
        found = _exact_auc(scored, F.col("period").alias("period"), y, p)
        assert len(found) == PERIODS, found
        return found

    sides = harness.side_by_side(
        {"by_period": per_period, "exact_auc": exact_only},
        rounds=args.rounds,
        warmup=args.warmup,
        label="auc",
    )
    harness.note(sides.table())
    # by_period's AUC is the exact query's: the same figure, not a binned one (up to the
    # order Spark sums doubles in)
    per_period, exact = sides.results["by_period"], sides.results["exact_auc"]
    assert per_period.keys() == exact.keys(), (per_period, exact)
    assert all(abs(per_period[k] - exact[k]) <= 1e-12 for k in exact), (per_period, exact)
    return {
        **sides.figures(),
        "exact_auc_share_of_by_period": round(sides.ratio("exact_auc", "by_period"), 3),
    }


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = harness.arguments(__doc__)
    parser.add_argument("--rows", type=int, default=4_000_000)
    parser.add_argument("--sample-rows", type=int, default=200_000)
    parser.add_argument(
        "--max-iter", type=int, default=50, help="the logistic regression's iterations"
    )
    args = harness.parse(parser, argv, rows=3_000, sample_rows=2_000, max_iter=10)
    given = args.workdir is not None
    work = harness.workdir(args, "keys").resolve()
    settings = settings_for(work, iterations=args.max_iter)
    configure_logging("WARNING")
    try:
        with harness.session(settings) as spark:
            prepare(spark, settings, work, args.rows, args.sample_rows, ("bench_lr",))
            results = {
                **harness.header(args),
                "rows": args.rows,
                "task_slots": spark.sparkContext.defaultParallelism,
                "predict": compare_keys(spark, settings, work, args),
                "monitor": compare_auc(spark, settings, work, args),
            }
    finally:
        if not given:  # a temporary folder of this run only
            shutil.rmtree(work, ignore_errors=True)
    print(json.dumps(results, indent=2))
    return results


if __name__ == "__main__":
    main()
