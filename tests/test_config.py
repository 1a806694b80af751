"""Configuration layering and validation, and the CLI's usage errors (no Spark needed)."""

from __future__ import annotations

import datetime as dt

import pytest

from segspark import cli
from segspark.config import REPO_CONF_DIR, Config, load_config, parse_override, read_yaml, validate
from segspark.errors import ConfigError


def test_base_yaml_states_exactly_the_model_defaults():
    assert validate(read_yaml(REPO_CONF_DIR / "base.yaml")) == Config()


def test_layers_apply_in_order(tmp_path):
    extra = tmp_path / "extra.yaml"
    extra.write_text("seed: 7\nsource:\n  format: parquet\n  returns_prefix: R\n")
    later = tmp_path / "later.yaml"
    later.write_text("seed: 8\n")
    config = load_config(
        [REPO_CONF_DIR / "online_retail.yaml", extra, later],
        ["source.returns_prefix=X", "spark.conf.spark.sql.shuffle.partitions=3"],
        env="local",
        flags={"lakehouse": "/tmp/lh", "as_of_dates": ["2011-12-10"]},
    )
    assert config.seed == 8
    assert config.source.format == "parquet"
    assert config.source.columns.customer_id == "CustomerID"
    assert config.source.returns_prefix == "X"
    assert config.spark.conf["spark.sql.shuffle.partitions"] == "3"
    assert config.spark.conf["spark.ui.enabled"] == "false"  # from local.yaml
    assert config.as_of_dates == [dt.date(2011, 12, 10)]
    assert config.table_path("transactions_clean") == "/tmp/lh/transactions_clean"


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("source.colums.customer_id=x", "unknown config key 'source.colums'"),
        ("seed=abc", "config key 'seed'"),
        ("source.format=xlsx", "config key 'source.format'"),
        ("source.price_kind=gross", "config key 'source.price_kind'"),
        ("source.timestamp_formats=[]", "source.timestamp_formats"),
        ("source.timezone=Mars/Olympus", "source.timezone"),
        ("source.columns.customer_id=null", "config key 'source.columns.customer_id'"),
        ("as_of_dates=[2011-13-01]", "config key 'as_of_dates.0'"),
        ("ingest.max_reject_share=1.5", "config key 'ingest.max_reject_share'"),
        ("ingest.tolerated_reject_reasons=[dupes]", "config key 'ingest.tolerated_reject_reasons.0'"),
    ],
)
def test_bad_values_name_the_key(override, message):
    with pytest.raises(ConfigError, match=message.replace(".", r"\.")):
        load_config(overrides=[override], env=None)


def test_tolerable_reject_reasons_are_the_ingest_reasons():
    from typing import get_args

    from segspark.config import RejectReason
    from segspark.schemas import REJECT_REASONS

    assert set(get_args(RejectReason)) == set(REJECT_REASONS)
    assert Config().ingest.max_reject_share == 0.5
    assert Config().ingest.tolerated_reject_reasons == ["duplicate", "missing_customer_id"]


def test_quantity_is_required_for_unit_prices():
    with pytest.raises(ConfigError, match="columns.quantity is required"):
        load_config(overrides=["source.columns.quantity=null"], env=None)


def test_override_parsing():
    assert parse_override("a.b=3") == {"a": {"b": 3}}
    assert parse_override("spark.conf.spark.executor.memory=4g") == {
        "spark": {"conf": {"spark.executor.memory": "4g"}}
    }
    with pytest.raises(ConfigError, match="dotted.key=value"):
        parse_override("novalue")


def test_unknown_env_and_missing_file_are_named(tmp_path):
    with pytest.raises(ConfigError, match="no overlay for env 'prod'"):
        load_config(env="prod")
    with pytest.raises(ConfigError, match="config file not found"):
        load_config([tmp_path / "nope.yaml"], env=None)


def test_cli_help_lists_the_commands(capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert "run" in out and "ingest" in out and "Exit codes" in out


def test_cli_bad_config_exits_2_naming_the_key(capsys):
    assert cli.main(["ingest", "--set", "source.nonsense=1"]) == 2
    assert "unknown config key 'source.nonsense'" in capsys.readouterr().err


def test_cli_bad_usage_exits_2(capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["ingest", "--as-of", "10/12/2011"])
    assert exit_info.value.code == 2
    assert "expected a date as YYYY-MM-DD" in capsys.readouterr().err
