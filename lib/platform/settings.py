"""The typed shape of batchml's configuration.

Every section forbids unknown keys and every value is checked strictly (no silent
string-to-number coercion), so a typo or a wrong type in a TOML file is an error
that names the key. `lib/platform/config.py` loads and merges the layers into these models.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal, get_args, get_origin

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

MEMORY_PATTERN = re.compile(r"^\d+[kmgt]?$", re.IGNORECASE)


class Section(BaseModel):
    """Base of every config section: unknown keys are errors, types are strict."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class SparkSettings(Section):
    """How the entrypoint builds the one SparkSession of a run."""

    master: str = "local[*]"
    app_name: str = "batchml"
    driver_memory: str = "2g"
    shuffle_partitions: Annotated[int, Field(ge=1)] = 8
    ui: bool = False
    checkpoint_dir: str | None = None
    log_level: Literal["ERROR", "WARN", "INFO", "DEBUG"] = "ERROR"
    conf: dict[str, str | int | float | bool] = Field(default_factory=dict)
    # Spark event logs, for the History Server to replay any run; the folder defaults
    # to <lakehouse.root>/_spark_events
    event_log: bool = True
    event_log_dir: str | None = None

    @field_validator("driver_memory")
    @classmethod
    def _memory_size(cls, value: str) -> str:
        if not MEMORY_PATTERN.match(value):
            raise ValueError("a JVM memory size such as '2g' or '512m'")
        return value.lower()


class DeltaSettings(Section):
    """Which Delta Lake backend reads and writes tables."""

    backend: Literal["auto", "connector", "embedded"] = "auto"
    # where Delta's Spark connector jars are cached (one folder per Delta version)
    jar_cache: str = "~/.cache/batchml/delta"


SCHEME = re.compile(r"^([a-z][a-z0-9+.-]*)://", re.IGNORECASE)
# the object stores a lake location may be on (lib/platform/storage.py knows each); `s3`, `s3a`
# and `s3n` name one store, as do `gs`/`gcs` and `abfs`/`abfss`/`az`
OBJECT_STORE_SCHEMES = ("s3a", "s3", "s3n", "gs", "gcs", "abfss", "abfs", "az")


def lake_location(value: str) -> str:
    """A lakehouse location: a local path, a `file:` URI (becomes its path) or an
    object-store URI (`s3a://bucket/lake`, `gs://`, `abfss://`); any other scheme is
    refused by name (`hdfs://` included: mount it, or use an object store)."""
    if value.lower().startswith("file:"):
        path = re.sub(r"^file:(//(localhost)?)?", "", value, flags=re.IGNORECASE)
        return path or "/"
    match = SCHEME.match(value)
    if match is None:
        return value  # a path
    scheme = match.group(1).lower()
    if scheme not in OBJECT_STORE_SCHEMES:
        raise ValueError(
            "a local path, a file:// URI or an object-store URI (s3a://, s3://, gs://, "
            f"abfss://), not the unknown scheme {scheme}://"
        )
    if not re.match(r"^[^:]+://[^/]+", value):
        raise ValueError(f"an object-store URI naming its bucket ({scheme}://BUCKET/PATH)")
    # one spelling per store, as Spark's filesystems take it (deltalake is given `s3://`
    # by lib/platform/storage.py): every location recorded from it then compares equal
    canonical = {"s3": "s3a", "s3n": "s3a", "gcs": "gs"}.get(scheme, scheme)
    return canonical + value[len(scheme) :]


