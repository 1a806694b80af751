"""Privacy: pseudonymised customer ids (HMAC-SHA-256, key from the environment) and descriptions left out."""

from __future__ import annotations

import hashlib
import hmac
from pathlib import Path

import pytest
from chispa import assert_df_equality

from segspark import cli
from segspark.config.settings import PrivacySettings
from segspark.errors import ConfigError
from segspark.platform import lakehouse, privacy
from segspark.stages.ingest import stage as ingest
from tests.helpers.config import retail_config
from tests.helpers.data import LINES, write_csv

KEY = "k" * 24 + "-segspark-test-key-0123456789"  # 53 bytes
ENV = "SEGSPARK_TEST_ID_KEY"


def by_hand(customer_id: str) -> str:
    return hmac.new(KEY.encode(), customer_id.encode(), hashlib.sha256).hexdigest()


def test_the_pseudonym_is_hmac_sha256_of_the_id():
    # RFC 4231 test case 2: key "Jefe", data "what do ya want for nothing?".
    assert privacy.pseudonym("what do ya want for nothing?", b"Jefe") == (
        "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
    )


@pytest.mark.parametrize(
    ("environ", "message"),
    [
        ({}, f"the environment variable {ENV} \\(privacy.key_env\\) is not set"),
        ({ENV: "short"}, f"the key in {ENV} is 5 bytes; privacy.pseudonymise_ids needs at least 32"),
    ],
)
def test_a_missing_or_short_key_is_named_without_its_value(environ, message):
    settings = PrivacySettings(pseudonymise_ids=True, key_env=ENV)
    with pytest.raises(ConfigError, match=message) as err:
        privacy.id_key(settings, environ)
    assert "short" not in str(err.value).replace("is not set", "")
    assert privacy.id_key(PrivacySettings(), {}) is None  # off: no key needed


def test_cli_refuses_a_missing_key_before_spark_starts(tmp_path, monkeypatch, capsys):
    monkeypatch.delenv(ENV, raising=False)
    folder = write_csv(tmp_path / "in", LINES)
    argv = ["ingest", "--input", str(folder), "--lakehouse", str(tmp_path / "lh"),
            "--set", "privacy.pseudonymise_ids=true", "--set", f"privacy.key_env={ENV}"]
    assert cli.main(argv) == 2
    assert capsys.readouterr().err.startswith(f"segspark: error: privacy.pseudonymise_ids is on but the environment "
                                              f"variable {ENV}")
    assert not (tmp_path / "lh" / "transactions_clean").exists()


@pytest.fixture(scope="module")
def private_ingest(spark, tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp("private")
    config = retail_config(tmp_path / "lakehouse", write_csv(tmp_path / "in", LINES))
    config = config.model_copy(
        update={"privacy": PrivacySettings(pseudonymise_ids=True, key_env=ENV, keep_descriptions=False)}
    )
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(ENV, KEY)
        counts = ingest.run_ingest(spark, config, "private-run")
    return config, counts


def test_clean_ids_are_pseudonyms_of_the_normalised_ids_and_descriptions_are_left_out(spark, private_ingest):
    config, counts = private_ingest
    assert counts.rows_clean == 6  # as without privacy: nothing merges, nothing splits
    got = lakehouse.read_table(spark, config.table_path("transactions_clean")).select(
        "invoice_id", "customer_id", "description"
    )
    expected = spark.createDataFrame(
        [
            ("536365", by_hand("17850"), None),  # from "17850.0"
            ("C536379", by_hand("14527"), None),
            ("536380", by_hand("007"), None),  # from " 007 "
            ("536381", by_hand("12583"), None),
            ("536381", by_hand("12583"), None),
            ("C536382", by_hand("12583"), None),
        ],
        "invoice_id string, customer_id string, description string",
    )
    assert_df_equality(got, expected, ignore_row_order=True, ignore_nullable=True, ignore_metadata=True)


def test_rejected_lines_keep_no_raw_id_or_description(spark, private_ingest):
    config, _ = private_ingest
    rejected = lakehouse.read_table(spark, config.table_path("transactions_rejected"))
    ids = {r["CustomerID"] for r in rejected.select("CustomerID").distinct().collect()}  # a handful
    assert ids == {None, by_hand("17850"), by_hand("13047")}
    assert rejected.where("Description is not null").count() == 0


def test_the_key_is_in_no_file_of_the_lakehouse(private_ingest):
    config, _ = private_ingest
    root = Path(config.lakehouse_local_path)
    files = [p for p in root.rglob("*") if p.is_file()]
    assert files
    assert not [p for p in files if KEY.encode() in p.read_bytes()]
