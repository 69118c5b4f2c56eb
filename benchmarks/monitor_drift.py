"""Drift over a scoring table: batchml's one pass vs the naive per-feature loop.

--rows scoring rows x --numeric numeric + --categorical categorical features (Parquet,
written once; a workdir's tables of that size are reused) against a --rows-row training
snapshot, in one run on one session:
  (batchml) the fine bins from the stored training sketches, `input_profile` and every
            figure (PSI, KS, JS, nulls, means): one pass over the scoring data, none over
            the training data
  (naive)   per numeric feature `approxQuantile` deciles on the training data, then a
            Bucketizer + groupBy count on each side; per categorical feature a groupBy
            count on each side; PSI from those counts
The sides do not do the same work by design: batchml's training profile is computed
inside training's own aggregate (as `train` stores it), so it is built before the
comparison and outside batchml's window; the naive loop has no stored profile and reads
the training data in its window. The profile's own cost is reported apart
(`training_profile_at_train`, timed the same way). Both produce PSI per feature; batchml
also KS, JS, null rates and means.
PSI agreement: batchml's PSI on the naive's own bins (its edges and training counts)
against the naive PSI, per feature.

Method: harness.side_by_side: the same warm-up per side (--warmup, default 1: the first
run of either pays the Python workers' start), the same --rounds (default 3) with the
order rotated each round, every round printed, the median reported; the speed-up is the
ratio of the medians of the same run. One process and session, no memory cap. Spark
jobs and input bytes: each side's last round. Checks, every round and every size: each
side gave a finite PSI for every feature and the naive counted every row on both sides;
on the naive's own bins batchml counts exactly the naive's counts and their PSI agrees
(1e-9). (`--repeat` is now --rounds.)

    uv run python benchmarks/monitor_drift.py [--rows 4000000] [--rounds 3] [--workdir DIR]
    uv run python benchmarks/monitor_drift.py --smoke   # seconds: checks the work only
"""

from __future__ import annotations

import json
import math
import shutil
import time
from pathlib import Path
from typing import Any

import harness
from pyspark.ml.feature import Bucketizer
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from batchml.lib.features.statistics import DECILES, collect_stats, profile_of
from batchml.lib.monitoring import drift
from batchml.lib.platform.config import load_config
from batchml.lib.platform.logs import configure_logging
from batchml.lib.platform.settings import FeaturePipelineSpec
from batchml.lib.spark.metrics import mark, resources_since

SAME = 1e-9


def feature_names(numeric: int, categorical: int) -> tuple[list[str], list[str]]:
    return [f"x{i:02d}" for i in range(numeric)], [f"c{j}" for j in range(categorical)]


def table(
    spark: SparkSession, rows: int, seed: int, shift: float, numeric: list[str], levels: list[str]
) -> DataFrame:
    columns = [
        (F.randn(seed * 1000 + i) * (1 + i / 10) + i + shift * (i % 3)).alias(name)
        for i, name in enumerate(numeric)
    ]
    categories = [
        F.concat(F.lit(name), (F.rand(seed * 1000 + 50 + j) * (5 + 20 * j) + shift).cast("int"))
        .alias(name)
        for j, name in enumerate(levels)
    ]  # fmt: skip
    return spark.range(rows).select(*columns, *categories, F.lit(1).alias("label"))


def naive(train: DataFrame, score: DataFrame, numeric: list[str], levels: list[str]) -> dict:
    out = {}
    for column in numeric:
        edges = train.approxQuantile(column, DECILES, 0.001)
        splits = [-float("inf"), *edges, float("inf")]
        sides = []
        for df in (train, score):
            bucketed = Bucketizer(splits=splits, inputCol=column, outputCol="b").transform(df)
            counts = {r["b"]: r["count"] for r in bucketed.groupBy("b").count().collect()}
            sides.append([counts.get(float(i), 0) for i in range(len(splits) - 1)])
        out[column] = {"edges": edges, "train": sides[0], "score": sides[1],
                       "psi": drift.psi(sides[0], sides[1])}  # fmt: skip
    for column in levels:
        sides = [
            {r[column]: r["count"] for r in df.groupBy(column).count().collect()}
            for df in (train, score)
        ]
        names = sorted(set(sides[0]) | set(sides[1]))
        expected = [sides[0].get(level, 0) for level in names]
        actual = [sides[1].get(level, 0) for level in names]
        out[column] = {"psi": drift.psi(expected, actual), "train": expected, "score": actual}
    return out


def timed(spark: SparkSession, action) -> harness.Timed:
    """The action's seconds, its result and the Spark jobs and bytes it took (read from
    Spark's status store after the clock stops)."""
    before = mark(spark.sparkContext)
    started = time.perf_counter()
    result = action()
    seconds = time.perf_counter() - started
    return harness.Timed(seconds, (result, resources_since(spark.sparkContext, before)))


