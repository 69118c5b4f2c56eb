"""MLlib on native BLAS (OpenBLAS, through the netlib JNI loader Spark ships) vs its
Java BLAS, on the table of `train_lr.py`.

Each measurement runs in its own process with its own SparkSession (local[2], embedded
Delta), because the JVM picks its BLAS once: `-Ddev.ludovic.netlib.blas.allowNative=false`
keeps it on Java; without it MLlib loads the system's `libblas.so.3` when there is one
(Debian: `apt-get install libopenblas0-pthread`). The two kinds alternate, --repeat
times each, and the medians are compared. Measured in each process, after a warm-up
fit of 5 iterations:
  (features) the feature pipeline of batchml's LR (one-pass statistics, scaling,
             one-hot) fitted on the training split, then applied to it (noop sink)
  (lr)       batchml's LR training job (`train_lr.run_ours`: features, persisted
             assembled data, LogisticRegression with at most --max-iter iterations,
             holdout metrics)

    uv run python benchmarks/native_blas.py --workdir /tmp/bench_lr [--rows 1000000]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import platform
import statistics
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

JAVA_ONLY = "-Ddev.ludovic.netlib.blas.allowNative=false"


def session(work: Path, native: bool):
    from train_lr import bench_session

    java = {} if native else {"spark.driver.extraJavaOptions": JAVA_ONLY}
    return bench_session(work, conf=java)


def blas_in_use(spark) -> str:
    """The BLAS netlib gives MLlib's native calls: JNIBLAS when it loaded the system's
    library, else the reason it did not."""
    netlib = spark.sparkContext._jvm.dev.ludovic.netlib.blas
    try:
        return str(netlib.NativeBLAS.getInstance().getClass().getSimpleName())
    except Exception as exc:  # netlib says why: not allowed, no libblas.so.3
        return f"Java ({str(exc).splitlines()[0][:120]})"


def child(work: str, uri: str, native: bool, max_iter: int, out) -> None:
    from pyspark.sql import functions as F
    from train_lr import SEED, SPLIT, run_ours, spec_for

    from batchml.lib.delta import delta_tables
    from batchml.lib.features.pipeline import fit_features
    from batchml.lib.training.splits import with_split

    spark, settings = session(Path(work), native)
    blas = blas_in_use(spark)
    run_ours(spark, settings, uri, 5)  # warm-up: the JVM's JIT, the Python workers
    read = delta_tables(spark, settings).read(uri)
    training = with_split(read.df, "id", SPLIT, seed=SEED, column="__split").filter(
        F.col("__split") == "train"
    )
    started = time.perf_counter()
    fitted = fit_features(training, "bench", spec_for(uri))
    applied = fitted.model.transform(training).select(fitted.output)
    applied.write.format("noop").mode("overwrite").save()
    features = time.perf_counter() - started
    lr = run_ours(spark, settings, uri, max_iter)
    out.put(
        {
            "blas": blas,
            "features_seconds": round(features, 2),
            "lr_seconds": lr["seconds"],
            "lr_auc": lr["auc"],
            "lr_iterations": lr.get("iterations"),
        }
    )
    spark.stop()


def measure(work: Path, uri: str, native: bool, max_iter: int) -> dict:
    context = multiprocessing.get_context("spawn")  # one JVM per measurement
    queue = context.Queue()
    process = context.Process(target=child, args=(str(work), uri, native, max_iter, queue))
    process.start()
    process.join()
    return queue.get() if not queue.empty() else {"failed": f"exit code {process.exitcode}"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--max-iter", type=int, default=100)
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--workdir", type=Path, default=None)
    args = parser.parse_args()
    work = (args.workdir or Path(tempfile.mkdtemp(prefix="batchml-blas-bench-"))).resolve()
    uri = str(work / f"lr_{args.rows}")
    if not Path(uri).exists():
        from train_lr import make_table

        spark, _ = session(work, native=False)
        make_table(spark, uri, args.rows)
        spark.stop()
    runs: dict[str, list[dict]] = {"java": [], "native": []}
    for _ in range(args.repeat):
        for kind in ("java", "native"):
            result = measure(work, uri, kind == "native", args.max_iter)
            print(json.dumps({kind: result}), flush=True)
            runs[kind].append(result)
    summary: dict[str, object] = {}
    for kind, results in runs.items():
        done = [r for r in results if "failed" not in r]
        summary[kind] = {
            "blas": sorted({r["blas"] for r in done}),
            "features_seconds": statistics.median(r["features_seconds"] for r in done),
            "lr_seconds": statistics.median(r["lr_seconds"] for r in done),
            "lr_auc": sorted({r["lr_auc"] for r in done}),
        }
    for part in ("features_seconds", "lr_seconds"):
        summary[f"java / native, {part.split('_')[0]}"] = round(
            summary["java"][part] / summary["native"][part], 2
        )
    print(
        json.dumps(
            {
                "date": datetime.now(UTC).isoformat(timespec="seconds"),
                "machine": f"{platform.machine()}, local[2], Python {platform.python_version()}",
                "rows": args.rows,
                "max_iter": args.max_iter,
                "repeat": args.repeat,
                "runs": runs,
                "summary": summary,
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
