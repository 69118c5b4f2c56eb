"""MLlib on native BLAS (OpenBLAS, through the netlib JNI loader Spark ships) vs its
Java BLAS, on the table of `train_lr.py`.

Each run of a side is its own process with its own SparkSession (local[2], embedded
Delta, --driver-memory), because the JVM picks its BLAS once:
`-Ddev.ludovic.netlib.blas.allowNative=false` keeps it on Java; without it MLlib loads
the system's `libblas.so.3` when there is one (Debian: `apt-get install
libopenblas0-pthread`; without one both sides run Java BLAS, and the results say so:
`native_loaded`). Timed in each process once its session is up, after --warmup warm-up
fits (batchml's LR job, 5 iterations; the same in both kinds of process):
  (features) the feature pipeline of batchml's LR (one-pass statistics, scaling,
             one-hot) fitted on the training split, then applied to it (noop sink)
  (lr)       batchml's LR training job (`train_lr.run_ours`: features, persisted
             assembled data, LogisticRegression with at most --max-iter iterations,
             holdout metrics)
A side's time is features + lr; each part's median is reported too.

Method, in one run: --rounds rounds, the two sides' order rotated each round (the
warm-up is inside each process: a warm-up process would leave nothing warm for the
next); every figure is the median of the rounds (every round printed), the ratios are
of those medians. No memory cap; the same output work on both sides.
Checked on every run, in every mode: the BLAS each side ran on (the Java side on Java),
the training rows the feature pipeline wrote, the rows of each split and the iterations
of the LR job, a holdout AUC above 0.5 and equal on both sides within --auc-tolerance.

    uv run python benchmarks/native_blas.py --workdir /tmp/bench_lr [--rows 1000000] \
        [--rounds 3]
    uv run python benchmarks/native_blas.py --smoke   # seconds: checks the work only

(--repeat is now the harness's --rounds; the old name is accepted.)
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from pathlib import Path
from typing import Any

import harness
from train_lr import RunLog, bench_settings, ensure_table

JAVA_ONLY = "-Ddev.ludovic.netlib.blas.allowNative=false"
SIDES = ("java", "native")
WARMUP_ITERATIONS = 5


def blas_in_use(spark) -> str:
    """The BLAS netlib gives MLlib's native calls: JNIBLAS when it loaded the system's
    library, else the reason it did not."""
    netlib = spark.sparkContext._jvm.dev.ludovic.netlib.blas
    try:
        return str(netlib.NativeBLAS.getInstance().getClass().getSimpleName())
    except Exception as exc:  # netlib says why: not allowed, no libblas.so.3
        thrown = getattr(exc, "java_exception", None)  # Py4J's first line names the call
        reason = str(thrown.toString()) if thrown is not None else str(exc)
        return f"Java ({reason.splitlines()[0][:160]})"


def child(
    work: str,
    uri: str,
    native: bool,
    max_iter: int,
    warmup: int,
    driver_memory: str,
    partitions: int,
) -> harness.Timed:
    """One measurement, in a process of its own (`harness.in_child`)."""
    from pyspark.sql import Observation
    from pyspark.sql import functions as F
    from train_lr import SEED, SPLIT, run_ours, spec_for

    from batchml.lib.delta import delta_tables
    from batchml.lib.features.pipeline import fit_features
    from batchml.lib.training.splits import with_split

    java = {} if native else {"spark.driver.extraJavaOptions": JAVA_ONLY}
    settings = bench_settings(Path(work), driver_memory, java, shuffle_partitions=partitions)
    with harness.session(settings) as spark:
        blas = blas_in_use(spark)
        for _ in range(warmup):  # the JVM's JIT, the Python workers
            run_ours(spark, settings, uri, WARMUP_ITERATIONS)
        read = delta_tables(spark, settings).read(uri)
        training = with_split(read.df, "id", SPLIT, seed=SEED, column="__split").filter(
            F.col("__split") == "train"
        )
        started = time.perf_counter()
        fitted = fit_features(training, "bench", spec_for(uri))
        observation = Observation("applied")
        applied = fitted.model.transform(training).select(fitted.output)
        applied = applied.observe(observation, F.count(F.lit(1)).alias("rows"))
        applied.write.format("noop").mode("overwrite").save()
        features = time.perf_counter() - started
        lr = run_ours(spark, settings, uri, max_iter)
        return harness.Timed(
            features + lr.seconds,
            {
                "blas": blas,
                "features_s": features,
                "lr_s": lr.seconds,
                "feature_rows": int(observation.get["rows"]),
                "auc": lr.value["auc"],
                "iterations": lr.value["iterations"],
                "rows": lr.value["rows"],
            },
        )


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = harness.arguments(__doc__)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--max-iter", type=int, default=100)
    parser.add_argument(  # the old name of --rounds
        "--repeat", dest="rounds", type=int, default=argparse.SUPPRESS, help=argparse.SUPPRESS
    )
    parser.add_argument("--driver-memory", default="6g")
    parser.add_argument(
        "--auc-tolerance",
        type=float,
        default=1e-4,
        help="the largest holdout AUC gap between the two BLAS",
    )
    # smoke: a few thousand rows, 3 iterations, one process of each kind with a small
    # heap (two JVMs start: each costs seconds)
    args = harness.parse(parser, argv, rows=4000, max_iter=3, driver_memory="1g")
    own_folder = args.workdir is None
    work = harness.workdir(args, "blas").resolve()
    # smoke: the test session's shuffle partitions, which joining it would change
    partitions = 2 if args.smoke else 4
    settings = bench_settings(work, args.driver_memory, shuffle_partitions=partitions)
    log = RunLog(args.rounds)
    try:
        with harness.session(settings) as spark:
            uri, splits = ensure_table(spark, work, args.rows)

        def measure(kind: str):
            def run() -> harness.Timed:
                shape = (args.max_iter, args.warmup, args.driver_memory, partitions)
                result = harness.in_child(child, str(work), uri, kind == "native", *shape)
                found = result.value
                if kind == "java":
                    assert found["blas"].startswith("Java"), f"java side on {found['blas']}"
                assert found["feature_rows"] == splits["train"], (found, splits)
                assert found["rows"] == splits, (kind, found["rows"], splits)
                assert found["iterations"] >= 1, f"{kind}: no iteration"
                assert found["auc"] > 0.5, f"{kind}: holdout AUC {found['auc']}, learnable"
                return result

            return run

        # the warm-up runs inside each process (above): none of whole processes here
        sides = harness.side_by_side(
            {kind: log.record(kind, measure(kind)) for kind in SIDES},
            rounds=args.rounds,
            warmup=0,
            label=f"lr_{args.rows}",
        )
    finally:
        if own_folder:
            shutil.rmtree(work, ignore_errors=True)
    harness.note(sides.table())
    report: dict[str, Any] = {}
    for kind in SIDES:
        figures = log.figures(sides, kind, "auc", "iterations")
        figures["blas"] = sorted({run.value["blas"] for run in log.timed(kind)})
        figures["parts_median_s"] = {
            part: round(log.median(kind, part), 3) for part in ("features_s", "lr_s")
        }
        report[kind] = figures
    gap = abs(report["java"]["auc"] - report["native"]["auc"])
    assert gap <= args.auc_tolerance, (report["java"]["auc"], report["native"]["auc"])
    for part in ("features_s", "lr_s"):
        ratio = log.median("java", part) / log.median("native", part)
        report[f"java / native, {part.removesuffix('_s')}"] = round(ratio, 3)
    report["java / native, total"] = log.ratio(sides, "java", "native")
    results = {
        **harness.header(args),
        "warmup_is": f"{args.warmup} LR job(s) of {WARMUP_ITERATIONS} iterations in each "
        "process, before its timed work",
        "rows": args.rows,
        "max_iter": args.max_iter,
        "driver_memory": args.driver_memory,
        "native_loaded": all(not blas.startswith("Java") for blas in report["native"]["blas"]),
        "results": report,
    }
    print(json.dumps(results, indent=2))
    return results


if __name__ == "__main__":
    main()