class StorageSettings(Section):
    """How batchml reaches an object store, in one place: Hadoop's S3A settings,
    deltalake's storage options and batchml's own file operations all come from here.
    Unset values fall back to the standard variables (`AWS_ENDPOINT_URL`, `AWS_REGION`,
    `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`) and then to the
    store's own credential chain (instance profiles, workload identity)."""

    endpoint: str | None = None  # an S3-compatible server: http://127.0.0.1:9000
    region: str | None = None
    path_style: bool | None = None  # default: true with an endpoint, else false
    access_key: str | None = None  # use ${env:NAME}: never write a key into a file
    secret_key: str | None = None
    session_token: str | None = None
    # seconds: a request that cannot connect fails after this (unreachable endpoint)
    connect_timeout: Annotated[float, Field(gt=0)] = 5.0
    request_timeout: Annotated[float, Field(gt=0)] = 60.0
    # where hadoop-aws and the AWS SDK modules S3A needs are cached (fetched on first use
    # of an s3a:// location)
    jar_cache: str = "~/.cache/batchml/s3a"
    # more deltalake storage options (GCS, ADLS: google_service_account,
    # azure_storage_account_name, ...), passed as they are
    options: dict[str, str] = Field(default_factory=dict)

    @field_validator("endpoint")
    @classmethod
    def _endpoint(cls, value: str | None) -> str | None:
        if value is not None and not re.match(r"^https?://[^/@]+/?$", value):
            raise ValueError("an endpoint URL such as http://127.0.0.1:9000 (no path)")
        return value.rstrip("/") if value else value


class LakehouseSettings(Section):
    """Where tables, models and checkpoints live."""

    root: str = "./lakehouse"

    @field_validator("root")
    @classmethod
    def _location(cls, value: str) -> str:
        return lake_location(value)


class RegistrySettings(Section):
    """Where the model registry keeps versions, aliases and artifacts."""

    root: str = "_registry"  # relative paths are under lakehouse.root

    @field_validator("root")
    @classmethod
    def _location(cls, value: str) -> str:
        return lake_location(value)


class RunsSettings(Section):
    """The runs table: one row per job run, with what it read, wrote and cost."""

    record: bool = True
    table: str = "_runs"  # under lakehouse.root unless absolute

    @field_validator("table")
    @classmethod
    def _location(cls, value: str) -> str:
        return lake_location(value)


class LoggingSettings(Section):
    """Python logging for every batchml module."""

    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    format: Literal["text", "json"] = "text"
    # seconds between progress lines of long Spark work when stderr is not a terminal
    progress_interval: Annotated[float, Field(gt=0)] = 30.0


Scalar = int | float | str


class ColumnContract(Section):
    """One declared column of a data contract: its type and the rules each value obeys."""

    type: str
    nullable: bool = True
    min: Scalar | None = None
    max: Scalar | None = None
    allowed: list[Scalar] | None = None
    regex: str | None = None


class TableContract(Section):
    """A Delta table fed by ingest: where it lives and the contract its rows must meet.

    `columns` are the raw columns in source order (CSV files are read by position with
    these names and types); `derived` adds columns from Spark SQL expressions over them.
    """

    path: str | None = None  # default: <lakehouse.root>/<table name>
    quarantine: str | None = None  # default: <path>_quarantine
    columns: dict[str, ColumnContract]
    derived: dict[str, str] = Field(default_factory=dict)
    unique_key: list[str] = Field(default_factory=list)
    partition_by: list[str] = Field(default_factory=list)
    policy: Literal["fail", "quarantine", "threshold"] = "quarantine"
    max_bad_fraction: Annotated[float, Field(ge=0, le=1)] = 0.0


class SourceSettings(Section):
    """Raw files that `batchml ingest SOURCE` lands into a table."""

    table: str
    path: str  # a file, folder or glob; relative paths are under lakehouse.root
    format: Literal["csv", "json", "parquet"] = "csv"
    options: dict[str, str | int | float | bool] = Field(default_factory=dict)
    mode: Literal["append", "overwrite", "replace"] = "append"
    replace_where: str | None = None
    # a file already ingested whose size or modification time changed since
    on_changed_file: Literal["error", "skip", "reingest"] = "error"
    # record each ingested file's SHA-256 (one read of its bytes on the driver): a file of
    # the recorded size with a new modification time is then compared by its bytes
    content_hash: bool = True
    ledger: str | None = None  # the ingest ledger table; default _ingest/<source>


