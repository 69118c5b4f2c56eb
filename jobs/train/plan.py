"""What decides a model before any data is read: the model and pipeline specs, the
training table and its pinned version, checked against each other."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from batchml.lib.delta.lakehouse import table_location
from batchml.lib.platform.errors import ConfigError, InputError
from batchml.lib.platform.settings import FeaturePipelineSpec, ModelSpec, ParamRange, Settings
from batchml.lib.training.estimators import (
    EARLY_STOPPING,
    encoding_of,
    is_xgboost,
    task_of,
)
from batchml.lib.training.splits import check_fractions

# columns the training job adds to the feature table while it works
SPLIT = "__split"


WEIGHT = "__weight"


IS_VALIDATION = "__is_validation"


FOLD = "__fold"


@dataclass(frozen=True)
class TrainPlan:
    """Everything that decides the model: specs, the table and its pinned version."""

    model: str
    spec: ModelSpec
    pipeline_name: str
    pipeline: FeaturePipelineSpec
    table_uri: str
    table_version: int | None = None
    partitions: int | None = None  # recorded by an earlier training (reproduce)


def plan_from_settings(settings: Settings, name: str, table_version: int | None) -> TrainPlan:
    """The plan of a configured model (checked before Spark reads anything)."""
    if name not in settings.models:
        known = ", ".join(sorted(settings.models)) or "none configured"
        raise ConfigError(f"unknown model {name!r} (models: {known})")
    spec = settings.models[name]
    if spec.pipeline not in settings.pipelines:
        raise ConfigError(f"models.{name}.pipeline = {spec.pipeline!r} is not under [pipelines]")
    pipeline = settings.pipelines[spec.pipeline]
    view = settings.views.get(pipeline.view)
    uri = table_location((view.table if view else None) or pipeline.view, settings)
    return TrainPlan(name, spec, spec.pipeline, pipeline, uri, table_version)


def plan_from_manifest(manifest: dict[str, Any]) -> TrainPlan:
    """The plan a registered version was trained with."""
    if "model_spec" not in manifest:
        raise InputError(
            f"{manifest.get('name')}@{manifest.get('version')} was registered "
            "without its model spec and cannot be reproduced"
        )
    spec = ModelSpec.model_validate(manifest["model_spec"])
    if "encoding" not in manifest["model_spec"]:  # registered before encodings: one vector
        spec = spec.model_copy(update={"encoding": "one_hot"})
    recorded_workers = (manifest.get("params") or {}).get("num_workers")
    if is_xgboost(spec.algorithm) and recorded_workers is not None:
        # the workers' shares of the data shape the trees: rebuild exactly those
        spec = spec.model_copy(
            update={"params": {**spec.params, "num_workers": int(recorded_workers)}}
        )
    return TrainPlan(
        manifest["name"],
        spec,
        manifest["feature_pipeline"],
        FeaturePipelineSpec.model_validate(manifest["feature_spec"]),
        manifest["training_table"],
        int(manifest["training_version"]),
        manifest.get("training_partitions"),
    )


def check_plan(plan: TrainPlan) -> str:
    """Refuse a plan that cannot train, before any data is read; returns the task."""
    spec, where = plan.spec, f"models.{plan.model}"
    if not plan.pipeline.key:
        raise ConfigError(f"pipelines.{plan.pipeline_name} needs a key column for the split")
    check_fractions(spec.split)
    if "train" not in spec.split:
        raise ConfigError(f"{where}.split needs a 'train' fraction")
    empty = [part for part, share in spec.split.items() if share <= 0]
    if empty:
        raise ConfigError(f"{where}.split leaves {', '.join(empty)} empty (fraction 0)")
    task = task_of(spec.algorithm)
    try:
        encoding_of(spec)
    except ConfigError as exc:
        raise ConfigError(f"{where}.{exc}") from None
    if spec.class_weight is not None and task != "classification":
        raise ConfigError(f"{where}.class_weight needs a classifier, not {spec.algorithm}")
    if spec.early_stopping:
        if spec.algorithm not in EARLY_STOPPING:
            raise ConfigError(
                f"{where}.early_stopping: {spec.algorithm} cannot stop early "
                f"(only {', '.join(sorted(EARLY_STOPPING))})"
            )
        if "validation" not in spec.split:
            raise ConfigError(f"{where}.early_stopping needs a 'validation' split")
        if spec.tuning is not None:
            raise ConfigError(
                f"{where}: early_stopping and tuning cannot be combined yet; "
                "tune the number of trees instead"
            )
    if spec.tuning is not None:
        if spec.tuning.strategy == "holdout" and "validation" not in spec.split:
            raise ConfigError(f"{where}.tuning.strategy = 'holdout' needs a 'validation' split")
        if spec.tuning.method == "grid":
            ranges = [k for k, v in spec.tuning.space.items() if isinstance(v, ParamRange)]
            if ranges:
                raise ConfigError(
                    f"{where}.tuning.space: a grid needs lists of values, "
                    f"{', '.join(ranges)} is a range (use method = 'random')"
                )
        if not spec.tuning.space:
            raise ConfigError(f"{where}.tuning.space is empty")
    return task
