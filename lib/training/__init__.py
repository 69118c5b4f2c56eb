"""Training: estimators by name, deterministic splits, xgboost on Arrow batches."""
