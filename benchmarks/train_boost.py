"""Boosted trees at equal settings: MLlib GBT vs xgboost.spark (batchml's default booster)
vs scikit-learn HistGradientBoosting vs native xgboost.

The synthetic table of `train_lr.py` (20 numeric columns with nulls, 3 categorical of
10 / 50 / 200 levels, label from a logistic model), the same 80/20 hash split. Same
settings everywhere: --trees trees of depth --depth, learning rate 0.1, --bins bins.
  (gbt)      batchml.jobs.train.fit.fit with gbt_classifier (MLlib GBTClassifier)
  (xgb)      batchml.jobs.train.fit.fit with xgboost_classifier (xgboost.spark, hist,
             num_workers = 2 task slots, the default `native` encoding); also with
             --xgb-extra-trees rounds when its AUC is below GBT's, to compare at equal AUC
  (xgb_one_hot) the same with encoding = "one_hot" (the assembled vector, as before)
  (hgb)      deltalake -> pandas, HistGradientBoostingClassifier (categories as ordinal
             codes: its native categories need at most --bins levels), in a child process
  (native)   deltalake -> pandas, xgboost.XGBClassifier (hist, 2 threads, categories
             as pandas categories: the same encoding batchml's default `native` gives
             xgboost.spark), in a child process
Times include reading the table, fitting (features included) and scoring the holdout.
With --memory-cap the two one-process fits get that much resident memory: killed, as a
container's memory limit would, when their RSS passes it (sampled every 0.1 s; an
address-space limit, RLIMIT_AS, stops them loading their libraries at any useful size).
batchml's JVM gets --driver-memory, and its memory is sampled over its process tree (the
JVM and the Python workers xgboost trains in) while it fits.

    uv run python benchmarks/train_boost.py --workdir /tmp/bench_lr [--rows 1000000]
    uv run python benchmarks/train_boost.py --workdir /tmp/bench_lr --only xgb hgb native \
        --rows 1000000 10000000 --driver-memory 3g --memory-cap 3g   # past one process
    uv run python benchmarks/train_boost.py --workdir /tmp/bench_lr --only xgb hgb native \
        --rounds 3   # each in turn, three times: a machine's speed drifts between runs
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import platform
import resource
import signal
import statistics
import tempfile
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

from train_lr import CATEGORICAL, NUMERIC, SEED, SPLIT, make_table, spec_for

from batchml.jobs.train import fit as train_fit
from batchml.jobs.train import plan as train_plan
from batchml.lib.platform.config import load_config
from batchml.lib.platform.logs import configure_logging
from batchml.lib.platform.runtime import memory_bytes
from batchml.lib.platform.settings import ModelSpec
from batchml.lib.spark.session import build_session


class TreeMemory:
    """Peak resident memory of a process and its descendants, sampled every 0.1 s: the
    peak of their sum, and the largest single process's peak (VmHWM). With `limit`
    (bytes) the process is killed when their sum passes it."""

    def __init__(self, pid: int, limit: int | None = None) -> None:
        self.pid, self.total, self.single, self.limit = pid, 0, 0, limit
        self.killed_at: int | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def __enter__(self) -> TreeMemory:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()

    def _tree(self) -> list[int]:
        children: dict[int, list[int]] = {}
        for status in Path("/proc").glob("[0-9]*/stat"):
            try:
                fields = status.read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            children.setdefault(int(fields[1]), []).append(int(status.parent.name))
        found, todo = [], [self.pid]
        while todo:
            pid = todo.pop()
            found.append(pid)
            todo.extend(children.get(pid, []))
        return found

    def _sample(self) -> None:
        while not self._stop.wait(0.1):
            total = 0
            for pid in self._tree():
                try:
                    status = Path(f"/proc/{pid}/status").read_text().splitlines()
                except OSError:
                    continue
                values = {line.split(":")[0]: line.split()[1:2] for line in status}
                total += int((values.get("VmRSS") or ["0"])[0])
                self.single = max(self.single, int((values.get("VmHWM") or ["0"])[0]))
            self.total = max(self.total, total)
            if self.limit and total * 1024 > self.limit and self.killed_at is None:
                self.killed_at = total
                os.kill(self.pid, signal.SIGKILL)

    def figures(self) -> dict:
        return {
            "tree_peak_rss_mb": round(self.total / 1024),
            "largest_process_peak_rss_mb": round(self.single / 1024),
        }


def run_ours(
    spark, settings, uri: str, algorithm: str, params: dict, encoding: str | None = None
) -> dict:
    model = ModelSpec(
        pipeline="bench",
        algorithm=algorithm,
        split=SPLIT,
        seed=SEED,
        params=params,
        encoding=encoding,
    )
    plan = train_plan.TrainPlan(f"bench_{algorithm}", model, "bench", spec_for(uri), uri, None)
    jvm = spark.sparkContext._jvm.java.lang.ProcessHandle.current().pid()
    started = time.perf_counter()
    with TreeMemory(jvm) as memory:
        trained = train_fit.fit(spark, settings, plan)
    return {
        "seconds": round(time.perf_counter() - started, 2),
        "auc": round(trained.metrics["test"]["areaUnderROC"], 4),
        "params": params,
        **memory.figures(),
    }


def local_child(kind: str, uri: str, trees: int, depth: int, bins: int, out) -> None:
    import numpy as np
    from deltalake import DeltaTable
    from sklearn.metrics import roc_auc_score

    started = time.perf_counter()
    frame = DeltaTable(uri).to_pandas()
    training, holdout = frame[frame["split"] == "train"], frame[frame["split"] == "test"]
    if kind == "hgb":
        from sklearn.ensemble import HistGradientBoostingClassifier

        def matrix(part):
            data = part[NUMERIC].copy()
            for column in CATEGORICAL:
                data[column] = part[column].str.split("_").str[1].astype(int)
            return data

        model = HistGradientBoostingClassifier(
            max_iter=trees,
            max_depth=depth,
            learning_rate=0.1,
            max_bins=bins,
            early_stopping=False,  # native categories need cardinality <= bins: ordinal codes
        )
        model.fit(matrix(training), training["label"])
        scores = model.predict_proba(matrix(holdout))[:, 1]
    else:
        import pandas as pd
        import xgboost

        levels = {c: sorted(frame[c].dropna().unique()) for c in CATEGORICAL}

        def matrix(part):  # the encoding batchml's native one gives xgboost: categories
            data = part[NUMERIC].astype(np.float32)
            for column in CATEGORICAL:
                data[column] = pd.Categorical(part[column], categories=levels[column])
            return data

        train_matrix, test_matrix = matrix(training), matrix(holdout)
        model = xgboost.XGBClassifier(
            n_estimators=trees,
            max_depth=depth,
            learning_rate=0.1,
            max_bin=bins,
            tree_method="hist",
            n_jobs=2,
            enable_categorical=True,
        )
        model.fit(train_matrix, training["label"])
        scores = model.predict_proba(test_matrix)[:, 1]
    out.put(
        {
            "seconds": round(time.perf_counter() - started, 2),
            "auc": round(float(roc_auc_score(holdout["label"], scores)), 4),
            "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
        }
    )


def run_local(kind: str, uri: str, trees: int, depth: int, bins: int, cap: int | None) -> dict:
    context = multiprocessing.get_context("spawn")  # no fork after deltalake / the JVM
    queue = context.Queue()
    child = context.Process(target=local_child, args=(kind, uri, trees, depth, bins, queue))
    started = time.perf_counter()
    child.start()
    with TreeMemory(child.pid, cap) as memory:
        child.join()
    if not queue.empty():
        return queue.get()
    if memory.killed_at is not None:
        return {
            "failed": f"over the {cap / 2**30:.1f} GB memory cap: killed at "
            f"{memory.killed_at / 1024:.0f} MB resident",
            "after_seconds": round(time.perf_counter() - started, 2),
        }
    return {"failed": f"exit code {child.exitcode}"}


def _median_run(runs: list[dict]) -> dict:
    """One result of several rounds: the run of median time (its AUC and memory), with
    every round's seconds; a failure when any round failed."""
    failed = [run for run in runs if "failed" in run]
    if failed:
        return failed[0]
    ordered = sorted(runs, key=lambda run: run["seconds"])
    chosen = dict(ordered[(len(ordered) - 1) // 2])
    if len(runs) > 1:
        chosen["seconds"] = round(statistics.median(run["seconds"] for run in runs), 2)
        chosen["rounds"] = [run["seconds"] for run in runs]
    return chosen


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, nargs="+", default=[1_000_000])
    parser.add_argument("--trees", type=int, default=100)
    parser.add_argument("--depth", type=int, default=5)
    parser.add_argument("--bins", type=int, default=32)
    parser.add_argument("--xgb-extra-trees", type=int, default=200)
    parser.add_argument("--only", nargs="*", default=["gbt", "xgb", "xgb_one_hot", "hgb", "native"])
    parser.add_argument("--workdir", type=Path, default=None)
    parser.add_argument("--driver-memory", default="6g")
    parser.add_argument("--memory-cap", default=None, help="e.g. 3g: see the module's text")
    parser.add_argument(
        "--rounds",
        type=int,
        default=1,
        help="run batchml, HGB and native xgboost this many times in turn (medians, and "
        "the median of each round's ratio)",
    )
    args = parser.parse_args()
    cap = memory_bytes(args.memory_cap) if args.memory_cap else None
    work = (args.workdir or Path(tempfile.mkdtemp(prefix="batchml-boost-bench-"))).resolve()
    cfg = load_config(
        overrides=[
            'spark.master="local[2]"',
            'delta.backend="embedded"',
            "spark.shuffle_partitions=4",
            f"spark.driver_memory={args.driver_memory}",
            f'lakehouse.root="{work}"',
        ]
    )
    configure_logging("WARNING")
    spark = build_session(cfg.settings)
    gbt = {"maxIter": args.trees, "maxDepth": args.depth, "stepSize": 0.1, "maxBins": args.bins}
    xgb = {
        "n_estimators": args.trees,
        "max_depth": args.depth,
        "learning_rate": 0.1,
        "max_bin": args.bins,
    }
    report: dict[str, object] = {}
    for rows in args.rows:
        uri = str(work / f"lr_{rows}")
        if not Path(uri).exists():
            make_table(spark, uri, rows)
        result: dict[str, object] = {}
        if "xgb" in args.only:
            run_ours(spark, cfg.settings, uri, "xgboost_classifier", {**xgb, "n_estimators": 2})
        rounds: list[dict] = []
        for _ in range(args.rounds):  # side by side: the machine's speed drifts over minutes
            one: dict[str, dict] = {}
            if "xgb" in args.only:
                one["xgb"] = run_ours(spark, cfg.settings, uri, "xgboost_classifier", xgb)
            for kind in ("hgb", "native"):
                if kind in args.only:
                    one[kind] = run_local(kind, uri, args.trees, args.depth, args.bins, cap)
            rounds.append(one)
        for kind in ("xgb", "hgb", "native"):
            if rounds and kind in rounds[0]:
                result[kind] = _median_run([one[kind] for one in rounds])
        if "xgb_one_hot" in args.only:
            result["xgb_one_hot"] = run_ours(
                spark, cfg.settings, uri, "xgboost_classifier", xgb, encoding="one_hot"
            )
        if "gbt" in args.only:
            result["gbt"] = run_ours(spark, cfg.settings, uri, "gbt_classifier", gbt)
            if "xgb" in result and result["xgb"]["auc"] < result["gbt"]["auc"]:
                more = {**xgb, "n_estimators": args.xgb_extra_trees}
                result["xgb_more_trees"] = run_ours(
                    spark, cfg.settings, uri, "xgboost_classifier", more
                )
        for other in ("native", "hgb", "xgb_one_hot"):
            if "xgb" in result and result.get(other, {}).get("seconds"):
                result[f"xgb / {other}"] = round(
                    result["xgb"]["seconds"] / result[other]["seconds"], 2
                )
            paired = [
                one["xgb"]["seconds"] / one[other]["seconds"]
                for one in rounds
                if one.get("xgb", {}).get("seconds") and one.get(other, {}).get("seconds")
            ]
            if len(paired) > 1:  # each round's ratio, and their median
                result[f"xgb / {other} per round"] = [round(r, 2) for r in paired]
                result[f"xgb / {other}"] = round(statistics.median(paired), 2)
        if "gbt" in result and "xgb" in result:
            result["gbt / xgb"] = round(result["gbt"]["seconds"] / result["xgb"]["seconds"], 2)
        if "gbt" in result and "xgb_more_trees" in result:
            result["gbt / xgb_more_trees"] = round(
                result["gbt"]["seconds"] / result["xgb_more_trees"]["seconds"], 2
            )
        report[str(rows)] = result
        print(json.dumps({str(rows): result}), flush=True)
    fitted = [r for r in args.rows if report[str(r)].get("xgb", {}).get("seconds")]
    if len(fitted) > 1:  # the default booster's scaling, smallest to largest table
        small, large = min(fitted), max(fitted)
        ratio = report[str(large)]["xgb"]["seconds"] / report[str(small)]["xgb"]["seconds"]
        report[f"xgb {large} / {small} rows"] = round(ratio, 2)
    print(
        json.dumps(
            {
                "date": datetime.now(UTC).isoformat(timespec="seconds"),
                "machine": f"{platform.machine()}, {spark.sparkContext.defaultParallelism} cores "
                f"(local[2]), Python {platform.python_version()}, Spark {spark.version}",
                "driver_memory": args.driver_memory,
                "memory_cap": args.memory_cap,
                "settings": {
                    "trees": args.trees,
                    "depth": args.depth,
                    "learning_rate": 0.1,
                    "bins": args.bins,
                },
                "results": report,
            },
            indent=2,
        )
    )
    spark.stop()


if __name__ == "__main__":
    main()
