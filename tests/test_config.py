from __future__ import annotations

import re
from pathlib import Path

import pytest

from batchml.lib.platform.config import REDACTED, load_config, parse_override
from batchml.lib.platform.errors import ConfigError


@pytest.fixture
def conf_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "conf"
    folder.mkdir()
    (folder / "base.toml").write_text(
        '[spark]\nmaster = "local[*]"\napp_name = "base-app"\nshuffle_partitions = 8\n'
        '[lakehouse]\nroot = "/base"\n'
    )
    (folder / "local.toml").write_text('[spark]\napp_name = "local-app"\n')
    (folder / "prod.toml").write_text('[spark]\napp_name = "prod-app"\nshuffle_partitions = 64\n')
    return folder


def load(conf_dir: Path, **kwargs):
    kwargs.setdefault("environ", {})
    return load_config(conf_dir=conf_dir, **kwargs)


def test_layers_merge_in_order_and_remember_their_source(conf_dir: Path, tmp_path: Path) -> None:
    user = tmp_path / "mine.toml"
    user.write_text('[spark]\nshuffle_partitions = 16\ndriver_memory = "6G"\n')
    cfg = load(conf_dir, env="prod", conf_file=user, overrides=["spark.driver_memory=3g"])

    spark = cfg.settings.spark
    assert (spark.master, spark.app_name, spark.shuffle_partitions) == ("local[*]", "prod-app", 16)
    assert spark.driver_memory == "3g"
    assert cfg.sources["spark.master"].endswith("base.toml")
    assert cfg.sources["spark.app_name"].endswith("prod.toml")
    assert cfg.sources["spark.shuffle_partitions"].endswith("mine.toml")
    assert cfg.sources["spark.driver_memory"] == "--set"
    assert cfg.env == "prod"
    assert cfg.layers[-1] == "--set"


def test_env_comes_from_batchml_env_then_defaults_to_local(conf_dir: Path) -> None:
    assert load(conf_dir, environ={"BATCHML_ENV": "prod"}).settings.spark.app_name == "prod-app"
    assert load(conf_dir).env == "local"
    assert load(conf_dir, env="prod", environ={"BATCHML_ENV": "local"}).env == "prod"


def test_set_values_are_toml_scalars_else_strings(conf_dir: Path) -> None:
    cfg = load(
        conf_dir,
        overrides=[
            "spark.shuffle_partitions=3",
            "spark.ui=true",
            "spark.master=local[2]",
            'spark.conf."spark.sql.files.maxPartitionBytes"=64m',
            'spark.conf."spark.speculation"=false',
        ],
    )
    spark = cfg.settings.spark
    assert (spark.shuffle_partitions, spark.ui, spark.master) == (3, True, "local[2]")
    assert spark.conf == {"spark.sql.files.maxPartitionBytes": "64m", "spark.speculation": False}


def test_parse_override_splits_quoted_key_parts() -> None:
    assert parse_override('spark.conf."a.b"= 1') == (("spark", "conf", "a.b"), 1)
    assert parse_override("x=a=b") == (("x",), "a=b")


def test_shipped_conf_files_are_valid_for_every_env() -> None:
    for env in ("local", "cluster"):
        assert load_config(env=env, environ={}).env == env
    assert load_config(env="cluster", environ={}).settings.spark.master == ""


def test_env_references_are_resolved_and_redacted(conf_dir: Path, tmp_path: Path) -> None:
    user = tmp_path / "creds.toml"
    user.write_text(
        '[spark.conf]\n"spark.hadoop.fs.s3a.access.key" = "${env:S3_KEY}"\n'
        '"spark.hadoop.fs.s3a.endpoint" = "${env:S3_ENDPOINT:-http://localhost:9000}"\n'
        '"spark.hadoop.fs.s3a.secret.key" = "plain-but-secret"\n'
    )
    cfg = load(conf_dir, conf_file=user, environ={"S3_KEY": "AKIA123"})

    conf = cfg.settings.spark.conf
    assert conf["spark.hadoop.fs.s3a.access.key"] == "AKIA123"
    assert conf["spark.hadoop.fs.s3a.endpoint"] == "http://localhost:9000"
    shown = cfg.redacted()["spark"]["conf"]
    assert shown["spark.hadoop.fs.s3a.access.key"] == REDACTED
    assert shown["spark.hadoop.fs.s3a.endpoint"] == REDACTED
    assert shown["spark.hadoop.fs.s3a.secret.key"] == REDACTED
    assert "AKIA123" not in str(cfg.redacted())


def test_config_hash_changes_with_values_only(conf_dir: Path) -> None:
    first = load(conf_dir).config_hash()
    assert load(conf_dir).config_hash() == first
    assert load(conf_dir, overrides=["spark.shuffle_partitions=9"]).config_hash() != first
    # where the lakehouse is is not what it runs: a moved lakehouse keeps its config hash
    moved = load(conf_dir, overrides=['lakehouse.root="/mnt/elsewhere/lake"'])
    assert moved.config_hash() == first


def test_versions_registered_before_keep_their_config_hash(tmp_path: Path) -> None:
    """A model version registered by batchml before this config hash carries the old one
    (every setting hashed, `content_hash` then false by default): still recognised."""
    conf = tmp_path / "conf"
    conf.mkdir()
    (conf / "local.toml").write_text("")
    (conf / "base.toml").write_text(
        '[lakehouse]\nroot = "/base"\n'
        '[tables.orders.columns]\nid = { type = "int" }\n'
        '[sources.orders]\ntable = "orders"\npath = "raw/orders/*.csv"\n'
    )
    cfg = load(conf)
    # printed by af66a94's config_hash() for this very config
    assert "5262d18cf5db4685" in cfg.earlier_config_hashes()
    assert cfg.config_hash() not in cfg.earlier_config_hashes()
    # a user's explicit content_hash is hashed as given
    (conf / "local.toml").write_text("[sources.orders]\ncontent_hash = true\n")
    assert "5262d18cf5db4685" not in load(conf).earlier_config_hashes()


