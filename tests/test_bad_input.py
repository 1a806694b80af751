"""The bad-input matrix: each kind of bad input named in docs/guarantees.md, with its exact outcome.

Line-level cases go through ingest's own transforms on one small file (no table writes: the writes around
them are covered in test_ingest); run-level cases (config, lakehouse) go through the CLI's checks, which run
before Spark starts. Training input (one customer, fewer customers than K, constant features) is in
test_train's ``test_bad_training_input_is_named``.
"""

from __future__ import annotations

import datetime as dt
import os
import shutil
import sys
import tempfile
import traceback
from decimal import Decimal
from pathlib import Path

import pytest

from segspark import cli
from segspark.config.settings import load_config
from segspark.errors import ConfigError
from segspark.platform.lakehouse import check_lakehouse
from segspark.stages.ingest import stage as ingest
from segspark.stages.ingest.counts import describe_reason
from segspark.stages.ingest.fingerprints import count_identical_rows
from segspark.stages.ingest.rules import REPLACEMENT_CHARACTER, with_canonical_columns, with_reject_reason
from tests.helpers.config import ROOT, make_config, retail_config
from tests.helpers.data import write_csv

LATEST = dt.datetime(2024, 1, 1, tzinfo=dt.UTC)

# Columns reordered against the mapping's usual order, plus two the mapping does not name.
HEADER = "Notes,CustomerID,Country,InvoiceDate,UnitPrice,Quantity,Description,StockCode,InvoiceNo,Extra"
# (line, expected reason or None for clean); the Description is the case's key.
CASES = [
    ('x,17850,United Kingdom,2010-12-01 08:26:00,2.55,6,BASELINE,85123A,536365,y', None),
    ('x,17850,United Kingdom,2010-12-01 08:26:00,2.55,three,TEXT QUANTITY,85123A,536365,y', "invalid_quantity"),
    ('x,17850,United Kingdom,2010-12-01 08:26:00,"1,5",6,COMMA DECIMAL,85123A,536365,y', "invalid_price"),
    ("x,17850,United Kingdom,2010-12-01 08:26:00,NaN,6,NAN PRICE,85123A,536365,y", "invalid_price"),
    ("x,17850,United Kingdom,2010-12-01 08:26:00,Infinity,6,INFINITE PRICE,85123A,536365,y", "invalid_price"),
    ("x,17850,United Kingdom,2010-12-01 08:26:00,-inf,6,MINUS INF PRICE,85123A,536365,y", "invalid_price"),
    ("x,17850,United Kingdom,2010-12-01 08:26:00,2.55,3000000000,QUANTITY OVER INT,85123A,536365,y",
     "invalid_quantity"),
    ("x,17850,United Kingdom,2010-12-01 08:26:00,1e30,6,PRICE OVER DECIMAL,85123A,536365,y", "invalid_price"),
    ("x,17850,United Kingdom,2091-12-01 08:26:00,2.55,6,FUTURE DATE,85123A,536365,y", "future_timestamp"),
    ("x,17850,United Kingdom,2024-01-01 00:00:00,2.55,6,AT THE LATEST MOMENT,85123A,536365,y", None),
]
LATIN1_LINES = [
    "x,17850,United Kingdom,2010-12-01 08:26:00,2.55,6,CAFÉ AU LAIT,85123A,536365,y",
    "x,José,España,2010-12-01 08:26:00,2.55,6,PLAIN,85123A,536365,y",
]


def outcomes(spark, tmp_path: Path, folder: Path, **source) -> dict[str, tuple]:
    """Description -> (reject_reason, customer_id, quantity, unit_price) after ingest's parse and checks."""
    config = retail_config(tmp_path / "lh", folder, source=source)
    raw_df = ingest.read_source(spark, config.source)
    ingest.check_source_columns(raw_df, config.source)
    rows = (
        raw_df.transform(ingest.with_text_columns)
        .transform(count_identical_rows)
        .transform(with_canonical_columns, config.source)
        .transform(with_reject_reason, config.source, LATEST)
        .select("Description", "reject_reason", "__customer_id", "__quantity", "__unit_price", "__country")
        .collect()  # a dozen lines
    )
    return {r[0]: tuple(r[1:]) for r in rows}


def test_every_bad_value_is_a_reasoned_reject_whatever_the_column_order(spark, tmp_path):
    got = outcomes(spark, tmp_path, write_csv(tmp_path / "in", [line for line, _ in CASES], header=HEADER))
    expected = {line.split(",")[6] if '"' not in line else "COMMA DECIMAL": reason for line, reason in CASES}
    assert {name: got[name][0] for name in got} == expected
    # The extra and reordered columns change nothing: the baseline parses as in the usual layout.
    assert got["BASELINE"] == (None, "17850", 6, Decimal("2.5500"), "United Kingdom")


def test_latin1_read_as_utf8_is_rejected_and_reads_whole_with_its_encoding(spark, tmp_path):
    folder = write_csv(tmp_path / "latin1", LATIN1_LINES, header=HEADER, encoding="latin-1")
    as_utf8 = outcomes(spark, tmp_path, folder)
    assert sorted(reason for reason, *_ in as_utf8.values()) == ["invalid_encoding", "invalid_encoding"]
    assert REPLACEMENT_CHARACTER in "".join(as_utf8)  # what the decoder made of É

    as_latin1 = outcomes(spark, tmp_path, folder, csv_options={"header": "true", "encoding": "ISO-8859-1"})
    assert as_latin1["CAFÉ AU LAIT"][0] is None
    assert as_latin1["PLAIN"][:2] == (None, "José") and as_latin1["PLAIN"][4] == "España"


