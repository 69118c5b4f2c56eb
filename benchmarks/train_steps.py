"""Where batchml's xgboost training job spends its time: timers around the steps of
`batchml.jobs.train.fit.fit` (feature fit, workers check, the estimator's fit, holdout
metrics with the score profile observed on them) on the table of `train_lr.py`, for
fits of each of --trees trees (depth 5, learning rate 0.1, 32 bins). The difference
between the largest and the smallest fit is the boosting; the smallest fit's time is
the fixed cost.

Method, in one run: every fit (a side) warmed up --warmup times (untimed, the whole
job), then --rounds rounds with the fits' order rotated each round; each side's time and
each step's time are medians of the rounds (every round printed). All sides run in this
process's session: no memory cap, the same output work (batchml's whole job) on each.
Checked on every run, in every mode: the trees fitted, the rows of each split, a holdout
AUC above 0.5 (the label is learnable), and that every step's timer ran.

    uv run python benchmarks/train_steps.py --workdir /tmp/bench_lr [--rows 1000000] \
        [--trees 2 50 100] [--rounds 3]
    uv run python benchmarks/train_steps.py --smoke   # seconds: checks the work only

(--repeat, the number of 100-tree runs after one 2-tree warm-up, is now the harness's
--rounds for every fit; the old name is accepted.)
"""

from __future__ import annotations

import argparse
import contextlib
import json
import shutil
import statistics
import time
from collections.abc import Iterator
from typing import Any

import harness
from train_boost import run_ours
from train_lr import RunLog, bench_settings, ensure_table

import batchml.jobs.train.fit as train_fit

STEPS = ("fit_features", "_workers_with_data", "holdout_metrics")
ESTIMATOR_FIT = "estimator fit"
XGB = {"max_depth": 5, "learning_rate": 0.1, "max_bin": 32}


@contextlib.contextmanager
def step_timers(seconds: dict[str, float]) -> Iterator[None]:
    """Timers around fit()'s steps, adding into `seconds`; everything put back at the end
    (in the test session the module and the estimator's class outlive this benchmark)."""
    patched: list[tuple[Any, str, Any]] = []  # (owner, name, original)

    def timed(name, function):
        def run(*positional, **named):
            started = time.perf_counter()
            try:
                return function(*positional, **named)
            finally:
                seconds[name] = seconds.get(name, 0.0) + time.perf_counter() - started

        return run

    def patch(owner, name: str, replacement) -> None:
        patched.append((owner, name, owner.__dict__[name]))
        setattr(owner, name, replacement)

    for step in STEPS:  # the module's own names: fit() looks them up when it runs
        patch(train_fit, step, timed(step, getattr(train_fit, step)))
    make_estimator = train_fit.estimator

    def estimator(*positional, **named):
        model = make_estimator(*positional, **named)
        kind = type(model)
        if not any(owner is kind for owner, _, _ in patched):  # its class's fit, once
            if "fit" in kind.__dict__:
                patch(kind, "fit", timed(ESTIMATOR_FIT, kind.fit))
            else:  # inherited: set on the class, removed at the end
                kind.fit = timed(ESTIMATOR_FIT, kind.fit)
                patched.append((kind, "fit", None))
        return model

    patch(train_fit, "estimator", estimator)
    try:
        yield
    finally:
        for owner, name, original in reversed(patched):
            if original is None:
                delattr(owner, name)
            else:
                setattr(owner, name, original)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = harness.arguments(__doc__)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--trees", type=int, nargs="+", default=[2, 50, 100])
    parser.add_argument(  # the old name of --rounds
        "--repeat", dest="rounds", type=int, default=argparse.SUPPRESS, help=argparse.SUPPRESS
    )
    parser.add_argument("--driver-memory", default="6g")
    # smoke: a few thousand rows; a 2-tree and a 10-tree fit (the smallest and the
    # largest are what the figures are made of)
    args = harness.parse(parser, argv, rows=4000, trees=[2, 10])
    trees = sorted(set(args.trees))
    assert len(trees) >= 2, "--trees: at least two sizes, their difference is the boosting"
    own_folder = args.workdir is None
    work = harness.workdir(args, "steps").resolve()
    # smoke: the test session's shuffle partitions, which joining it would change
    partitions = 2 if args.smoke else 4
    settings = bench_settings(work, args.driver_memory, shuffle_partitions=partitions)
    log = RunLog(args.rounds)
    seconds: dict[str, float] = {}
    try:
        with harness.session(settings) as spark, step_timers(seconds):
            uri, splits = ensure_table(spark, work, args.rows)

            def fit(count: int):
                def run() -> harness.Timed:
                    seconds.clear()
                    params = {**XGB, "n_estimators": count}
                    result = run_ours(spark, settings, uri, "xgboost_classifier", params)
                    found = result.value
                    assert found["trees"] == count, f"{found['trees']} trees of {count}"
                    assert found["rows"] == splits, (found["rows"], splits)
                    assert found["auc"] > 0.5, f"{count} trees: holdout AUC {found['auc']}"
                    missing = {*STEPS, ESTIMATOR_FIT} - set(seconds)
                    assert not missing, f"{count} trees: steps not timed: {missing}"
                    found["steps"] = dict(seconds)
                    return result

                return run

            sides = harness.side_by_side(
                {f"{count} trees": log.record(f"{count} trees", fit(count)) for count in trees},
                rounds=args.rounds,
                warmup=args.warmup,
                label=f"lr_{args.rows}",
            )
            spark_version = spark.version
    finally:
        if own_folder:
            shutil.rmtree(work, ignore_errors=True)
    harness.note(sides.table())
    report: dict[str, Any] = {}
    for count in trees:
        name = f"{count} trees"
        report[name] = log.figures(sides, name, "auc")
        timed_runs = log.timed(name)
        report[name]["steps_median_s"] = {
            step: round(statistics.median(run.value["steps"][step] for run in timed_runs), 3)
            for step in (*STEPS, ESTIMATOR_FIT)
        }
    smallest, largest = f"{trees[0]} trees", f"{trees[-1]} trees"
    results = {
        **harness.header(args),
        "spark": spark_version,
        "rows": args.rows,
        "settings": XGB,
        "fits": report,
        "fixed_cost_s": round(sides.median(smallest), 3),
        "boosting_per_tree_s": round(
            (sides.median(largest) - sides.median(smallest)) / (trees[-1] - trees[0]), 4
        ),
    }
    print(json.dumps(results, indent=2))
    return results


if __name__ == "__main__":
    main()