class FeatureView(Section):
    """A feature table defined as Spark SQL over Delta tables, each pinned to a version.

    Every key of `sources` is a table (a name under lakehouse.root, a `[tables]` name, or
    a path) registered under that name as a temp view inside `sql`; its value is the
    version to read or "latest" (resolved to a number when the job starts).
    """

    sql: str
    sources: dict[str, int | Literal["latest"]]
    table: str | None = None  # output table; default: the view's name
    partition_by: list[str] = Field(default_factory=list)
    # materialise only the rows from files added to the driving source since the last
    # run (append-only driving source; the other sources are lookups read at their
    # latest version); a changed SQL, a rewritten driving source or --full rebuilds
    incremental: bool = False
    driving: str | None = None  # the driving source; default: the first of `sources`
    # the columns naming a row: checked before the write (present, not floating-point),
    # and the table's repeated and null keys counted and reported after it
    key: list[str] | None = None


class NumericFeature(Section):
    """How one numeric column becomes features."""

    impute: Literal["mean", "median"] | None = "mean"
    indicator: bool = False  # add <col>__is_missing
    scale: bool = True  # standardise: (x - mean) / standard deviation
    buckets: Annotated[int, Field(ge=2)] | None = None  # add <col>__bucket: quantile bins


class CategoricalFeature(Section):
    """How one categorical column becomes a one-hot block."""

    top: Annotated[int, Field(ge=1)] | None = None  # keep the N most frequent levels
    min_frequency: Annotated[int, Field(ge=1)] = 1  # drop rarer levels
    # levels dropped, unseen at scoring time, and nulls share one extra "other" slot


class HashedFeature(Section):
    """A high-cardinality column hashed into a fixed number of buckets."""

    buckets: Annotated[int, Field(ge=2)] = 1024


class FeaturePipelineSpec(Section):
    """The declarative spec of one MLlib feature pipeline (training appends the estimator)."""

    view: str
    label: str
    key: str | None = None
    numeric: dict[str, NumericFeature] = Field(default_factory=dict)
    categorical: dict[str, CategoricalFeature] = Field(default_factory=dict)
    hashed: dict[str, HashedFeature] = Field(default_factory=dict)
    # pairs of numeric features whose product is a feature too
    interactions: list[Annotated[list[str], Field(min_length=2, max_length=2)]] = Field(
        default_factory=list
    )
    output: str = "features"


ParamValue = int | float | str | bool | list[float]


class ParamRange(Section):
    """A continuous (or integer) range a random search draws a param from."""

    min: float
    max: float
    log: bool = False  # draw uniformly on a log scale (min must be > 0)
    integer: bool = False  # round the draw to an integer


class TuningSpec(Section):
    """Hyperparameter search over `space`, scored on cross-validation folds of the
    training split (`cross_validation`, MLlib's CrossValidator with a hash `foldCol`) or on
    the validation split (`holdout`: every candidate fitted on the training split)."""

    strategy: Literal["cross_validation", "holdout"] = "cross_validation"
    method: Literal["grid", "random"] = "grid"
    space: dict[str, list[ParamValue] | ParamRange]
    folds: Annotated[int, Field(ge=2)] = 3
    samples: Annotated[int, Field(ge=1)] = 10  # candidates drawn by a random search
    metric: str | None = None  # default: areaUnderROC, f1 (multiclass), rmse (regression)
    parallelism: Annotated[int, Field(ge=1)] = 1


class EvaluationSpec(Section):
    """How a model is evaluated and promoted (`[models.NAME.evaluation]`)."""

    slices: list[str] = Field(default_factory=list)  # columns: metrics per value
    min_slice_rows: Annotated[int, Field(ge=1)] = 100  # smaller slices pooled as "other"
    thresholds: list[Annotated[float, Field(ge=0, le=1)]] = Field(default_factory=list)
    bootstrap: Annotated[int, Field(ge=0, le=10_000)] = 200  # replicates; 0: no intervals
    metric: str | None = None  # promotion's main metric; default areaUnderROC / f1 / rmse
    min_improvement: Annotated[float, Field(ge=0)] = 0.0
    require_significant: bool = False  # the improvement's paired interval must exclude 0
    promotion: Literal["enabled", "dry-run", "disabled"] = "enabled"
    report: bool = True  # train writes the report of its test split


