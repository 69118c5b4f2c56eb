"""Logistic regression end to end: batchml's training job vs naive MLlib vs scikit-learn.

Synthetic Delta table (embedded backend): 20 numeric columns (5% nulls) and 3 skewed
categorical columns of 10 / 50 / 200 levels; the label is drawn from a logistic model of
all of them, so the best AUC is below 1 and the fits can be compared on it. The same
80/20 hash split for all (batchml's `with_split`, written into the table as a column for
the others). Each side times read -> fit pipeline -> score the holdout:
  (ours)    batchml.jobs.train.fit.fit: one-pass feature statistics (plus the training
            profile), assembled training data persisted, LogisticRegression, metrics
  (ours_no_persist, with --persist-off) the same without persisting the assembled data
  (naive)   Imputer, VectorAssembler + StandardScaler, StringIndexer + OneHotEncoder,
            LogisticRegression as one MLlib Pipeline.fit on the training rows (no
            persist), then transform + BinaryClassificationEvaluator on the holdout
  (sklearn) deltalake -> pandas, ColumnTransformer(SimpleImputer + StandardScaler,
            OneHotEncoder) + LogisticRegression(lbfgs, C = inf: no penalty), in a child
            process, timed after its imports
All: no regularisation, at most --max-iter iterations, tolerance 1e-6. The output work
differs in one way: ours also computes the training profile and all its holdout metrics
(a single aggregation), naive and sklearn the holdout's ROC AUC only.

Method, per table size in one run: every side warmed up --warmup times (untimed, the full
work), then --rounds rounds with the sides' order rotated each round; the figure is the
median of the rounds (every round printed), the ratios are of those medians. Memory:
each side's process tree's peak RSS (for a side run in this process: this process, its
JVM and the JVM's Python workers). --memory-cap applies to every side the same way: each
runs in a child process killed when its tree's RSS passes the cap (a container's limit).
There the Spark sides build their own session with --driver-memory and are timed once
it is up, as scikit-learn is once imported, so their JVM starts cold every run; this
process's own session, which made the table, idles meanwhile outside every side's tree.
Without a cap no side is capped (the Spark sides share this process's session, whose
heap is --driver-memory: Spark works within it by spilling).
Checked on every run, in every mode: rows in each split (ours, sklearn), iterations run,
the model's features, a holdout AUC above 0.5 (the label is learnable) and within
--auc-tolerance of ours (the same model: the fits converge to the same AUC).

    uv run python benchmarks/train_lr.py --workdir /tmp/bench_lr [--rows 1000000 4000000]
    uv run python benchmarks/train_lr.py --workdir /tmp/bench_lr --rows 10000000 \
        --skip naive --memory-cap 8g --rounds 3
    uv run python benchmarks/train_lr.py --smoke   # seconds: checks the work only

(--sklearn-memory-cap, which capped scikit-learn alone with RLIMIT_AS, is now
--memory-cap and caps every side; the old name is accepted.) `--workdir` keeps the
tables for the next run and the other training benchmarks; without it a temporary
folder is used and removed.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import harness
from baselines import naive_pipeline
from pyspark.ml import Pipeline
from pyspark.ml.classification import LogisticRegression
from pyspark.ml.evaluation import BinaryClassificationEvaluator
from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from batchml.jobs.train import fit as train_fit
from batchml.jobs.train import plan as train_plan
from batchml.lib.delta.embedded import EmbeddedDelta
from batchml.lib.platform.config import load_config
from batchml.lib.platform.logs import configure_logging
from batchml.lib.platform.runtime import memory_bytes
from batchml.lib.platform.settings import FeaturePipelineSpec, ModelSpec
from batchml.lib.training.splits import with_split

NUMERIC = [f"x{i}" for i in range(20)]
CATEGORICAL = {"c10": 10, "c50": 50, "c200": 200}
SPLIT = {"train": 0.8, "test": 0.2}
SEED = 7
SIDES = ("ours", "naive", "sklearn")


def _uniform(seed: int) -> F.Column:
    """A uniform number in (0, 1) from a hash of the row id: deterministic, so using it
    twice in one query gives the same value (two `rand(seed)` calls need not)."""
    hashed = F.pmod(F.xxhash64(F.lit(seed), F.col("id")), F.lit(1 << 30)).cast("double")
    return (hashed + F.lit(0.5)) / F.lit(float(1 << 30))


def _normal(seed: int) -> F.Column:
    return F.sqrt(F.lit(-2.0) * F.log(_uniform(seed))) * F.cos(
        F.lit(2 * math.pi) * _uniform(seed + 7919)
    )


def bench_settings(
    work: Path,
    driver_memory: str = "6g",
    conf: dict[str, str] | None = None,
    shuffle_partitions: int = 4,
):
    """The training benchmarks' settings: local[2], embedded Delta, the lakehouse under
    `work`; `conf`: extra Spark settings."""
    overrides = [
        'spark.master="local[2]"',
        'delta.backend="embedded"',
        f"spark.shuffle_partitions={shuffle_partitions}",
        f"spark.driver_memory={driver_memory}",
        f'lakehouse.root="{work}"',
        "runs.record=false",
        *(f'spark.conf."{key}"="{value}"' for key, value in (conf or {}).items()),
    ]
    configure_logging("WARNING")
    return load_config(overrides=overrides, environ={}).settings


def make_table(spark: SparkSession, uri: str, rows: int) -> None:
    df = spark.range(rows, numPartitions=max(2, rows // 500_000))
    columns = [F.col("id")]
    logit = F.lit(-0.5)
    for i, name in enumerate(NUMERIC):
        standard = _normal(100 + i)
        value = standard * (i + 1) + i * 10.0
        columns.append(F.when(_uniform(200 + i) < 0.05, None).otherwise(value).alias(name))
        weight = ((i % 7) - 3) * 0.15  # some features matter, some do not
        logit = logit + standard * weight
    for j, (name, levels) in enumerate(CATEGORICAL.items()):
        level = F.floor(F.pow(_uniform(300 + j), 3) * levels).cast("int")  # level 0 commonest
        columns.append(F.concat(F.lit(f"{name}_"), level.cast("string")).alias(name))
        logit = logit + F.sin(level.cast("double") * (j + 1.3)) * 0.6
    probability = F.lit(1.0) / (F.lit(1.0) + F.exp(-logit))
    columns.append((_uniform(400) < probability).cast("int").alias("label"))
    table = with_split(df.select(*columns), "id", SPLIT, seed=SEED, column="split")
    EmbeddedDelta(spark).write(table, uri, mode="overwrite")


def ensure_table(spark: SparkSession, work: Path, rows: int) -> tuple[str, dict[str, int]]:
    """The table of `rows` rows under `work` (made once, kept for the next run) and the
    rows of each split: what every side must have read."""
    uri = str(work / f"lr_{rows}")
    if not Path(uri).exists():
        make_table(spark, uri, rows)
    counted = EmbeddedDelta(spark).read(uri).df.groupBy("split").count().collect()
    splits = {row["split"]: row["count"] for row in counted}
    assert sum(splits.values()) == rows, (splits, rows)
    return uri, splits


def spec_for(uri: str) -> FeaturePipelineSpec:
    return FeaturePipelineSpec.model_validate(
        {
            "view": uri,
            "label": "label",
            "key": "id",
            "numeric": {c: {"impute": "mean", "scale": True} for c in NUMERIC},
            "categorical": {c: {} for c in CATEGORICAL},
        }
    )


# --- what the training benchmarks share: where a side runs, and its runs' figures ---


def in_own_session(
    work: str, driver_memory: str, shuffle_partitions: int, side: Callable, *args: Any
) -> harness.Timed:
    """A Spark side in a child process (`harness.in_child`): a SparkSession of its own,
    its JVM started with `driver_memory`, then `side(spark, settings, *args)`, which
    times its own work: the session's start is outside the time, as a Python side's
    imports are."""
    settings = bench_settings(Path(work), driver_memory, shuffle_partitions=shuffle_partitions)
    with harness.session(settings) as spark:
        return side(spark, settings, *args)


def in_this_process(run: Callable[[], harness.Timed]) -> harness.Timed:
    """A side run in this process, its memory sampled as `harness.in_child` samples a
    child's: this process's tree (Python, its JVM, the JVM's Python workers)."""
    with harness.TreeMemory(os.getpid()) as memory:
        result = run()
    result.memory = {**result.memory, **memory.figures()}
    return result


class RunLog:
    """Every run of every side (`side_by_side` keeps only the last): a side's timed
    rounds are its last `rounds` runs, its warm-ups come before them."""

    def __init__(self, rounds: int) -> None:
        self.rounds = rounds
        self.runs: dict[str, list[harness.Timed]] = {}

    def record(self, name: str, run: Callable[[], harness.Timed]) -> Callable[[], harness.Timed]:
        def recorded() -> harness.Timed:
            result = run()
            self.runs.setdefault(name, []).append(result)
            return result

        return recorded

    def timed(self, name: str) -> list[harness.Timed]:
        return self.runs[name][-self.rounds :]

    def killed(self, name: str) -> bool:
        """Whether the memory cap killed any of its timed rounds."""
        return any(math.isinf(run.seconds) for run in self.timed(name))

    def median(self, name: str, part: str) -> float:
        """The median over the timed rounds of a part each run timed itself (its value's
        `part`), e.g. the fit within a side's total."""
        return statistics.median(run.value[part] for run in self.timed(name))

    def figures(self, sides: harness.Sides, name: str, *keys: str) -> dict[str, Any]:
        """The side's median and rounds, its last run's `keys`, the peak memory of its
        timed rounds; a side killed at the memory cap has no median (null) and says
        where it was killed."""
        found: dict[str, Any] = dict(sides.figures()[name])
        timed = self.timed(name)
        if self.killed(name):
            found["median_s"] = None
            found["killed_at_mb"] = [
                run.memory["killed_at_mb"] for run in timed if "killed_at_mb" in run.memory
            ]
        last = next((run.value for run in reversed(timed) if run.value is not None), None)
        for key in keys:
            found[key] = None if last is None else last.get(key)
        for measure in ("tree_peak_rss_mb", "largest_process_peak_rss_mb"):
            peaks = [run.memory[measure] for run in timed if measure in run.memory]
            if peaks:
                found[measure] = max(peaks)
        return found

    def ratio(self, sides: harness.Sides, slower: str, faster: str) -> float | None:
        """median(slower) / median(faster); None when the cap killed either."""
        if self.killed(slower) or self.killed(faster):
            return None
        return round(sides.ratio(slower, faster), 3)


def cap_applies_to(cap: str | None) -> str | None:
    return (
        None
        if cap is None
        else f"every side's process tree, each side in a child process killed past {cap} "
        "resident (the Spark sides: their Python, JVM and its Python workers)"
    )


# --- the sides ---


def run_ours(
    spark, settings, uri: str, max_iter: int, persist: bool | None = None
) -> harness.Timed:
    model = ModelSpec(
        pipeline="bench",
        algorithm="logistic_regression",
        split=SPLIT,
        seed=SEED,
        params={"maxIter": max_iter, "regParam": 0.0, "tol": 1e-6},
        persist=persist,
    )
    plan = train_plan.TrainPlan("bench_lr", model, "bench", spec_for(uri), uri, None)
    started = time.perf_counter()
    trained = train_fit.fit(spark, settings, plan)
    seconds = time.perf_counter() - started
    estimator = trained.fitted.stages[-1]
    return harness.Timed(
        seconds,
        {
            "auc": trained.metrics["test"]["areaUnderROC"],
            "iterations": estimator.summary.totalIterations,
            "features": estimator.numFeatures,
            "rows": dict(trained.rows),
            "persisted": trained.persisted,
        },
    )


def run_naive(spark, settings, uri: str, max_iter: int) -> harness.Timed:
    started = time.perf_counter()
    df = EmbeddedDelta(spark).read(uri).df
    stages = naive_pipeline(spec_for(uri)).getStages()
    lr = LogisticRegression(
        featuresCol="features", labelCol="label", maxIter=max_iter, regParam=0.0, tol=1e-6
    )
    model = Pipeline(stages=[*stages, lr]).fit(df.filter("split = 'train'"))
    scored = model.transform(df.filter("split = 'test'"))
    auc = BinaryClassificationEvaluator(labelCol="label").evaluate(scored)
    seconds = time.perf_counter() - started
    estimator = model.stages[-1]
    return harness.Timed(
        seconds,
        {
            "auc": auc,
            "iterations": estimator.summary.totalIterations,
            "features": estimator.numFeatures,
        },
    )


def sklearn_child(uri: str, max_iter: int) -> harness.Timed:
    """In a child process: everything imported first, then read -> fit -> score."""
    from deltalake import DeltaTable
    from sklearn.compose import ColumnTransformer
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import LogisticRegression as SkLogistic
    from sklearn.metrics import roc_auc_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    started = time.perf_counter()
    frame = DeltaTable(uri).to_pandas()
    read = time.perf_counter() - started
    training, holdout = frame[frame["split"] == "train"], frame[frame["split"] == "test"]
    model = make_pipeline(
        ColumnTransformer(
            [
                ("num", make_pipeline(SimpleImputer(strategy="mean"), StandardScaler()), NUMERIC),
                ("cat", OneHotEncoder(handle_unknown="ignore"), list(CATEGORICAL)),
            ]
        ),
        # no penalty: C = inf (scikit-learn 1.8 deprecates penalty=None)
        SkLogistic(solver="lbfgs", C=math.inf, max_iter=max_iter, tol=1e-6),
    )
    model.fit(training, training["label"])
    auc = roc_auc_score(holdout["label"], model.predict_proba(holdout)[:, 1])
    seconds = time.perf_counter() - started
    return harness.Timed(
        seconds,
        {
            "auc": float(auc),
            "iterations": int(model[-1].n_iter_[0]),
            "features": int(model[-1].coef_.shape[1]),
            "rows": {"train": len(training), "test": len(holdout)},
            "read_seconds": round(read, 3),
        },
    )


def check(name: str, result: harness.Timed, splits: dict[str, int], capped: bool) -> None:
    """What every run of a side must have done; a run killed at the cap did nothing, and
    says so in the figures."""
    if capped and math.isinf(result.seconds):
        return
    found = result.value
    assert found is not None, f"{name}: no result"
    assert found["auc"] > 0.5, f"{name}: holdout AUC {found['auc']} on a learnable label"
    assert found["iterations"] >= 1, f"{name}: no iteration"
    assert found["features"] > len(NUMERIC), f"{name}: {found['features']} features"
    if "rows" in found:
        assert found["rows"] == splits, f"{name}: rows {found['rows']}, the table's {splits}"


def compare(spark, settings, uri: str, splits: dict[str, int], args) -> dict[str, object]:
    cap = memory_bytes(args.memory_cap) if args.memory_cap else None
    log = RunLog(args.rounds)
    work, partitions = str(args.work), settings.spark.shuffle_partitions

    def spark_side(side: Callable, *side_args: Any) -> Callable[[], harness.Timed]:
        if cap is None:
            return lambda: in_this_process(lambda: side(spark, settings, *side_args))
        return lambda: harness.in_child(
            in_own_session, work, args.driver_memory, partitions, side, *side_args, cap=cap
        )

    runs: dict[str, Callable[[], harness.Timed]] = {}
    if "ours" not in args.skip:
        runs["ours"] = spark_side(run_ours, uri, args.max_iter)
    if args.persist_off:
        runs["ours_no_persist"] = spark_side(run_ours, uri, args.max_iter, False)
    if "naive" not in args.skip:
        runs["naive"] = spark_side(run_naive, uri, args.max_iter)
    if "sklearn" not in args.skip:
        runs["sklearn"] = lambda: harness.in_child(sklearn_child, uri, args.max_iter, cap=cap)

    def checked(name: str) -> Callable[[], harness.Timed]:
        def run() -> harness.Timed:
            result = runs[name]()
            check(name, result, splits, cap is not None)
            return result

        return run

    sides = harness.side_by_side(
        {name: log.record(name, checked(name)) for name in runs},
        rounds=args.rounds,
        warmup=args.warmup,
        label=Path(uri).name,
    )
    harness.note(sides.table())
    result: dict[str, object] = {
        name: log.figures(sides, name, "auc", "iterations", "features") for name in runs
    }
    # the fits are the same model: their AUCs agree (ours the reference)
    reference = result.get("ours") or next(iter(result.values()))
    assert isinstance(reference, dict)
    for name, found in result.items():
        assert isinstance(found, dict)
        if found["auc"] is not None and reference["auc"] is not None:
            gap = abs(found["auc"] - reference["auc"])
            assert gap <= args.auc_tolerance, f"{name}: AUC {found['auc']} vs {reference['auc']}"
    if "ours" in runs:
        for other in runs:
            if other != "ours":
                result[f"{other} / ours"] = log.ratio(sides, other, "ours")
    return result


def jvm_peak_rss_mb(spark: SparkSession) -> float | None:
    pid = spark.sparkContext._jvm.java.lang.ProcessHandle.current().pid()
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return round(int(line.split()[1]) / 1024)
    return None


def main(argv: list[str] | None = None) -> dict[str, object]:
    parser = harness.arguments(__doc__)
    parser.add_argument("--rows", type=int, nargs="+", default=[1_000_000, 4_000_000])
    parser.add_argument("--max-iter", type=int, default=100)
    parser.add_argument("--driver-memory", default="6g")
    parser.add_argument("--skip", nargs="*", default=[], choices=list(SIDES))
    parser.add_argument(
        "--persist-off",
        action="store_true",
        help="also run ours without persisting the assembled training data",
    )
    parser.add_argument(
        "--memory-cap",
        "--sklearn-memory-cap",
        dest="memory_cap",
        default=None,
        help="e.g. 8g: every side in a child process, killed past it (resident memory)",
    )
    parser.add_argument(
        "--auc-tolerance",
        type=float,
        default=0.005,
        help="the largest holdout AUC gap between a side and ours",
    )
    # smoke: a few thousand rows, on which the three fits converge (in fewer iterations
    # scikit-learn's stops elsewhere: its AUC then differs by 0.02); a looser AUC gap,
    # the holdout being 800 rows
    args = harness.parse(parser, argv, rows=[4000], auc_tolerance=0.01)
    own_folder = args.workdir is None
    args.work = harness.workdir(args, "lr").resolve()
    # smoke: the test session's shuffle partitions, which joining it would change
    partitions = 2 if args.smoke else 4
    settings = bench_settings(args.work, args.driver_memory, shuffle_partitions=partitions)
    try:
        with harness.session(settings) as spark:
            results: dict[str, object] = {
                **harness.header(args),
                "spark": spark.version,
                "driver_memory": args.driver_memory,
                "max_iter": args.max_iter,
                "memory_cap": args.memory_cap,
                "memory_cap_applies_to": cap_applies_to(args.memory_cap),
            }
            for rows in args.rows:
                uri, splits = ensure_table(spark, args.work, rows)
                results[str(rows)] = compare(spark, settings, uri, splits, args)
            results["spark_jvm_peak_rss_mb"] = jvm_peak_rss_mb(spark)
    finally:
        if own_folder:
            shutil.rmtree(args.work, ignore_errors=True)
    print(json.dumps(results, indent=2))
    return results


if __name__ == "__main__":
    main()
