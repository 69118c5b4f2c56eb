"""What every benchmark shares, so that its comparisons are like for like.

- `arguments()`: `--rounds`, `--warmup`, `--workdir` and `--smoke` (a size that runs
  in seconds, for the test suite: `tests/test_benchmarks.py` runs every script's smoke
  size and each script asserts that its sides did the work).
- `side_by_side()`: each side warmed up the same number of times, then the same
  number of rounds, the order of the sides rotated each round (a machine's speed drifts
  over minutes), every round's time printed; the statistic is the median of the rounds.
- `TreeMemory`, `in_child()`: a process and its descendants' peak resident memory,
  and a memory cap applied the same way to whichever side runs in a child process.
- `session()`: the benchmark's SparkSession, or the test session when one is running
  (then it is left running).
"""

from __future__ import annotations

import argparse
import contextlib
import math
import multiprocessing
import os
import platform
import signal
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

MIN_ROUNDS = 3


def arguments(
    doc: str | None, *, rounds: int = MIN_ROUNDS, warmup: int = 1
) -> argparse.ArgumentParser:
    """A parser with the options every benchmark takes; the script adds its sizes."""
    parser = argparse.ArgumentParser(description=(doc or "").splitlines()[0])
    parser.add_argument(
        "--rounds", type=int, default=rounds, help="timed rounds per side (median reported)"
    )
    parser.add_argument("--warmup", type=int, default=warmup, help="untimed runs per side")
    parser.add_argument("--workdir", type=Path, default=None)
    parser.add_argument(
        "--smoke",
        action="store_true",
        help="a size that runs in seconds, one round: checks the work is done, "
        "the figures mean nothing",
    )
    return parser


def parse(parser: argparse.ArgumentParser, argv: list[str] | None, **smoke: Any):
    """Parse `argv`; with --smoke, the script's `smoke` sizes (where the option was not
    given), one round, no warm-up."""
    args = parser.parse_args(argv)
    if args.smoke:
        for name, value in smoke.items():
            if getattr(args, name) == parser.get_default(name):  # what was given stays
                setattr(args, name, value)
        args.rounds, args.warmup = 1, 0
    elif args.rounds < MIN_ROUNDS:
        print(
            f"note: --rounds {args.rounds} is below {MIN_ROUNDS}: a median of so few "
            "rounds is not a figure to publish",
            file=sys.stderr,
        )
    return args


def workdir(args: argparse.Namespace, prefix: str) -> Path:
    work = args.workdir or Path(tempfile.mkdtemp(prefix=f"batchml-bench-{prefix}-"))
    work.mkdir(parents=True, exist_ok=True)
    return work


def header(args: argparse.Namespace) -> dict[str, Any]:
    """What every result starts with: date, machine, rounds, warm-up, smoke or not."""
    return {
        "date": datetime.now(UTC).strftime("%Y-%m-%d"),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, Python "
        f"{platform.python_version()}",
        "rounds": args.rounds,
        "warmup": args.warmup,
        "statistic": "median of the rounds",
        "smoke": bool(args.smoke),
    }


def note(message: str) -> None:
    """Progress on stderr: the figures go to stdout."""
    print(message, file=sys.stderr, flush=True)


@dataclass
class Sides:
    """The rounds of a side-by-side run: every round's seconds, and each side's last
    result (what the script checks: the sides did the same work)."""

    seconds: dict[str, list[float]] = field(default_factory=dict)
    results: dict[str, Any] = field(default_factory=dict)

    def median(self, side: str) -> float:
        return statistics.median(self.seconds[side])

    def ratio(self, slower: str, faster: str) -> float:
        """median(slower) / median(faster)."""
        return self.median(slower) / self.median(faster)

    def figures(self) -> dict[str, Any]:
        """Each side's median and rounds; a run killed at a memory cap is null (JSON has
        no infinity)."""
        return {
            side: {
                "median_s": _seconds(self.median(side)),
                "rounds_s": [_seconds(value) for value in values],
            }
            for side, values in self.seconds.items()
        }

    def table(self) -> str:
        """A markdown table: side, median, every round."""
        lines = ["| side | median | rounds |", "|---|---|---|"]
        for side, values in self.seconds.items():
            rounds = ", ".join(f"{value:.2f}" for value in values)
            lines.append(f"| {side} | {self.median(side):.2f} s | {rounds} |")
        return "\n".join(lines)


def _seconds(value: float) -> float | None:
    return round(value, 3) if math.isfinite(value) else None