class MonitoringSpec(Section):
    """`batchml monitor`'s thresholds: a feature's figure at or above `*_warn` warns, at or
    above `*_drift` drifts (sizes: PSI, KS, Jensen-Shannon, the absolute change of the null
    rate, the absolute mean shift in training standard deviations)."""

    psi_warn: float = 0.1
    psi_drift: float = 0.25
    ks_warn: float = 0.1
    ks_drift: float = 0.2
    js_warn: float = 0.05
    js_drift: float = 0.1
    null_rate_warn: float = 0.05
    null_rate_drift: float = 0.2
    mean_shift_warn: float = 0.5
    mean_shift_drift: float = 1.0
    # performance over time, once labels land: the headline metric per period of the
    # predictions against the registered test metric; a relative drop at or above
    # `degradation_warn` warns, at or above `degradation_drift` flags retraining
    labels: str | None = None  # a labels table (key + label); default: the scored input
    # a key with several label rows (a label corrected later): "latest" takes the row
    # with the greatest `labels_order_by` (a timestamp column); unset: keys with two
    # different labels are refused by name
    labels_dedup: Literal["latest"] | None = None
    labels_order_by: str | None = None
    period: Literal["day", "week", "month", "input_version"] = "day"
    degradation_warn: float = Field(default=0.03, ge=0)
    degradation_drift: float = Field(default=0.06, ge=0)
    min_period_rows: int = Field(default=100, ge=1)  # fewer labelled rows: not judged
    # features reported but not judged: those expected to move (a calendar month)
    ignore: list[str] = Field(default_factory=list)

    @model_validator(mode="after")
    def _dedup_has_an_order(self) -> MonitoringSpec:
        if self.labels_dedup and not self.labels_order_by:
            raise ValueError(
                'labels_dedup = "latest" needs labels_order_by, the column that says which '
                "label row of a key is the latest"
            )
        if self.labels_order_by and not self.labels_dedup:
            raise ValueError(
                'labels_order_by is used only with labels_dedup = "latest"; set both or neither'
            )
        return self


class ModelSpec(Section):
    """A model to train: a feature pipeline plus one estimator, on a hash split."""

    pipeline: str
    algorithm: str
    params: dict[str, ParamValue] = Field(default_factory=dict)
    split: dict[str, float] = Field(
        default_factory=lambda: {"train": 0.7, "validation": 0.15, "test": 0.15}
    )
    seed: int = 42
    # "balanced" weighs each class by rows / (classes * rows of the class); a table maps
    # label values (as strings) to weights; classes left out weigh 1
    class_weight: Literal["balanced"] | dict[str, float] | None = None
    # stop adding trees when the validation split stops improving (gbt_*, xgboost_*)
    early_stopping: bool = False
    # persist the assembled training data for the estimator: None = for iterative ones
    persist: bool | None = None
    tuning: TuningSpec | None = None
    # partitions the training data is cut into (by a hash of the key) before fitting;
    # None = the task slots (xgboost: num_workers). Recorded in the manifest.
    partitions: int | None = Field(default=None, ge=1)
    # how the features reach the estimator: "one_hot" = one assembled vector (imputed,
    # scaled, one-hot; every algorithm), "native" = the columns themselves, categories as
    # codes the booster splits natively (xgboost_* only); None = native for xgboost
    encoding: Literal["native", "one_hot"] | None = None
    evaluation: EvaluationSpec = Field(default_factory=EvaluationSpec)
    monitoring: MonitoringSpec = Field(default_factory=MonitoringSpec)