def test_lake_locations_are_paths_file_uris_or_object_stores(conf_dir: Path) -> None:
    """An object-store root stays a URI (it once became a local folder `s3a:`), a
    `file://` URI is its path, and a scheme no store handles is refused by name."""
    for where in ("lakehouse.root", "registry.root", "runs.table"):
        settings = load(conf_dir, overrides=[f'{where}="s3a://bucket/lake"']).settings
        section, key = where.split(".")
        assert getattr(getattr(settings, section), key) == "s3a://bucket/lake"
        with pytest.raises(ConfigError) as caught:
            load(conf_dir, overrides=[f'{where}="hdfs://namenode/lake"'])
        text = str(caught.value)
        assert (
            f"--set: {where}: expected a local path" in text
            and "unknown scheme hdfs://" in text
            and "\n" not in text
        )
    # one spelling per store: s3:// (deltalake's) is taken as s3a:// (Spark's)
    plain = load(conf_dir, overrides=['lakehouse.root="s3://bucket/lake"']).settings
    assert plain.lakehouse.root == "s3a://bucket/lake"
    with pytest.raises(ConfigError, match="naming its bucket"):
        load(conf_dir, overrides=['lakehouse.root="s3a:///lake"'])
    local = load(conf_dir, overrides=['lakehouse.root="file:///data/lake"']).settings
    assert local.lakehouse.root == "/data/lake"
    assert load(conf_dir, overrides=['lakehouse.root="file:/data"']).settings.lakehouse.root == (
        "/data"
    )


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (
            {"conf_file": Path("/nonexistent/mine.toml")},
            "config file /nonexistent/mine.toml does not exist",
        ),
        ({"env": "staging"}, "unknown env 'staging': there is no "),
        ({"overrides": ["spark.master"]}, "--set 'spark.master': expected dotted.key=value"),
        ({"overrides": ["=3"]}, "--set '=3': '' is not a dotted key"),
        (
            {"overrides": ["spark.shuffle_partitons=3"]},
            "--set: unknown key 'spark.shuffle_partitons' "
            "(did you mean 'spark.shuffle_partitions'?)",
        ),
        (
            {"overrides": ['spark.shuffle_partitions="many"']},
            "--set: spark.shuffle_partitions: expected a valid integer, found 'many' (str)",
        ),
        (
            {"overrides": ["spark.shuffle_partitions=0"]},
            "--set: spark.shuffle_partitions: expected greater than or equal to 1, found 0 (int)",
        ),
        (
            {"overrides": ["spark.driver_memory=lots"]},
            "spark.driver_memory: expected a JVM memory size such as '2g' or '512m'",
        ),
        (
            {"overrides": ["delta.backend=spark"]},
            "--set: delta.backend: expected 'auto', 'connector' or 'embedded', found 'spark'",
        ),
        (
            {"overrides": ["driver_memory=3g"]},
            "unknown key 'driver_memory' (did you mean 'spark.driver_memory'?)",
        ),
        (
            {"overrides": ['lakehouse.root="${env:LAKE_ROOT}"']},
            "--set: lakehouse.root references environment variable LAKE_ROOT, which is not set",
        ),
    ],
)
def test_bad_config_is_one_line_naming_source_and_key(conf_dir: Path, kwargs, message) -> None:
    with pytest.raises(ConfigError) as caught:
        load(conf_dir, **kwargs)
    text = str(caught.value)
    assert message in text
    assert "\n" not in text


def test_unknown_key_in_a_file_names_the_file(conf_dir: Path, tmp_path: Path) -> None:
    user = tmp_path / "mine.toml"
    user.write_text('[spark]\nmaster = "local[1]"\n\n[lakehous]\nroot = "/x"\n')
    with pytest.raises(
        ConfigError, match=r"mine\.toml: unknown key 'lakehous' \(did you mean 'lakehouse'"
    ):
        load(conf_dir, conf_file=user)


def test_wrong_type_in_a_file_names_file_key_expected_and_found(
    conf_dir: Path, tmp_path: Path
) -> None:
    user = tmp_path / "mine.toml"
    user.write_text('[spark]\nui = "yes"\n')
    with pytest.raises(ConfigError) as caught:
        load(conf_dir, conf_file=user)
    assert str(caught.value) == (f"{user}: spark.ui: expected a valid boolean, found 'yes' (str)")


def test_invalid_toml_reports_the_line(conf_dir: Path, tmp_path: Path) -> None:
    user = tmp_path / "broken.toml"
    user.write_text('[spark]\nmaster = "local[1]"\napp_name = \n')
    with pytest.raises(ConfigError, match=r"broken\.toml is not valid TOML: .*line 3"):
        load(conf_dir, conf_file=user)


@pytest.mark.parametrize(
    ("override", "suggestion"),
    [
        ("tables.orders.polcy=1", "tables.orders.policy"),
        ("tables.orders.columns.id.nulable=true", "tables.orders.columns.id.nullable"),
        ('sources.raw.fromat="csv"', "sources.raw.format"),
    ],
)
def test_unknown_keys_inside_named_entries_get_a_suggestion(override: str, suggestion: str) -> None:
    with pytest.raises(ConfigError, match=rf"did you mean '{re.escape(suggestion)}'"):
        load_config(environ={}, overrides=[override])