def test_the_new_reasons_explain_themselves():
    source = retail_config(Path("/tmp/unused"), "x.csv").source
    text = describe_reason("invalid_encoding", 2, "CAF\ufffd", source)
    assert text == (
        "invalid_encoding: 2 lines, e.g. 'CAF\ufffd' (bytes that are not UTF-8; a Latin-1 export needs "
        "source.csv_options.encoding: ISO-8859-1)"
    )
    text = describe_reason("future_timestamp", 1, "2091-12-01 08:26:00", source, LATEST)
    assert text == (
        "future_timestamp: 1 line, e.g. '2091-12-01 08:26:00' (column InvoiceDate; later than 2024-01-01 "
        "00:00:00 UTC (ingest.latest_timestamp, default the run's start))"
    )


def test_latest_timestamp_is_read_as_utc():
    config = make_config(Path("/tmp/unused"), ingest={"latest_timestamp": "2024-01-01 12:00:00"})
    assert config.ingest.latest_timestamp == dt.datetime(2024, 1, 1, 12, tzinfo=dt.UTC)
    with pytest.raises(ConfigError, match="ingest.latest_timestamp"):
        make_config(Path("/tmp/unused"), ingest={"latest_timestamp": "next tuesday"})


# --- run-level: configuration and the output folder, refused before Spark starts ---


def test_a_key_given_twice_in_a_config_file_exits_2_naming_it(tmp_path, capsys):
    extra = tmp_path / "mine.yaml"
    extra.write_text("model:\n  k_min: 2\n  k_max: 6\n  k_min: 3\n")
    assert cli.main(["features", "--config", str(extra), "--lakehouse", str(tmp_path / "lh")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"segspark: error: config file {extra}: key 'k_min' is given twice (lines 2 and 4): keep one"]


def _as_unprivileged(action) -> tuple[int, str]:
    """Run ``action()`` (returns an exit code) as a user without write access; (exit code, stderr text).

    Root may write anywhere, so under root the action runs in a forked child that drops to uid 65534 first.
    """
    if os.geteuid() != 0:
        return action(), ""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: no Spark, no JVM; only the pure-Python checks run here
        code = 99
        try:
            sys.stderr = open(write_end, "w", encoding="utf-8", closefd=False)  # noqa: SIM115 - flushed below
            os.setgroups([])
            os.setgid(65534)
            os.setuid(65534)
            code = action()
        except BaseException:  # say why in the parent's assertion message, not as a bare exit code
            traceback.print_exc()
        finally:  # a child must never return into pytest
            sys.stderr.flush()
            os._exit(code)
    os.close(write_end)
    with os.fdopen(read_end, encoding="utf-8", errors="replace") as stream:
        err = stream.read()
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status), err


@pytest.fixture
def read_only_lakehouse():
    """A lakehouse folder (and a table folder in it) this user cannot write; others may traverse it."""
    top = Path(tempfile.mkdtemp(prefix="segspark-ro-"))
    try:
        lake = top / "lh"
        (lake / "customer_features" / "_delta_log").mkdir(parents=True)
        for folder in (top, lake, lake / "customer_features", lake / "customer_features" / "_delta_log"):
            folder.chmod(0o755)
        yield lake
    finally:
        for folder in (lake, lake / "customer_features"):
            folder.chmod(0o755)
        shutil.rmtree(top, ignore_errors=True)


def test_a_read_only_lakehouse_exits_2_before_spark_starts(read_only_lakehouse, capsys):
    lake = read_only_lakehouse
    if os.geteuid() != 0:
        lake.chmod(0o555)
    # The unprivileged child may not be able to read the checkout (a private temp folder): it reads a copy of
    # conf/ beside the lakehouse instead, and the modules the command imports are imported here first.
    import segspark.console  # noqa: F401
    import segspark.pipeline  # noqa: F401
    import segspark.platform.session  # noqa: F401

    conf = shutil.copytree(ROOT / "conf", lake.parent / "conf")
    for folder in (conf, conf / "layouts"):
        folder.chmod(0o755)
    code, err = _as_unprivileged(lambda: cli.main(["features", "--lakehouse", str(lake), "--conf-dir", str(conf)]))
    err = err or capsys.readouterr().err
    assert code == 2, err
    assert err.strip().splitlines() == [f"segspark: error: lakehouse '{lake}' is not writable by this user"]


def test_a_read_only_table_folder_is_named(read_only_lakehouse):
    lake = read_only_lakehouse
    table = lake / "customer_features"
    config = load_config(env=None, flags={"lakehouse": str(lake)})
    if os.geteuid() == 0:
        lake.chmod(0o777)  # the lakehouse itself is writable for everyone; the table folder is not

        def action():
            try:
                check_lakehouse(config)
            except ConfigError as exc:
                print(exc, end="", file=sys.stderr)
                return 2
            return 0

        code, err = _as_unprivileged(action)
        assert code == 2 and err == f"table folder '{table}' in the lakehouse is not writable by this user", err
    else:
        table.chmod(0o555)
        with pytest.raises(ConfigError, match=f"table folder '{table}' in the lakehouse is not writable"):
            check_lakehouse(config)


def test_a_lakehouse_on_a_filesystem_that_refuses_folders_is_named():
    with pytest.raises(ConfigError, match=r"lakehouse '/sys/segspark-lakehouse' cannot be created: "):
        check_lakehouse(load_config(env=None, flags={"lakehouse": "/sys/segspark-lakehouse"}))