class PredictionSpec(Section):
    """Batch scoring of one input table with a registered model (`batchml predict`)."""

    model: str  # NAME, NAME@VERSION or NAME@ALIAS
    input: str  # a table name or path
    output: str  # a table name or path
    key: list[str] | None = None  # default: the model's feature pipeline key
    # refuse (exit 4, nothing written) rows whose key repeats or is null, in the scored rows or
    # already in this model's predictions; unset: repeats are counted and reported
    unique_key: bool = False
    # the count of repeated and null keys, one pass over the key columns (about a
    # quarter of a linear model's scoring time): false skips it (not with unique_key)
    count_keys: bool = True
    passthrough: list[str] = Field(default_factory=list)  # input columns copied as they are
    partition_by: str | None = None  # a date column of the input, copied; output partitions
    retention_days: int | None = Field(default=None, ge=1)

    @model_validator(mode="after")
    def _unique_needs_the_count(self) -> PredictionSpec:
        if self.unique_key and not self.count_keys:
            raise ValueError("unique_key = true needs count_keys (the count is the check)")
        return self


DURATION = r"^\d+[smhdw]$"


def duration_seconds(text: str) -> int:
    """`"30d"` -> seconds (s, m, h, d, w)."""
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
    return int(text[:-1]) * units[text[-1]]


class ScheduleSpec(Section):
    """One scheduled run, `batchml pipeline NAME`: ingest, features, monitor, retrain when
    needed, evaluate and promote, predict."""

    sources: list[str] = Field(default_factory=list)  # [sources.*] ingested (new files only)
    views: list[str] = Field(default_factory=list)  # [views.*] materialised (incrementally)
    model: str  # the [models.*] section monitored, retrained and promoted
    predictions: str | None = None  # the [predictions.*] section (default: the model's name)
    retrain_every: Annotated[str, Field(pattern=DURATION)] | None = None  # "30d": the
    # champion's age (since registration) that triggers a retrain; unset: never by age
    retrain_on_drift: bool = True
    retrain_on_degradation: bool = True
    # the feature table version a retrain reads: the latest, or the version before this
    # run's new rows (rows whose labels a real pipeline would not have yet)
    train_on: Literal["latest", "before_batch"] = "latest"


class Settings(Section):
    """The whole resolved configuration of one run."""

    spark: SparkSettings = Field(default_factory=SparkSettings)
    delta: DeltaSettings = Field(default_factory=DeltaSettings)
    lakehouse: LakehouseSettings = Field(default_factory=LakehouseSettings)
    registry: RegistrySettings = Field(default_factory=RegistrySettings)
    storage: StorageSettings = Field(default_factory=StorageSettings)
    logging: LoggingSettings = Field(default_factory=LoggingSettings)
    runs: RunsSettings = Field(default_factory=RunsSettings)
    tables: dict[str, TableContract] = Field(default_factory=dict)
    sources: dict[str, SourceSettings] = Field(default_factory=dict)
    views: dict[str, FeatureView] = Field(default_factory=dict)
    pipelines: dict[str, FeaturePipelineSpec] = Field(default_factory=dict)
    models: dict[str, ModelSpec] = Field(default_factory=dict)
    predictions: dict[str, PredictionSpec] = Field(default_factory=dict)
    schedules: dict[str, ScheduleSpec] = Field(default_factory=dict)


def known_keys(model: type[BaseModel] = Settings, prefix: str = "") -> list[str]:
    """Every dotted key the model accepts (dict-valued fields end the walk)."""
    keys: list[str] = []
    for name, field in model.model_fields.items():
        dotted = f"{prefix}{name}"
        annotation = field.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            keys.extend(known_keys(annotation, f"{dotted}."))
        else:
            keys.append(dotted)
    return keys


def fields_at(path: tuple[str, ...], model: type[BaseModel] = Settings) -> list[str]:
    """The field names accepted at `path` (the dotted key's parent), walking through
    dict-of-section fields such as `tables.<name>`; empty when the path is unknown."""
    current: Any = model
    parts = list(path)
    while parts:
        part = parts.pop(0)
        if not (isinstance(current, type) and issubclass(current, BaseModel)):
            return []
        field = current.model_fields.get(part)
        if field is None:
            return []
        current = field.annotation
        origin = get_origin(current)
        if origin is dict and parts:
            parts.pop(0)  # the user's own name, e.g. the table's
            current = get_args(current)[1]
    if isinstance(current, type) and issubclass(current, BaseModel):
        return list(current.model_fields)
    return []
