"""xgboost.spark's estimators, trained on Arrow batches in a barrier stage of batchml's own.

`SparkXGBClassifier.fit` spends seconds outside the boosting (measured in
benchmarks/RESULTS.md, "Where xgboost.spark's time goes"): its training tasks wait at
`BarrierTaskContext.barrier()` twice and `allGather` once — each a Spark RPC that polls
once a second — and turn every Arrow batch into a pandas frame before xgboost copies it
again. Its
classifier also counts the label's distinct values with a Spark job of its own (on
batchml's training data a whole extra pass: the read, the feature stages, the shuffle).

The estimators here keep xgboost.spark's params, its checks and its model classes (what
the registry saves and the scorers load), and replace only the training job: a
`mapInArrow` barrier stage whose tasks meet through xgboost's own tracker (no Spark
barrier calls), read their rows as Arrow batches into float32 blocks, build the same
`QuantileDMatrix` from the same batches, train with `xgboost.train`, and send the first
worker's booster back. Same data, params and partitions → the same booster as
xgboost.spark's own fit (tested). What the fast path does not cover — a GPU, sparse
vectors unwrapped (`enable_sparse_data_optim`), ranking (`qid_col`), a base margin, a
tracker started on a worker — goes to xgboost.spark's own fit, as does `arrow = False`.

`evaluate_training = False` leaves out the metric on the training rows that xgboost.spark
computes every round (its training summary's train history).

`laid_out` says the data comes cut into `num_workers` partitions (train's shuffle by
key): xgboost.spark would otherwise count them through `DataFrame.rdd`, which under
adaptive execution runs that shuffle once more before the training runs it.

`classes`, when set, is the number of label values (0..classes-1) of a classifier:
`train` knows them from its feature pass, so xgboost.spark's distinct count runs on a
table of that many rows instead of the data.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from pyspark.sql import DataFrame
from xgboost.spark import SparkXGBClassifier, SparkXGBRegressor
from xgboost.spark.core import alias
from xgboost.spark.summary import XGBoostTrainingSummary

from batchml.lib.platform.logs import get_logger

if TYPE_CHECKING:  # the mixin's base for the type checker: the estimators it joins
    from xgboost.spark.core import _SparkXGBEstimator as _Estimator
else:
    _Estimator = object

log = get_logger(__name__)

# xgboost.spark's private methods the estimators override or call, with the parameters
# they are called with: the package is pinned to the minor versions tested
# (pyproject.toml), `missing_hooks` names what a newer release removed or changed, and the
# fast path then steps aside for xgboost.spark's own fit (tests/test_xgboost_spark.py
# fails on it first)
PRIVATE_HOOKS: dict[str, tuple[str, ...]] = {
    "_get_distributed_train_params": ("dataset",),
    "_repartition_needed": ("dataset",),
    "_fit": ("dataset",),
    "_run_on_gpu": (),
    "_col_is_defined_not_empty": ("param",),
    "_validate_params": (),
    "_prepare_input": ("dataset",),
    "_get_xgb_parameters": ("dataset",),
    "_convert_to_sklearn_model": ("booster", "config"),
    "_create_pyspark_model": ("xgb_model", "training_summary"),
}


def missing_hooks() -> list[str]:
    """The private methods of `PRIVATE_HOOKS` that xgboost.spark's estimators lack, or
    take other parameters than named there."""
    import inspect

    problems = []
    for estimator in (SparkXGBClassifier, SparkXGBRegressor):
        for name, parameters in PRIVATE_HOOKS.items():
            method = getattr(estimator, name, None)
            if method is None:
                problems.append(f"{estimator.__name__}.{name} is gone")
                continue
            found = [p for p in inspect.signature(method).parameters if p != "self"]
            if found[: len(parameters)] != list(parameters):
                problems.append(f"{estimator.__name__}.{name}({', '.join(found)})")
    return problems


# the parts of xgboost.spark's DMatrix arguments that are not per-batch data
_MATRIX_ARGS = ("max_bin", "missing", "nthread", "enable_categorical")
# columns xgboost.spark selects that the fast path does not read
_UNSUPPORTED_COLUMNS = (alias.margin, alias.qid)


class ArrowTrained(_Estimator):
    """Mixin over an xgboost.spark estimator: `_fit` through `train_on_arrow`."""

    arrow: bool = True  # False: xgboost.spark's own fit
    classes: int | None = None  # a classifier's label values, when known
    laid_out: bool = False  # the caller cut the data into num_workers partitions
    evaluate_training: bool = True  # False: no metric on the training rows each round

    def _get_distributed_train_params(self, dataset: DataFrame) -> dict:
        # xgboost.spark reads the dataset here only for the distinct count of the label:
        # given the classes, answer it without a Spark job
        if self.classes:
            # a stand-in with what the count reads (select, collect), not a DataFrame
            return super()._get_distributed_train_params(_Counted(self.classes))  # type: ignore[arg-type]
        return super()._get_distributed_train_params(dataset)

    def _repartition_needed(self, dataset: DataFrame) -> bool:
        # xgboost.spark asks `dataset.rdd.getNumPartitions()`: under adaptive execution
        # that runs the shuffle of data already cut by key, a whole pass of its own
        if self.laid_out:
            return False
        return super()._repartition_needed(dataset)

    def _arrow_applies(self) -> bool:
        return (
            self.arrow
            and _hooks_present()
            and not self._run_on_gpu()
            and not self.getOrDefault(self.enable_sparse_data_optim)
            and not self._col_is_defined_not_empty(self.qid_col)
            and not self._col_is_defined_not_empty(self.base_margin_col)
            and self.getOrDefault(self.launch_tracker_on_driver)
            and not self.isSet(self.coll_cfg)
        )

    def _fit(self, dataset: DataFrame):
        if not self._arrow_applies():
            return super()._fit(dataset)
        self._validate_params()
        prepared, feature_prop = self._prepare_input(dataset)
        booster_params, train_kwargs, matrix_kwargs = self._get_xgb_parameters(prepared)
        evals_result, config, raw = train_on_arrow(
            prepared,
            feature_prop.features_cols_names,
            booster_params,
            train_kwargs,
            matrix_kwargs,
            self.getOrDefault(self.num_workers),
            validation=feature_prop.has_validation_col,
            evaluate_training=self.evaluate_training,
        )
        sklearn_model = self._convert_to_sklearn_model(bytearray(raw), config)
        summary = XGBoostTrainingSummary.from_metrics(evals_result)
        model = self._create_pyspark_model(sklearn_model, summary)
        model._resetUid(self.uid)  # pyspark ML's convention, as xgboost.spark's fit
        return self._copyValues(model)


_HOOKS: list[str] | None = None


def _hooks_present() -> bool:
    """Whether xgboost.spark still has what the fast path hooks (checked once; if not,
    said once, and xgboost.spark's own fit trains)."""
    global _HOOKS
    if _HOOKS is None:
        _HOOKS = missing_hooks()
        if _HOOKS:
            log.warning(
                "xgboost.spark changed; training with its own fit",
                extra={"changed": _HOOKS},
            )
    return not _HOOKS


class _Counted:
    """Stands for the dataset in xgboost.spark's `_get_distributed_train_params`, whose
    one use of it is `dataset.select(countDistinct(label)).collect()[0][0]`."""

    def __init__(self, classes: int) -> None:
        self.classes = classes

    def select(self, *_columns) -> _Counted:
        return self

    def collect(self) -> list[tuple[int]]:
        return [(self.classes,)]


class XGBClassifier(ArrowTrained, SparkXGBClassifier):
    """`SparkXGBClassifier` trained on Arrow batches (see the module)."""


class XGBRegressor(ArrowTrained, SparkXGBRegressor):
    """`SparkXGBRegressor` trained on Arrow batches (see the module)."""


def train_on_arrow(
    dataset: DataFrame,
    feature_columns: list[str] | None,
    booster_params: dict[str, Any],
    train_kwargs: dict[str, Any],
    matrix_kwargs: dict[str, Any],
    workers: int,
    *,
    validation: bool,
    evaluate_training: bool = True,
) -> tuple[dict, str, bytes]:
    """Train one booster on `dataset` (xgboost.spark's prepared columns: the label, the
    features as columns or one float array, a weight and a validation flag when set),
    one worker per partition (`_prepare_input` made them as many). The training rows'
    metric is computed each round only with `evaluate_training` (xgboost.spark always
    does; early stopping reads the validation rows').
    Returns (evals_result, booster config, UBJSON model)."""
    from xgboost.tracker import RabitTracker

    host = dataset.sparkSession.sparkContext.getConf().get("spark.driver.host")
    tracker = RabitTracker(n_workers=workers, host_ip=host, sortby="task")
    tracker.start()
    waiting = threading.Thread(target=tracker.wait_for, daemon=True)
    waiting.start()
    worker_args = {"n_workers": workers, **tracker.worker_args()}
    matrix_args = {k: v for k, v in matrix_kwargs.items() if k in _MATRIX_ARGS}
    batch_args = {k: v for k, v in matrix_kwargs.items() if k not in _MATRIX_ARGS}
    if feature_columns is not None and batch_args.get("feature_names") is None:
        batch_args["feature_names"] = list(feature_columns)  # a pandas frame's would be
    quantile = booster_params.get("tree_method") in ("hist", "auto", None)
    if quantile and booster_params.get("max_bin") is not None:
        matrix_args["max_bin"] = booster_params["max_bin"]
    for name in _UNSUPPORTED_COLUMNS:
        if name in dataset.columns:
            raise ValueError(f"the Arrow trainer does not read {name}")

    def train(batches: Iterator[Any]) -> Iterator[Any]:
        import pyarrow as pa
        import xgboost
        from pyspark import BarrierTaskContext

        context = BarrierTaskContext.get()
        rank, tasks = context.partitionId(), len(context.getTaskInfos())
        if tasks != workers:  # the tracker would wait for the missing workers forever
            raise ValueError(f"{workers} xgboost workers need {workers} partitions, not {tasks}")
        started = time.perf_counter()
        train_blocks, valid_blocks = _blocks(batches, feature_columns, validation)
        read = time.perf_counter() - started
        result: dict = {}
        with xgboost.collective.CommunicatorContext(dmlc_task_id=str(rank), **worker_args):
            dtrain = _matrix(xgboost, train_blocks, None, quantile, matrix_args, batch_args)
            train_blocks.clear()  # the matrix holds what boosting needs: free the floats
            evals = [(dtrain, "training")] if evaluate_training else []
            if validation:
                dvalid = _matrix(xgboost, valid_blocks, dtrain, quantile, matrix_args, batch_args)
                valid_blocks.clear()
                evals.append((dvalid, "validation"))
            booster = xgboost.train(
                booster_params, dtrain, evals=evals, evals_result=result, **train_kwargs
            )
        if rank == 0:
            yield pa.RecordBatch.from_pydict(
                {
                    "evals": [json.dumps(result)],
                    "config": [booster.save_config()],
                    "model": [bytes(booster.save_raw("ubj"))],
                    "seconds": [json.dumps({"read": read, "all": time.perf_counter() - started})],
                }
            )

    schema = "evals string, config string, model binary, seconds string"
    rows = dataset.mapInArrow(train, schema, barrier=True).collect()
    waiting.join(timeout=10)
    if not waiting.is_alive():
        tracker.free()
    log.debug("xgboost trained on Arrow batches", extra=json.loads(rows[0]["seconds"]))
    return json.loads(rows[0]["evals"]), rows[0]["config"], bytes(rows[0]["model"])


def _blocks(batches: Iterator[Any], features: list[str] | None, validation: bool) -> tuple:
    """The training and validation rows of a partition, as xgboost.spark cuts them: per
    Arrow batch a float32 block of features with its label (and weight)."""
    import numpy as np

    train: list[dict] = []
    valid: list[dict] = []
    for batch in batches:
        rows = batch.num_rows
        if rows == 0:
            continue
        names = batch.schema.names
        if features is None:  # one array<float> column: the vector, made dense
            flat = batch.column(alias.data).flatten().to_numpy(zero_copy_only=False)
            data = flat.reshape(rows, -1).astype(np.float32, copy=False)
        else:
            data = np.empty((rows, len(features)), dtype=np.float32)
            for j, name in enumerate(features):
                data[:, j] = batch.column(name).to_numpy(zero_copy_only=False)
        block = {"data": data, "label": batch.column(alias.label).to_numpy(zero_copy_only=False)}
        if alias.weight in names:
            block["weight"] = batch.column(alias.weight).to_numpy(zero_copy_only=False)
        if not validation:
            train.append(block)
            continue
        flags = batch.column(alias.valid).to_numpy(zero_copy_only=False).astype(bool)
        for chunks, chosen in ((train, ~flags), (valid, flags)):
            if chosen.any():
                chunks.append({k: v[chosen] for k, v in block.items()})
    return train, valid


def _matrix(xgboost, blocks: list[dict], ref, quantile: bool, matrix_args: dict, batch_args):
    """A worker's DMatrix from its blocks: a QuantileDMatrix fed block by block (as
    xgboost.spark feeds its pandas frames), or one DMatrix of them all. A worker without
    rows still builds an empty one: the others wait for it in every collective call."""
    import numpy as np

    if not blocks:
        empty = np.empty((0, 0))
        if quantile:
            return xgboost.QuantileDMatrix(empty, ref=ref)
        return xgboost.DMatrix(empty, **{**matrix_args, **batch_args})
    if not quantile:
        merged = {k: np.concatenate([b[k] for b in blocks]) for k in blocks[0]}
        return xgboost.DMatrix(**merged, **{**matrix_args, **batch_args})

    class Blocks(xgboost.DataIter):
        def __init__(self) -> None:
            self.at = 0
            super().__init__(release_data=True)

        def next(self, input_data) -> bool:
            if self.at == len(blocks):
                return False
            input_data(**blocks[self.at], **batch_args)
            self.at += 1
            return True

        def reset(self) -> None:
            self.at = 0

    return xgboost.QuantileDMatrix(Blocks(), ref=ref, **matrix_args)