def side_by_side(
    sides: dict[str, Callable[[], Any]],
    *,
    rounds: int,
    warmup: int,
    before: Callable[[str], None] | None = None,
    label: str = "",
) -> Sides:
    """Run every side `warmup` times untimed, then `rounds` timed rounds; in round i the
    sides start from position i (rotated), so none always goes first. `before(side)`
    runs untimed before each run (e.g. to remove the last run's output). A side may
    return a number of seconds it measured itself (its work inside a child process, say);
    otherwise its wall time is taken."""
    names = list(sides)
    found = Sides({name: [] for name in names})

    def once(name: str) -> float:
        if before is not None:
            before(name)
        started = time.perf_counter()
        result = sides[name]()
        spent = time.perf_counter() - started
        found.results[name] = result
        if isinstance(result, Timed):
            return result.seconds
        return spent

    for _ in range(warmup):
        for name in names:
            once(name)
    for index in range(rounds):
        order = names[index % len(names) :] + names[: index % len(names)]
        spent = {name: once(name) for name in order}
        for name in names:
            found.seconds[name].append(spent[name])
        shown = ", ".join(f"{name} {spent[name]:.2f} s" for name in names)
        note(f"{label + ' ' if label else ''}round {index + 1}/{rounds}: {shown}")
    return found


@dataclass
class Timed:
    """A side's result that carries the seconds it measured itself (excluding, say, a
    child process's start and imports, the same for every side)."""

    seconds: float
    value: Any = None
    memory: dict[str, int] = field(default_factory=dict)


class TreeMemory:
    """Peak resident memory of a process and its descendants, sampled every 0.1 s: the
    peak of their sum, and the largest single process's peak (VmHWM). With `limit`
    (bytes) the process is killed when their sum passes it, as a container's memory
    limit would."""

    def __init__(self, pid: int, limit: int | None = None) -> None:
        self.pid, self.total, self.single, self.limit = pid, 0, 0, limit
        self.killed_at: int | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def __enter__(self) -> TreeMemory:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
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
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.pid, signal.SIGKILL)
                with contextlib.suppress(ProcessLookupError):
                    os.kill(self.pid, signal.SIGKILL)

    def figures(self) -> dict[str, int]:
        return {
            "tree_peak_rss_mb": round(self.total / 1024),
            "largest_process_peak_rss_mb": round(self.single / 1024),
        }


def _child_main(target: Callable[..., Any], args: tuple, queue: Any) -> None:
    os.setpgrp()  # its own group: a cap kills the child and what it started (a JVM)
    queue.put(target(*args))


def in_child(target: Callable[..., Any], *args: Any, cap: int | None = None) -> Timed:
    """Run `target(*args)` in a spawned process (no fork after the JVM or deltalake),
    its tree's memory sampled and, with `cap` (bytes), killed past it. The target
    returns a `Timed` (its own seconds, after its imports) or anything else; the result
    carries the tree's peak memory. A side killed at the cap returns seconds = inf."""
    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    child = context.Process(target=_child_main, args=(target, args, queue))
    child.start()
    assert child.pid is not None
    with TreeMemory(child.pid, cap) as memory:
        result: Any = None
        while child.is_alive() or not queue.empty():
            try:
                result = queue.get(timeout=0.5)
                break
            except Exception:  # queue.Empty: still working
                continue
        child.join()
    if memory.killed_at is not None:
        return Timed(
            float("inf"), None, {**memory.figures(), "killed_at_mb": memory.killed_at // 1024}
        )
    if result is None:
        raise RuntimeError(
            f"{getattr(target, '__name__', target)} ended without a result (exit {child.exitcode})"
        )
    if not isinstance(result, Timed):
        result = Timed(float("nan"), result)
    result.memory = {**result.memory, **memory.figures()}
    return result


@contextlib.contextmanager
def session(settings: Any) -> Iterator[Any]:
    """The benchmark's SparkSession, built from `settings`, stopped at the end; when a
    session is already running (the test suite's), that one, left running."""
    from pyspark.sql import SparkSession

    from batchml.lib.spark.session import build_session

    # the process's session, whichever thread built it (getActiveSession is per thread)
    running = SparkSession._instantiatedSession
    if running is None:
        spark = build_session(settings)
        try:
            yield spark
        finally:
            spark.stop()
        return
    # joined: the benchmark's SQL settings and checkpoint folder apply while it runs,
    # and the session is left as it was found for what runs next in it
    before = dict(running.conf.getAll)
    context = running.sparkContext
    checkpoints = context._jsc.sc().getCheckpointDir()
    spark = build_session(settings)
    try:
        yield spark
    finally:
        after = dict(spark.conf.getAll)
        for key, value in after.items():
            if before.get(key) == value:
                continue
            # a static setting cannot be changed back: the run did not change it either
            with contextlib.suppress(Exception):
                if key in before:
                    spark.conf.set(key, before[key])
                else:
                    spark.conf.unset(key)
        if checkpoints.isDefined():
            context.setCheckpointDir(checkpoints.get())
