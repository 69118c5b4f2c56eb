"""Deterministic train / validation / test splits and cross-validation folds.

Rows are assigned by a hash of their key (`xxhash64` of the seed and the key), never by
`randomSplit`, whose result depends on how the data happens to be partitioned: the same
key always lands in the same split, whatever the partitioning, the row order or the
machine. Rows with a null key all hash alike (to one split and one fold).
"""

from __future__ import annotations

import math

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from batchml.lib.platform.errors import InputError

RESOLUTION = 1_000_000  # the hash becomes a uniform number in [0, 1) on this grid
DEFAULT_FRACTIONS = {"train": 0.7, "validation": 0.15, "test": 0.15}


def key_uniform(key: str, seed: int) -> Column:
    """A number in [0, 1) determined by the key and the seed alone."""
    hashed = F.xxhash64(F.lit(seed).cast("long"), F.col(f"`{key}`").cast("string"))
    return F.pmod(hashed, F.lit(RESOLUTION)).cast("double") / F.lit(float(RESOLUTION))


def check_fractions(fractions: dict[str, float]) -> None:
    """Fractions are named, non-negative and add up to 1."""
    if not fractions:
        raise InputError("split fractions are empty")
    negative = [name for name, share in fractions.items() if share < 0]
    if negative:
        raise InputError(f"split fractions must not be negative: {', '.join(negative)}")
    total = sum(fractions.values())
    if not math.isclose(total, 1.0, abs_tol=1e-9):
        raise InputError(f"split fractions add up to {total:g}, not 1: {fractions}")


def with_split(
    df: DataFrame,
    key: str,
    fractions: dict[str, float] | None = None,
    *,
    seed: int = 0,
    column: str = "split",
) -> DataFrame:
    """Add `column` naming each row's split (`train`, `validation`, `test` by default)."""
    fractions = fractions or DEFAULT_FRACTIONS
    check_fractions(fractions)
    if key not in df.columns:
        raise InputError(f"split key {key} is not a column (columns: {', '.join(df.columns)})")
    draw = key_uniform(key, seed)
    assigned = None
    bound = 0.0
    names = list(fractions)
    for name in names[:-1]:
        bound += fractions[name]
        condition = draw < F.lit(bound)
        assigned = (
            F.when(condition, F.lit(name))
            if assigned is None
            else assigned.when(condition, F.lit(name))
        )
    last = F.lit(names[-1])
    return df.withColumn(column, last if assigned is None else assigned.otherwise(last))


def with_fold(
    df: DataFrame, key: str, folds: int, *, seed: int = 0, column: str = "fold"
) -> DataFrame:
    """Add `column`, a cross-validation fold in 0..folds-1 from the key's hash (for MLlib's
    `foldCol`); drawn with another seed than the split, so folds cut across splits evenly."""
    if folds < 2:
        raise InputError(f"cross-validation needs at least 2 folds, not {folds}")
    if key not in df.columns:
        raise InputError(f"fold key {key} is not a column (columns: {', '.join(df.columns)})")
    draw = key_uniform(key, seed + 1_000_003)
    return df.withColumn(column, F.floor(draw * F.lit(folds)).cast("int"))
