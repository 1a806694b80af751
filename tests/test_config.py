"""Configuration layering and validation, and the CLI's usage errors (no Spark needed)."""

from __future__ import annotations

import datetime as dt
import re

import pytest

from segspark import cli
from segspark.config.paths import absolute_uri
from segspark.config.settings import REPO_CONF_DIR, Config, load_config, parse_override, read_yaml, validate
from segspark.errors import ConfigError
from tests.helpers.config import ROOT


def test_base_yaml_states_exactly_the_model_defaults():
    assert validate(read_yaml(REPO_CONF_DIR / "base.yaml")) == Config()


def test_layers_apply_in_order(tmp_path):
    extra = tmp_path / "extra.yaml"
    extra.write_text("seed: 7\nsource:\n  format: parquet\n  returns_prefix: R\n")
    later = tmp_path / "later.yaml"
    later.write_text("seed: 8\n")
    config = load_config(
        [REPO_CONF_DIR / "layouts" / "online_retail.yaml", extra, later],
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
    assert config.table_path("transactions_clean") == "file:/tmp/lh/transactions_clean"


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

    from segspark.config.settings import RejectReason
    from segspark.contracts.schemas import REJECT_REASONS

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
        cli.main(["features", "--as-of", "10/12/2011"])
    assert exit_info.value.code == 2
    assert "expected a date as YYYY-MM-DD" in capsys.readouterr().err


def test_unknown_env_lists_only_the_env_overlays():
    with pytest.raises(ConfigError) as error:
        load_config(env="prod")
    found = str(error.value).partition("(found: ")[2]
    assert found == "cluster, local)"  # base.yaml is not an overlay and source layouts live in conf/layouts/


def test_layout_is_layered_after_the_env_overlay_and_before_config_files(tmp_path):
    conf = tmp_path / "conf"
    (conf / "layouts").mkdir(parents=True)
    (conf / "dev.yaml").write_text("seed: 1\nsource:\n  timezone: Europe/London\n")
    (conf / "layouts" / "shop.yaml").write_text("seed: 2\nsource:\n  columns:\n    customer_id: cust\n")
    later = tmp_path / "later.yaml"
    later.write_text("seed: 3\n")
    config = load_config(env="dev", layout="shop", conf_dir=conf)
    assert (config.seed, config.source.timezone, config.source.columns.customer_id) == (2, "Europe/London", "cust")
    assert load_config([later], env="dev", layout="shop", conf_dir=conf).seed == 3


def test_repository_layout_by_name():
    config = load_config(env=None, layout="online_retail")
    assert config.source.columns.customer_id == "CustomerID"


@pytest.mark.parametrize("name", ["shopify", "../local"])
def test_unknown_layout_names_the_available_ones(name):
    with pytest.raises(ConfigError, match=rf"no source layout '{re.escape(name)}' .*\(found: online_retail\)"):
        load_config(env=None, layout=name)


#: Options each command shows and accepts beyond the shared ones, and the example its help gives.
COMMAND_OPTIONS = {
    "run": (
        {"--input", "--layout", "--as-of", "--retrain", "--full-refresh"},
        "run --layout online_retail --input data/ --lakehouse lakehouse",
    ),
    "ingest": (
        {"--input", "--layout", "--full-refresh"},
        "ingest --config conf/layouts/online_retail.yaml --input data/ --lakehouse lakehouse",
    ),
    "features": ({"--as-of"}, "features --lakehouse lakehouse --as-of 2011-11-01 --as-of 2011-12-01"),
    "train": ({"--as-of"}, "train --lakehouse lakehouse --as-of 2011-12-01"),
    "score": ({"--as-of", "--model"}, "score --lakehouse lakehouse --as-of 2012-01-01"),
    "profile": ({"--as-of"}, "profile --lakehouse lakehouse --as-of 2012-01-01"),
    "maintain": ({"--as-of"}, "maintain --lakehouse lakehouse --catalog-db segmentation"),
    "export": (
        {"--table", "--format", "--out", "--where", "--overwrite"},
        "export --lakehouse lakehouse --table campaign_audiences --format csv --out champions",
    ),
}
SHARED_OPTIONS = {"--config", "--set", "--lakehouse", "--env", "--conf-dir", "--verbose"}


def _shared(command: str) -> set[str]:
    """Every command but export (which writes no table) also registers tables: --catalog-db."""
    return SHARED_OPTIONS if command == "export" else SHARED_OPTIONS | {"--catalog-db"}


def _help(capsys, entry, argv) -> str:
    with pytest.raises(SystemExit) as exit_info:
        entry(argv)
    assert exit_info.value.code == 0
    return capsys.readouterr().out


def _options_shown(help_text: str) -> set[str]:
    options = help_text.partition("\noptions:\n")[2].partition("\nexample:\n")[0]
    return set(re.findall(r"^\s+(?:-\w, )?(--[\w-]+)", options, flags=re.MULTILINE)) - {"--help"}


@pytest.mark.parametrize("command", COMMAND_OPTIONS)
def test_each_command_shows_only_the_options_it_uses_and_an_example(capsys, command):
    uses, example = COMMAND_OPTIONS[command]
    out = _help(capsys, cli.main, [command, "--help"])
    assert _options_shown(out) == _shared(command) | uses
    assert f"example:\n  segspark {example}" in out


@pytest.mark.parametrize("command", COMMAND_OPTIONS)
def test_each_job_entry_point_shows_the_same_options_and_a_submit_example(capsys, command):
    assert (ROOT / cli.job_file(command)).is_file()
    uses, example = COMMAND_OPTIONS[command]
    out = _help(capsys, lambda argv: cli.job_main(command, argv), ["--help"])
    assert out.startswith(f"usage: {cli.job_file(command)}")
    assert _options_shown(out) == _shared(command) | uses
    assert f"scripts/submit.sh --master 'local[2]' {cli.job_file(command)} {example.partition(' ')[2]}" in out


@pytest.mark.parametrize(
    ("argv", "option"),
    [
        (["ingest", "--as-of", "2011-01-01"], "--as-of"),
        (["features", "--input", "data/"], "--input"),
        (["train", "--input", "data/"], "--input"),
        (["train", "--layout", "online_retail"], "--layout"),
        (["features", "--layout", "online_retail"], "--layout"),
        (["train", "--model", "m1"], "--model"),
        (["score", "--input", "data/"], "--input"),
        (["features", "--full-refresh"], "--full-refresh"),
    ],
)
def test_an_option_the_command_does_not_use_is_a_usage_error(capsys, argv, option):
    with pytest.raises(SystemExit) as exit_info:
        cli.main(argv)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert f"usage: segspark {argv[0]}" in err
    assert f"error: argument {option}: segspark {argv[0]} does not use it" in err


def test_a_job_entry_point_rejects_an_option_its_stage_does_not_use(capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.job_main("ingest", ["--as-of", "2011-01-01"])
    assert exit_info.value.code == 2
    assert "error: argument --as-of: jobs/ingest.py does not use it" in capsys.readouterr().err


def test_config_from_args_without_the_command_specific_options():
    parser = cli.build_parser()
    ingest = cli.config_from_args(parser.parse_args(["ingest", "--layout", "online_retail", "--input", "in"]))
    expected = (absolute_uri("in"), "CustomerID", [])
    assert (ingest.source.path, ingest.source.columns.customer_id, ingest.as_of_dates) == expected
    train = cli.config_from_args(parser.parse_args(["train", "--as-of", "2011-12-01", "--lakehouse", "lh"]))
    assert (train.as_of_dates, train.source.path, train.lakehouse) == ([dt.date(2011, 12, 1)], None, absolute_uri("lh"))
    features = cli.config_from_args(parser.parse_args(["features", "--as-of", "2011-11-01", "--as-of", "2011-12-01"]))
    assert features.as_of_dates == [dt.date(2011, 11, 1), dt.date(2011, 12, 1)]
    argv = ["score", "--model", "20261124T1200Z-ab12", "--as-of", "2012-01-01"]
    score = cli.config_from_args(parser.parse_args(argv))
    assert (score.score.model_version, score.as_of_dates) == ("20261124T1200Z-ab12", [dt.date(2012, 1, 1)])


def test_cli_unknown_layout_exits_2_naming_the_layouts(capsys):
    assert cli.main(["ingest", "--layout", "shopify"]) == 2
    assert "no source layout 'shopify'" in capsys.readouterr().err


def test_every_table_in_the_registry_has_a_configurable_name_and_no_other():
    from segspark.config.settings import TableNames
    from segspark.contracts.schemas import TABLE_NAMES

    assert sorted(TableNames.model_fields) == sorted(TABLE_NAMES)


def test_full_refresh_sets_the_ingest_mode_for_one_run():
    parser = cli.build_parser()
    assert cli.config_from_args(parser.parse_args(["ingest", "--input", "in"])).ingest.mode == "incremental"
    for argv in (["ingest", "--input", "in", "--full-refresh"], ["run", "--input", "in", "--full-refresh"]):
        assert cli.config_from_args(parser.parse_args(argv)).ingest.mode == "full"