def ensure_tables(spark: SparkSession, work: Path, rows: int, numeric, levels) -> dict[str, str]:
    """Training and scoring Parquet tables of `rows` rows with these columns, written
    unless an earlier run left them."""
    paths = {}
    for name, seed, shift in (("train", 1, 0.0), ("score", 2, 0.3)):
        path = work / f"{name}_{rows}_{len(numeric)}_{len(levels)}"
        if not (path / "_SUCCESS").exists():
            shutil.rmtree(path, ignore_errors=True)
            table(spark, rows, seed, shift, numeric, levels).write.parquet(str(path))
        paths[name] = str(path)
    return paths


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = harness.arguments(__doc__)
    parser.add_argument("--rows", type=int, default=4_000_000)
    parser.add_argument("--numeric", type=int, default=20, help="numeric features")
    parser.add_argument("--categorical", type=int, default=3, help="categorical features")
    args = harness.parse(parser, argv, rows=3_000, numeric=3, categorical=1)
    numeric, levels = feature_names(args.numeric, args.categorical)
    given = args.workdir is not None
    work = harness.workdir(args, "drift").resolve()
    settings = load_config(
        overrides=[
            'spark.master="local[2]"',
            'delta.backend="embedded"',
            "spark.driver_memory=6g",
            "spark.shuffle_partitions=8",
            f'lakehouse.root="{work}"',
            "runs.record=false",
        ],
        environ={},
    ).settings
    configure_logging("WARNING")
    try:
        with harness.session(settings) as spark:
            paths = ensure_tables(spark, work, args.rows, numeric, levels)
            train = spark.read.parquet(paths["train"])
            score = spark.read.parquet(paths["score"])
            results = {
                **harness.header(args),
                "rows": args.rows,
                "features": {"numeric": len(numeric), "categorical": len(levels)},
                "scoring_data_bytes": sum(
                    f.stat().st_size for f in Path(paths["score"]).glob("*.parquet")
                ),
                **compare(spark, train, score, numeric, levels, args),
            }
    finally:
        if not given:  # a temporary folder of this run only
            shutil.rmtree(work, ignore_errors=True)
    print(json.dumps(results, indent=2))
    return results


def compare(spark, train, score, numeric, levels, args) -> dict[str, Any]:
    spec = FeaturePipelineSpec(
        view="v",
        label="label",
        numeric={c: {} for c in numeric},
        categorical={c: {} for c in levels},
    )
    # what `train` stores, timed the same way as the sides (not monitoring's cost)
    profiling = harness.side_by_side(
        {
            "training_profile_at_train": lambda: timed(
                spark, lambda: profile_of(collect_stats(train, spec, profile=True))
            )
        },
        rounds=args.rounds,
        warmup=args.warmup,
        label="profile",
    )
    profile, _ = profiling.results["training_profile_at_train"].value

    def ours() -> dict[str, dict]:
        stored = {c: profile["numeric"][c] for c in numeric}
        fine = drift.grids(spark, stored)
        summaries = drift.input_profile(score, {c: g.edges for c, g in fine.items()}, levels)
        figures = drift.numeric_drifts(stored, summaries, fine)
        for c in levels:
            figures[c] = drift.categorical_drift(profile["categorical"][c], summaries[c])
        return figures

    def batchml_side() -> harness.Timed:
        found = timed(spark, ours)
        figures, _ = found.value
        assert sorted(figures) == sorted([*numeric, *levels]), sorted(figures)
        assert all(math.isfinite(figures[c]["psi"]) for c in figures), figures
        return found

    def naive_side() -> harness.Timed:
        found = timed(spark, lambda: naive(train, score, numeric, levels))
        figures, _ = found.value
        assert sorted(figures) == sorted([*numeric, *levels]), sorted(figures)
        for c, entry in figures.items():
            assert math.isfinite(entry["psi"]), (c, entry)
            assert sum(entry["train"]) == sum(entry["score"]) == args.rows, (c, entry)
        return found

    sides = harness.side_by_side(
        {"batchml": batchml_side, "naive": naive_side},
        rounds=args.rounds,
        warmup=args.warmup,
        label="drift",
    )
    harness.note(sides.table())
    ours_figures, ours_resources = sides.results["batchml"].value
    naive_figures, naive_resources = sides.results["naive"].value

    # PSI on the naive's own bins: same edges, same training counts. The naive Bucketizer's
    # bins are [e, e'); batchml's (e, e'] (as training's inclusive ranks count): an edge
    # one ulp lower makes `v <= edge` mean `v < e` for every double
    below = {c: [math.nextafter(e, -math.inf) for e in naive_figures[c]["edges"]] for c in numeric}
    same_bins = drift.input_profile(score, below, [])
    differences = []
    for c in numeric:
        counts = [same_bins[c].counts.get(i, 0) for i in range(len(DECILES) + 1)]
        assert counts == naive_figures[c]["score"], (c, counts, naive_figures[c]["score"])
        differences.append(
            abs(drift.psi(naive_figures[c]["train"], counts) - naive_figures[c]["psi"])
        )
    assert max(differences) <= SAME, differences
    shown = [*numeric[:3], *levels]
    return {
        **profiling.figures(),
        **sides.figures(),
        "spark_jobs": {"batchml": ours_resources["jobs"], "naive": naive_resources["jobs"]},
        "input_bytes": {
            "batchml": ours_resources["input_bytes"],
            "naive": naive_resources["input_bytes"],
        },
        "speedup": round(sides.ratio("naive", "batchml"), 2),
        "psi_max_abs_difference_same_bins": max(differences),
        "psi_batchml_vs_naive_own_bins": {
            c: [round(ours_figures[c]["psi"], 5), round(naive_figures[c]["psi"], 5)] for c in shown
        },
        "ks_batchml": {c: round(ours_figures[c]["ks"], 4) for c in numeric[:3]},
    }


if __name__ == "__main__":
    main()
