"""The model registry, on the lakehouse: model versions with lineage, and aliases.

Layout under the registry root (default `<lakehouse>/_registry`, `registry.root`):
- `artifacts/<name>/<id>/model`: the fitted `PipelineModel`, saved by MLlib, with
  `manifest.json` beside it (`<id>` is random: a writer that loses the race for a
  version number keeps its folder, and the version number lives in the manifest), and
  for a linear model `scorer.json`: the same model as one SQL expression's data
  (`lib/scoring/linear.py`), which batch prediction runs without loading MLlib stages;
- `versions`: a Delta table, one row per model version (name, version, algorithm, the
  training table and its Delta version, metrics, config hash, the manifest as JSON);
- `aliases`: a Delta table, one row per (name, alias), partitioned by both, so setting
  an alias is one atomic replace of its partition.

Registering is one Delta commit of the version row, after the artifact is saved: a
version that is in the table is complete. Two writers racing for the same version number
are kept apart by the Delta transaction token `(registry/<name>, version)`: the second
finds the token taken and moves to the next number.

Reading (list, show, the versions vacuum must keep) goes through delta-rs, without
Spark: the index is small, and `batchml models list` should answer at once. Writing and
loading a model need Spark and the Delta backend (`tables`).
"""

from __future__ import annotations

import json
import os
import random
import re
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from pyspark.sql import types as T

from batchml.lib.delta import CommitConflict, DeltaTables, WriteToken
from batchml.lib.delta.delta_log import table_exists, table_rows
from batchml.lib.delta.lakehouse import lakehouse_root, relative_to, resolve_path, under
from batchml.lib.platform import storage
from batchml.lib.platform.errors import InputError
from batchml.lib.platform.logs import get_logger
from batchml.lib.platform.settings import Settings
from batchml.lib.platform.sqltext import string as _sql
from batchml.lib.tracking import runs

if TYPE_CHECKING:  # pyspark.ml imports pandas and scipy: loaded only to load a model
    from pyspark.ml import PipelineModel

    from batchml.lib.scoring.linear import LinearScorer

log = get_logger(__name__)
# Pipelines loaded in this process, by artifact URI, for the Spark context they live in
_LOADED: dict[str, Any] = {}
LOADED_MODELS = 4  # kept at most (a promote holds two)

NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_\-]{0,63}$")
VERSIONS_SCHEMA = T.StructType(
    [
        T.StructField("name", T.StringType()),
        T.StructField("version", T.IntegerType()),
        T.StructField("created_at", T.TimestampType()),
        T.StructField("algorithm", T.StringType()),
        T.StructField("artifact_uri", T.StringType()),
        T.StructField("training_table", T.StringType()),
        T.StructField("training_version", T.LongType()),
        T.StructField("config_hash", T.StringType()),
        T.StructField("metrics", T.StringType()),
        T.StructField("manifest", T.StringType()),
    ]
)
ALIASES_SCHEMA = T.StructType(
    [
        T.StructField("name", T.StringType()),
        T.StructField("alias", T.StringType()),
        T.StructField("version", T.IntegerType()),
        T.StructField("set_at", T.TimestampType()),
    ]
)
DECISIONS_SCHEMA = T.StructType(
    [
        T.StructField("name", T.StringType()),
        T.StructField("decided_at", T.TimestampType()),
        T.StructField("action", T.StringType()),  # promoted | kept | rollback
        T.StructField("champion_before", T.IntegerType()),
        T.StructField("champion_after", T.IntegerType()),
        T.StructField("challenger", T.IntegerType()),
        T.StructField("table", T.StringType()),
        T.StructField("table_version", T.LongType()),
        T.StructField("split", T.StringType()),
        T.StructField("metric", T.StringType()),
        T.StructField("reason", T.StringType()),
        T.StructField("details", T.StringType()),  # JSON: both metric sets, the interval
    ]
)
MAX_RACE_RETRIES = 20
SCORER_FILE = "scorer.json"


CHAMPION, PREVIOUS_CHAMPION = "champion", "previous_champion"  # the aliases promote sets


