"""`batchml train MODEL`: fit a feature pipeline plus an estimator on a pinned feature
table's training split, evaluate on the validation and test splits, register the result.

Steps, all on one pinned table version:
1. hash split on the pipeline's key (`lib/training/splits.py`);
2. the feature pipeline fitted on the training split in one pass, which also yields
   the training profile (numeric deciles from KLL sketches, category frequencies);
3. the assembled training data (label, features, and the weight / validation / fold
   columns when used) persisted once, serialized in memory and on disk, for estimators
   that read it many times; unpersisted after;
4. optional tuning (grid or random search; CrossValidator on hash folds, or every
   candidate scored on the validation split), optional early stopping on the
   validation split (GBT's validationIndicatorCol, xgboost's early_stopping_rounds);
5. metrics on the validation and test splits; the `PipelineModel` registered with a
   manifest that is enough to train it again (`--reproduce`).

Modules: `command.py` (the Typer command and its output), `plan.py` (what decides the
model), `fit.py` (fitting and measuring), `tuning.py` (hyperparameter search), `job.py`
(register, reproduce). This file imports none of them: `command.py` loads the job only
when `train` runs, so other commands start without pyspark.ml (pandas, scipy: ~2 s).
"""
