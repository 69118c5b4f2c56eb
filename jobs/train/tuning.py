"""Hyperparameter search: the candidates of a grid or random search, each scored by
cross-validation on hash folds or on the validation split."""

from __future__ import annotations

import math
import random
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from pyspark.ml.tuning import CrossValidator
from pyspark.sql import functions as F

from batchml.jobs.train.plan import FOLD, SPLIT, TrainPlan
from batchml.lib.platform.errors import ConfigError, InputError
from batchml.lib.platform.logs import get_logger
from batchml.lib.training.estimators import (
    checked_param,
    default_metric,
    evaluator,
    is_xgboost,
)

log = get_logger(__name__)


def candidates(plan: TrainPlan, model, slots: int) -> list[dict[str, Any]]:
    """The param maps a search tries (checked against the estimator), or none."""
    tuning = plan.spec.tuning
    if tuning is None:
        return []
    names = list(tuning.space)
    if tuning.method == "grid":
        maps: list[dict[str, Any]] = [{}]
        for name in names:
            maps = [{**m, name: value} for m in maps for value in tuning.space[name]]
    else:
        rng = random.Random(plan.spec.seed)
        maps = [
            {name: draw(rng, tuning.space[name]) for name in names} for _ in range(tuning.samples)
        ]
    for candidate in maps:
        for name, value in candidate.items():
            try:
                checked_param(model, plan.spec.algorithm, name, value)
            except InputError as exc:
                raise InputError(f"models.{plan.model}.tuning.space: {exc}") from None
    if is_xgboost(plan.spec.algorithm) and tuning.parallelism > 1:
        workers = model.getOrDefault(model.getParam("num_workers"))
        if workers * tuning.parallelism > slots:
            raise ConfigError(
                f"models.{plan.model}.tuning.parallelism = {tuning.parallelism} "
                f"x num_workers = {workers} is more than the {slots} task "
                "slots: the barrier stages would wait for each other forever"
            )
    return maps


def draw(draw: random.Random, space) -> Any:
    if isinstance(space, list):
        return draw.choice(space)
    low, high = space.min, space.max
    if space.log:
        if low <= 0:
            raise ConfigError(f"a log-scale range needs min > 0, not {low}")
        value = math.exp(draw.uniform(math.log(low), math.log(high)))
    else:
        value = draw.uniform(low, high)
    return round(value) if space.integer else value


def tune(spark, plan, model, candidates, assembled, features, labelled, task, classes):
    """The best fitted estimator and the record of every candidate's score."""
    tuning, spec = plan.spec.tuning, plan.spec
    metric = tuning.metric or default_metric(task, classes)
    judge = evaluator(task, plan.pipeline.label, metric, classes)
    param_maps = [
        dict(checked_param(model, spec.algorithm, k, v) for k, v in c.items()) for c in candidates
    ]
    stds: list[float] | None = None
    if tuning.strategy == "cross_validation":
        search = CrossValidator(
            estimator=model,
            estimatorParamMaps=param_maps,
            evaluator=judge,
            numFolds=tuning.folds,
            foldCol=FOLD,
            seed=spec.seed,
            parallelism=tuning.parallelism,
        )
        searched = search.fit(assembled)
        scores, stds = list(searched.avgMetrics), list(searched.stdMetrics)
        best_model = searched.bestModel
    else:
        validation = features.model.transform(labelled.filter(F.col(SPLIT) == "validation"))
        validation = validation.select(plan.pipeline.label, *features.columns).persist()
        scores = [math.nan] * len(param_maps)
        fitted: dict[int, Any] = {}

        def one(_: int) -> None:
            index, candidate = next(models)
            fitted[index] = candidate
            scores[index] = judge.evaluate(candidate.transform(validation))

        models = model.fitMultiple(assembled, param_maps)  # thread-safe iterator
        try:
            with ThreadPoolExecutor(max_workers=tuning.parallelism) as pool:
                list(pool.map(one, range(len(param_maps))))
        finally:
            validation.unpersist()
    pick = max if judge.isLargerBetter() else min
    best = pick(range(len(scores)), key=lambda i: scores[i])
    if tuning.strategy == "holdout":
        best_model = fitted[best]
    record = {
        "strategy": tuning.strategy,
        "method": tuning.method,
        "metric": metric,
        "larger_is_better": judge.isLargerBetter(),
        "folds": tuning.folds if tuning.strategy == "cross_validation" else None,
        "best_params": candidates[best],
        "best_score": scores[best],
        "candidates": [
            {"params": c, "score": scores[i], "std": stds[i] if stds else None}
            for i, c in enumerate(candidates)
        ],
    }
    log.info(
        "tuning done",
        extra={"metric": metric, "best_score": scores[best], "best_params": candidates[best]},
    )
    return best_model, record