@dataclass(frozen=True)
class ModelVersion:
    """One registered model version."""

    name: str
    version: int
    created_at: datetime
    algorithm: str
    artifact_uri: str
    training_table: str
    training_version: int
    config_hash: str
    metrics: dict[str, Any]
    manifest: dict[str, Any]
    aliases: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "version": self.version,
            "created_at": self.created_at.isoformat(),
            "algorithm": self.algorithm,
            "artifact_uri": self.artifact_uri,
            "training_table": self.training_table,
            "training_version": self.training_version,
            "config_hash": self.config_hash,
            "metrics": self.metrics,
            "aliases": list(self.aliases),
            "manifest": self.manifest,
        }


def alias_holder(versions: list[ModelVersion], alias: str) -> ModelVersion | None:
    """The version among `versions` that holds `alias` (None: none does)."""
    return next((v for v in versions if alias in v.aliases), None)


class Registry:
    """Model versions and aliases under one registry root."""

    def __init__(
        self, root: str, tables: DeltaTables | None = None, lakehouse: str | None = None
    ) -> None:
        """`tables` (the run's Delta backend) is needed to register, set aliases and load
        models; reading the index needs none. `lakehouse` (default: the folder holding the
        registry) is what training tables are recorded relative to; artifacts are recorded
        relative to the registry itself, so a copied or moved lakehouse loads its own."""
        self._tables = tables
        self.root = root.rstrip("/")
        self.lakehouse = lakehouse or self.root.rsplit("/", 1)[0]
        self.versions_uri = f"{self.root}/versions"
        self.aliases_uri = f"{self.root}/aliases"
        self.decisions_uri = f"{self.root}/decisions"

    @property
    def tables(self) -> DeltaTables:
        if self._tables is None:
            raise TypeError("this Registry was opened read-only (no Delta backend given)")
        return self._tables

    # ------------------------------------------------------------------ write
    def register(self, name: str, model: PipelineModel, manifest: dict[str, Any]) -> ModelVersion:
        """Save the model and commit its version row; returns the new version."""
        _check_name(name, "model name")
        for required in ("algorithm", "training_table", "training_version"):
            if required not in manifest:
                raise InputError(f"model manifest lacks {required!r}")
        artifact = f"{self.root}/artifacts/{name}/{uuid.uuid4().hex[:12]}"
        try:
            model.write().save(f"{artifact}/model")
            _save_scorer(model, artifact)
            for _ in range(MAX_RACE_RETRIES):
                version = self._next_version(name)
                training_table = self._recorded_table(str(manifest["training_table"]))
                entry = {
                    **manifest,
                    "training_table": training_table,
                    "name": name,
                    "version": version,
                }
                storage.write_text(
                    storage.join(artifact, "manifest.json"),
                    json.dumps(entry, indent=2, default=str),
                )
                row = (
                    name,
                    version,
                    datetime.now(UTC),
                    str(manifest["algorithm"]),
                    relative_to(artifact, self.root),
                    training_table,
                    int(manifest["training_version"]),
                    str(manifest.get("config_hash", "")),
                    json.dumps(manifest.get("metrics", {})),
                    json.dumps(entry, default=str),
                )
                result = self.tables.write(
                    self.tables.spark.createDataFrame([row], VERSIONS_SCHEMA),
                    self.versions_uri,
                    token=WriteToken(f"registry/{name}", version),
                    commit_info={"job": "registry", "model": name, "version": version},
                )
                if result.committed:
                    log.info("model registered", extra={"model": name, "version": version})
                    runs.note_model(name, version, "registered")
                    return self.get(f"{name}@{version}")
            raise InputError(f"could not register {name}: version numbers kept being taken")
        except BaseException:
            # No version row points at this artifact: remove it (a lost race, a failure)
            if not self._referenced(artifact):
                storage.delete_tree(artifact)
            raise

    def set_alias(self, name: str, version: int, alias: str) -> None:
        """Point `alias` (e.g. champion) at a version, atomically.

        One replace of the (name, alias) partition: under any interleaving of writers the
        alias has one row. A writer whose replace lost to a concurrent one retries on the
        new snapshot (the last to commit wins).
        """
        _check_name(alias, "alias")
        self.get(f"{name}@{version}")  # the version must exist
        runs.note_model(name, version, f"alias {alias}")
        for attempt in range(1, MAX_RACE_RETRIES + 1):
            row = (name, alias, version, datetime.now(UTC))
            try:
                self.tables.write(
                    self.tables.spark.createDataFrame([row], ALIASES_SCHEMA),
                    self.aliases_uri,
                    mode="replace",
                    partition_by=["name", "alias"],
                    replace_where=f"name = {_sql(name)} AND alias = {_sql(alias)}",
                    commit_info={
                        "job": "registry",
                        "model": name,
                        "alias": alias,
                        "version": version,
                    },
                )
                break
            except CommitConflict:
                if attempt == MAX_RACE_RETRIES:
                    raise
                time.sleep(random.uniform(0.05, 0.2))
        log.info("alias set", extra={"model": name, "alias": alias, "version": version})

    def record_decision(self, decision: dict[str, Any]) -> None:
        """Append one promotion decision (a row of DECISIONS_SCHEMA, `details` any JSON):
        the alias history `batchml models show` prints."""
        decision = {**decision}
        if decision.get("table"):
            decision["table"] = self._recorded_table(str(decision["table"]))
        row = tuple(
            datetime.now(UTC)
            if f.name == "decided_at"
            else json.dumps(decision.get("details", {}), default=str)
            if f.name == "details"
            else decision.get(f.name)
            for f in DECISIONS_SCHEMA
        )
        self.tables.write(
            self.tables.spark.createDataFrame([row], DECISIONS_SCHEMA),
            self.decisions_uri,
            commit_info={"job": "promote", "model": decision["name"], "action": decision["action"]},
        )

    def decisions(self, name: str) -> list[dict[str, Any]]:
        """The promotion decisions of a model, oldest first (details parsed)."""
        if not table_exists(self.decisions_uri):
            return []
        rows = [dict(r) for r in table_rows(self.decisions_uri) if r["name"] == name]
        for row in rows:
            row["details"] = json.loads(row["details"] or "{}")
            row["table"] = under(row["table"], self.lakehouse)
        return sorted(rows, key=lambda r: r["decided_at"])

    def _referenced(self, artifact: str) -> bool:
        try:
            return any(v.artifact_uri == artifact for v in self.list())
        except Exception:
            return True

    # ------------------------------------------------------------------- read
    def list(self, name: str | None = None) -> list[ModelVersion]:
        """Every version (of one model, or of all), oldest first."""
        if not table_exists(self.versions_uri):
            return []
        rows = table_rows(self.versions_uri)
        aliases = self._aliases()
        versions = [
            self._version(row, aliases.get((row["name"], row["version"]), ()))
            for row in rows
            if name is None or row["name"] == name
        ]
        return sorted(versions, key=lambda v: (v.name, v.version))

    def get(self, ref: str) -> ModelVersion:
        """`name` (latest), `name@3` or `name@champion`."""
        name, _, selector = ref.partition("@")
        versions = self.list(name)
        if not versions:
            raise InputError(f"no model {name!r} in the registry at {self.root}")
        if not selector:
            return versions[-1]
        if selector.isdigit():
            found = [v for v in versions if v.version == int(selector)]
            if not found:
                raise InputError(
                    f"model {name} has no version {selector} (latest is {versions[-1].version})"
                )
            return found[0]
        holder = alias_holder(versions, selector)
        if holder is None:
            known = sorted({a for v in versions for a in v.aliases}) or ["none"]
            raise InputError(
                f"model {name} has no alias {selector!r} (aliases: {', '.join(known)})"
            )
        return holder

    def champion(self, name: str) -> ModelVersion | None:
        """The version of model `name` holding the champion alias (None: no champion yet,
        or no such model)."""
        return alias_holder(self.list(name), CHAMPION)

    def load(self, ref: str | ModelVersion) -> PipelineModel:
        """The fitted pipeline of a version. Loaded once per Spark context: an artifact
        folder is written once, under a fresh name, and never changed, while loading it
        costs two Spark jobs per stage (a pipeline run loads its champion for monitor,
        promote and predict)."""
        from pyspark.ml import PipelineModel

        from batchml.lib.spark.jvm import active_context

        version = ref if isinstance(ref, ModelVersion) else self.get(ref)
        uri = f"{version.artifact_uri}/model"
        context = active_context()
        if _LOADED.get("context") is not context:  # a new session: its JVM objects only
            _LOADED.clear()
            _LOADED["context"] = context
        models = _LOADED.setdefault("models", {})
        if uri not in models:
            if len(models) >= LOADED_MODELS:
                models.pop(next(iter(models)))  # the oldest
            models[uri] = PipelineModel.load(uri)
        return models[uri]

    def scorer(self, version: ModelVersion) -> LinearScorer | None:
        """The version's linear scorer saved at registration (None: not a linear model,
        or registered before scorers were saved)."""
        from batchml.lib.scoring.linear import LinearScorer

        try:
            text = storage.read_text(storage.join(version.artifact_uri, SCORER_FILE))
        except FileNotFoundError:
            return None
        return LinearScorer.from_json(text)

    def pinned_table_versions(self) -> dict[str, set[int]]:
        """Table -> the versions registered models were trained on (vacuum must keep them)."""
        pinned: dict[str, set[int]] = {}
        for version in self.list():
            pinned.setdefault(version.training_table, set()).add(version.training_version)
        return pinned

    def _recorded_table(self, uri: str) -> str:
        """How a version records its training table: relative to the lakehouse when the
        registry and the table are both in it (a registry elsewhere, shared by several
        lakehouses, keeps absolute locations)."""
        if relative_to(self.root, self.lakehouse) == self.root:
            return uri
        return relative_to(uri, self.lakehouse)

    def _located(self, artifact: str, training_table: str) -> tuple[str, str]:
        """Where a row's artifact and training table are now. Rows registered before
        locations were relative hold absolute paths: the artifact is in this registry's
        `artifacts/` whatever the path says (a copied registry loads its own copy), and a
        training table under the old lakehouse (the old registry's place, less the
        registry's own path in it) is under this one."""
        if "/artifacts/" not in artifact or not (os.path.isabs(artifact) or "://" in artifact):
            return under(artifact, self.root), under(training_table, self.lakehouse)
        old_registry, _, tail = artifact.rpartition("/artifacts/")
        inside = relative_to(self.root, self.lakehouse)
        if inside != self.root and old_registry.endswith(f"/{inside}"):
            old_lake = old_registry[: -len(inside) - 1]
            training_table = under(relative_to(training_table, old_lake), self.lakehouse)
        return f"{self.root}/artifacts/{tail}", training_table

    def _version(self, row: Any, aliases: tuple[str, ...]) -> ModelVersion:
        """A version row, its recorded locations resolved (relative ones are under this
        registry and its lakehouse; rows of older versions recorded absolute paths)."""
        artifact, training_table = self._located(row["artifact_uri"], row["training_table"])
        manifest = json.loads(row["manifest"] or "{}")
        if "training_table" in manifest:
            manifest["training_table"] = training_table
        return ModelVersion(
            row["name"],
            row["version"],
            row["created_at"],
            row["algorithm"],
            artifact,
            training_table,
            row["training_version"],
            row["config_hash"],
            json.loads(row["metrics"] or "{}"),
            manifest,
            aliases,
        )

    def _next_version(self, name: str) -> int:
        existing = self.list(name)
        return existing[-1].version + 1 if existing else 1

    def _aliases(self) -> dict[tuple[str, int], tuple[str, ...]]:
        if not table_exists(self.aliases_uri):
            return {}
        latest: dict[tuple[str, str], Any] = {}  # one row per alias; the newest, if ever more
        for row in table_rows(self.aliases_uri):
            key = (row["name"], row["alias"])
            if key not in latest or row["set_at"] > latest[key]["set_at"]:
                latest[key] = row
        found: dict[tuple[str, int], list[str]] = {}
        for row in latest.values():
            found.setdefault((row["name"], row["version"]), []).append(row["alias"])
        return {key: tuple(sorted(value)) for key, value in found.items()}


def _save_scorer(model: PipelineModel, artifact: str) -> None:
    """Save the linear scorer of `model` beside it, when it has one."""
    from batchml.lib.scoring.linear import NotLinear, compile_pipeline

    try:
        scorer = compile_pipeline(model)
    except NotLinear as exc:
        log.info(
            "no linear scorer: predictions run the booster scorer or the pipeline's stages",
            extra={"why": str(exc)},
        )
        return
    storage.write_text(storage.join(artifact, SCORER_FILE), scorer.to_json())


def registry_of(settings: Settings, tables: DeltaTables | None = None) -> Registry:
    """The registry at `registry.root` (relative to the lakehouse); read-only without
    `tables`."""
    return Registry(
        resolve_path(settings.registry.root, settings), tables, lakehouse_root(settings)
    )


def _check_name(value: str, what: str) -> None:
    if not NAME.match(value):
        raise InputError(
            f"{what} {value!r} must start with a letter and hold only letters, digits, _ or -"
        )
