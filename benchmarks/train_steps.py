"""Where batchml's xgboost training job spends its time: timers around the steps of
`batchml.jobs.train.fit.fit` (feature fit, workers check, the estimator's fit, holdout
metrics with the score profile observed on them) on the table of `train_lr.py`, after a
2-tree warm-up; then 2-tree and 50-tree fits, whose difference is the boosting and whose
2-tree time is the fixed cost.

    uv run python benchmarks/train_steps.py --workdir /tmp/bench_lr [--rows 1000000] [--repeat 3]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from train_boost import run_ours
from train_lr import bench_session

import batchml.jobs.train.fit as train_fit

STEPS = ("fit_features", "_workers_with_data", "holdout_metrics")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--workdir", type=Path, required=True)
    args = parser.parse_args()
    seconds: dict[str, float] = {}

    def timed(name, function):
        def run(*positional, **named):
            started = time.perf_counter()
            try:
                return function(*positional, **named)
            finally:
                seconds[name] = seconds.get(name, 0.0) + time.perf_counter() - started

        return run

    for step in STEPS:  # the module's own names: fit() looks them up when it runs
        setattr(train_fit, step, timed(step, getattr(train_fit, step)))
    make_estimator = train_fit.estimator

    def estimator(*positional, **named):
        model = make_estimator(*positional, **named)
        kind = type(model)
        if "_timed" not in kind.__dict__:
            kind.fit, kind._timed = timed("estimator fit", kind.fit), True
        return model

    train_fit.estimator = estimator
    work = args.workdir.resolve()
    spark, settings = bench_session(work)
    uri = str(work / f"lr_{args.rows}")
    if not Path(uri).exists():
        from train_lr import make_table

        make_table(spark, uri, args.rows)
    xgb = {"n_estimators": 100, "max_depth": 5, "learning_rate": 0.1, "max_bin": 32}
    runs = [("warm-up", 2)] + [("run", 100)] * args.repeat + [("fixed cost", 2), ("half", 50)]
    for label, trees in runs:
        seconds.clear()
        result = run_ours(
            spark, settings, uri, "xgboost_classifier", {**xgb, "n_estimators": trees}
        )
        steps = {k: round(v, 2) for k, v in seconds.items()}
        print(
            json.dumps(
                {
                    "what": label,
                    "trees": trees,
                    "seconds": result["seconds"],
                    "auc": result["auc"],
                    "steps": steps,
                }
            ),
            flush=True,
        )
    spark.stop()


if __name__ == "__main__":
    main()
